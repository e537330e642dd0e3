"""MRR@10 of the demo reranker on held-out Debian queries (never used to fit its head).

Run: python scripts/demo_mrr.py [--queries 100] [--variant sdpa] [--out results/<slug>/demo-mrr.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from crossenc import CrossEncoder
from crossenc.bench.results import atomic_write
from crossenc.bench.measure import query_groups, random_order_mrr
from crossenc.workloads import EVAL_START, load_debian
from crossenc.demo import demo_model_path
from crossenc.quality import mrr_at_k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--variant", default="sdpa")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line to this file")
    args = parser.parse_args()
    workload = load_debian().subset(EVAL_START, args.queries)
    encoder = CrossEncoder(str(demo_model_path()), variant=args.variant)
    scores = encoder.predict(workload.pairs(), batch_size=32, show_progress_bar=True)
    groups = query_groups(workload)
    relevant = [query.relevant for query in workload.queries]
    record = json.dumps({
        "workload": workload.name,
        "variant": args.variant,
        "mrr_at_10": mrr_at_k(np.asarray(scores), groups, relevant),
        "random_order_mrr_at_10": random_order_mrr(groups),
        "command": "python scripts/demo_mrr.py " + " ".join(sys.argv[1:]),
    })
    print(record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, (record + "\n").encode())


if __name__ == "__main__":
    main()
