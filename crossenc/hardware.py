"""Facts about the host: physical cores, CPU instruction sets, GPUs, a fingerprint for caches."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
from typing import Any


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """Instruction-set flags of the first CPU (empty off Linux)."""
    match = re.search(r"^flags\s*:\s*(.*)$", _cpuinfo(), re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def cpu_model() -> str:
    match = re.search(r"^model name\s*:\s*(.*)$", _cpuinfo(), re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def physical_cores() -> int:
    """Physical cores available to this process (SMT siblings counted once)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    pairs = set(re.findall(r"physical id\s*:\s*(\d+)[\s\S]*?core id\s*:\s*(\d+)", _cpuinfo()))
    siblings = re.search(r"^siblings\s*:\s*(\d+)", _cpuinfo(), re.MULTILINE)
    cores = re.search(r"^cpu cores\s*:\s*(\d+)", _cpuinfo(), re.MULTILINE)
    if siblings and cores and int(siblings.group(1)) > int(cores.group(1)):
        return max(1, available * int(cores.group(1)) // int(siblings.group(1)))
    return max(1, min(available, len(pairs) or available))


def has_cpu_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512_BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def has_cpu_vnni() -> bool:
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def gpu_name() -> str | None:
    if not cuda_available():
        return None
    import torch

    return torch.cuda.get_device_name(0)


def device_slug(device: str = "cpu") -> str:
    """Short name for a results folder: ``cpu-amd-epyc-2c`` or ``cuda-nvidia-h100-80gb-hbm3``."""
    if device.startswith("cuda") and gpu_name():
        name = gpu_name() or "gpu"
    else:
        name = f"cpu-{cpu_model()}-{physical_cores()}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def fingerprint(device: str = "cpu") -> dict[str, Any]:
    """Machine description stored with every benchmark row and autotune profile."""
    flags = cpu_flags()
    interesting = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in {"fma", "f16c"})
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": interesting,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu_name() if device.startswith("cuda") else None,
    }
    if info["gpu"]:
        import torch

        info["cuda"] = torch.version.cuda
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return info


def fingerprint_hash(device: str = "cpu") -> str:
    """Stable hash of the parts of the fingerprint that change which backend is fastest."""
    info = fingerprint(device)
    key = f"{info['cpu_model']}|{','.join(info['cpu_flags'])}|{info['physical_cores']}|{info['gpu']}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
