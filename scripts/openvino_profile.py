"""Where an OpenVINO export spends its time: OpenVINO's per-op counters, summed by op and kernel type.

One infer request on one thread (LATENCY hint), batches of 32 length-sorted Debian pairs collated
as crossenc collates them, so the shares are those of one stream of the bench's THROUGHPUT runs
(docs/int8-recipes.md reads a recipe's ceiling from them)::

    python scripts/openvino_profile.py ~/.cache/crossenc/exports/<demo>/openvino-int8 --precision bf16
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="an OpenVINO export (openvino_model.xml + tokenizer)")
    parser.add_argument("--precision", default="bf16", choices=["f32", "bf16"], help="INFERENCE_PRECISION_HINT")
    parser.add_argument("--workload", default="debian-bm25:200:4", help="validation queries, never 300-399")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)

    import numpy as np
    import openvino as ov

    from crossenc.batching import collate
    from crossenc.model_source import ModelSource
    from crossenc.tokenization import tokenizer_setup
    from crossenc.workloads import load_workload

    core = ov.Core()
    compiled = core.compile_model(str(args.folder / "openvino_model.xml"), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "1",
        "INFERENCE_PRECISION_HINT": args.precision, "PERF_COUNT": "YES"})
    setup = tokenizer_setup(ModelSource(args.folder, str(args.folder)))
    encoded = setup.encode(load_workload(args.workload).pairs())
    names = [port.get_any_name() for port in compiled.inputs]
    request = compiled.create_infer_request()
    order = np.argsort(encoded.lengths, kind="stable")
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    started = time.perf_counter()
    for start in range(0, len(order), 32):
        batch = collate(encoded, order[start:start + 32], setup.pad_token_id)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids}
        request.infer({name: arrays[name] for name in names})
        for counter in request.profiling_info:
            totals[(counter.node_type, counter.exec_type)] += counter.real_time.total_seconds()
    elapsed = time.perf_counter() - started
    total = sum(totals.values())
    print(f"{len(order)} pairs, mean {encoded.lengths.mean():.0f} tokens: {len(order) / elapsed:.1f} pairs/s "
          f"on one thread ({args.precision})")
    for (node, kernel), seconds in totals.most_common(args.top):
        print(f"{node[:26]:26} {kernel[:24]:24} {seconds:7.3f} s {100 * seconds / total:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
