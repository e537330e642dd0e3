"""The CrossEncoder facade: sentence-transformers semantics over any crossenc backend.

Input checks, tokenization, length-sorted batching and score semantics happen here;
everything backend-specific sits behind the Predictor protocol.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from crossenc.backends import LoadRequest, check_backend, check_variant
from crossenc.batching import PaddingStats, default_max_tokens
from crossenc.chat_template import ChatTemplateEncoder, has_chat_template
from crossenc.checkpoint_writer import write_checkpoint
from crossenc.inputs import (
    check_encoded_pairs,
    check_positive,
    check_rank_inputs,
    encoded_from_features,
    features_from_encoded,
    normalize_pairs,
)
from crossenc.loading import backend_loader
from crossenc.model_source import ModelSource, exported_variant, resolve_model
from crossenc.pair_encoding import EncodedPairs, PairEncoder
from crossenc.pipeline import BatchPlan, score_chunks, text_chunks
from crossenc.predictor import Predictor
from crossenc.scores import activation_path, logits_to_scores, rank_order, resolve_activation
from crossenc.st_compat import (
    call_arguments,
    init_arguments,
    merge_prompts,
    read_saved_settings,
    resolve_prompt,
    split_backend_model_kwargs,
    write_saved_settings,
)
from crossenc.tokenization import PromptedPairEncoder, check_room_for_specials, tokenizer_setup
from crossenc.tokenize_ahead import DEFAULT_CHUNK_PAIRS, TokenizeAhead
from crossenc.tokenizer_processes import TokenizerProcesses, check_processes, process_chunk_pairs

logger = logging.getLogger(__name__)


def resolve_device(device: str | int | torch.device | None) -> str:
    """``None`` -> "cuda" when available, else "cpu"; an int N -> "cuda:N"; ValueError for anything unknown."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}"  # torch's reading of a bare index
    if not isinstance(device, str):
        device = str(device)
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index not in ("", "0")):
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    if kind == "cpu":
        return "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available")
    return device


def _same_device(first: str, second: str) -> bool:
    """``cuda`` and ``cuda:0`` are the same device here (crossenc loads on the default GPU for ``cuda``)."""
    a, b = torch.device(first), torch.device(second)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class CrossEncoder:
    """Score (query, document) pairs with a Hugging Face ``*ForSequenceClassification`` model.

    Drop-in for ``sentence_transformers.CrossEncoder``: same ``predict`` / ``rank`` inputs,
    outputs and defaults, on the backend and variant you choose (``backend="auto"`` uses the
    fastest one measured on this machine by ``crossenc autotune``).

    Beyond sentence-transformers' arguments: ``backend``/``variant``/``backend_kwargs`` pick the
    predictor; ``max_tokens`` caps tokens per batch; ``accuracy`` is the ``backend="auto"`` tier;
    ``tokenize_ahead`` (None = on for accelerators) tokenizes the next ``tokenize_ahead_chunk``
    pairs on a worker thread while the current ones are scored; ``tokenizer_processes=N`` does
    it in N worker processes instead (started on first use, so it implies tokenizing ahead; calls
    of one chunk stay in-process; ``close()`` or a ``with`` block stops them).
    """

    tokenize_ahead_chunk: int = DEFAULT_CHUNK_PAIRS
    model_type: str = "CrossEncoder"  # sentence-transformers' name for this kind of model

    @init_arguments
    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable | None = None,
        device: str | int | torch.device | None = None,
        backend: str = "torch",
        variant: str | None = None,
        *,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: bool | str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        accuracy: str | None = None,
        tokenize_ahead: bool | None = None,
        tokenizer_processes: int | None = None,
    ) -> None:
        check_backend(backend)
        self._device = resolve_device(device)
        self._default_max_tokens = max_tokens is None
        self.max_tokens = default_max_tokens(self._device) if max_tokens is None else check_positive("max_tokens", max_tokens)
        if tokenize_ahead is not None and not isinstance(tokenize_ahead, bool):
            raise TypeError(f"tokenize_ahead must be True, False or None (auto), got {tokenize_ahead!r}")
        self.tokenize_ahead = tokenize_ahead
        self.tokenizer_processes = check_processes(tokenizer_processes)
        self._tokenizer_pool: TokenizerProcesses | None = None
        self._pool_finalizer: weakref.finalize | None = None
        config_kwargs = dict(config_kwargs or {})
        if num_labels is not None:
            config_kwargs["num_labels"] = check_positive("num_labels", num_labels)
        model_dir = resolve_model(
            model_name_or_path,
            cache_folder=cache_folder,
            revision=revision,
            token=token,
            local_files_only=local_files_only,
        )
        saved = read_saved_settings(model_dir)
        model_kwargs, backend_kwargs = split_backend_model_kwargs(backend, model_kwargs, backend_kwargs)
        self.prompts, self.default_prompt_name = merge_prompts(prompts, default_prompt_name, saved)
        processor_kwargs = dict(processor_kwargs or {})
        if saved.max_seq_length is not None:
            processor_kwargs.setdefault("model_max_length", saved.max_seq_length)
        self.source = ModelSource(
            path=model_dir,
            name=str(model_name_or_path),
            revision=revision,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            config_kwargs=config_kwargs,
            tokenizer_kwargs=processor_kwargs,
            model_kwargs=model_kwargs,
        )
        self.config = self.source.load_config()
        self._setup = tokenizer_setup(self.source, self.config, max_length)  # tokenizer, max_length, pad id, ...
        self.tokenizer = self._setup.tokenizer
        self.activation_fn = resolve_activation(
            activation_fn, self.config, saved.activation_fn, self.num_labels, trust_remote_code
        )
        self.uses_token_type_ids = self._setup.uses_token_type_ids
        self.pad_token_id = self._setup.pad_token_id
        if backend == "auto":
            from crossenc.profiles import choose_backend

            backend, variant = choose_backend(self.source, self._device, accuracy=accuracy)
        variant = check_variant(backend, variant if variant is not None else exported_variant(model_dir, backend))
        self.backend = backend
        self.predictor: Predictor = backend_loader(backend)(
            LoadRequest(
                source=self.source,
                config=self.config,
                device=self._device,
                variant=variant,
                max_length=self.max_length,
                options=dict(backend_kwargs or {}),
            )
        )
        self._predict_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self.last_padding = PaddingStats()

    # ----------------------------------------------------------------- properties
    @property
    def num_labels(self) -> int:
        return int(self.config.num_labels)

    @property
    def max_length(self) -> int:
        """Tokens per pair after truncation; settable up to the length the backend was loaded for."""
        return self._setup.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        value = check_room_for_specials(self.tokenizer, check_positive("max_length", value))
        loaded = self.predictor.info.max_length
        if value > loaded:
            raise ValueError(
                f"max_length={value} exceeds the {loaded} this CrossEncoder's backend was loaded for; "
                f"load it with CrossEncoder(..., max_length={value})"
            )
        with self._pool_lock, self._tokenizer_lock:
            self._setup = self._setup.with_max_length(value)
            self._retire_pool()  # the workers hold the old encoder; the next call starts new ones

    @property
    def max_seq_length(self) -> int:
        """sentence-transformers 6's name for :attr:`max_length` (settable too)."""
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.max_length = value

    @property
    def model(self) -> PreTrainedModel | None:
        """The Hugging Face model the torch backend runs (sentence-transformers' ``model``); None for
        backends that run no such module (ONNX Runtime, OpenVINO, the packed kernels)."""
        return getattr(self.predictor, "hf_model", None)

    @property
    def device(self) -> torch.device:
        """The device the backend runs on, as sentence-transformers gives it."""
        return torch.device(self._device)

    @property
    def processor(self):
        """sentence-transformers 6's name for the tokenizer."""
        return self.tokenizer

    @property
    def default_activation_function(self) -> Callable:
        warnings.warn(
            "The `default_activation_function` property was renamed and is now deprecated. "
            "Please use `activation_fn` instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.activation_fn

    def get_backend(self) -> str:
        """The backend that runs the model: "torch", "onnx" or "openvino"."""
        return self.backend

    @staticmethod
    def is_singular_input(inputs: Any) -> bool:
        """True when ``inputs`` is one (query, document) pair rather than a batch, by sentence-transformers' rule."""
        if isinstance(inputs, (list, tuple)):
            return len(inputs) > 0 and not isinstance(inputs[0], (list, tuple))
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind in ("U", "O"):
            return inputs.size > 0 and inputs.ndim < 2  # 1-D: one pair; empty: an empty batch
        return True

    @property
    def model_dir(self) -> Path:
        return self.source.path

    def info(self) -> dict[str, Any]:
        """What is running: backend, variant, device, precision, max length, details."""
        return {
            **self.predictor.info.to_dict(),
            "model": self.source.name,
            "max_tokens": self.max_tokens,
            "tokenization": self._encoder_for(None).mode,
            "tokenizer_engine": getattr(self._encoder_for(None), "engine", "tokenizers"),
            "tokenizer_processes": self.tokenizer_processes or 0,
        }

    # ----------------------------------------------------------------- scoring
    def predict_logits(
        self, pairs: list[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Raw fp32 logits ``[N, num_labels]`` in input order, length-sorted internally."""
        return self._logits(pairs, self._encoder_for(None), check_positive("batch_size", batch_size), show_progress_bar)

    def _logits(self, pairs: list[tuple[str, str]], encoder, batch_size: int, show_progress_bar: bool) -> np.ndarray:
        if not pairs:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        # Tokenizing starts here, before the predict lock: other callers' scoring overlaps it.
        with self._chunks(pairs, batch_size, encoder) as chunks:
            return self._logits_of_chunks(chunks, len(pairs), batch_size, show_progress_bar)

    def _logits_of_chunks(self, chunks, num_pairs: int, batch_size: int, show_progress_bar: bool) -> np.ndarray:
        """Logits of ``(offset, EncodedPairs)`` chunks covering ``num_pairs`` pairs, in input order."""
        logits, self.last_padding = score_chunks(
            self.predictor,
            chunks,
            num_pairs,
            self.num_labels,
            BatchPlan(batch_size, self.max_tokens, self.pad_token_id),
            lock=None if self.predictor.info.thread_safe else self._predict_lock,
            show_progress_bar=show_progress_bar,
        )
        return logits

    def _chunks(self, pairs: list[tuple[str, str]], batch_size: int, encoder) -> contextlib.AbstractContextManager:
        """``(offset, EncodedPairs)`` chunks: several tokenized ahead on a worker, or one tokenized now.

        One call uses one encoder throughout (a ``max_length`` set meanwhile applies to later calls).
        """
        chunk = self.tokenize_ahead_chunk
        if self.tokenizer_processes and len(pairs) > chunk and encoder is self._setup.encoder:
            return self._pool_chunks(pairs, batch_size, chunk)
        encode = functools.partial(self._encode_with, encoder)
        return text_chunks(pairs, encode, tokenize_ahead=self.tokenize_ahead, device=str(self.predictor.info.device),
                           chunk_pairs=chunk)

    @contextlib.contextmanager
    def _pool_chunks(self, pairs: list[tuple[str, str]], batch_size: int, largest: int) -> Iterator[TokenizeAhead]:
        """Chunks from the worker processes, holding a lease on the pool so close() cannot pull it away."""
        pool = self._lease_pool()
        try:
            chunk = process_chunk_pairs(len(pairs), pool.processes, batch_size, largest)
            with TokenizeAhead(pool.encode, pairs, chunk, executor=pool.executor, depth=2 * pool.processes) as ahead:
                yield ahead
        finally:
            pool.release()

    def _lease_pool(self) -> TokenizerProcesses:
        while True:
            pool = self.tokenizer_pool()
            try:
                pool.acquire()
                return pool
            except RuntimeError:  # retired by close() or a max_length change since: take the next one
                continue

    def tokenizer_pool(self) -> TokenizerProcesses:
        """The tokenizer worker processes (``tokenizer_processes`` of them), started on first use."""
        if not self.tokenizer_processes:
            raise RuntimeError("this CrossEncoder tokenizes in-process (tokenizer_processes is None or 0)")
        with self._pool_lock:
            if self._tokenizer_pool is not None and not self._tokenizer_pool.usable:
                self._retire_pool()  # closed, or a worker died during an earlier call (which raised): start afresh
            if self._tokenizer_pool is None:
                pool = TokenizerProcesses(self._setup.encoder, self.tokenizer_processes, self.uses_token_type_ids)
                self._pool_finalizer = weakref.finalize(self, pool.close)
                self._tokenizer_pool = pool
            return self._tokenizer_pool

    def _retire_pool(self) -> None:
        """Retire the pool: new calls start another; calls using it finish first, then it closes."""
        if self._pool_finalizer is not None:
            self._pool_finalizer.detach()
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.retire()
        self._tokenizer_pool, self._pool_finalizer = None, None

    def close(self) -> None:
        """Stop the tokenizer worker processes, if any, once calls using them finish (a later call
        starts new ones)."""
        with self._pool_lock:
            self._retire_pool()

    def __enter__(self) -> "CrossEncoder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tokenize_pairs(self, pairs: list[tuple[str, str]]) -> EncodedPairs:
        """Token ids of ``pairs`` exactly as ``predict(pairs)`` scores them: the default prompt (if any)
        prepended to each query, the current max_length; tokenized in this process."""
        tokenize = self.pair_tokenizer()
        with self._tokenizer_lock:
            return tokenize(pairs)

    def pair_tokenizer(self) -> PromptedPairEncoder:
        """A picklable ``tokenize_pairs`` (this model's tokenizer, default prompt and current max_length) to
        run in other processes; feed its output to :meth:`predict_tokenized`."""
        query_prompt = resolve_prompt(self.prompts, self.default_prompt_name, None, None)
        if has_chat_template(self.tokenizer):  # the prompt is the conversation's system message
            return PromptedPairEncoder(self._encoder_for(query_prompt), self.uses_token_type_ids)
        return PromptedPairEncoder(self._setup.encoder, self.uses_token_type_ids, query_prompt or None)

    def _prompted_pairs(self, inputs: Any, prompt: str | None, prompt_name: str | None):
        """``(pairs, is_single, encoder)``: the checked pairs, and the encoder that applies the resolved prompt
        (prepended to each query, or as a chat template's system message)."""
        pairs, is_single = normalize_pairs(inputs)
        query_prompt = resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)
        return self._setup.prompted(pairs, query_prompt), is_single, self._encoder_for(query_prompt)

    def _encoder_for(self, system_prompt: str | None) -> PairEncoder | ChatTemplateEncoder:
        """The pair encoder, or a chat-template one when the tokenizer has a template (checked per call, so
        a template set on ``.processor`` after loading takes effect, as in sentence-transformers)."""
        return self._setup.encoder_for(system_prompt)

    def _encode_with(self, encoder: PairEncoder | ChatTemplateEncoder, pairs: list[tuple[str, str]]) -> EncodedPairs:
        with self._tokenizer_lock:
            return encoder.encode(pairs, self.uses_token_type_ids)

    @call_arguments
    def predict(
        self,
        inputs: Any,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | torch.device | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor] | np.float32:
        """Score one pair (returns a scalar) or a list of pairs (returns ``(N,)`` or ``(N, num_labels)``).

        sentence-transformers 6's signature and return types. ``prompt`` (or ``prompts[prompt_name]``,
        or the default prompt) is prepended to each query. ``device`` may only name the device this
        CrossEncoder was loaded on; ``pool`` (multi-process) is not supported: use ``tokenizer_processes``.
        """
        self._check_call_device(device, pool)
        batch_size = check_positive("batch_size", batch_size)
        pairs, is_single, encoder = self._prompted_pairs(inputs, prompt, prompt_name)
        if not pairs:
            return self._no_scores(convert_to_numpy, convert_to_tensor)
        logits = self._logits(pairs, encoder, batch_size, _progress(show_progress_bar))
        result = self._scores(logits, activation_fn, apply_softmax, convert_to_numpy, convert_to_tensor)
        return result[0] if is_single else result

    def predict_tokenized(
        self,
        encoded: EncodedPairs,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """Scores of pairs tokenized earlier by :meth:`tokenize_pairs` (here, in another process, or
        cached), as ``predict`` returns them for a list of pairs; no tokenizing on this call.

        On a GPU the host's tokenizer is the bottleneck (results/nvidia-h100-80gb-hbm3: ~96,000
        pre-tokenized Debian pairs/s vs ~35,000 from text), so a pipeline that tokenizes elsewhere
        feeds the device faster. ``encoded`` must come from this model's tokenizer at a max_length
        no longer than the current one.
        """
        batch_size = check_positive("batch_size", batch_size)
        encoded = self._checked_encoded(encoded)
        if len(encoded) == 0:
            return self._no_scores(convert_to_numpy, convert_to_tensor)
        logits = self._logits_of_chunks([(0, encoded)], len(encoded), batch_size, _progress(show_progress_bar))
        return self._scores(logits, activation_fn, apply_softmax, convert_to_numpy, convert_to_tensor)

    def _checked_encoded(self, encoded: EncodedPairs) -> EncodedPairs:
        return check_encoded_pairs(
            encoded,
            max_length=self.max_length,
            num_special=self.tokenizer.num_special_tokens_to_add(pair=True),
            vocab_size=int(getattr(self.config, "vocab_size", 0) or 0),
            type_vocab_size=int(getattr(self.config, "type_vocab_size", 0) or 0),
            uses_token_type_ids=self.uses_token_type_ids,
        )

    # ----------------------------------------------------------------- sentence-transformers' module surface
    def preprocess(self, inputs: Any, prompt: str | None = None, prompt_name: str | None = None) -> dict[str, torch.Tensor]:
        """The padded token tensors of ``inputs`` (a pair or pairs), exactly as ``predict`` scores them."""
        pairs, _, encoder = self._prompted_pairs(inputs, prompt, prompt_name)
        encoded = self._encode_with(encoder, pairs)
        return features_from_encoded(encoded, self.pad_token_id)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        """``features`` (as :meth:`preprocess` returns them) with ``"scores"``: the raw logits
        ``[N, num_labels]``, computed by this CrossEncoder's backend (no gradients)."""
        encoded = self._checked_encoded(encoded_from_features(features))
        logits = self._logits_of_chunks([(0, encoded)], len(encoded), max(len(encoded), 1), False)
        return {**features, "scores": torch.from_numpy(logits).to(self._device)}

    __call__ = forward

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The weights of :attr:`model` (none for backends that hold no torch module)."""
        return self.model.parameters(recurse) if self.model is not None else iter(())

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return self.model.named_parameters(prefix, recurse) if self.model is not None else iter(())

    def to(self, device: str | int | torch.device) -> "CrossEncoder":
        """Move to ``device``: the torch backend's padded variants move their weights (edits kept); other
        backends were built for one device and raise, naming the reload that gives the other device."""
        target = resolve_device(device)
        if _same_device(target, self._device):
            return self
        move = getattr(self.predictor, "to_device", None)
        if move is None:
            raise ValueError(
                f"the {self.backend} backend ({self.predictor.info.variant}) was built for {self._device!r} and "
                f"cannot move; load another with CrossEncoder(..., device={target!r})"
            )
        self.predictor = move(target)
        if self._default_max_tokens:
            self.max_tokens = default_max_tokens(target)
        self._device = target
        return self

    def _no_scores(self, convert_to_numpy: bool, convert_to_tensor: bool) -> Any:
        """What sentence-transformers returns for no inputs."""
        if convert_to_tensor:
            return torch.tensor([], device=self._device)
        return np.array([]) if convert_to_numpy else []

    def _scores(self, logits: np.ndarray, activation_fn: Callable | None, apply_softmax: bool | None,
                convert_to_numpy: bool, convert_to_tensor: bool) -> Any:
        """``predict``'s conversion of logits: activation or softmax, then numpy, tensor or list of tensors."""
        activation = self.activation_fn if activation_fn is None else activation_fn
        scores = logits_to_scores(logits, activation, bool(apply_softmax), self.num_labels)
        if convert_to_tensor:
            return scores.to(self._device)
        if convert_to_numpy:
            return scores.numpy().astype(np.float32, copy=False)
        return list(scores.to(self._device))

    @call_arguments
    def rank(
        self,
        query: str,
        documents: list[str],
        top_k: int | None = None,
        return_documents: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        device: str | torch.device | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Documents sorted by score, highest first: ``[{"corpus_id", "score", "text"?}]``."""
        if self.num_labels != 1:
            raise ValueError(  # sentence-transformers' wording
                "CrossEncoder.rank() only works for models with num_labels=1. "
                "Consider using CrossEncoder.predict() with input pairs instead."
            )
        clean_query, clean_documents = check_rank_inputs(query, documents, top_k)
        scores = self.predict(
            [(clean_query, doc) for doc in clean_documents],
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            device=device,
            pool=pool,
        ).tolist()  # numpy: no trip through the device's memory
        results = []
        for corpus_id in rank_order(scores)[:top_k]:
            entry: dict[str, Any] = {"corpus_id": corpus_id, "score": float(scores[corpus_id])}
            if return_documents:
                entry["text"] = documents[corpus_id]
            results.append(entry)
        return results

    def _check_call_device(self, device: str | torch.device | None, pool: Any) -> None:
        if pool is not None or isinstance(device, (list, tuple)):
            raise ValueError(
                "crossenc does not run multi-process/multi-device pools (pool=..., device=[...]); "
                "use one CrossEncoder per device, and tokenizer_processes=N for parallel tokenization"
            )
        if device is not None and not _same_device(resolve_device(device), self._device):
            raise ValueError(
                f"this CrossEncoder runs on {self._device!r}; its backend cannot move to {str(device)!r} per call. "
                f"Load another with CrossEncoder(..., device={str(device)!r})"
            )

    # ----------------------------------------------------------------- saving
    def save_pretrained(
        self,
        path: str | os.PathLike,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
    ) -> Path:
        """Write a Hugging Face checkpoint (the weights this CrossEncoder scores with, tokenizer,
        activation) to ``path``, with the files sentence-transformers 6 writes (activation, prompts),
        so either library reloads it alike. Files of ``path`` that this does not write are left in
        place, as sentence-transformers does. ``model_name``, ``create_model_card``, ``train_datasets`` and
        ``safe_serialization`` are accepted for its signature: no model card is written, and the weights are
        safetensors either way (transformers 5 writes no other format, and sentence-transformers 6 on it
        ignores ``safe_serialization=False`` too)."""
        activation = activation_path(self.activation_fn)
        return write_checkpoint(
            self._model_to_save(),
            self.tokenizer,
            Path(path),
            {"sentence_transformers": {"activation_fn": activation}},
            overwrite=True,
            merge=True,
            extra=lambda folder: write_saved_settings(folder, activation, self.prompts, self.default_prompt_name),
        )

    save = save_pretrained  # sentence-transformers' older name

    def _model_to_save(self) -> PreTrainedModel:
        """The weights in memory where the backend holds the complete model, else the checkpoint's own.

        A save never changes weights: re-reading a checkpoint that lacks some weights (a head
        initialised at load) would write new random ones, so that case is refused instead.
        """
        model = self.model
        if model is not None and "quantization" not in self.predictor.info.details:
            return model
        return self.source.load_torch_model(
            self.config, complete_for=f"saving from the {self.backend} backend ({self.predictor.info.variant})"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> "CrossEncoder":
        """A copy with its own torch weights, tokenizer and locks (fixtures and user code deep-copy models);
        an ONNX Runtime or OpenVINO session is read-only and shared, and tokenizer processes start anew."""
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        fresh = {"_predict_lock", "_tokenizer_lock", "_pool_lock", "_tokenizer_pool", "_pool_finalizer"}
        for name, value in self.__dict__.items():
            if name in fresh:
                continue
            shared = name == "predictor" and self.model is None  # no mutable torch weights to copy
            clone.__dict__[name] = value if shared else copy.deepcopy(value, memo)
        clone._predict_lock, clone._tokenizer_lock, clone._pool_lock = threading.Lock(), threading.Lock(), threading.Lock()
        clone._tokenizer_pool, clone._pool_finalizer = None, None
        return clone

    def __repr__(self) -> str:
        info = self.predictor.info
        return (
            f"CrossEncoder({self.source.name!r}, backend={info.backend!r}, variant={info.variant!r}, "
            f"device={info.device!r}, precision={info.precision!r}, max_length={self.max_length})"
        )


def _progress(show_progress_bar: bool | None) -> bool:
    """sentence-transformers' default: a progress bar when logging at INFO or DEBUG."""
    if show_progress_bar is None:
        return logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
    return bool(show_progress_bar)
