"""Write and read benchmark results: JSON (the record), Markdown table, PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crossenc.hardware import device_slug
from crossenc.paths import atomic_write
from crossenc.quality import TIERS, Agreement

RESULTS_ROOT = Path("results")


def results_dir(device: str, root: Path = RESULTS_ROOT) -> Path:
    return root / device_slug(device)


def load_result(path: str | Path) -> dict[str, Any]:
    result = json.loads(Path(path).read_text())
    if not isinstance(result, dict) or result.get("schema_version") != 1 or not isinstance(result.get("rows"), list):
        raise ValueError(f"{path} is not a crossenc bench result (schema_version 1 with rows)")
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# Below this many queries MRR@10 is noise (on queries 300-302 BM25 leads the demo; on all 100 the demo
# leads by 0.10), so the terminal table leaves it out rather than rank rerankers on it.
MIN_QUERIES_FOR_MRR = 20


def _anchor_mrr(result: dict[str, Any]) -> float | None:
    """MRR@10 of the torch eager fp32 row (what "MRR kept" divides by)."""
    for row in result["rows"]:
        if row["label"] == result.get("anchor") and row["status"] == "ok":
            return row["quality"].get("mrr_at_10")
    return None


def markdown_table(result: dict[str, Any]) -> str:
    """One line per row: pairs/s, ratios, latency, quality, memory; errors shown as such."""
    workload = result["workload"]
    lines = [
        f"Workload {workload['name']}: {workload['pairs']} pairs, tokens mean {workload['tokens_mean']:.0f} "
        f"/ p95 {workload['tokens_p95']:.0f} / max {workload['tokens_max']}; device {result['config']['device']} "
        f"({result['machine']['cpu_model']}, {result['machine']['physical_cores']} cores"
        + (f", {result['machine']['gpu']}" if result["machine"].get("gpu") else "") + f"); {result['created']}",
        "",
        "| variant | pairs/s (min-max) | x ST fp32 | x torch eager | rank p50 / p99 ms | max abs err | Spearman "
        "| top-10 | MRR@10 | nDCG@10 | MRR kept | tier | pad eff | peak RSS MB | load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = result.get("first_stage")
    if first:
        lines.append(f"| {first['name']} (first stage, the candidates' order) | - | - | - | - | - | - | - "
                     f"| {first['mrr_at_10']:.3f} | {first['ndcg_at_10']:.3f} | - | - | - | - | - |")
    anchor_mrr = _anchor_mrr(result)
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | error: {row['error'][:80]} |" + " |" * 13)
            continue
        t, q, lat = row["throughput"], row["quality"], row["latency"]
        kept = q["mrr_at_10"] / anchor_mrr if anchor_mrr and q.get("mrr_at_10") is not None else None
        lines.append(
            f"| {row['label']} | {t['pairs_per_s']:.1f} ({t['pairs_per_s_min']:.1f}-{t['pairs_per_s_max']:.1f}) "
            f"| {_fmt(row['ratio_vs_reference'], '.2f')} | {_fmt(row['ratio_vs_anchor'], '.2f')} "
            f"| {lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} | {q['max_abs_error']:.1e} | {q['spearman']:.4f} "
            f"| {q['top10_agreement']:.3f} | {_fmt(q['mrr_at_10'], '.3f')} | {_fmt(q.get('ndcg_at_10'), '.3f')} "
            f"| {_fmt(kept, '.1%')} | {accuracy_tier(q) if row['engine'] == 'crossenc' else '-'} "
            f"| {_fmt(row['padding_efficiency'], '.3f')} | {_fmt(row['peak_rss_mb'], '.0f')} "
            f"| {_fmt(row['load_seconds'], '.1f')} |"
        )
    few = workload.get("queries", 0) < MIN_QUERIES_FOR_MRR
    lines += ["", "Spearman, top-10 (per query) and MRR kept: against torch eager fp32. MRR@10 and nDCG@10 count a "
              "query whose candidates lack its relevant document as 0."
              + (f" Only {workload.get('queries')} queries here: MRR@10 and nDCG@10 are noise at this size." if few else ""),
              "", f"Random-order MRR@10 on this workload: {workload['random_order_mrr_at_10']:.3f}. Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


OUTSIDE_TIERS = "none"
TIER_COLOURS = {"exact": "#1b7837", "near": "#5aae61", "int8": "#e08214", OUTSIDE_TIERS: "#b2182b"}
REFERENCE_COLOUR = "#8c8c8c"


def _short_float(value: float) -> str:
    """1e-3 as "1e-3" (not "0.001" or "1e-03"), 1.5e-3 as "1.5e-3", 0.5 as "0.5"."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _tier_names() -> dict[str, str]:
    """Each tier's bounds in words, read from crossenc.quality.TIERS (so no copy of them drifts); a
    tier whose ranking bounds equal a looser tier's says "ranking as <that tier>"."""
    names = {}
    for name, tolerance in TIERS.items():
        ranking = [f"Spearman >= {tolerance.spearman:g}"] if tolerance.spearman is not None else []
        if tolerance.top_k_agreement is not None:
            ranking.append(f"top-{tolerance.k} >= {tolerance.top_k_agreement:g}")
        same = next((other for other, looser in TIERS.items() if other != name and looser.max_abs is None
                     and (looser.spearman, looser.top_k_agreement, looser.k)
                     == (tolerance.spearman, tolerance.top_k_agreement, tolerance.k)), None)
        if tolerance.max_abs is not None and same:
            ranking = [f"ranking as {same}"]
        bounds = [f"max abs error <= {_short_float(tolerance.max_abs)}"] if tolerance.max_abs is not None else []
        names[name] = f"{name}: " + ", ".join(bounds + ranking)
    names[OUTSIDE_TIERS] = f"{OUTSIDE_TIERS}: below {list(TIERS)[-1]}"
    return names


TIER_NAMES = _tier_names()
TIER_ORDER = tuple(name for name in TIER_NAMES if name != OUTSIDE_TIERS)  # crossenc.quality.TIERS, tightest first


def accuracy_tier(quality: dict[str, float] | None) -> str:
    """The tightest autotune accuracy tier these quality numbers meet, else OUTSIDE_TIERS."""
    if not quality:
        return OUTSIDE_TIERS
    agreement = Agreement.from_bench_quality(quality)
    return next((name for name in TIER_ORDER if TIERS[name].accepts(agreement)), OUTSIDE_TIERS)


def short_label(label: str) -> str:
    return label.replace("sentence-transformers ", "ST ", 1)


def terminal_table(result: dict[str, Any], width: int = 80) -> str:
    """The few columns that fit a terminal of ``width`` (the .md file keeps them all): pairs/s, the ratio to
    the sentence-transformers reference (else to torch eager), Spearman / top-10 to torch eager, tier."""
    import textwrap

    rows = result["rows"]
    by_reference = any(row.get("ratio_vs_reference") for row in rows)
    ratio_key, ratio_name = ("ratio_vs_reference", "x ST") if by_reference else ("ratio_vs_anchor", "x eager")
    first = result.get("first_stage")
    first_label = f"{first['name']} (first stage)" if first else ""
    label_width = min(max([len(short_label(row["label"])) for row in rows] + [7, len(first_label)]), 26)
    header = (f"{'variant':<{label_width}} {'pairs/s':>8} {ratio_name:>8} {'Spearman':>9} {'top-10':>7} {'MRR@10':>6}"
              "  accuracy")
    lines = [header, "-" * len(header)]
    queries = result["workload"].get("queries", 0)
    show_mrr = queries >= MIN_QUERIES_FOR_MRR
    if first:
        name = first_label[:label_width]
        lines.append(f"{name:<{label_width}} {'-':>8} {'-':>8} {'-':>9} {'-':>7} "
                     f"{_fmt(first['mrr_at_10'] if show_mrr else None, '.3f'):>6}")
    for row in rows:
        label = short_label(row["label"])[:label_width]
        if row["status"] != "ok":
            lines.append(f"{label:<{label_width}} failed: {row['error']}"[:width])
            continue
        quality = row["quality"]
        lines.append(
            f"{label:<{label_width}} {row['throughput']['pairs_per_s']:>8.1f} {_fmt(row[ratio_key], '.2f'):>8} "
            f"{quality['spearman']:>9.4f} {quality['top10_agreement']:>7.3f} "
            f"{_fmt(quality.get('mrr_at_10') if show_mrr else None, '.3f'):>6}"
            f"  {accuracy_tier(quality)}"
        )
    from crossenc.profiles import pick

    best = []
    for name in TIER_ORDER:  # what `crossenc autotune --accuracy NAME` would pick from these rows
        fastest = pick(rows, name)
        if fastest:
            best.append(f"{name} {fastest['label']} ({_fmt(fastest[ratio_key], '.2f')}{ratio_name})")
    notes = []
    if best:
        notes.append("Fastest per tier: " + "; ".join(best) + ".")
    reference = "sentence-transformers torch fp32 (ST)" if by_reference else "torch eager"
    mrr_note = ("MRR@10: against the relevance labels." if show_mrr else
                f"MRR@10: left out, {queries} queries are too few to compare rankers on (crossenc bench without "
                "--quick: all 100 held-out queries).")
    notes.append(f"{ratio_name}: pairs/s relative to {reference}. Spearman, top-10: agreement with torch eager "
                 f"fp32. {mrr_note} accuracy: the tightest tier met (crossenc autotune --accuracy): "
                 + "; ".join(TIER_NAMES[name] for name in (*TIER_ORDER, OUTSIDE_TIERS)) + ".")
    workload = result["workload"]
    notes.append(f"{workload['name']}, {workload['pairs']} pairs, {result['config']['device']} "
                 f"({result['machine']['cpu_model']}, {result['machine']['physical_cores']} cores).")
    wrapped = [line for note in notes for line in textwrap.wrap(note, width, break_on_hyphens=False)]
    return "\n".join(lines + [""] + wrapped) + "\n"


def bar_label(row: dict[str, Any], ratio_key: str) -> str:
    """A bar's label: its speed ratio and agreement, top-10 to three places (the tiers' bounds are
    0.99 and 0.95, so 0.986 must not read as 0.99)."""
    ratio, quality = row.get(ratio_key), row["quality"]
    return (f"{ratio:.2f}x" if ratio is not None else "") + \
        f"   Spearman {quality['spearman']:.4f}, top-10 {quality['top10_agreement']:.3f}"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Horizontal pairs/s bars, fastest on top, coloured by accuracy tier; the sentence-transformers
    reference in grey with a dashed line at its speed; each bar labelled with its ratio to it (to torch
    eager without a reference) and its Spearman. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return False
    rows = sorted((row for row in result["rows"] if row["status"] == "ok"),
                  key=lambda row: row["throughput"]["pairs_per_s"])
    failed = [row["label"] for row in result["rows"] if row["status"] != "ok"]
    by_reference = any(row.get("ratio_vs_reference") for row in rows)
    ratio_key, ratio_name = ("ratio_vs_reference", "sentence-transformers") if by_reference else ("ratio_vs_anchor", "torch eager")
    figure, axes = plt.subplots(figsize=(10, 1.8 + 0.42 * max(len(rows), 1)))
    speeds = [row["throughput"]["pairs_per_s"] for row in rows]
    colours = [REFERENCE_COLOUR if row["engine"] != "crossenc" else TIER_COLOURS[accuracy_tier(row["quality"])]
               for row in rows]
    positions = range(len(rows))
    axes.barh(positions, speeds, color=colours, height=0.7)
    low = [row["throughput"]["pairs_per_s"] - row["throughput"].get("pairs_per_s_min", row["throughput"]["pairs_per_s"])
           for row in rows]
    high = [row["throughput"].get("pairs_per_s_max", row["throughput"]["pairs_per_s"]) - row["throughput"]["pairs_per_s"]
            for row in rows]
    axes.errorbar(speeds, positions, xerr=[low, high], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    axes.set_yticks(list(positions), [row["label"] for row in rows], fontsize=9)
    top = max((speed + extra for speed, extra in zip(speeds, high)), default=1.0)  # the longest whisker
    for position, row, speed in zip(positions, rows, speeds):
        axes.text(speed + high[position] + top * 0.01, position, bar_label(row, ratio_key), va="center", fontsize=8)
    reference = next((row["throughput"]["pairs_per_s"] for row in rows if row["label"] == result.get("reference")), None)
    if by_reference and reference:
        axes.axvline(reference, color=REFERENCE_COLOUR, linestyle="--", linewidth=1)
    axes.set_xlim(0, top * 1.55)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    repetitions = result["config"]["repetitions"]
    axes.set_xlabel("pairs/s (one timed pass)" if repetitions == 1 else
                    f"pairs/s (median of {repetitions} runs, whiskers min-max)")
    machine = result["machine"]
    axes.set_title(f"{result['workload']['name']}, {result['workload']['pairs']} pairs on {result['config']['device']} "
                   f"({machine['cpu_model']}, {machine['physical_cores']} cores"
                   + (f", {machine['gpu']}" if machine.get("gpu") else "") + ")\n"
                   f"bars labelled with speed relative to {ratio_name} and agreement with torch eager fp32",
                   fontsize=10)
    legend = [Patch(color=TIER_COLOURS[name], label=TIER_NAMES[name]) for name in (*TIER_ORDER, OUTSIDE_TIERS)
              if any(row["engine"] == "crossenc" and accuracy_tier(row["quality"]) == name for row in rows)]
    if by_reference:
        legend.append(Patch(color=REFERENCE_COLOUR, label="sentence-transformers (reference)"))
    axes.legend(handles=legend, title="accuracy tier (crossenc autotune --accuracy)", loc="lower right", fontsize=8,
                title_fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if failed:
        figure.text(0.01, 0.01, "failed: " + ", ".join(failed), fontsize=8, color=TIER_COLOURS[OUTSIDE_TIERS])
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
