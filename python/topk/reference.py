"""Plain PyTorch versions of topk's ops, written for clarity (float64 by default, one masked
softmax): the baseline that the tests compare topk with, and a way to check a result by hand.
Batched layouts only (optionally ragged seqlens_k / seqlens_q and explicit q_pos); differentiable
through torch's own autograd. The meaning of every rule is docs/semantics.md."""
import math

import torch


def _positions(B, T, S, seqlens_k, seqlens_q, q_pos, device):
    sk = torch.full((B,), S, dtype=torch.long) if seqlens_k is None else torch.as_tensor(seqlens_k).long().cpu()
    tq = torch.full((B,), T, dtype=torch.long) if seqlens_q is None else torch.as_tensor(seqlens_q).long().cpu()
    qp = sk - tq if q_pos is None else torch.as_tensor(q_pos).long().cpu()
    return sk.to(device), tq.to(device), qp.to(device)


def visible(B, T, S, causal, seqlens_k=None, seqlens_q=None, q_pos=None, device="cpu"):
    """[B, T, S] bool: key j is visible to query t of sequence b."""
    sk, tq, qp = _positions(B, T, S, seqlens_k, seqlens_q, q_pos, device)
    j = torch.arange(S, device=device)
    t = torch.arange(T, device=device)
    vis = j[None, None, :] < sk[:, None, None]
    if causal:
        vis = vis & (j[None, None, :] <= (qp[:, None] + t[None, :])[:, :, None])
    vis = vis & (t[None, :, None] < tq[:, None, None])
    return vis


def _expand_kv(x, Hq):
    G = Hq // x.shape[2]
    return x.repeat_interleave(G, dim=2) if G > 1 else x


def scores(q, k, causal=False, scale=None, seqlens_k=None, seqlens_q=None, q_pos=None, dtype=torch.float64):
    """[B, T, Hq, S] scores in `dtype`; invisible keys -inf."""
    B, T, Hq, D = q.shape
    S = k.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = torch.einsum("bthd,bshd->bths", q.to(dtype), _expand_kv(k, Hq).to(dtype)) * scale
    vis = visible(B, T, S, causal, seqlens_k, seqlens_q, q_pos, q.device)
    return s.masked_fill(~vis[:, :, None, :], -math.inf)


def _attend(s, v, Hq, dtype):
    """Softmax over the last dim of s (masked with -inf) times v; empty rows give 0 / +inf."""
    lse = torch.logsumexp(s, dim=-1)
    empty = torch.isinf(lse) & (lse < 0)
    p = torch.exp(s - lse.masked_fill(empty, 0.0)[..., None]).masked_fill(empty[..., None], 0.0)
    o = torch.einsum("bths,bshd->bthd", p, _expand_kv(v, Hq).to(dtype))
    return o, lse.masked_fill(empty, math.inf)


def attention(q, k, v, causal=False, scale=None, seqlens_k=None, seqlens_q=None, q_pos=None,
              dtype=torch.float64):
    """(o, lse) of full attention, in `dtype`."""
    s = scores(q, k, causal, scale, seqlens_k, seqlens_q, q_pos, dtype)
    return _attend(s, v, q.shape[2], dtype)


def budget(n, k=None, ratio=None, min_k=0):
    """W for a query that sees n keys."""
    if n == 0:
        return 0
    w = k if k is not None else math.ceil(ratio * n * (1 - 1e-9))
    return min(max(w, min_k, 1), n)


def select(s, k=None, ratio=None, min_k=0, share_group=False, kv_heads=None, sink=0, window=0):
    """Top-k indices from scores [B, T, Hq, S] (invisible keys -inf, as `scores` gives):
    a list per row, ascending, ranked by score (or by the group's summed softmax probabilities
    with share_group), ties to the lower index (a stable descending sort)."""
    B, T, Hq, S = s.shape
    s = s.double()
    if share_group:
        G = Hq // kv_heads
        lse = torch.logsumexp(s, dim=-1, keepdim=True)
        p = torch.exp(s - lse).nan_to_num(0.0)
        rank = p.view(B, T, kv_heads, G, S).sum(3)
        vis = torch.isfinite(s.view(B, T, kv_heads, G, S)[:, :, :, 0])
        rank = rank.masked_fill(~vis, -math.inf)
    else:
        rank = s
        vis = torch.isfinite(s)
    out = []
    for b in range(B):
        for t in range(T):
            for h in range(rank.shape[2]):
                n = int(vis[b, t, h].sum())  # visible keys are a prefix 0..n-1
                w = budget(n, k, ratio, min_k)
                forced = set(range(min(sink, n))) | set(range(max(0, n - window), n))
                chosen = set(forced) if len(forced) >= w else set(forced)
                if len(chosen) < w:
                    order = torch.sort(rank[b, t, h, :n], descending=True, stable=True).indices
                    for j in order.tolist():
                        if len(chosen) == w:
                            break
                        chosen.add(j)
                out.append(sorted(chosen))
    K = max([len(r) for r in out] + [1])
    idx = torch.full((B, T, rank.shape[2], K), -1, dtype=torch.int32)
    for i, r in enumerate(out):
        b, rem = divmod(i, T * rank.shape[2])
        t, h = divmod(rem, rank.shape[2])
        idx[b, t, h, :len(r)] = torch.tensor(r, dtype=torch.int32)
    return idx.to(s.device)


def sparse_attention(q, k, v, indices, scale=None, seqlens_k=None, dtype=torch.float64):
    """(o, lse) of attention over the listed keys ([B, T, Hsel, K]; -1 or >= S_b skipped)."""
    B, T, Hq, D = q.shape
    S = k.shape[1]
    Hsel = indices.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = torch.einsum("bthd,bshd->bths", q.to(dtype), _expand_kv(k, Hq).to(dtype)) * scale
    idx = indices.long()
    if Hsel != Hq:
        idx = idx.repeat_interleave(Hq // Hsel, dim=2)
    sk = torch.full((B,), S) if seqlens_k is None else torch.as_tensor(seqlens_k).cpu()
    valid = (idx >= 0) & (idx < sk.to(idx.device)[:, None, None, None])
    # Each listed index counts once per appearance: a count per key.
    count = torch.zeros(B, T, Hq, S + 1, dtype=dtype, device=q.device)
    count.scatter_add_(3, torch.where(valid, idx, S), torch.ones_like(idx, dtype=dtype))
    count = count[..., :S]
    s = torch.where(count > 0, s + torch.log(count.clamp_min(1)), torch.full_like(s, -math.inf))
    return _attend(s, v, Hq, dtype)


def topk_attention(q, k, v, k_keys=None, ratio=None, min_k=0, share_group=False, sink=0, window=0,
                   causal=True, scale=None, seqlens_k=None, dtype=torch.float64):
    """(o, indices) of exact top-k attention: scores -> select -> sparse attention."""
    with torch.no_grad():
        s = scores(q, k, causal, scale, seqlens_k, dtype=dtype)
        idx = select(s, k_keys, ratio, min_k, share_group, k.shape[2], sink, window)
    o, _ = sparse_attention(q, k, v, idx, scale, seqlens_k, dtype)
    return o, idx
