"""Can a bench result be compared with a baseline? Refuse on another workload, device or batch settings;
warn on another machine, model or library versions (ratios to the in-run anchor may then not carry over)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossenc.bench.results import load_result

WORKLOAD_IDENTITY = ("name", "queries", "pairs")  # what results["workload"] records about the measured set
SETTINGS = ("device", "batch_size", "max_tokens")  # config keys that change what each row measures
# Machine facts that can change which backend is fastest (the same idea as hardware.fingerprint_hash).
MACHINE_KEYS = ("cpu_model", "cpu_flags", "physical_cores", "logical_cpus", "gpu", "gpu_capability", "cuda")


class BaselineError(ValueError):
    """The baseline cannot be used: unreadable, about to be overwritten, or it measured something else."""


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The baseline result at ``path``, or BaselineError saying why it cannot be used."""
    try:
        return load_result(path)
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist") from None
    except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise BaselineError(f"baseline {path} is not usable: {error}") from None


def _section(result: dict[str, Any], key: str) -> dict[str, Any]:
    section = result.get(key)
    return section if isinstance(section, dict) else {}


def _workload(result: dict[str, Any]) -> str:
    workload = _section(result, "workload")
    return (f"{_section(result, 'config').get('workload')} ({workload.get('name')}, "
            f"{workload.get('queries')} queries, {workload.get('pairs')} pairs)")


def refusals(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why the two results measure different things (empty when comparable). Needs only
    ``config`` and ``workload``, so a run can be checked before it starts."""
    problems = []
    before, after = _section(baseline, "workload"), _section(current, "workload")
    if any(before.get(key) != after.get(key) for key in WORKLOAD_IDENTITY):
        problems.append(f"workload differs: baseline {_workload(baseline)}, this run {_workload(current)}")
    before, after = _section(baseline, "config"), _section(current, "config")
    for key in SETTINGS:
        if before.get(key) != after.get(key):
            problems.append(f"{key} differs: baseline {before.get(key)!r}, this run {after.get(key)!r}")
    return problems


def require_comparable(baseline: dict[str, Any], current: dict[str, Any], name: str = "the baseline") -> None:
    """BaselineError naming every setting that makes the two runs incomparable (see :func:`refusals`)."""
    problems = refusals(baseline, current)
    if problems:
        raise BaselineError(f"cannot compare with {name}: " + "; ".join(problems))


def _differs(what: str, old: Any, new: Any) -> str:
    if isinstance(old, list) and isinstance(new, list):
        return (f"{what} differs: only in the baseline {sorted(set(old) - set(new))}, "
                f"only in this run {sorted(set(new) - set(old))}")
    return f"{what} differs: baseline {old!r}, this run {new!r}"


def differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Machine, model and library differences worth a warning: the ratios may not carry over."""
    warnings = []
    before, after = _section(baseline, "machine"), _section(current, "machine")
    warnings += [_differs(f"machine {key}", before.get(key), after.get(key))
                 for key in MACHINE_KEYS if before.get(key) != after.get(key)]
    models = [Path(str(_section(result, "config").get("model"))).name for result in (baseline, current)]
    if models[0] != models[1]:
        warnings.append(_differs("model", *models))
    before, after = _section(baseline, "versions"), _section(current, "versions")
    warnings += [_differs(f"{name} version", before.get(name), after.get(name))
                 for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    return warnings
