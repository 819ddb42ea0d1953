"""topk: native top-k sparse attention for PyTorch and Hugging Face transformers.

    import topk
    o, lse = topk.attention(q, k, v, causal=True)          # q [B, T, Hq, D], k/v [B, S, Hkv, D]
    o = topk.topk_attention(q, k, v, k=64)                 # exact top-k, differentiable
    s = topk.scores(q, k, causal=True)                     # the pieces: score ->
    idx = topk.select(s, k=64, causal=True)                # select ->
    o, lse = topk.sparse_attention(q, k, v, idx)           # attend

    import topk.hf
    topk.hf.register(k=64)                                 # attn_implementation="topk"

See docs/python.md in the repository.
"""
import torch as _torch  # noqa: F401  (loads libtorch before the extension)

from .ops import (attention, cuda_available, has_cuda_backend, scores, select, select_capacity,
                  sparse_attention, topk_attention)

__version__ = "0.1.0"
__all__ = ["attention", "topk_attention", "select", "scores", "sparse_attention",
           "select_capacity", "cuda_available", "has_cuda_backend"]
