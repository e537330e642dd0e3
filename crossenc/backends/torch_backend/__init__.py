"""PyTorch backend: Hugging Face modules on padded batches (``padded``: eager, SDPA, torch.compile, bf16/fp16,
int8) and the padding-free encoder of crossenc.kernels (``packed``: the ``packed*`` variants).

It owns what only it runs: the in-flight queue (``in_flight``), CUDA graphs (``cuda_graphs``) and the
first-token rewrite of the last layer (``first_token``). The ONNX / OpenVINO exporters export that same
rewritten torch module, so they import it from here: exporters sit above backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossenc.backends import LoadRequest
    from crossenc.predictor import Predictor


def load(request: LoadRequest) -> Predictor:
    """The predictor for ``request.variant``: packed for ``packed*``, else a Hugging Face module on padded batches."""
    if request.variant.startswith("packed"):
        from crossenc.backends.torch_backend.packed import load_packed

        return load_packed(request)
    from crossenc.backends.torch_backend.padded import load_padded

    return load_padded(request)
