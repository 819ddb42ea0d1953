"""topk's attention ops on torch tensors, with autograd.

Layouts are those of the C++ API (include/topk/attention.h, docs/semantics.md):
q and o [B, T, Hq, D], k and v [B, S, Hkv, D], lse [B, T, Hq] float32, scores
[B, T, Hq, S] float32, indices [B, T, Hsel, K] int32 with Hsel = Hq, or Hkv under
share_group. q, k and v are passed to topk without a copy (their data pointer and strides):
the last dim must have stride 1, the other strides are free (a slice of a cache is fine).
From Hugging Face's [B, H, T, D], pass ``x.transpose(1, 2)`` (a view, no copy).

CUDA tensors run on torch's current stream of their device.
"""
import contextlib
import math

import torch

try:
    from . import _C
except ImportError as e:  # the source tree (python/topk) without a build
    raise ImportError(
        f"topk's extension (topk._C) is not built here ({__file__}): install the package with "
        "`pip install --no-build-isolation ./python`, or build it in place with "
        "`python setup.py build_ext --inplace` in python/; running from inside python/ puts "
        f"the unbuilt sources first on sys.path ({e})") from e

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_BACKENDS = {"auto": 0, "automatic": 0, "ref": 1, "cpu": 2, "cuda": 3}
_EMPTY = torch.empty(0, dtype=torch.int32)


def cuda_available():
    """True when this build of topk has its CUDA backend and a GPU is present."""
    return bool(_C.cuda_available())


def has_cuda_backend():
    """True when this build of topk has its CUDA backend."""
    return bool(_C.has_cuda_backend())


# ---------------------------------------------------------------------------------------------
# Argument plumbing


def _backend(name):
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"topk: unknown backend {name!r}; one of auto, ref, cpu, cuda") from None


def _check_float(op, name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"topk.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise ValueError(f"topk.{op}: {name} has dtype {t.dtype}; topk takes float32, bfloat16 "
                         "or float16 (convert with .float() or .bfloat16())")
    if t.dim() != 4:
        raise ValueError(f"topk.{op}: {name} must have 4 dims ([B, T, H, D] / [B, S, H, D]), "
                         f"got shape {tuple(t.shape)}; from Hugging Face's [B, H, T, D] layout "
                         "pass x.transpose(1, 2)")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"topk.{op}: {name} is on {t.device}; topk runs on cpu and cuda tensors")


def _check_qkv(op, q, k, v=None):
    _check_float(op, "q", q)
    _check_float(op, "k", k)
    if v is not None:
        _check_float(op, "v", v)
    for name, t in (("k", k), ("v", v)):
        if t is not None and t.device != q.device:
            raise ValueError(f"topk.{op}: {name} is on {t.device} but q is on {q.device}")


def _i32(name, x):
    """A host int32 array of Seqs from None, a list or a tensor (a CUDA tensor is copied to the
    host, which waits for the GPU)."""
    if x is None:
        return _EMPTY
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.int32).contiguous()
    else:
        t = torch.tensor(list(x), dtype=torch.int32)
    if t.dim() != 1:
        raise ValueError(f"topk: {name} must be 1-d, got shape {tuple(t.shape)}")
    return t


class _Seqs:
    """How rows form sequences (topk::Seqs): batched (optionally ragged: seqlens_k,
    seqlens_q), or packed (cu_seqlens_q, cu_seqlens_k), with optional positions q_pos."""

    def __init__(self, seqlens_k=None, cu_seqlens_q=None, cu_seqlens_k=None, q_pos=None,
                 seqlens_q=None):
        self.seqlens_k = _i32("seqlens_k", seqlens_k)
        self.cu_seqlens_q = _i32("cu_seqlens_q", cu_seqlens_q)
        self.cu_seqlens_k = _i32("cu_seqlens_k", cu_seqlens_k)
        self.q_pos = _i32("q_pos", q_pos)
        self.seqlens_q = _i32("seqlens_q", seqlens_q)
        self.list = [self.seqlens_k, self.cu_seqlens_q, self.cu_seqlens_k, self.q_pos,
                     self.seqlens_q]

    @property
    def partial_rows(self):
        """True when some query rows may belong to no sequence (left unwritten by topk)."""
        return self.seqlens_q.numel() > 0 or self.cu_seqlens_q.numel() > 0

    def max_keys(self, S):
        """Key count of the longest sequence (what select_capacity needs)."""
        if self.cu_seqlens_k.numel() >= 2:
            return int((self.cu_seqlens_k[1:] - self.cu_seqlens_k[:-1]).max())
        return S


def _scale(scale, D):
    if scale is None:
        return 0.0
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"topk: scale must be finite and > 0, got {scale}")
    return scale


def _device_ctx(t):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _stream(t):
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


def _last_dim_unit(t):
    """dout from autograd may come in any layout: give topk stride 1 in the last dim."""
    return t if t.stride(-1) == 1 or t.size(-1) <= 1 else t.contiguous()


def _outputs(q, seqs):
    B, T, Hq, D = q.shape
    if seqs.partial_rows:  # rows outside every sequence: o = 0, lse = +inf ("sees no key")
        o = torch.zeros((B, T, Hq, D), dtype=q.dtype, device=q.device)
        lse = torch.full((B, T, Hq), math.inf, dtype=torch.float32, device=q.device)
    else:
        o = torch.empty((B, T, Hq, D), dtype=q.dtype, device=q.device)
        lse = torch.empty((B, T, Hq), dtype=torch.float32, device=q.device)
    return o, lse


def _grads(q, k, v):
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk = torch.empty(k.shape, dtype=torch.float32, device=q.device)
    dv = torch.empty(v.shape, dtype=torch.float32, device=q.device)
    return dq, dk, dv


def _sel_args(op, k, ratio, min_k, share_group, sink, window):
    if (k is None) == (ratio is None):
        raise ValueError(f"topk.{op}: give exactly one of k (a key count) and ratio (a fraction "
                         f"of the visible keys), got k={k}, ratio={ratio}")
    kk = 0 if k is None else int(k)
    rr = 0.0 if ratio is None else float(ratio)
    if k is not None and kk < 1:
        raise ValueError(f"topk.{op}: k must be >= 1, got {k}")
    if ratio is not None and not (0.0 < rr <= 1.0):
        raise ValueError(f"topk.{op}: ratio must be in (0, 1], got {ratio}")
    return kk, rr, int(min_k), bool(share_group), int(sink), int(window)


def _indices_tensor(q, hsel, sel, seqs, S):
    K = max(1, _C.select_capacity(*sel, seqs.max_keys(S)))
    B, T = q.shape[0], q.shape[1]
    return torch.full((B, T, hsel, K), -1, dtype=torch.int32, device=q.device)


# ---------------------------------------------------------------------------------------------
# Full attention


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, seqs, scale, causal, backend):
        o, lse = _outputs(q, seqs)
        with _device_ctx(q):
            _C.attention_forward(q, k, v, seqs.list, scale, causal, backend, o, lse, _stream(q))
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.args = (seqs, scale, causal, backend)
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, _dlse):
        q, k, v, o, lse = ctx.saved_tensors
        seqs, scale, causal, backend = ctx.args
        dq, dk, dv = _grads(q, k, v)
        do = _last_dim_unit(do)
        with _device_ctx(q):
            _C.attention_backward(q, k, v, o, lse, do, seqs.list, scale, causal, backend, dq, dk,
                                  dv, _stream(q))
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def attention(query, key, value, /, causal=False, scale=None, seqlens_k=None, cu_seqlens_q=None,
              cu_seqlens_k=None, *, seqlens_q=None, q_pos=None, backend="auto"):
    """Full attention. query [B, T, Hq, D], key/value [B, S, Hkv, D] (Hq a multiple of Hkv).

    Returns (o [B, T, Hq, D] in query's dtype, lse [B, T, Hq] float32). Differentiable in
    query, key and value (topk's attention backward); lse carries no gradient.
    causal: query t sees keys 0..q_pos + t, where by default the T queries are the last T keys
    (q_pos = S_b - T_b). seqlens_k [B]: a ragged cache padded to S. cu_seqlens_q/_k [B+1]:
    packed sequences (B = 1). seqlens_q [B]: prompts padded to T (rows past it get o = 0).
    scale: default 1/sqrt(D).
    """
    _check_qkv("attention", query, key, value)
    seqs = _Seqs(seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q)
    return _AttentionFn.apply(query, key, value, seqs, _scale(scale, query.shape[-1]),
                              bool(causal), _backend(backend))


def scores(query, key, /, causal=False, scale=None, seqlens_k=None, cu_seqlens_q=None,
           cu_seqlens_k=None, *, seqlens_q=None, q_pos=None, backend="auto"):
    """Exact scores scale * q.k, [B, T, Hq, S] float32; keys a query does not see are -inf.
    No gradient."""
    _check_qkv("scores", query, key)
    seqs = _Seqs(seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q)
    B, T, Hq, _ = query.shape
    out = torch.full((B, T, Hq, key.shape[1]), -math.inf, dtype=torch.float32,
                     device=query.device)
    with _device_ctx(query):
        _C.attention_scores(query.detach(), key.detach(), seqs.list,
                            _scale(scale, query.shape[-1]), bool(causal), _backend(backend), out,
                            _stream(query))
    return out


# ---------------------------------------------------------------------------------------------
# Selection


def select(scores, k=None, ratio=None, *, min_k=0, share_group=False, kv_heads=None, sink=0,
           window=0, causal=False, seqlens_k=None, cu_seqlens_q=None, cu_seqlens_k=None,
           seqlens_q=None, q_pos=None, backend="auto"):
    """Top-k selection over score rows [B, T, Hq, S] (as `scores` writes them; visibility
    follows causal and the sequence arguments, like the attention ops).

    Pass the causal and sequence arguments the scores were made with. Exactly one of k (a
    count) or ratio (of each query's visible keys, ceil) is given; min_k is a floor; sink /
    window keys are always kept. Ties go to the lower key index.
    Returns indices [B, T, Hsel, K] int32: each row's selected keys first (ascending on the CPU,
    unordered on CUDA), then -1. Hsel = Hq, or kv_heads with share_group (one selection per KV
    group, ranked by the group's summed softmax probabilities). scores that are not contiguous
    float32 are converted first.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 4:
        raise ValueError("topk.select: scores must be a [B, T, Hq, S] tensor")
    sel = _sel_args("select", k, ratio, min_k, share_group, sink, window)
    B, T, Hq, S = scores.shape
    if share_group:
        if kv_heads is None:
            raise ValueError("topk.select: share_group needs kv_heads (the number of KV heads)")
        hsel = int(kv_heads)
        if hsel < 1 or Hq % hsel:
            raise ValueError(f"topk.select: Hq = {Hq} is not a multiple of kv_heads = {hsel}")
    else:
        hsel = Hq
    s = scores.detach()
    if s.dtype != torch.float32 or not s.is_contiguous():
        s = s.float().contiguous()
    seqs = _Seqs(seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q)
    idx = _indices_tensor(s, hsel, sel, seqs, S)
    with _device_ctx(s):
        _C.topk_select(s, seqs.list, bool(causal), _backend(backend), *sel, idx, _stream(s))
    return idx


# ---------------------------------------------------------------------------------------------
# Sparse attention over given indices, and top-k attention


class _SparseFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, indices, seqs, scale, backend):
        o, lse = _outputs(q, seqs)
        with _device_ctx(q):
            _C.sparse_attention_forward(q, k, v, indices, seqs.list, scale, backend, o, lse,
                                        _stream(q))
        ctx.save_for_backward(q, k, v, indices, o, lse)
        ctx.args = (seqs, scale, backend)
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, _dlse):
        q, k, v, indices, o, lse = ctx.saved_tensors
        seqs, scale, backend = ctx.args
        dq, dk, dv = _grads(q, k, v)
        with _device_ctx(q):
            _C.sparse_attention_backward(q, k, v, indices, o, lse, _last_dim_unit(do), seqs.list,
                                         scale, backend, dq, dk, dv, _stream(q))
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def _indices_arg(op, indices, q):
    if not isinstance(indices, torch.Tensor) or indices.dim() != 4:
        raise ValueError(f"topk.{op}: indices must be a [B, T, Hsel, K] tensor")
    if indices.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"topk.{op}: indices must hold integers, got {indices.dtype}")
    if indices.device != q.device:
        raise ValueError(f"topk.{op}: indices are on {indices.device} but q is on {q.device}")
    if indices.dtype != torch.int32 or not indices.is_contiguous():
        indices = indices.to(torch.int32).contiguous()  # torch.topk gives int64
    return indices.detach()


def sparse_attention(query, key, value, indices, /, scale=None, seqlens_k=None,
                     cu_seqlens_q=None, cu_seqlens_k=None, *, seqlens_q=None, q_pos=None,
                     backend="auto"):
    """Attention of each query over the keys its row of indices lists ([B, T, Hsel, K]; Hsel =
    Hq, or Hkv: one list per KV group). An index < 0 or >= S_b is skipped; the list is the
    mask (no causal rule is applied). Returns (o, lse) like `attention`; differentiable in
    query, key and value (topk's sparse backward), not in the indices."""
    _check_qkv("sparse_attention", query, key, value)
    indices = _indices_arg("sparse_attention", indices, query)
    seqs = _Seqs(seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q)
    return _SparseFn.apply(query, key, value, indices, seqs, _scale(scale, query.shape[-1]),
                           _backend(backend))


class _TopkFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, seqs, scale, causal, backend, sel):
        hsel = k.shape[2] if sel[3] else q.shape[2]
        o, lse = _outputs(q, seqs)
        idx = _indices_tensor(q, hsel, sel, seqs, k.shape[1])
        with _device_ctx(q):
            _C.topk_attention_forward(q, k, v, seqs.list, scale, causal, backend, *sel, o, lse,
                                      idx, _stream(q))
        ctx.save_for_backward(q, k, v, idx, o, lse)
        ctx.args = (seqs, scale, backend)
        ctx.mark_non_differentiable(lse, idx)
        return o, lse, idx

    @staticmethod
    def backward(ctx, do, _dlse, _didx):
        q, k, v, idx, o, lse = ctx.saved_tensors
        seqs, scale, backend = ctx.args
        dq, dk, dv = _grads(q, k, v)
        with _device_ctx(q):
            _C.sparse_attention_backward(q, k, v, idx, o, lse, _last_dim_unit(do), seqs.list,
                                         scale, backend, dq, dk, dv, _stream(q))
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


def topk_attention(query, key, value, /, k=None, ratio=None, min_k=0, share_group=False, sink=0,
                   window=0, causal=True, scale=None, seqlens_k=None, cu_seqlens_q=None,
                   cu_seqlens_k=None, *, seqlens_q=None, q_pos=None, return_indices=False,
                   return_lse=False, backend="auto"):
    """Exact top-k attention: scores -> select -> sparse attention. Each query attends only to
    its k best keys (or ceil(ratio * visible keys)), renormalised over them.

    query [B, T, Hq, D], key/value [B, S, Hkv, D]; the tensors are positional, so `k` is the
    budget: ``topk_attention(q, k_cache, v_cache, k=64)``. Budget, sharing and forced keys as
    `select`; causal (default True) and the sequence arguments as `attention`.
    Returns o [B, T, Hq, D]; with return_indices / return_lse also the indices [B, T, Hsel, K]
    int32 it attended to and lse, in the order (o, indices, lse). The backward is topk's sparse
    backward over the chosen indices: gradients flow into q and the selected keys and values,
    none through the choice.
    """
    _check_qkv("topk_attention", query, key, value)
    sel = _sel_args("topk_attention", k, ratio, min_k, share_group, sink, window)
    seqs = _Seqs(seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q)
    o, lse, idx = _TopkFn.apply(query, key, value, seqs, _scale(scale, query.shape[-1]),
                                bool(causal), _backend(backend), sel)
    out = (o,)
    if return_indices:
        out += (idx,)
    if return_lse:
        out += (lse,)
    return out[0] if len(out) == 1 else out


def select_capacity(S, k=None, ratio=None, min_k=0, share_group=False, sink=0, window=0):
    """Columns of the indices tensor that a selection over at most S keys needs."""
    sel = _sel_args("select_capacity", k, ratio, min_k, share_group, sink, window)
    return int(_C.select_capacity(*sel, int(S)))
