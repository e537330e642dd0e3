"""The family x backend support matrix on this machine: tiny random checkpoints of every reranker family
(tests/families.py) through ``crossenc.support.support_matrix``.

Writes results/<device>/support.{json,md} and the README's support table (between its markers).
Run: python scripts/support_matrix.py [--families bert,qwen3] [--no-readme]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crossenc.bench.results import results_dir  # noqa: E402
from crossenc.support import support_matrix  # noqa: E402
from tests.families import CHECKPOINTS, FAMILIES, build_family_model  # noqa: E402
from tests.support_table import README, render_table, replace_block  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    matrix = {}
    with tempfile.TemporaryDirectory() as scratch:
        for family in args.families.split(","):
            start = time.perf_counter()
            folder = build_family_model(Path(scratch) / family, family)
            matrix[family] = [asdict(cell) for cell in support_matrix(str(folder), args.device)]
            statuses = [cell["status"] for cell in matrix[family]]
            print(f"{family:12} {statuses.count('ok'):2} ok {statuses.count('refused'):2} refused "
                  f"{statuses.count('crash'):2} crash  {time.perf_counter() - start:5.0f} s", flush=True)
    out = results_dir(args.device)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"device": args.device, "families": matrix, "checkpoints": CHECKPOINTS,
               "command": "python scripts/support_matrix.py"}
    (out / "support.json").write_text(json.dumps(payload, indent=1) + "\n")
    table = render_table(payload)
    (out / "support.md").write_text(f"# Support matrix ({args.device})\n\n{table}\n")
    if not args.no_readme:
        README.write_text(replace_block(README.read_text(), table))
    print(f"wrote {out / 'support.json'}, {out / 'support.md'}" + ("" if args.no_readme else ", README.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
