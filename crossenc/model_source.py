"""Resolve a model name or folder to local files, and read its config and tokenizer.

A Hub id is fetched through huggingface_hub (cache_folder, revision, token,
local_files_only); a local folder is used as it is. Nothing here builds a network model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.onnx", "*.onnx_data", "*.xml", "*.bin", "*.engine"]
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack")


@dataclass
class ModelSource:
    """A checkpoint on local disk plus everything needed to load it on any backend."""

    path: Path
    name: str  # what the user passed (Hub id or folder)
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def load_config(self):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.path, trust_remote_code=self.trust_remote_code, **self.config_kwargs)

    def load_tokenizer(self, max_length: int | None = None):
        from transformers import AutoTokenizer

        kwargs = dict(self.tokenizer_kwargs)
        if max_length is not None:
            kwargs.setdefault("model_max_length", max_length)
        tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.trust_remote_code, **kwargs)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{self.name}: crossenc needs a fast (Rust) tokenizer; found {type(tokenizer).__name__}")
        return tokenizer

    def load_torch_model(self, config, *, complete_for: str | None = None, **overrides):
        """The Hugging Face ``*ForSequenceClassification`` model, safetensors only unless allowed.

        Weights load as fp32 unless ``model_kwargs`` or ``overrides`` name a ``dtype``: transformers
        would otherwise keep the dtype a checkpoint was saved in (an fp16 file running fp16 on a CPU).
        ``complete_for`` (what the weights are for) refuses a checkpoint that lacks weights, since
        transformers initialises those at random on every load (a base model without its head).
        """
        import torch
        from transformers import AutoModelForSequenceClassification

        if not self.allow_pickle and not any(self.path.glob("*.safetensors")):
            present = [name for name in PICKLE_WEIGHT_FILES if (self.path / name).exists()]
            if present:
                raise ValueError(
                    f"{self.name} has only pickle weights ({', '.join(present)}); loading them can run arbitrary "
                    "code. Convert to safetensors or pass allow_pickle=True if you trust the source."
                )
        kwargs = {**self.model_kwargs, **overrides}
        if "torch_dtype" in kwargs:  # transformers 5 renamed torch_dtype to dtype
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        kwargs.setdefault("dtype", torch.float32)
        def load(**chosen):
            return AutoModelForSequenceClassification.from_pretrained(
                self.path,
                config=config,
                trust_remote_code=self.trust_remote_code,
                use_safetensors=None if self.allow_pickle else True,
                output_loading_info=True,
                **chosen,
            )

        try:
            model, loading = load(**kwargs)
        except ValueError as error:
            # MPNet, DeBERTa-v2 and others have no SDPA path: their eager attention computes the same scores
            if kwargs.get("attn_implementation") != "sdpa" or "scaled_dot_product_attention" not in str(error):
                raise
            model, loading = load(**{**kwargs, "attn_implementation": "eager"})
        initialised = initialised_weights(loading)
        if complete_for and initialised:
            shown = ", ".join(initialised[:4]) + (", ..." if len(initialised) > 4 else "")
            raise ValueError(
                f"{self.name} lacks weights that transformers initialises at random on each load ({shown}), "
                f"so {complete_for} would not reproduce the scores you see. Load it once with "
                "CrossEncoder(..., backend='torch'), save_pretrained() that, and use the saved folder"
            )
        return model


def initialised_weights(loading: dict[str, Any]) -> list[str]:
    """Names of the weights a checkpoint lacked (missing or of another shape), from transformers' loading info."""
    mismatched = {key[0] if isinstance(key, tuple) else key for key in loading.get("mismatched_keys") or ()}
    return sorted(set(loading.get("missing_keys") or ()) | mismatched)


def exported_variant(folder: Path, backend: str) -> str | None:
    """The variant a crossenc export folder of ``backend``'s format holds (its manifest says), else None,
    so ``CrossEncoder(export_folder, backend=...)`` loads what was exported without naming it."""
    from crossenc.manifest import read_manifest

    manifest = read_manifest(folder) if folder.is_dir() else None
    if not isinstance(manifest, dict) or manifest.get("format") != backend:
        return None
    variant = manifest.get("variant")
    return variant if isinstance(variant, str) else None


def resolve_model(
    model_name_or_path: str | os.PathLike,
    *,
    cache_folder: str | None = None,
    revision: str | None = None,
    token: bool | str | None = None,
    local_files_only: bool = False,
) -> Path:
    """Local folder for a model: the folder itself, or a Hub snapshot (downloaded if allowed)."""
    if not isinstance(model_name_or_path, (str, os.PathLike)):
        raise TypeError(f"model_name_or_path must be a str or path, got {type(model_name_or_path).__name__}")
    candidate = Path(model_name_or_path).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").exists():
            raise ValueError(f"{candidate} is a folder but has no config.json: not a Hugging Face checkpoint")
        return candidate.resolve()
    name = str(model_name_or_path)
    if candidate.exists():
        raise NotADirectoryError(f"{name!r} is a file; a model is a folder holding config.json (or a Hub id)")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"{name!r} is neither a model folder nor a Hub id like 'org/name'")
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=cache_folder,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=HUB_PATTERNS,
        )
    )


def default_max_length(tokenizer, config) -> int:
    """Tokenizer ``model_max_length`` capped at the model's ``max_position_embeddings``."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    usable = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
    return min(usable) if usable else 512


def usable_max_length(tokenizer, config) -> int:
    """The default ``max_length``: :func:`default_max_length`, within :func:`position_limit`."""
    default, limit = default_max_length(tokenizer, config), position_limit(config)
    return min(default, limit) if limit else default


def position_limit(config) -> int | None:
    """Largest number of tokens the model's position table holds (RoBERTa reserves padding_idx + 1)."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}:
        return positions - (getattr(config, "pad_token_id", 1) or 1) - 1
    return positions
