"""One-shot GPU check: throughput and score agreement of the CUDA variants on the demo reranker.

``python -m crossenc.bench.gpu_check --out results/<slug>`` on a fresh CUDA machine (< 8 minutes; rows stop
starting at ``--deadline``). How to run it, on the lent device machine too, and what each row turns
on: docs/gpu-defaults.md. Every row is written to ``<out>/gpu_check.{json,md}`` as soon as it is measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crossenc.paths import atomic_write

CROSSENC_BATCH = 256
PADDED_MAX_TOKENS = 65536  # 256 x 256 padded tokens
PACKED_MAX_TOKENS = 32768  # real tokens; equals the largest CUDA-graph bucket
MIN_SECONDS_FOR_ROW = 25
BASELINE_ROW = "sentence-transformers fp16 b32"
HOST_TOKENIZER_ROW = "host tokenization only"
KERNEL_CHECK_ROW = "triton kernel self-check"
# Worker processes for the tokenizer row: all cores but two (the scoring thread and the executor's).
TOKENIZER_PROCESSES = max(1, min(14, (os.cpu_count() or 4) - 2))

Scorer = Callable[[list[tuple[str, str]]], np.ndarray]


class Recorder:
    """Collects rows and rewrites the JSON and Markdown files after each one."""

    def __init__(self, out: Path, environment: dict[str, Any]) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.environment = environment
        self.rows: list[dict[str, Any]] = []
        self.save()  # the environment is on disk before the first row can fail or hang

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.save()
        status = row.get("error") or f"{row.get('pairs_per_s', 0):.0f} pairs/s, max diff {row.get('max_abs_diff')}"
        print(f"[{row['elapsed_s']:6.1f}s] {row['name']}: {status}", flush=True)

    def save(self) -> None:
        payload = {"environment": self.environment, "rows": self.rows}
        atomic_write(self.out / "gpu_check.json", json.dumps(payload, indent=2, default=str).encode())
        atomic_write(self.out / "gpu_check.md", self.markdown().encode())

    def markdown(self) -> str:
        baseline = next((r.get("pairs_per_s") for r in self.rows if r["name"] == BASELINE_ROW), None)
        lines = [
            f"# GPU check: {self.environment.get('gpu')}",
            "",
            f"torch {self.environment.get('torch')}, CUDA {self.environment.get('cuda')}, "
            f"triton {self.environment.get('triton')}, flash-attn {self.environment.get('flash_attn')}",
            "",
            f"Model {self.environment.get('model')} ({self.environment.get('weights_dtype')} weights). Useful TFLOP/s = "
            f"pairs/s x {self.environment.get('gflop_per_pair') or 0:.2f} GFLOP per pair (matrix products of the "
            "encoder with a first-token last layer, crossenc.bench.model_flops; rows that pad or run the full last "
            "layer do more; H100 SXM dense fp16 peak ~990).",
            "",
            "| row | pairs/s | x ST fp16 b32 | TFLOP/s | max abs logit diff vs fp32 | batch / max_tokens | details | error |",
            "|---|---:|---:|---:|---:|---|---|---|",
        ]
        gflop = self.environment.get("gflop_per_pair")
        for row in self.rows:
            speed = row.get("pairs_per_s")
            scores_pairs = row["name"] != HOST_TOKENIZER_ROW  # the tokenizer row runs no model
            ratio = f"{speed / baseline:.2f}" if speed and baseline and scores_pairs else ""
            diff = row.get("max_abs_diff")
            diff_text = "" if diff is None else f"{diff:.2e}"
            details = row.get("details") or {}
            known = [k for k in ("attention", "elementwise", "cuda_graphs") if k in details]
            summary = ", ".join(f"{k}={details[k]}" for k in (known or details))
            tflops = f"{speed * gflop / 1e3:.0f}" if speed and gflop and scores_pairs else ""
            lines.append(
                f"| {row['name']} | {f'{speed:.0f}' if speed else ''} | {ratio} | {tflops} | "
                f"{diff_text} | {row.get('batch_size', '')} / {row.get('max_tokens', '')} | "
                f"{summary} | {(row.get('error') or '')[:160]} |"
            )
        return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for module in ("transformers", "triton", "flash_attn", "sentence_transformers", "onnxruntime"):
        try:
            info[module] = __import__(module).__version__
        except Exception as error:  # optional: record why it is missing
            info[module] = f"unavailable ({type(error).__name__})"
    return info


def run_environment(path: Path, pairs: list) -> dict[str, Any]:
    """:func:`environment` plus the checkpoint, its stored dtype and its GFLOP per pair of ``pairs``."""
    return {**environment(), "model": str(path), "weights_dtype": weights_dtype(path),
            "gflop_per_pair": gflop_per_pair(path, pairs)}


def measure(score: Scorer, small: list, big: list, reps: int) -> dict[str, Any]:
    """Scores on ``small`` (also a warm-up), one warm-up pass on ``big``, then ``reps`` timed passes."""
    from crossenc.bench.host_pipeline import timed_calls

    scores = np.asarray(score(small), dtype=np.float32).reshape(len(small), -1)
    seconds = timed_calls(lambda: score(big), reps)
    median = statistics.median(seconds)
    return {"scores": scores, "seconds": seconds, "pairs_per_s": len(big) / median, "pairs": len(big)}


def crossenc_scorer(
    path: Path,
    variant: str,
    options: dict,
    batch_size: int,
    max_tokens: int,
    backend: str = "torch",
    tokenize_ahead: bool | None = None,
    tokenizer_processes: int | None = None,
    fast_tokenizer: bool = True,
):
    from crossenc import CrossEncoder

    previous = os.environ.get("CROSSENC_FAST_TOKENIZER")
    os.environ["CROSSENC_FAST_TOKENIZER"] = "1" if fast_tokenizer else "0"  # read when the encoder is built
    try:
        encoder = CrossEncoder(
            str(path), backend=backend, variant=variant, device="cuda", backend_kwargs=options,
            max_tokens=max_tokens, tokenize_ahead=tokenize_ahead, tokenizer_processes=tokenizer_processes,
        )
    finally:
        if previous is None:
            os.environ.pop("CROSSENC_FAST_TOKENIZER")
        else:
            os.environ["CROSSENC_FAST_TOKENIZER"] = previous
    if tokenizer_processes:
        encoder.tokenizer_pool().warm_up()  # spawning is load time, not scoring time
    def score(pairs: list) -> np.ndarray:  # raw logits: sigmoid scores near 0 or 1 hide differences
        return encoder.predict_logits(pairs, batch_size=batch_size)

    score.close = encoder.close  # type: ignore[attr-defined] - stops tokenizer workers after the row
    return score, encoder.info()


def pretokenized_scorer(path: Path, variant: str, options: dict, batch_size: int, max_tokens: int,
                        device: str = "cuda"):
    """Device-side ceiling: each pair list is tokenized on its first call only (``tokenize_pairs``),
    later calls score the tokens (``predict_tokenized``)."""
    import torch

    from crossenc import CrossEncoder

    encoder = CrossEncoder(str(path), variant=variant, device=device, backend_kwargs=options, max_tokens=max_tokens)
    encodings: dict[int, Any] = {}
    identity = torch.nn.Identity()

    def score(pairs: list) -> np.ndarray:
        if id(pairs) not in encodings:
            encodings[id(pairs)] = (pairs, encoder.tokenize_pairs(pairs))  # keeps ``pairs`` alive: its id stays unique
        encoded = encodings[id(pairs)][1]
        return encoder.predict_tokenized(encoded, batch_size=batch_size, activation_fn=identity).reshape(len(pairs), -1)

    score.encodings = encodings  # type: ignore[attr-defined] - for tests
    return score, encoder.info()


def tokenizer_only_row(path: Path, pairs: list, reps: int, started: float) -> dict[str, Any]:
    """In-process host ceiling: pairs/s of crossenc's tokenization (Rust, all cores) on the throughput set.

    ``pairs_per_s`` is crossenc's split encoding (each distinct text once); the details add
    Hugging Face's pair-by-pair encoding of the same pairs for comparison.
    """
    from crossenc.bench.host_pipeline import load_pair_encoder, timed_calls

    row: dict[str, Any] = {"name": HOST_TOKENIZER_ROW}
    try:
        split, uses_types = load_pair_encoder(path)
        hub, _ = load_pair_encoder(path, fast=False)
        joint, _ = load_pair_encoder(path, split=False)
        seconds = timed_calls(lambda: split.encode(pairs, uses_types), reps)
        hub_seconds = timed_calls(lambda: hub.encode(pairs, uses_types), reps)
        joint_seconds = timed_calls(lambda: joint.encode(pairs, uses_types), reps)
        row.update({"seconds": seconds, "pairs": len(pairs), "pairs_per_s": len(pairs) / statistics.median(seconds)})
        row["details"] = {
            "cpu_count": os.cpu_count(),
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"),
            "mode": split.mode,
            "engine": split.engine,
            "split_tokenizers_pairs_per_s": round(len(pairs) / statistics.median(hub_seconds)),
            "joint_pairs_per_s": round(len(pairs) / statistics.median(joint_seconds)),
        }
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=6)
    row["elapsed_s"] = round(time.perf_counter() - started, 1)
    return row


def sentence_transformers_scorer(path: Path, batch_size: int):
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = STCrossEncoder(str(path), device="cuda", model_kwargs={"dtype": torch.float16})
    identity = torch.nn.Identity()
    return (lambda pairs: model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=identity)), {}


def triton_self_check() -> dict[str, Any]:
    """Max abs difference of each Triton kernel vs its torch reference on CUDA fp16 (small shapes)."""
    import torch

    from crossenc.kernels.triton_attention import varlen_attention, varlen_attention_reference
    from crossenc.kernels.triton_bias_gelu import bias_gelu, bias_gelu_reference
    from crossenc.kernels.triton_layer_norm import add_layer_norm, add_layer_norm_reference

    torch.manual_seed(0)
    device, half = "cuda", torch.float16
    x, bias = torch.randn(333, 1536, device=device, dtype=half), torch.randn(1536, device=device, dtype=half)
    residual = torch.randn(333, 1536, device=device, dtype=half)
    weight, shift = torch.randn(1536, device=device, dtype=half), torch.randn(1536, device=device, dtype=half)
    diffs = {
        "bias_gelu": (bias_gelu(x, bias) - bias_gelu_reference(x, bias)).abs().max().item(),
        "add_layer_norm": (
            add_layer_norm(x, bias, residual, weight, shift, 1e-12)
            - add_layer_norm_reference(x.float(), bias.float(), residual.float(), weight.float(), shift.float(), 1e-12)
        ).abs().max().item(),
    }
    lengths = [1, 7, 64, 65, 200, 3, 512]
    cu_seqlens = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device=device)
    for head_dim in (32, 64):
        q, k, v = torch.randn(sum(lengths), 3, 12, head_dim, device=device, dtype=half).unbind(1)
        args = (q, k, v, cu_seqlens, max(lengths), head_dim**-0.5)
        got, expected = varlen_attention(*args).float(), varlen_attention_reference(*args).float()
        diffs[f"attention_d{head_dim}"] = (got - expected).abs().max().item()
    return diffs


def row_plan(path: Path) -> list[tuple[str, Callable[[], tuple[Scorer, dict]] | None, dict]]:
    """(name, factory, row fields) in priority order: later rows are the first to be skipped."""
    packed = {"batch_size": CROSSENC_BATCH, "max_tokens": PACKED_MAX_TOKENS}
    padded = {"batch_size": CROSSENC_BATCH, "max_tokens": PADDED_MAX_TOKENS}

    def torch_row(variant: str, options: dict, fields: dict):
        return lambda: crossenc_scorer(path, variant, options, fields["batch_size"], fields["max_tokens"])

    one = {"in_flight": 1}  # rows name what they turn on: CUDA defaults (graphs, 2 in flight) are off unless named
    eager = {"cuda_graphs": False, "use_triton": False, **one}
    graphs = {"cuda_graphs": True, "use_triton": False, "graph_max_tokens": PACKED_MAX_TOKENS, **one}
    triton_graphs = {**graphs, "use_triton": True}
    big = {**triton_graphs, "in_flight": 2, "graph_max_tokens": 2 * PACKED_MAX_TOKENS,
           "graph_max_batch": 4 * CROSSENC_BATCH}
    queued = {**triton_graphs, "in_flight": 2}
    pinned = {**queued, "pin_inputs": True}

    def fields(base: dict, **extra) -> dict:
        return {**base, **extra}

    return [
        ("crossenc torch sdpa fp32", torch_row("sdpa", one, padded), padded),
        ("sentence-transformers fp16 b32", lambda: sentence_transformers_scorer(path, 32), {"batch_size": 32}),
        (HOST_TOKENIZER_ROW, None, {}),  # run by tokenizer_only_row
        ("crossenc packed-fp16 + triton + graphs", torch_row("packed-fp16", triton_graphs, packed), packed),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2", torch_row("packed-fp16", queued, packed),
         fields(packed, in_flight=2)),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2, batch 1024 / 65536 tokens",
         lambda: crossenc_scorer(path, "packed-fp16", big, 4 * CROSSENC_BATCH, 2 * PACKED_MAX_TOKENS),
         {"batch_size": 4 * CROSSENC_BATCH, "max_tokens": 2 * PACKED_MAX_TOKENS, "in_flight": 2}),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2, tokenizers only (no compiled engine)",
         lambda: crossenc_scorer(path, "packed-fp16", queued, CROSSENC_BATCH, PACKED_MAX_TOKENS, fast_tokenizer=False),
         fields(packed, in_flight=2, fast_tokenizer=False)),
        (f"crossenc packed-fp16 + triton + graphs + in_flight 2, {TOKENIZER_PROCESSES} tokenizer processes",
         lambda: crossenc_scorer(path, "packed-fp16", queued, CROSSENC_BATCH, PACKED_MAX_TOKENS,
                                 tokenizer_processes=TOKENIZER_PROCESSES),
         fields(packed, in_flight=2, tokenizer_processes=TOKENIZER_PROCESSES)),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2, pre-tokenized",
         lambda: pretokenized_scorer(path, "packed-fp16", queued, CROSSENC_BATCH, PACKED_MAX_TOKENS),
         fields(packed, in_flight=2, pretokenized=True)),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2, pre-tokenized, batch 1024 / 65536 tokens",
         lambda: pretokenized_scorer(path, "packed-fp16", big, 4 * CROSSENC_BATCH, 2 * PACKED_MAX_TOKENS),
         {"batch_size": 4 * CROSSENC_BATCH, "max_tokens": 2 * PACKED_MAX_TOKENS, "in_flight": 2,
          "pretokenized": True}),
        ("crossenc packed-fp16 + graphs + in_flight 2, pre-tokenized",
         lambda: pretokenized_scorer(path, "packed-fp16", {**graphs, "in_flight": 2}, CROSSENC_BATCH,
                                     PACKED_MAX_TOKENS),
         fields(packed, in_flight=2, pretokenized=True)),
        ("crossenc packed-fp16 + triton + graphs + in_flight 2 + pinned inputs, pre-tokenized",
         lambda: pretokenized_scorer(path, "packed-fp16", pinned, CROSSENC_BATCH, PACKED_MAX_TOKENS),
         fields(packed, in_flight=2, pin_inputs=True, pretokenized=True)),
        (f"crossenc packed-fp16 + triton + graphs + in_flight 2 + pinned inputs, {TOKENIZER_PROCESSES} "
         "tokenizer processes",
         lambda: crossenc_scorer(path, "packed-fp16", pinned, CROSSENC_BATCH, PACKED_MAX_TOKENS,
                                 tokenizer_processes=TOKENIZER_PROCESSES),
         fields(packed, in_flight=2, pin_inputs=True, tokenizer_processes=TOKENIZER_PROCESSES)),
        ("crossenc packed-fp16 + triton + graphs, tokenize_ahead off",
         lambda: crossenc_scorer(path, "packed-fp16", triton_graphs, CROSSENC_BATCH, PACKED_MAX_TOKENS,
                                 tokenize_ahead=False), fields(packed, tokenize_ahead=False)),
        ("crossenc packed-fp16, defaults", torch_row("packed-fp16", {}, packed), packed),
        ("crossenc torch fp16", torch_row("fp16", one, padded), padded),
        ("crossenc torch fp16 + in_flight 2", torch_row("fp16", {"in_flight": 2}, padded), fields(padded, in_flight=2)),
        ("crossenc packed-fp16", torch_row("packed-fp16", eager, packed), packed),
        ("crossenc packed-fp16 + graphs", torch_row("packed-fp16", graphs, packed), packed),
        (KERNEL_CHECK_ROW, None, {}),  # run by kernel_check_row
        ("crossenc packed-fp16 + triton", torch_row("packed-fp16", {**eager, "use_triton": True}, packed), packed),
        ("sentence-transformers fp16 b128", lambda: sentence_transformers_scorer(path, 128), {"batch_size": 128}),
        ("crossenc torch bf16", torch_row("bf16", one, padded), padded),
        ("crossenc torch fp16 b32", torch_row("fp16", one, {"batch_size": 32, "max_tokens": 16384}),
         {"batch_size": 32, "max_tokens": 16384}),  # fmt: skip
        ("crossenc packed-bf16", torch_row("packed-bf16", eager, packed), packed),
        ("crossenc packed fp32", torch_row("packed", eager, packed), packed),
        ("crossenc onnx fp16 (CUDA EP)", lambda: onnx_scorer(path), padded),
    ]


def onnx_scorer(path: Path):
    import importlib

    importlib.import_module("crossenc.backends.onnx_backend")
    ort = importlib.import_module("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu)")
    return crossenc_scorer(path, "fp16", {}, CROSSENC_BATCH, PADDED_MAX_TOKENS, backend="onnx")


def run_row(name: str, factory, fields: dict, small, big, reps: int, reference, started: float) -> dict[str, Any]:
    import torch

    row: dict[str, Any] = {"name": name, **fields}
    score = None
    try:
        load_start = time.perf_counter()
        score, info = factory()
        row["load_s"] = round(time.perf_counter() - load_start, 2)
        row["details"] = info.get("details")
        row["info"] = info
        result = measure(score, small, big, reps)
        row.update({k: result[k] for k in ("seconds", "pairs_per_s", "pairs")})
        if reference is not None:
            row["max_abs_diff"] = float(np.abs(result["scores"] - reference).max())
        row["scores"] = result["scores"]
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=6)
    finally:
        try:  # a lasting CUDA fault makes the clean-up raise too: record it, do not lose the row
            close = getattr(score, "close", None)
            if close is not None:
                close()
            score = None
            gc.collect()
            torch.cuda.empty_cache()
        except Exception as error:
            row["cleanup_error"] = f"{type(error).__name__}: {error}"
    row["elapsed_s"] = round(time.perf_counter() - started, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="results folder, e.g. results/<slug>")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds after which no row is started")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-queries", type=int, default=100, help="queries x 100 documents for throughput")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the demo reranker)")
    parser.add_argument("--only", default=None,
                        help="'|'-separated row names: run only these (the fp32 reference row always runs)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network: never wait on the Hub
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs torch with CUDA and a visible GPU")
    from crossenc.workloads import load_debian
    from crossenc.demo import demo_model_path

    path = args.model or demo_model_path()
    if not (Path(path) / "config.json").is_file():
        raise SystemExit(f"gpu_check: {path} is not a checkpoint folder (no config.json); see the module docstring")
    debian = load_debian()
    small, big = debian.subset(300, 10).pairs(), debian.subset(300, args.big_queries).pairs()
    recorder = Recorder(args.out, run_environment(path, big))
    reference, broken = None, None
    only = {part.strip() for part in args.only.split("|")} if args.only else None
    if only and only - {name for name, _, _ in row_plan(path)}:
        raise SystemExit(f"gpu_check: no row named {sorted(only - {name for name, _, _ in row_plan(path)})}")
    for name, factory, fields in row_plan(path):
        if only and name != "crossenc torch sdpa fp32" and name not in only:
            continue
        skip = broken or (
            "deadline" if time.perf_counter() - started > args.deadline - MIN_SECONDS_FOR_ROW else None
        )
        if skip:
            elapsed = round(time.perf_counter() - started, 1)
            recorder.add({"name": name, "error": f"skipped: {skip}", "elapsed_s": elapsed})
            continue
        if factory is None:
            recorder.add(kernel_check_row(started) if name == KERNEL_CHECK_ROW
                         else tokenizer_only_row(path, big, args.reps, started))
            continue
        row = run_row(name, factory, fields, small, big, args.reps, reference, started)
        scores = row.pop("scores", None)
        if reference is None and name == "crossenc torch sdpa fp32" and scores is not None:
            reference, row["max_abs_diff"] = scores, 0.0
        if "cleanup_error" in row:
            broken = f"the CUDA context failed after {name!r}: {row['cleanup_error']}"[:200]
        recorder.add(row)
    if not broken and time.perf_counter() - started < args.deadline - MIN_SECONDS_FOR_ROW:
        write_kernel_profile(path, big[:2000], args.out / "kernel_profile.txt")
    return 0


def write_kernel_profile(path: Path, pairs: list, target: Path, device: str = "cuda") -> None:
    """Top CUDA kernels of one pre-tokenized packed-fp16 + Triton pass (eager: graphs hide kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        cuda = device == "cuda"
        eager = {"cuda_graphs": False, "in_flight": 1}  # graphs would hide the kernels; one batch at a time
        variant, options = ("packed-fp16", {**eager, "use_triton": True}) if cuda else ("packed", eager)
        score, _ = pretokenized_scorer(path, variant, options, CROSSENC_BATCH, PACKED_MAX_TOKENS, device=device)
        score(pairs)  # tokenize, warm up
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as profiler:
            score(pairs)
            if cuda:
                torch.cuda.synchronize()
        table = profiler.key_averages().table(
            sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=25
        )
        atomic_write(target, f"{len(pairs)} pairs, one pass\n{table}\n".encode())
    except Exception as error:
        failure = f"profile failed: {type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}"
        atomic_write(target, failure.encode())


def weights_dtype(path: Path) -> str | None:
    """The stored dtype(s) of a safetensors checkpoint, e.g. ``F16`` for the device's fp16 copy."""
    try:
        from safetensors import safe_open

        kinds = set()
        for file in sorted(Path(path).glob("*.safetensors")):
            with safe_open(str(file), "np") as weights:
                kinds.update(str(weights.get_slice(name).get_dtype()) for name in weights.keys())
        return ",".join(sorted(kinds)) or None
    except Exception as error:
        return f"unknown ({type(error).__name__})"


def gflop_per_pair(path: Path, pairs: list) -> float | None:
    """Mean encoder GFLOP per pair of ``pairs`` for the checkpoint at ``path`` (None if it cannot be read)."""
    try:
        from transformers import AutoConfig

        from crossenc.bench.host_pipeline import load_pair_encoder
        from crossenc.bench.model_flops import config_flops

        config = AutoConfig.from_pretrained(path)
        lengths = load_pair_encoder(path)[0].encode(pairs, False).lengths
        return config_flops(config, lengths) / len(pairs) / 1e9
    except Exception as error:  # a missing figure must not stop the GPU run
        print(f"gflop_per_pair: {type(error).__name__}: {error}", flush=True)
        return None


def kernel_check_row(started: float) -> dict[str, Any]:
    row: dict[str, Any] = {"name": KERNEL_CHECK_ROW}
    try:
        row["kernel_max_abs_diff"] = triton_self_check()
        row["details"] = {k: f"{v:.1e}" for k, v in row["kernel_max_abs_diff"].items()}
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=6)
    row["elapsed_s"] = round(time.perf_counter() - started, 1)
    return row


if __name__ == "__main__":
    raise SystemExit(main())
