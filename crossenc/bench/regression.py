"""Regression check for CI: crossenc's rows against a baseline, pairs/s as ratios to the in-run anchor row
(torch eager) so that machine speed cancels out; the sentence-transformers reference rows are not tracked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossenc.bench.baseline import BaselineError, differences, require_comparable

ENGINE = "crossenc"  # rows["engine"] of the product; other engines are references
QUALITY = {"spearman": "spearman", "top10": "top10_agreement"}  # metric name -> results key


@dataclass(frozen=True)
class Regression:
    """A tracked figure below its limit, or (``detail`` set) a row that no longer yields one."""

    label: str
    metric: str
    baseline: float | None = None
    current: float | None = None
    limit: float | None = None
    detail: str = ""

    @property
    def change(self) -> float | None:
        """Relative change; None when undefined (a missing figure or a baseline of 0)."""
        if self.baseline is None or self.current is None or self.baseline == 0:
            return None
        return self.current / self.baseline - 1.0

    def describe(self) -> str:
        if self.detail or self.baseline is None or self.current is None or self.limit is None:
            return f"{self.label}: {self.metric}: {self.detail}"
        change = "" if self.change is None else f", {self.change:+.1%}"
        return (f"{self.label}: {self.metric} {self.baseline:.3f} -> {self.current:.3f} "
                f"(allowed >= {self.limit:.3f}{change})")


@dataclass
class Comparison:
    """What a regression check found: regressions, the rows compared, and warnings and notes to print."""

    regressions: list[Regression] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)  # labels checked against the baseline
    warnings: list[str] = field(default_factory=list)  # machine / model / library differences
    notes: list[str] = field(default_factory=list)  # rows skipped or new


def _anchor(result: dict[str, Any], which: str) -> str:
    """The anchor label; BaselineError when that row is missing or failed (no ratios exist then)."""
    anchor = result.get("anchor")
    row = next((row for row in result["rows"] if row.get("label") == anchor), None)
    if row is None:
        raise BaselineError(f"the {which} has no anchor row {anchor!r}: pairs/s ratios cannot be compared")
    if row.get("status") != "ok" or not row.get("throughput"):
        raise BaselineError(f"the anchor row {anchor!r} failed in the {which} ({row.get('error')}): "
                                  "pairs/s ratios cannot be compared")
    return anchor


def _own_rows(result: dict[str, Any], anchor: str) -> dict[str, dict[str, Any]]:
    return {row["label"]: row for row in result["rows"] if row.get("engine") == ENGINE and row["label"] != anchor}


def _below(label: str, metric: str, old: float | None, new: float | None, limit: float) -> Regression | None:
    if new is None:
        return Regression(label, metric, detail="no figure in this run")
    return None if new >= limit else Regression(label, metric, old, new, limit)  # NaN fails too


def _check_row(old: dict[str, Any], new: dict[str, Any], anchor: str, max_regression: float,
               max_quality_drop: float) -> list[Regression]:
    label = old["label"]
    if new.get("status") != "ok":
        return [Regression(label, "status", detail=f"{new.get('status')}: {new.get('error')}")]
    found = []
    ratio = old.get("ratio_vs_anchor")
    if ratio is not None:
        found.append(_below(label, f"pairs/s vs {anchor}", ratio, new.get("ratio_vs_anchor"),
                            ratio * (1 - max_regression)))
    for metric, key in QUALITY.items():
        value = (old.get("quality") or {}).get(key)
        if value is not None:
            found.append(_below(label, metric, value, (new.get("quality") or {}).get(key), value - max_quality_drop))
    return [regression for regression in found if regression]


def compare_results(
    baseline: dict[str, Any],
    current: dict[str, Any],
    max_regression: float = 0.15,
    max_quality_drop: float = 0.005,
    require_all: bool = False,
) -> Comparison:
    """Check every crossenc row that was ok in the baseline. pairs/s (as a ratio to the anchor) may fall by
    ``max_regression`` (relative), Spearman and top-10 agreement by ``max_quality_drop`` (absolute); a row
    that now fails is a regression, and so is a missing one with ``require_all`` (every variant was
    asked for, so a backend that is no longer available shows). Raises BaselineError on another workload, device or batch
    settings, or when the anchor row is missing or failed in either run."""
    require_comparable(baseline, current)
    anchor = _anchor(baseline, "baseline")
    if _anchor(current, "current run") != anchor:
        raise BaselineError(f"anchor rows differ: baseline {anchor!r}, this run {current.get('anchor')!r}")
    before, after = _own_rows(baseline, anchor), _own_rows(current, anchor)
    comparison = Comparison(warnings=differences(baseline, current))
    for label, old in before.items():
        if old.get("status") != "ok":
            continue
        if label not in after:
            if require_all:
                comparison.regressions.append(Regression(label, "status", detail="not measured in this run"))
            else:
                comparison.notes.append(f"{label}: not measured in this run (skipped)")
            continue
        comparison.compared.append(label)
        comparison.regressions += _check_row(old, after[label], anchor, max_regression, max_quality_drop)
    comparison.notes += [f"{label}: no baseline figures (not checked)" for label in after
                         if label not in before or before[label].get("status") != "ok"]
    return comparison
