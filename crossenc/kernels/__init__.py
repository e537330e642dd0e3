"""Packed (padding-free) forward for BERT-family rerankers, Triton kernels and CUDA graphs.

Modules, each with one job (heavy or optional imports happen only inside them):

- ``packing``: padded TokenBatch -> concatenated real tokens, position ids, ``cu_seqlens``
- ``packed_model``: PackedEncoder built from a Hugging Face BERT/RoBERTa/XLM-R classifier
- ``attention``: variable-length attention, pure-torch reference + fast paths, load-time choice
- ``ops``: per-layer kernels (pure torch or Triton-fused)
- ``triton_bias_gelu``, ``triton_layer_norm``, ``triton_attention``: Triton kernels + torch references
- ``cuda_graphs``: one CUDA graph per token bucket
- ``triton_support``: is triton importable, interpreter mode
- ``packed_predictor``: ``load_packed(request)`` for the torch variants ``packed*``
"""
