"""Regression check for CI: compare a run with a baseline by ratios to the in-run torch eager row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Regression:
    label: str
    metric: str
    baseline: float
    current: float

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1.0

    def describe(self) -> str:
        return f"{self.label}: {self.metric} {self.baseline:.3f} -> {self.current:.3f} ({self.change:+.1%})"


def _tracked(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """label -> {figure: value}; throughput as a ratio to the anchor so machine speed cancels out."""
    figures: dict[str, dict[str, float]] = {}
    for row in result["rows"]:
        if row["status"] != "ok" or row.get("ratio_vs_anchor") is None:
            continue
        figures[row["label"]] = {
            "pairs/s vs torch eager": row["ratio_vs_anchor"],
            "spearman": row["quality"]["spearman"],
            "top10": row["quality"]["top10_agreement"],
        }
    return figures


def compare_results(
    baseline: dict[str, Any], current: dict[str, Any], max_regression: float = 0.15, max_quality_drop: float = 0.005
) -> tuple[list[Regression], list[str]]:
    """Return (regressions, notes). Throughput may fall by ``max_regression`` (relative), quality by
    ``max_quality_drop`` (absolute). Rows missing from the current run or now failing are regressions."""
    before, after = _tracked(baseline), _tracked(current)
    current_status = {row["label"]: row for row in current["rows"]}
    regressions: list[Regression] = []
    notes: list[str] = []
    for label, figures in before.items():
        if label == current.get("anchor"):
            continue
        if label not in after:
            row = current_status.get(label)
            if row is None:
                notes.append(f"{label}: not measured in this run (skipped)")
            else:
                regressions.append(Regression(label, f"status {row['status']}: {row.get('error')}", 1.0, 0.0))
            continue
        for metric, old in figures.items():
            new = after[label][metric]
            limit = old * (1 - max_regression) if metric.startswith("pairs/s") else old - max_quality_drop
            if new < limit:
                regressions.append(Regression(label, metric, old, new))
    return regressions, notes
