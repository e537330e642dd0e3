"""sentence-transformers 6 compatibility: its legacy argument names, prompts, and the settings it saves.

``sentence_transformers.CrossEncoder`` still accepts older argument names (with a warning) and, in a
folder it saved (one with ``modules.json``), reads ``config_sentence_transformers.json`` (activation,
prompts) and ``sentence_bert_config.json`` (``max_seq_length``). The same rules live here, so code
written for it runs unchanged on crossenc.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from crossenc.inputs import InputTypeError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Old name -> sentence-transformers 6 name, as its cross_encoder_init_args_decorator maps them.
INIT_RENAMES = {
    "model_name": "model_name_or_path",
    "automodel_args": "model_kwargs",
    "tokenizer_args": "processor_kwargs",
    "tokenizer_kwargs": "processor_kwargs",
    "config_args": "config_kwargs",
    "cache_dir": "cache_folder",
    "default_activation_function": "activation_fn",
}
CALL_RENAMES = {"sentences": "inputs", "activation_fct": "activation_fn"}
INIT_RENAME_MESSAGE = "The CrossEncoder `{old}` argument was renamed and is now deprecated. Please use `{new}` instead."
CALL_RENAME_MESSAGE = "The `{old}` argument was renamed and is now deprecated. Please use `{new}` instead."
NO_EFFECT_IF_UNDECLARED = ("apply_softmax", "convert_to_numpy", "convert_to_tensor")
# Module config files sentence-transformers reads for its Transformer module, first found wins.
MODULE_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)

def _rename(kwargs: dict[str, Any], renames: Mapping[str, str], message: str) -> None:
    """Rename legacy keywords in place; the new name wins when both are given, as in sentence-transformers."""
    for old, new in renames.items():
        if old in kwargs:
            value = kwargs.pop(old)
            # Its wording, on every call: a once-per-process warning is invisible to the next caller.
            logger.warning(message.format(old=old, new=new))
            kwargs.setdefault(new, value)


def init_arguments(init: F) -> F:
    """Accept sentence-transformers' legacy ``CrossEncoder(...)`` argument names, as it does."""

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        _rename(kwargs, INIT_RENAMES, INIT_RENAME_MESSAGE)
        if "classifier_dropout" in kwargs:
            dropout = kwargs.pop("classifier_dropout")
            logger.warning(
                "The CrossEncoder `classifier_dropout` argument is deprecated. Please use "
                f"`config_kwargs={{'classifier_dropout': {dropout}}}` instead."
            )
            kwargs["config_kwargs"] = {**(kwargs.get("config_kwargs") or {}), "classifier_dropout": dropout}
        return init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def call_arguments(method: F) -> F:
    """Accept the legacy ``predict``/``rank`` arguments sentence-transformers 6 still takes.

    ``sentences`` and ``activation_fct`` are renamed; ``num_workers``, and those of
    ``apply_softmax``, ``convert_to_numpy``, ``convert_to_tensor`` the method does not declare
    (``rank``), are dropped with its warning, since they have no effect there either.
    """
    name = method.__name__
    declared = inspect.signature(method).parameters
    dropped = {"num_workers": f"The CrossEncoder.{name} `num_workers` argument is deprecated and has no effect."}
    for argument in NO_EFFECT_IF_UNDECLARED:
        if argument not in declared:
            dropped[argument] = (
                "The CrossEncoder.rank `apply_softmax` argument is deprecated and has no effect, as `rank` only "
                "supports models with `num_labels=1`."
                if argument == "apply_softmax"
                else f"The CrossEncoder.{name} `{argument}` argument is deprecated and has no effect, as `{name}` "
                "always returns Python floats."
            )

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        _rename(kwargs, CALL_RENAMES, CALL_RENAME_MESSAGE)
        for argument, message in dropped.items():
            if argument in kwargs:
                kwargs.pop(argument)
                logger.warning(f"{message} It will be removed in a future version.")
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class SavedSettings:
    """What sentence-transformers saved beside a checkpoint (empty for a plain Hugging Face folder)."""

    activation_fn: str | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_seq_length: int | None = None


def _read_json(path: Path, expected: type = dict) -> Any:
    """The JSON in ``path``; ValueError naming the file if it is unreadable or not an ``expected``."""
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if not isinstance(data, expected):
        raise ValueError(f"{path} holds {type(data).__name__}; expected a JSON {expected.__name__}")
    return data


def _transformer_folder(model_dir: Path, modules: Any) -> Path:
    """Folder of the Transformer module listed in ``modules.json`` (the model folder itself if unnamed)."""
    if isinstance(modules, list):
        for module in modules:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Transformer"):
                return model_dir / str(module.get("path") or "")
    return model_dir


def _module_max_length(module_config: dict[str, Any]) -> Any:
    """``max_seq_length``, else ``model_max_length`` in its processor (tokenizer) kwargs, as its Transformer reads them."""
    if module_config.get("max_seq_length") is not None:
        return module_config["max_seq_length"]
    for key in ("processor_kwargs", "tokenizer_args", "tokenizer_kwargs"):
        kwargs = module_config.get(key)
        if isinstance(kwargs, dict) and kwargs.get("model_max_length") is not None:
            return kwargs["model_max_length"]
    return None


def read_saved_settings(model_dir: Path) -> SavedSettings:
    """Settings sentence-transformers reads from a CrossEncoder folder it saved: one with ``modules.json``
    and ``config_sentence_transformers.json`` saying ``"model_type": "CrossEncoder"`` (it converts any
    other folder from the plain Hugging Face files, as crossenc reads them)."""
    modules_file, st_config = model_dir / "modules.json", model_dir / "config_sentence_transformers.json"
    if not modules_file.is_file() or not st_config.is_file():
        return SavedSettings()
    saved = _read_json(st_config)
    if saved.get("model_type") != "CrossEncoder":
        return SavedSettings()
    max_seq_length = None
    folder = _transformer_folder(model_dir, _read_json(modules_file, expected=list))
    for name in MODULE_CONFIG_FILES:
        if (folder / name).is_file():
            max_seq_length = _module_max_length(_read_json(folder / name))
            break
    prompts = saved.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(v is None or isinstance(v, str) for v in prompts.values()):
        raise ValueError(f"{st_config}: 'prompts' must map names to strings, got {prompts!r:.100}")
    prompts = {name: text or "" for name, text in prompts.items()}  # None placeholders read as "", as there
    if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)):
        raise ValueError(f"{folder}: max_seq_length must be an int, got {max_seq_length!r}")
    activation = saved.get("activation_fn")
    return SavedSettings(
        activation_fn=activation if isinstance(activation, str) else None,
        prompts=dict(prompts),
        default_prompt_name=saved.get("default_prompt_name"),
        max_seq_length=max_seq_length,
    )


def merge_prompts(
    prompts: Mapping[str, str | None] | None, default_prompt_name: str | None, saved: SavedSettings
) -> tuple[dict[str, str], str | None]:
    """Given prompts win over saved ones, key by key; the default prompt name must be one of them."""
    if prompts is not None and not (
        isinstance(prompts, Mapping)
        and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in prompts.items())
    ):
        raise InputTypeError(f"prompts must be a dict of str -> str, got {prompts!r:.100}")
    given = {name: text for name, text in (prompts or {}).items() if text is not None}  # None: saved, else ""
    merged = {**{name: "" for name in prompts or {}}, **saved.prompts, **given}
    default = default_prompt_name if default_prompt_name is not None else saved.default_prompt_name
    if default is not None and default not in merged:
        raise ValueError(f"default_prompt_name {default!r} is not one of the prompts {sorted(merged)}")
    return merged, default


def resolve_prompt(
    prompts: Mapping[str, str], default_prompt_name: str | None, prompt: str | None, prompt_name: str | None
) -> str | None:
    """The prompt to prepend to each query: ``prompt`` > ``prompts[prompt_name]`` > the default prompt."""
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InputTypeError(f"prompt must be a str or None, got {type(prompt).__name__} {prompt!r:.60}")
        if prompt_name is not None:
            logger.warning("both prompt and prompt_name given; using prompt")
        return prompt
    if prompt_name is not None:
        if not isinstance(prompt_name, str):
            raise InputTypeError(
                f"prompt_name must be a str or None, got {type(prompt_name).__name__} {prompt_name!r:.60} "
                "(sentence-transformers 6 order: predict(inputs, prompt_name, prompt, batch_size, ...) and "
                "rank(query, documents, top_k, return_documents, prompt_name, prompt, batch_size, ...); "
                "pass batch_size by keyword)"
            )
        if prompt_name not in prompts:
            raise ValueError(f"prompt_name {prompt_name!r} is not one of the prompts {sorted(prompts)}")
        return prompts[prompt_name]
    if default_prompt_name is not None:
        return prompts.get(default_prompt_name)
    return None


def write_saved_settings(
    folder: Path, activation_fn: str, prompts: Mapping[str, str], default_prompt_name: str | None
) -> None:
    """The files sentence-transformers 6 writes beside a CrossEncoder checkpoint (the Transformer
    module at the folder's root), so that it, and crossenc, reload the activation and the prompts."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]
    settings = {
        "model_type": "CrossEncoder",
        "activation_fn": activation_fn,
        "prompts": dict(prompts),
        "default_prompt_name": default_prompt_name,
    }
    module_config = {
        "transformer_task": "sequence-classification",
        "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
        "module_output_name": "scores",
    }
    for name, content in (
        ("modules.json", modules),
        ("config_sentence_transformers.json", settings),
        ("sentence_bert_config.json", module_config),
    ):
        (folder / name).write_text(json.dumps(content, indent=2), encoding="utf8")


# sentence-transformers' ``model_kwargs`` keys for its ONNX / OpenVINO backends -> crossenc backend options.
BACKEND_MODEL_KWARGS = {"onnx": ("file_name", "provider", "export"), "openvino": ("file_name", "export", "ov_config")}


def split_backend_model_kwargs(
    backend: str, model_kwargs: Mapping[str, Any] | None, backend_kwargs: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_kwargs, backend_kwargs)`` with sentence-transformers' backend keys moved across:
    ``provider="X"`` -> ``providers=["X"]``; ``file_name``; ``ov_config`` (a dict, or a JSON file's path).
    ``export=True`` exports whatever ``file_name`` says, as there; ``export=False`` changes nothing, since
    crossenc exports (and verifies) whenever the folder holds no artifact, as sentence-transformers does."""
    model_kwargs, options = dict(model_kwargs or {}), dict(backend_kwargs or {})
    keys = BACKEND_MODEL_KWARGS.get(backend, ())
    export = model_kwargs.pop("export", None) if "export" in keys else None
    if export is True:
        model_kwargs.pop("file_name", None)
    elif export is not None and not isinstance(export, bool):
        options.setdefault("export", export)  # crossenc's own export settings
    if "provider" in keys and "provider" in model_kwargs:
        options.setdefault("providers", [model_kwargs.pop("provider")])
    for key in ("file_name", "ov_config"):
        if key in keys and key in model_kwargs:
            options.setdefault(key, model_kwargs.pop(key))
    if isinstance(options.get("ov_config"), (str, Path)):
        options["ov_config"] = _read_json(Path(options["ov_config"]))
    return model_kwargs, options
