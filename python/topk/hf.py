"""topk as a Hugging Face transformers attention implementation.

    import topk.hf
    topk.hf.register(k=64)        # exact top-k decoding with 64 keys per query
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="topk")

`register()` adds "topk" to `transformers.AttentionInterface` (the attention function below)
and to `AttentionMaskInterface` (the same boolean masks as "sdpa", so that padding is seen).
Which attention a call runs is set by `configure()` (global, or `with topk.hf.using(...)`):

    phase     when                                               default
    prefill   queries that start at position 0 (no cached prefix) full
    decode    queries after a cached prefix (generation steps)    top-k when a budget is set
    train     module.training and grad enabled                    full; train="topk" for native
                                                                  top-k training (sparse backward)

Without a budget (k or ratio) every phase is full attention through topk's kernels.

Layouts: transformers passes q [B, Hq, T, D] and k, v [B, Hkv, S, D] (KV heads not repeated);
topk takes their transposes [B, T, H, D] as views (no copy) and returns o [B, T, Hq, D], which
is what the model expects. Supported masks (anything else raises ValueError):
  - none (pure causal: prefill without padding, or a decode step);
  - the causal boolean/additive mask of "sdpa"/"eager", with left padding (batched generation;
    sequences with padding run one topk call each), right padding (training batches), and a
    static cache's unused slots. Query rows at padding positions get output 0.
Not supported: sliding-window or chunked layers, packed sequences (position_ids restarting
inside a row), custom 4D masks of other shapes, attention sinks, soft-capping, dropout > 0,
non-causal attention with a mask.
"""
import contextlib
import dataclasses
import warnings
import weakref

import torch

from . import ops

_PHASE_MODES = ("full", "topk")


@dataclasses.dataclass
class Config:
    """The attention policy of the "topk" implementation."""
    k: int = None               # keys per query (exactly one of k and ratio, or neither)
    ratio: float = None         # fraction of each query's visible keys
    min_k: int = 0              # floor on the budget
    share_group: bool = False   # one selection per KV group (GQA)
    sink: int = 0               # first keys always kept
    window: int = 0             # last keys always kept
    prefill: str = "full"       # full | topk
    decode: str = "topk"        # full | topk
    train: str = "full"         # full | topk
    backend: str = "auto"       # auto | cpu | ref | cuda

    def validate(self):
        if self.k is not None and self.ratio is not None:
            raise ValueError("topk.hf: give k or ratio, not both")
        if self.k is not None and int(self.k) < 1:
            raise ValueError(f"topk.hf: k must be >= 1, got {self.k}")
        if self.ratio is not None and not (0 < float(self.ratio) <= 1):
            raise ValueError(f"topk.hf: ratio must be in (0, 1], got {self.ratio}")
        for name in ("prefill", "decode", "train"):
            if getattr(self, name) not in _PHASE_MODES:
                raise ValueError(f"topk.hf: {name} must be 'full' or 'topk', got "
                                 f"{getattr(self, name)!r}")
        for name in ("min_k", "sink", "window"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"topk.hf: {name} must be >= 0")
        ops._backend(self.backend)
        return self

    @property
    def has_budget(self):
        return self.k is not None or self.ratio is not None


_config = Config()


def configure(**kw):
    """Sets fields of the global Config (k, ratio, min_k, share_group, sink, window, prefill,
    decode, train, backend) and returns it. Setting k clears ratio and the other way round."""
    global _config
    unknown = set(kw) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise TypeError(f"topk.hf.configure: unknown option(s) {sorted(unknown)}")
    fields = dataclasses.asdict(_config)
    if "k" in kw and kw["k"] is not None:
        fields["ratio"] = None
    if "ratio" in kw and kw["ratio"] is not None:
        fields["k"] = None
    fields.update(kw)
    _config = Config(**fields).validate()
    return _config


def config():
    """The current Config."""
    return _config


@contextlib.contextmanager
def using(**kw):
    """Runs a block under other options: `with topk.hf.using(k=32, decode="topk"): ...`."""
    global _config
    saved = _config
    try:
        configure(**kw)
        yield _config
    finally:
        _config = saved


def register(name="topk", **kw):
    """Registers `name` with transformers' AttentionInterface and AttentionMaskInterface and
    applies configure(**kw). Afterwards `attn_implementation=name` selects topk, in
    from_pretrained, from_config or model.set_attn_implementation(name)."""
    if kw:
        configure(**kw)
    from transformers import AttentionInterface
    AttentionInterface.register(name, attention_forward)
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:  # transformers before the mask interface: masks come as for sdpa
        return name
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return name


# ---------------------------------------------------------------------------------------------
# Masks


class _Layout:
    """How a call's queries and keys form sequences, from the mask.
    q_off: position of query row 0; per sequence b, keys lo[b]..hi[b] (inclusive; hi < lo when
    it has none) are real, and query rows t0[b]..t1[b]-1 are at real positions."""

    def __init__(self, B, T, S, q_off, lo, hi):
        self.B, self.T, self.S, self.q_off = B, T, S, q_off
        self.lo, self.hi = lo, hi
        self.t0 = [max(0, l - q_off) for l in lo]
        self.t1 = [max(t0, min(T, h - q_off + 1)) for t0, h in zip(self.t0, hi)]

    @property
    def left_padded(self):
        return any(l > 0 and h >= l for l, h in zip(self.lo, self.hi))


def _unsupported(msg):
    return ValueError(
        "topk attention: " + msg + ". Supported: no mask, or the causal mask of 'sdpa'/'eager' "
        "with left padding, right padding or a static cache (docs/python.md)")


def _visible(mask, B, T, S):
    """The mask as [B, T, S] bool (True = attend)."""
    if mask.dim() != 4:
        raise _unsupported(f"a {mask.dim()}-d attention mask (shape {tuple(mask.shape)})")
    if mask.shape[-1] < S or mask.shape[-2] != T or mask.shape[0] not in (1, B):
        raise _unsupported(f"a mask of shape {tuple(mask.shape)} for {B} sequences, {T} queries "
                           f"and {S} keys")
    m = mask[..., :S]
    if m.dtype == torch.bool:
        vis = m
    else:  # additive: 0 where attended, a very negative number (or -inf) elsewhere
        vis = m > torch.finfo(m.dtype).min / 2 if m.is_floating_point() else m != 0
        if bool((m.masked_fill(~vis, 0) != 0).any()):
            raise _unsupported("an additive mask with biases other than 0 and -inf")
    if vis.shape[1] != 1:
        if not bool((vis == vis[:, :1]).all()):
            raise _unsupported("a mask that differs between heads")
    vis = vis[:, 0]
    return vis.expand(B, T, S) if vis.shape[0] != B else vis


_cache = {"ref": None, "key": None, "layout": None}


def _layout(mask, B, T, S, causal):
    if mask is None:
        # transformers drops the mask only when it is purely causal (T == 1 or T == S without
        # padding); topk's default places the T queries as the last T keys.
        return _Layout(B, T, S, S - T, [0] * B, [S - 1] * B)
    if not causal:
        raise _unsupported("a mask on a non-causal (bidirectional) attention layer")
    key = (B, T, S, mask.data_ptr(), tuple(mask.shape), mask._version)
    ref = _cache["ref"]
    if ref is not None and ref() is mask and _cache["key"] == key:
        return _cache["layout"]  # the layers of one forward share the mask: analyse it once
    vis = _visible(mask, B, T, S)
    dev = vis.device
    ar = torch.arange(S, device=dev)
    tt = torch.arange(T, device=dev)
    nonempty = vis.any(dim=2)  # [B, T]
    if not bool(nonempty.any()):
        lay = _Layout(B, T, S, 0, [0] * B, [-1] * B)
    else:
        last = torch.where(vis, ar, torch.full_like(ar, -1)).amax(dim=2)  # [B, T]
        q_off = int((last - tt)[nonempty].max())
        kval = vis.any(dim=1)  # [B, S]: keys some query sees (the real ones it may see)
        expected = kval[:, None, :] & (ar[None, None, :] <= (q_off + tt)[None, :, None])
        if not torch.equal(vis, expected):
            raise _unsupported("a mask that is not causal over consecutive positions (sliding "
                               "window, chunked or packed sequences?)")
        cnt = kval.sum(dim=1)
        lo = torch.where(kval, ar, torch.full_like(ar, S)).amin(dim=1)
        hi = torch.where(kval, ar, torch.full_like(ar, -1)).amax(dim=1)
        if not bool(((cnt == 0) | (cnt == hi - lo + 1)).all()):
            raise _unsupported("padding in the middle of a sequence")
        lo, hi = lo.tolist(), hi.tolist()
        lay = _Layout(B, T, S, q_off, [l if h >= l else 0 for l, h in zip(lo, hi)], hi)
    _cache.update(ref=weakref.ref(mask), key=key, layout=lay)
    return lay


# ---------------------------------------------------------------------------------------------
# The attention function


def _phase(module, layout):
    if getattr(module, "training", False) and torch.is_grad_enabled():
        return "train"
    return "prefill" if layout.q_off == 0 else "decode"


def _run(cfg, topk_mode, q, k, v, scale, causal, **seqs):
    if topk_mode:
        return ops.topk_attention(q, k, v, k=cfg.k, ratio=cfg.ratio, min_k=cfg.min_k,
                                  share_group=cfg.share_group, sink=cfg.sink, window=cfg.window,
                                  causal=causal, scale=scale, backend=cfg.backend, **seqs)
    return ops.attention(q, k, v, causal=causal, scale=scale, backend=cfg.backend, **seqs)[0]


_warned = set()


def _warn_once(msg):
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, stacklevel=3)


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      is_causal=None, **kwargs):
    """transformers' attention interface: query [B, Hq, T, D], key/value [B, Hkv, S, D].
    Returns (attn_output [B, T, Hq, D], None)."""
    if dropout and float(dropout) > 0:
        raise ValueError(f"topk attention has no dropout (got {dropout}); set the model's "
                         "attention_dropout to 0")
    for name in ("sliding_window", "softcap", "s_aux", "sinks"):
        if kwargs.get(name) is not None:
            raise _unsupported(f"'{name}' (a layer with {name.replace('_', ' ')})")
    if kwargs.get("output_attentions"):
        _warn_once("topk attention returns no attention weights (output_attentions)")
    cfg = _config
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal)
    q = query.transpose(1, 2)
    k = key.transpose(1, 2)
    v = value.transpose(1, 2)
    B, T, Hq, D = q.shape
    S = k.shape[1]
    if Hq % k.shape[2]:
        raise ValueError(f"topk attention: {Hq} query heads are not a multiple of {k.shape[2]} "
                         "KV heads")
    lay = _layout(attention_mask, B, T, S, causal)
    phase = _phase(module, lay)
    topk_mode = cfg.has_budget and getattr(cfg, phase) == "topk"
    scale = None if scaling is None else float(scaling)

    if attention_mask is None:
        return _run(cfg, topk_mode, q, k, v, scale, causal), None
    if not lay.left_padded:
        # One batched call: sequence b has keys 0..hi[b] and its real queries first.
        seqlens_k = [h + 1 for h in lay.hi]
        seqlens_q = [t1 - t0 for t0, t1 in zip(lay.t0, lay.t1)]
        seqs = {"q_pos": [lay.q_off] * B}
        if any(n != S for n in seqlens_k):
            seqs["seqlens_k"] = seqlens_k
        if any(n != T for n in seqlens_q):
            seqs["seqlens_q"] = seqlens_q
        return _run(cfg, topk_mode, q, k, v, scale, True, **seqs), None
    # Left padding: each sequence on its own, over its real keys (zero-copy slices).
    out = q.new_zeros((B, T, Hq, D))
    for b in range(B):
        lo, hi, t0, t1 = lay.lo[b], lay.hi[b], lay.t0[b], lay.t1[b]
        if hi < lo or t1 <= t0:
            continue
        ob = _run(cfg, topk_mode, q[b:b + 1, t0:t1], k[b:b + 1, lo:hi + 1],
                  v[b:b + 1, lo:hi + 1], scale, True, q_pos=[lay.q_off + t0 - lo])
        out[b:b + 1, t0:t1] = ob
    return out, None
