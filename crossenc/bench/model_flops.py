"""Floating-point work of a BERT-family cross-encoder per pair: how close a GPU row is to the hardware.

Counts the matrix products only (2 FLOPs per multiply-add; LayerNorm, GELU, softmax and
embeddings are memory traffic, not FLOPs worth counting). With ``first_token=True`` the last
layer computes keys and values for every token but query, attention output and FFN for the
first token only, as crossenc's packed and exported models do.
"""

from __future__ import annotations

import numpy as np


def encoder_flops(
    lengths: np.ndarray, hidden: int, intermediate: int, layers: int, first_token: bool = True
) -> float:
    """Total matrix-product FLOPs of the encoder over sequences of ``lengths`` tokens."""
    n = np.asarray(lengths, dtype=np.float64)
    dense_per_token = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)  # QKV, output, FFN in and out
    attention = 4 * n * n * hidden  # scores (Q K^T) and the weighted sum (P V), all heads together
    full_layer = n * dense_per_token + attention
    if not first_token:
        return float((layers * full_layer).sum())
    last_layer = (
        n * 2 * (2 * hidden * hidden)  # keys and values for every token
        + 2 * (2 * hidden * hidden + 2 * hidden * intermediate)  # query, output projection, FFN: one token
        + 4 * n * hidden  # one query row of attention
    )
    return float(((layers - 1) * full_layer + last_layer).sum())


def config_flops(config, lengths: np.ndarray, first_token: bool = True) -> float:
    """:func:`encoder_flops` for a Hugging Face config (``hidden_size``, ``intermediate_size``, ``num_hidden_layers``)."""
    return encoder_flops(
        lengths, config.hidden_size, config.intermediate_size, config.num_hidden_layers, first_token=first_token
    )
