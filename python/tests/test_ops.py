"""topk's ops through torch against the plain torch implementation (topk.reference, float64):
forward, autograd gradients (against the reference's autograd and central differences),
selection against torch.topk and the tie rule, and bad inputs. Runs on the CPU, and on CUDA
too where a GPU and topk's CUDA backend are present."""

import pytest
import torch

import topk
import topk.reference as ref
from _util import cache_view, cuda_ready, rand

DEVICES = ["cpu"] + (["cuda"] if cuda_ready() else [])
TOL = dict(atol=2e-4, rtol=2e-4)


def close(a, b, **tol):
    tol = tol or TOL
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "inf positions differ"
    fin = torch.isfinite(b)
    torch.testing.assert_close(a[fin], b[fin], **tol)


# --------------------------------------------------------------------------------------------
# Full attention

# Head dims 64, 128 and 256: the CUDA kernels' sizes (the CPU takes any).
SHAPES = [  # B, T, S, Hq, Hkv, D, causal
    (2, 7, 7, 4, 2, 64, True),     # causal prefill, GQA
    (1, 1, 23, 4, 1, 128, True),   # decode, MQA
    (3, 5, 9, 2, 2, 64, False),    # non-causal, T < S
    (2, 3, 17, 6, 3, 64, True),    # a block of queries after a prefix
    (1, 20, 40, 4, 2, 256, True),  # head dim 256 (Gemma-style), flash kernels on CUDA
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_attention_forward(device, shape):
    B, T, S, Hq, Hkv, D, causal = shape
    q = rand(B, T, Hq, D, device=device, seed=1)
    k = cache_view(B, S, Hkv, D, device=device, seed=2)
    v = cache_view(B, S, Hkv, D, device=device, seed=3)
    assert Hkv == 1 or not k.is_contiguous()  # a slice of a larger cache, passed as it is
    o, lse = topk.attention(q, k, v, causal=causal)
    ro, rlse = ref.attention(q, k, v, causal=causal)
    assert o.dtype == q.dtype and o.shape == q.shape and lse.shape == (B, T, Hq)
    close(o, ro)
    close(lse, rlse)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_scale_ragged_and_positions(device):
    B, T, S, H, D = 3, 4, 10, 2, 64
    q = rand(B, T, H, D, device=device, seed=4)
    k = rand(B, S, H, D, device=device, seed=5)
    v = rand(B, S, H, D, device=device, seed=6)
    seqlens_k, seqlens_q = [10, 6, 3], [4, 2, 3]
    k[1, 6:] = float("nan")  # rows past seqlens_k are never read
    o, lse = topk.attention(q, k, v, causal=True, scale=0.3, seqlens_k=seqlens_k,
                            seqlens_q=seqlens_q)
    ro, rlse = ref.attention(q, k.nan_to_num(), v, causal=True, scale=0.3, seqlens_k=seqlens_k,
                             seqlens_q=seqlens_q)
    for b in range(B):  # rows past seqlens_q are left as 0 / +inf
        n = seqlens_q[b]
        close(o[b, :n], ro[b, :n])
        close(lse[b, :n], rlse[b, :n])
        assert torch.all(o[b, n:] == 0) and torch.all(torch.isinf(lse[b, n:]))
    o2, _ = topk.attention(q, k.nan_to_num(), v, causal=True, q_pos=[0, 1, 2])
    ro2, _ = ref.attention(q, k.nan_to_num(), v, causal=True, q_pos=[0, 1, 2])
    close(o2, ro2)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_packed_equals_separate(device):
    H, D = 2, 64
    lens_q, lens_k = [3, 5, 1], [4, 5, 7]
    q = rand(1, sum(lens_q), H, D, device=device, seed=7)
    k = rand(1, sum(lens_k), H, D, device=device, seed=8)
    v = rand(1, sum(lens_k), H, D, device=device, seed=9)
    cq = [0, 3, 8, 9]
    ck = [0, 4, 9, 16]
    o, lse = topk.attention(q, k, v, causal=True, cu_seqlens_q=cq, cu_seqlens_k=ck)
    for b in range(3):
        ob, lb = topk.attention(q[:, cq[b]:cq[b + 1]], k[:, ck[b]:ck[b + 1]],
                                v[:, ck[b]:ck[b + 1]], causal=True)
        close(o[:, cq[b]:cq[b + 1]], ob, atol=1e-6, rtol=1e-6)
        close(lse[:, cq[b]:cq[b + 1]], lb, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_half_dtypes(device, dtype):
    q = rand(2, 5, 4, 64, device=device, seed=10).to(dtype)
    k = rand(2, 9, 2, 64, device=device, seed=11).to(dtype)
    v = rand(2, 9, 2, 64, device=device, seed=12).to(dtype)
    o, lse = topk.attention(q, k, v, causal=True)
    ro, rlse = ref.attention(q, k, v, causal=True)
    assert o.dtype == dtype
    close(o, ro, atol=3e-2, rtol=3e-2)
    close(lse, rlse, atol=1e-2, rtol=1e-2)


def _grads(fn, q, k, v, w):
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    o = fn(q, k, v)
    (o.double() * w).sum().backward()
    return o, q.grad, k.grad, v.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [True, False])
def test_attention_grad_vs_reference(device, causal):
    B, T, S, Hq, Hkv, D = 2, 6, 6 if causal else 8, 4, 2, 64
    q = rand(B, T, Hq, D, device=device, seed=13)
    k = rand(B, S, Hkv, D, device=device, seed=14)
    v = rand(B, S, Hkv, D, device=device, seed=15)
    w = rand(B, T, Hq, D, device=device, seed=16).double()
    _, dq, dk, dv = _grads(lambda q, k, v: topk.attention(q, k, v, causal=causal)[0], q, k, v, w)
    _, rq, rk, rv = _grads(lambda q, k, v: ref.attention(q, k, v, causal=causal)[0], q, k, v, w)
    assert dq.dtype == q.dtype and dk.shape == k.shape
    close(dq, rq)
    close(dk, rk)
    close(dv, rv)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_grad_finite_differences(device):
    """Directional derivatives of topk's own forward (float32, central differences) agree with
    its backward."""
    B, T, S, Hq, Hkv, D = 1, 4, 4, 2, 1, 64
    q = rand(B, T, Hq, D, device=device, seed=17)
    k = rand(B, S, Hkv, D, device=device, seed=18)
    v = rand(B, S, Hkv, D, device=device, seed=19)
    w = rand(B, T, Hq, D, device=device, seed=20)

    def f(q, k, v):
        return (topk.attention(q, k, v, causal=True)[0] * w).sum().double()

    qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
    f(qq, kk, vv).backward()
    eps = 1e-2
    for i, (x, g) in enumerate(((q, qq.grad), (k, kk.grad), (v, vv.grad))):
        d = rand(*x.shape, device=device, seed=30 + i)
        args = [q, k, v]
        args[i] = x + eps * d
        fp = f(*args)
        args[i] = x - eps * d
        fm = f(*args)
        fd = float((fp - fm) / (2 * eps))
        an = float((g.double() * d.double()).sum())
        assert abs(fd - an) <= 2e-3 * max(1.0, abs(an)), (i, fd, an)


# --------------------------------------------------------------------------------------------
# Scores and selection


@pytest.mark.parametrize("device", DEVICES)
def test_scores(device):
    q = rand(2, 3, 4, 64, device=device, seed=21)
    k = rand(2, 7, 2, 64, device=device, seed=22)
    s = topk.scores(q, k, causal=True)
    close(s, ref.scores(q, k, causal=True))


@pytest.mark.parametrize("device", DEVICES)
def test_select_matches_torch_topk(device):
    B, T, H, S, K = 2, 3, 4, 50, 7
    s = rand(B, T, H, S, device=device, seed=23)  # distinct values: torch.topk is unambiguous
    idx = topk.select(s, k=K)
    assert idx.dtype == torch.int32 and idx.shape == (B, T, H, K)
    want = torch.topk(s, K, dim=-1).indices
    got = torch.sort(idx.long(), dim=-1).values
    assert torch.equal(got.cpu(), torch.sort(want, dim=-1).values.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_select_ties_go_to_lower_index(device):
    s = torch.zeros(1, 1, 2, 12, device=device)
    s[0, 0, 0, [2, 5, 9]] = 1.0          # three best, then ties among the zeros
    s[0, 0, 1] = torch.tensor([3, 1, 3, 2, 3, 3, 0, 3, 1, 2, 3, 3], dtype=torch.float32)
    idx = topk.select(s, k=5)
    rows = [sorted(r) for r in idx[0, 0].tolist()]
    assert rows[0] == [0, 1, 2, 5, 9]
    assert rows[1] == [0, 2, 4, 5, 7]
    # torch.topk leaves the order of ties unspecified; a stable sort is the rule.
    stable = torch.sort(s.cpu(), dim=-1, descending=True, stable=True).indices[..., :5]
    assert rows == [sorted(r) for r in stable[0, 0].tolist()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("opts", [
    dict(k=4), dict(ratio=0.3), dict(ratio=0.1, min_k=3), dict(k=3, sink=1, window=2),
    dict(k=5, share_group=True), dict(ratio=0.5, share_group=True, sink=2)])
def test_select_rules_vs_reference(device, opts):
    B, T, Hq, Hkv, S, D = 2, 5, 4, 2, 11, 64
    q = rand(B, T, Hq, D, device=device, seed=24)
    k = rand(B, S, Hkv, D, device=device, seed=25)
    s = topk.scores(q, k, causal=True)
    kv = {"kv_heads": Hkv} if opts.get("share_group") else {}
    idx = topk.select(s, causal=True, **opts, **kv)
    want = ref.select(ref.scores(q, k, causal=True), kv_heads=Hkv,
                      **{("k" if n == "k" else n): x for n, x in opts.items()})
    got = [sorted(x for x in r if x >= 0) for r in idx.reshape(-1, idx.shape[-1]).tolist()]
    exp = [[x for x in r if x >= 0] for r in want.reshape(-1, want.shape[-1]).tolist()]
    assert got == exp


# --------------------------------------------------------------------------------------------
# Sparse attention and top-k attention


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hsel", ["per_head", "per_group"])
def test_sparse_attention_forward_and_grad(device, hsel):
    B, T, S, Hq, Hkv, D, K = 2, 3, 12, 4, 2, 64, 5
    q = rand(B, T, Hq, D, device=device, seed=26)
    k = rand(B, S, Hkv, D, device=device, seed=27)
    v = rand(B, S, Hkv, D, device=device, seed=28)
    H = Hq if hsel == "per_head" else Hkv
    g = torch.Generator().manual_seed(29)
    idx = torch.stack([torch.randperm(S, generator=g)[:K] for _ in range(B * T * H)])
    idx = idx.view(B, T, H, K).to(device)
    idx[0, 0, 0, 1] = -1                          # skipped
    idx[1, 2, :, :] = -1                          # a row with no valid index: o = 0, lse = inf
    w = rand(B, T, Hq, D, device=device, seed=30).double()
    o, dq, dk, dv = _grads(lambda q, k, v: topk.sparse_attention(q, k, v, idx)[0], q, k, v, w)
    ro, rq, rk, rv = _grads(lambda q, k, v: ref.sparse_attention(q, k, v, idx)[0], q, k, v, w)
    _, lse = topk.sparse_attention(q, k, v, idx.long())  # int64 indices (torch.topk's) work
    assert torch.isinf(lse[1, 2]).all() and torch.all(o[1, 2] == 0)
    close(o, ro)
    close(dq, rq)
    close(dk, rk)
    close(dv, rv)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("opts", [dict(k=3), dict(ratio=0.25), dict(k=4, share_group=True),
                                  dict(k=2, sink=1, window=1)])
def test_topk_attention_vs_reference(device, opts):
    B, T, S, Hq, Hkv, D = 2, 9, 9, 4, 2, 64
    q = rand(B, T, Hq, D, device=device, seed=31)
    k = rand(B, S, Hkv, D, device=device, seed=32)
    v = rand(B, S, Hkv, D, device=device, seed=33)
    w = rand(B, T, Hq, D, device=device, seed=34).double()
    opts = dict(opts)  # the parametrised dict is shared by the CPU and CUDA cases
    kk = opts.pop("k", None)
    o, dq, dk, dv = _grads(lambda q, k, v: topk.topk_attention(q, k, v, k=kk, **opts), q, k, v, w)
    ro, rq, rk, rv = _grads(lambda q, k, v: ref.topk_attention(q, k, v, kk, **opts)[0], q, k, v, w)
    close(o, ro)
    close(dq, rq)
    close(dk, rk)
    close(dv, rv)
    _, idx = topk.topk_attention(q, k, v, k=kk, return_indices=True, **opts)
    _, ridx = ref.topk_attention(q, k, v, kk, **opts)
    got = [sorted(x for x in r if x >= 0) for r in idx.reshape(-1, idx.shape[-1]).tolist()]
    exp = [[x for x in r if x >= 0] for r in ridx.reshape(-1, ridx.shape[-1]).tolist()]
    assert got == exp


@pytest.mark.parametrize("device", DEVICES)
def test_topk_attention_with_every_key_is_full_attention(device):
    q = rand(1, 6, 2, 64, device=device, seed=35)
    k = rand(1, 6, 2, 64, device=device, seed=36)
    v = rand(1, 6, 2, 64, device=device, seed=37)
    o = topk.topk_attention(q, k, v, k=6)
    ro, _ = topk.attention(q, k, v, causal=True)
    close(o, ro, atol=1e-5, rtol=1e-5)
    o1 = topk.topk_attention(q[:, -1:], k, v, ratio=1.0)  # decode: the last query
    close(o1, ro[:, -1:], atol=1e-5, rtol=1e-5)


def test_backends_agree():
    q = rand(2, 4, 4, 16, seed=38)
    k = rand(2, 8, 2, 16, seed=39)
    v = rand(2, 8, 2, 16, seed=40)
    a, _ = topk.attention(q, k, v, causal=True, backend="cpu")
    b, _ = topk.attention(q, k, v, causal=True, backend="ref")
    close(a, b, atol=1e-5, rtol=1e-5)
    assert topk.select_capacity(100, ratio=0.05) == 5


# --------------------------------------------------------------------------------------------
# Bad inputs


def test_bad_inputs_raise():
    q = rand(1, 2, 4, 8)
    k = rand(1, 5, 2, 8)
    v = rand(1, 5, 2, 8)
    with pytest.raises(ValueError, match="float64"):
        topk.attention(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="4 dims"):
        topk.attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="stride 1"):
        topk.attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))
    with pytest.raises(ValueError, match="multiple"):
        topk.attention(rand(1, 2, 3, 8), k, v)
    with pytest.raises(ValueError, match="exactly one of k"):
        topk.topk_attention(q, k, v, k=2, ratio=0.5)
    with pytest.raises(ValueError, match="exactly one of k"):
        topk.topk_attention(q, k, v)
    with pytest.raises(ValueError, match="ratio"):
        topk.topk_attention(q, k, v, ratio=1.5)
    with pytest.raises(ValueError, match="kv_heads"):
        topk.select(torch.zeros(1, 2, 4, 5), k=2, share_group=True)
    with pytest.raises(ValueError, match="integers"):
        topk.sparse_attention(q, k, v, torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="seqlens_k"):
        topk.attention(q, k, v, seqlens_k=[9])
    with pytest.raises(ValueError, match="backend"):
        topk.attention(q, k, v, backend="tpu")
    with pytest.raises(ValueError, match="scale"):
        topk.attention(q, k, v, scale=-1.0)
    with pytest.raises(TypeError):
        topk.attention(q.numpy(), k, v)
    if not topk.has_cuda_backend():
        assert not topk.cuda_available()
