"""Render the family x backend support table (README, results/<device>/support.md) from support.json."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- support-table:begin -->", "<!-- support-table:end -->"
MARKS = {"ok": "ok", "refused": "no", "not here": "-", "crash": "CRASH"}


def render_table(payload: dict) -> str:
    """Markdown: one row per family, one column per backend/variant that ran somewhere here."""
    families = payload["families"]
    columns = []
    for cells in families.values():
        for cell in cells:
            key = f"{cell['backend']} {cell['variant']}"
            if cell["status"] != "not here" and key not in columns:
                columns.append(key)
    header = "| family | " + " | ".join(columns) + " | checkpoints |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for family, cells in families.items():
        by_key = {f"{c['backend']} {c['variant']}": c for c in cells}
        marks = [MARKS[by_key[key]["status"]] if key in by_key else "?" for key in columns]
        lines.append(f"| {family} | " + " | ".join(marks) + f" | {payload['checkpoints'].get(family, '')} |")
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for family, cells in families.items():
        for cell in cells:
            if cell["status"] == "refused":
                reasons.setdefault((cell["backend"], cell["variant"], _reason(cell["detail"], family)), []).append(family)
    notes = [f"- {backend} {variant} ({', '.join(names)}): {reason}" for (backend, variant, reason), names in sorted(reasons.items())]
    legend = ("ok: scores match the plain Hugging Face forward (fp32 within 1e-4; bf16/int8 report their error); "
              "no: refused when loading, with the reason below; -: not runnable on this machine.")
    return "\n".join(lines + ["", legend, "", "Refusals:", *notes])


def _reason(detail: str, family: str) -> str:
    """A refusal's reason without its paths and numbers, so families refused alike share one line."""
    text = re.sub(r"\s*/\S+", "", detail).replace(f"'{family}'", "'<family>'")
    text = re.sub(r"max\|d\|=\S+ mean\|d\|=\S+ spearman=\S+ top10=\S+ -> FAILED: ", "", text)
    text = re.sub(r"\d+\.\d+ <", "<", text)
    return text.split(" was not replaced")[0].split(". Loosen")[0].rstrip(" .")


def replace_block(text: str, table: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"
