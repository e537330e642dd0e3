"""`crossenc autotune MODEL`: measure, store this machine's profile, print the choice per tier."""

from __future__ import annotations

import argparse
import json

from crossenc.profiles import pick
from crossenc.quality import DEFAULT_ACCURACY, TIERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="demo", help="model folder, Hub id, or 'demo'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--accuracy", default=DEFAULT_ACCURACY, choices=list(TIERS))
    parser.add_argument("--workload", default="debian:300:3")
    parser.add_argument("--variants", default=None, help="comma list of backend or backend:variant to consider")
    parser.add_argument("--repetitions", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    from crossenc.bench.autotune import autotune
    from crossenc.demo import expand_alias

    chosen, path, result = autotune(
        expand_alias(args.model), args.device, args.accuracy, args.workload,
        args.variants.split(",") if args.variants else None, args.repetitions,
    )
    summary = {
        name: (lambda row: row and f"{row['backend']}:{row['variant']}")(pick(result["rows"], name)) for name in TIERS
    }
    print(json.dumps({"profile": str(path), "accuracy": args.accuracy,
                      "chosen": chosen and f"{chosen['backend']}:{chosen['variant']}", "per_tier": summary}, indent=2))
    return 0 if chosen else 1
