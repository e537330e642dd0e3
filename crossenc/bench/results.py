"""Write and read benchmark results: JSON (the record), Markdown table, PNG plot."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from crossenc.hardware import device_slug

RESULTS_ROOT = Path("results")


def results_dir(device: str, root: Path = RESULTS_ROOT) -> Path:
    return root / device_slug(device)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)


def load_result(path: str | Path) -> dict[str, Any]:
    result = json.loads(Path(path).read_text())
    if not isinstance(result, dict) or result.get("schema_version") != 1 or not isinstance(result.get("rows"), list):
        raise ValueError(f"{path} is not a crossenc bench result (schema_version 1 with rows)")
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(result: dict[str, Any]) -> str:
    """One line per row: pairs/s, ratios, latency, quality, memory; errors shown as such."""
    workload = result["workload"]
    lines = [
        f"Workload {workload['name']}: {workload['pairs']} pairs, tokens mean {workload['tokens_mean']:.0f} "
        f"/ p95 {workload['tokens_p95']:.0f} / max {workload['tokens_max']}; device {result['config']['device']} "
        f"({result['machine']['cpu_model']}, {result['machine']['physical_cores']} cores"
        + (f", {result['machine']['gpu']}" if result["machine"].get("gpu") else "") + f"); {result['created']}",
        "",
        "| variant | pairs/s (min-max) | x ST fp32 | x torch eager | rank p50 / p99 ms | max abs err | Spearman | top-10 | MRR@10 | pad eff | peak RSS MB | load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | error: {row['error'][:80]} |" + " |" * 10)
            continue
        t, q, lat = row["throughput"], row["quality"], row["latency"]
        lines.append(
            f"| {row['label']} | {t['pairs_per_s']:.1f} ({t['pairs_per_s_min']:.1f}-{t['pairs_per_s_max']:.1f}) "
            f"| {_fmt(row['ratio_vs_reference'], '.2f')} | {_fmt(row['ratio_vs_anchor'], '.2f')} "
            f"| {lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} | {q['max_abs_error']:.1e} | {q['spearman']:.4f} "
            f"| {q['top10_agreement']:.3f} | {_fmt(q['mrr_at_10'], '.3f')} | {_fmt(row['padding_efficiency'], '.3f')} "
            f"| {_fmt(row['peak_rss_mb'], '.0f')} | {_fmt(row['load_seconds'], '.1f')} |"
        )
    lines += ["", f"Random-order MRR@10 on this workload: {workload['random_order_mrr_at_10']:.3f}. Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Throughput vs quality (Spearman to torch fp32) per variant. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [row for row in result["rows"] if row["status"] == "ok"]
    figure, axes = plt.subplots(figsize=(8, 5))
    for row in rows:
        x, y = row["throughput"]["pairs_per_s"], row["quality"]["spearman"]
        axes.scatter(x, y, s=40, marker="s" if row["engine"] != "crossenc" else "o")
        axes.annotate(row["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel("pairs/s (median)")
    axes.set_ylabel("Spearman vs torch fp32 (mean per query)")
    axes.set_title(f"{result['workload']['name']} on {result['config']['device']} ({result['machine']['cpu_model']})", fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_result(result: dict[str, Any], folder: Path, stem: str = "bench") -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``folder``; returns their paths."""
    paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
    atomic_write(paths["json"], json.dumps(result, indent=2).encode())
    atomic_write(paths["md"], markdown_table(result).encode())
    if not plot(result, paths["png"]):
        paths.pop("png")
    return paths
