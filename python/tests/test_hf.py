"""topk.hf's attention function, driven as transformers drives it (q [B, Hq, T, D], k/v
[B, Hkv, S, D], the masks of masking_utils), against the plain torch implementation. Needs no
transformers; the last tests run a tiny Llama through transformers where it is installed."""
import pytest
import torch

import topk.hf
import topk.reference as ref
from _util import cuda_ready, rand

DEVICES = ["cpu"] + (["cuda"] if cuda_ready() else [])
B, HQ, HKV, D = 2, 4, 2, 64


class Attn(torch.nn.Module):
    is_causal = True
    num_key_value_groups = HQ // HKV

    def __init__(self):
        super().__init__()
        self.eval()  # inference unless a test trains


def hf_inputs(T, S, device, seed=0):
    q = rand(B, HQ, T, D, device=device, seed=seed + 1)
    k = rand(B, HKV, S, D, device=device, seed=seed + 2)
    v = rand(B, HKV, S, D, device=device, seed=seed + 3)
    return q, k, v


def t(x):  # HF [B, H, T, D] -> topk [B, T, H, D]
    return x.transpose(1, 2)


def close(a, b, atol=2e-4):
    torch.testing.assert_close(a.double().cpu(), b.double().cpu(), atol=atol, rtol=atol)


def causal_mask(B, T, S, q_off, lo=None, hi=None, device="cpu"):
    """masking_utils' causal boolean mask [B, 1, T, S]: key j is seen by query row t when
    j <= q_off + t and lo[b] <= j <= hi[b] (left / right padding)."""
    j = torch.arange(S)
    tt = torch.arange(T)
    m = (j[None, :] <= (q_off + tt)[:, None])[None].expand(B, T, S).clone()
    for b in range(B):
        if lo is not None:
            m[b, :, :lo[b]] = False
        if hi is not None:
            m[b, :, hi[b] + 1:] = False
    return m[:, None].to(device)


@pytest.fixture(autouse=True)
def default_config():
    with topk.hf.using(k=None, ratio=None, prefill="full", decode="topk", train="full"):
        yield


@pytest.mark.parametrize("device", DEVICES)
def test_no_mask_prefill_and_decode(device):
    q, k, v = hf_inputs(6, 6, device)
    o, w = topk.hf.attention_forward(Attn(), q, k, v, None, scaling=0.25)
    assert w is None and o.shape == (B, 6, HQ, D) and o.is_contiguous()
    close(o, ref.attention(t(q), t(k), t(v), causal=True, scale=0.25)[0])
    q1 = q[:, :, -1:]
    o1, _ = topk.hf.attention_forward(Attn(), q1, k, v, None)
    close(o1, ref.attention(t(q1), t(k), t(v), causal=True)[0])


@pytest.mark.parametrize("device", DEVICES)
def test_topk_in_decode_only(device):
    q, k, v = hf_inputs(9, 9, device, seed=10)
    with topk.hf.using(k=3):
        pre, _ = topk.hf.attention_forward(Attn(), q, k, v, None)
        dec, _ = topk.hf.attention_forward(Attn(), q[:, :, -1:], k, v, None)
    close(pre, ref.attention(t(q), t(k), t(v), causal=True)[0])
    close(dec, ref.topk_attention(t(q[:, :, -1:]), t(k), t(v), 3)[0])
    with topk.hf.using(ratio=0.5, share_group=True, prefill="topk"):
        pre, _ = topk.hf.attention_forward(Attn(), q, k, v, None)
    close(pre, ref.topk_attention(t(q), t(k), t(v), ratio=0.5, share_group=True)[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("budget", [None, 2])
def test_left_padding(device, budget):
    """Batched generation: sequence 0 has 2 pad tokens on the left."""
    pad = [2, 0]
    q, k, v = hf_inputs(6, 6, device, seed=20)
    with topk.hf.using(k=budget, prefill="topk" if budget else "full"):
        o, _ = topk.hf.attention_forward(Attn(), q, k, v, causal_mask(B, 6, 6, 0, lo=pad))
        # a decode step: the 7th token of each row
        q1, k1, v1 = hf_inputs(1, 7, device, seed=21)
        o1, _ = topk.hf.attention_forward(Attn(), q1, k1, v1, causal_mask(B, 1, 7, 6, lo=pad))
    for b in range(B):
        p = pad[b]
        qs, ks, vs = t(q)[b:b + 1, p:], t(k)[b:b + 1, p:], t(v)[b:b + 1, p:]
        want = (ref.topk_attention(qs, ks, vs, budget)[0] if budget
                else ref.attention(qs, ks, vs, causal=True)[0])
        close(o[b:b + 1, p:], want)
        assert torch.all(o[b, :p] == 0)
        qs, ks, vs = t(q1)[b:b + 1], t(k1)[b:b + 1, p:], t(v1)[b:b + 1, p:]
        want = (ref.topk_attention(qs, ks, vs, budget)[0] if budget
                else ref.attention(qs, ks, vs, causal=True)[0])
        close(o1[b:b + 1], want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("budget", [None, 2])
def test_right_padding_and_static_cache(device, budget):
    lens = [6, 4]
    q, k, v = hf_inputs(6, 6, device, seed=30)

    def want(q, k, v):
        return (ref.topk_attention(q, k, v, budget)[0] if budget
                else ref.attention(q, k, v, causal=True)[0])

    with topk.hf.using(k=budget, prefill="topk" if budget else "full"):
        o, _ = topk.hf.attention_forward(Attn(), q, k, v,
                                         causal_mask(B, 6, 6, 0, hi=[5, 3], device=device))
        # A static cache of 10 slots holding 6 tokens; the query is the 6th.
        q1, k1, v1 = hf_inputs(1, 10, device, seed=31)
        m = causal_mask(B, 1, 10, 5, device=device)  # masks live on the model's device
        o1, _ = topk.hf.attention_forward(Attn(), q1, k1, v1, m)
        # The eager (additive) form of the same mask gives the same result.
        add = torch.zeros(m.shape, device=device).masked_fill(~m, torch.finfo(torch.float32).min)
        o2, _ = topk.hf.attention_forward(Attn(), q1, k1, v1, add)
    close(o2, o1, atol=0)
    for b in range(B):
        n = lens[b]
        close(o[b:b + 1, :n], want(t(q)[b:b + 1, :n], t(k)[b:b + 1, :n], t(v)[b:b + 1, :n]))
        assert torch.all(o[b, n:] == 0)
    close(o1, want(t(q1), t(k1)[:, :6], t(v1)[:, :6]))


def test_unsupported_masks_and_options_raise():
    q, k, v = hf_inputs(6, 6, "cpu")
    window = causal_mask(B, 6, 6, 0) & ~causal_mask(B, 6, 6, -3)  # a sliding window of 3
    with pytest.raises(ValueError, match="not causal"):
        topk.hf.attention_forward(Attn(), q, k, v, window)
    with pytest.raises(ValueError, match="dropout"):
        topk.hf.attention_forward(Attn(), q, k, v, None, dropout=0.1)
    with pytest.raises(ValueError, match="sliding_window"):
        topk.hf.attention_forward(Attn(), q, k, v, None, sliding_window=4)
    bias = torch.zeros(B, 1, 6, 6).masked_fill(~causal_mask(B, 6, 6, 0), -1e30)
    bias[0, 0, 5, 0] = 0.5
    with pytest.raises(ValueError, match="biases"):
        topk.hf.attention_forward(Attn(), q, k, v, bias)
    with pytest.raises(ValueError, match="k or ratio"):
        topk.hf.configure(k=4, ratio=0.5)
    with pytest.raises(ValueError, match="decode"):
        topk.hf.configure(decode="sparse")
    with pytest.raises(TypeError):
        topk.hf.configure(budget=3)


@pytest.mark.parametrize("device", DEVICES)
def test_native_topk_training(device):
    """In training with train="topk", the layer runs top-k attention and its backward is the
    sparse backward over the chosen keys."""
    q, k, v = hf_inputs(8, 8, device, seed=40)
    w = rand(B, 8, HQ, D, device=device, seed=41).double()
    m = Attn().train()
    grads = []
    for fn in (lambda q, k, v: topk.hf.attention_forward(m, q, k, v, None)[0],
               lambda q, k, v: ref.topk_attention(t(q), t(k), t(v), 3)[0]):
        qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
        with topk.hf.using(k=3, train="topk"):
            (fn(qq, kk, vv).double() * w).sum().backward()
        grads.append((qq.grad, kk.grad, vv.grad))
    for a, b in zip(*grads):
        close(a, b)


# --------------------------------------------------------------------------------------------
# Through transformers (where installed)


def tiny_llama(device, seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=256, intermediate_size=256,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128)
    model = transformers.LlamaForCausalLM(cfg).to(device).eval()  # head dim 64
    return model


def set_impl(model, name):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


@pytest.mark.parametrize("device", DEVICES)
def test_llama_matches_sdpa(device):
    model = tiny_llama(device)
    topk.hf.register()
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1)).to(device)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    outs = {}
    for impl in ("sdpa", "topk"):
        set_impl(model, impl)
        with torch.no_grad():
            outs[impl] = model(input_ids=ids, attention_mask=mask).logits
    close(outs["topk"][0, 3:], outs["sdpa"][0, 3:], atol=1e-4)
    close(outs["topk"][1], outs["sdpa"][1], atol=1e-4)
    with torch.no_grad():
        g1 = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        set_impl(model, "sdpa")
        g2 = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(g1, g2)
