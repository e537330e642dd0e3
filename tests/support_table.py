"""Render the family x backend support table (README, results/<device>/support.md) from support.json."""

from __future__ import annotations

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
    refusals = sorted({(c["backend"], c["variant"], c["detail"]) for cells in families.values() for c in cells
                       if c["status"] == "refused"})
    notes = [f"- {backend} {variant}: {detail}" for backend, variant, detail in refusals]
    legend = ("ok: scores match the plain Hugging Face forward (fp32 within 1e-4; bf16/int8 report their error); "
              "no: refused when loading, with the reason below; -: not runnable on this machine.")
    return "\n".join(lines + ["", legend, "", "Refusals:", *sorted(set(notes))])


def replace_block(text: str, table: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"
