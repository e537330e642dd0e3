"""MRR@10 / nDCG@10 of the demo reranker on the held-out Debian queries 300-399 (never trained on;
``--start 200`` gives the validation queries instead), on both workloads: BM25 top-100 candidates
(with BM25's own ranking as the baseline) and random same-section candidates.

Run: python scripts/demo_mrr.py [--start 300] [--queries 100] [--variant sdpa] [--out results/<slug>/demo-mrr.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from crossenc import CrossEncoder
from crossenc.bench.measure import first_stage_quality, relevance_metrics
from crossenc.paths import atomic_write
from crossenc.demo import demo_model_path
from crossenc.workloads import EVAL_START, load_debian, load_debian_bm25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=int, default=EVAL_START, help="first query (200: validation)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--variant", default="sdpa")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    encoder = CrossEncoder(str(demo_model_path()), variant=args.variant)
    record = {"variant": args.variant, "start": args.start, "model": demo_model_path().name, "workloads": {}}
    for workload in (load_debian_bm25(), load_debian()):
        workload = workload.subset(args.start, args.queries)
        started = time.perf_counter()
        scores = encoder.predict_logits(workload.pairs(), batch_size=32)[:, 0]
        mrr, ndcg = relevance_metrics(np.asarray(scores), workload)
        entry = {"pairs": workload.num_pairs, "mrr_at_10": round(mrr, 4), "ndcg_at_10": round(ndcg, 4),
                 "seconds": round(time.perf_counter() - started, 1)}
        first = first_stage_quality(workload)
        if first:
            entry["first_stage"] = {key: round(value, 4) if isinstance(value, float) else value
                                    for key, value in first.items()}
        record["workloads"][workload.name] = entry
        print(workload.name, json.dumps(entry), flush=True)
    record["command"] = "python scripts/demo_mrr.py " + " ".join(sys.argv[1:])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, (json.dumps(record, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
