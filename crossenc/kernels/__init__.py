"""Pure ops for the packed (padding-free) forward of encoder rerankers: nothing here imports a backend.

Modules, each with one job (heavy or optional imports happen only inside them):

- ``packing``: padded TokenBatch -> concatenated real tokens, position ids, ``cu_seqlens``
- ``packed_model``: packed encoders built from a Hugging Face BERT/RoBERTa/XLM-R/ELECTRA/DistilBERT/ModernBERT
  classifier (one ``Architecture`` per family)
- ``varlen``: a packed batch's sequence boundaries and the fp32 reference attention
- ``attention``: variable-length attention fast paths (and sliding-window ones), load-time choice
- ``ops``: per-layer kernels (pure torch or Triton-fused)
- ``triton_bias_gelu``, ``triton_layer_norm``, ``triton_attention``: Triton kernels + torch references
- ``triton_support``: is triton importable, interpreter mode

The torch backend's packed predictor and its CUDA graphs run these (crossenc.backends.torch_backend).
"""
