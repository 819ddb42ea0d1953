#!/usr/bin/env python3
"""PyTorch baselines for `topk bench cuda`, on the same shapes (a baseline only: the product
never depends on Python). Writes JSON like the C++ benchmark: CUDA events, warm-up, median.

  python3 bench/torch_baselines.py [--out FILE] [--reps N] [--quick]
                                   [--only decode,topk,fwdbwd[,fwdbwd_long]]

fwdbwd: causal SDPA (flash and cuDNN backends) forward + backward over B x S = 131072 tokens, Hq = 32,
D = 128, bf16, K and V given as 32 heads (the flash kernel's own layout; the FLOPs do not
depend on the KV heads), beside `topk bench cuda`'s fwdbwd_* cases; fwdbwd_long adds S = 128K
(`topk bench cuda --only fwdbwd_dense_S131072,fwdbwd_topk_r0.01_S131072` on our side).
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F


def time_us(fn, reps, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) * 1e3 for a, b in ev)
    return t[len(t) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="decode,topk,fwdbwd", help="groups of cases to run")
    args = ap.parse_args()
    groups = set(args.only.split(","))
    dev = torch.device("cuda")
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)

    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=dev).fill_(1)
    b = torch.empty_like(a)
    copy_gbps = 2 * n / (time_us(lambda: b.copy_(a), args.reps) * 1e3)
    del a, b

    cases = []
    Hq, Hkv, K = 32, 8, 2048
    G = Hq // Hkv
    # (B, S, D), as `topk bench cuda`: a head dim of 256 is tagged _D256.
    shapes = [(8, 131072, 128), (1, 32768, 128), (1, 131072, 128), (8, 65536, 256)]
    if args.quick:
        shapes = [(1, 32768, 128)]
    for B, S, D in shapes if "decode" in groups else []:
        # Torch's preferred layout: [B, H, S, D].
        q = torch.randn(B, Hq, 1, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, Hkv, S, D, device=dev, dtype=torch.bfloat16)
        kv_bytes = B * S * Hkv * D * 2
        tag = f"B{B}_S{S}" + (f"_D{D}" if D != 128 else "")
        with torch.no_grad():
            us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), args.reps)
            cases.append(dict(name=f"sdpa_decode_{tag}", op="sdpa_decode", B=B, S=S, time_us=us,
                              bytes=2 * kv_bytes, gbps=2 * kv_bytes / (us * 1e3)))
            scale = 1.0 / math.sqrt(D)

            def naive():
                qg = q.view(B, Hkv, G, D)
                s = torch.einsum("bhgd,bhsd->bhgs", qg, k).float() * scale  # [B, Hkv, G, S]
                top = s.topk(K, dim=-1)
                p = torch.softmax(top.values, dim=-1)
                idx = top.indices.reshape(B, Hkv, G * K, 1).expand(-1, -1, -1, D)
                vs = torch.gather(v, 2, idx).view(B, Hkv, G, K, D)
                return torch.einsum("bhgk,bhgkd->bhgd", p.to(v.dtype), vs)

            us = time_us(naive, args.reps)
            cases.append(dict(name=f"naive_topk_decode_{tag}", op="naive_topk_decode", B=B, S=S,
                              time_us=us, bytes=kv_bytes, gbps=kv_bytes / (us * 1e3)))
        del q, k, v
        torch.cuda.empty_cache()

    if not args.quick and "topk" in groups:
        x = torch.randn(256, 131072, device=dev, dtype=torch.float32)
        us = time_us(lambda: torch.topk(x, K, dim=-1), args.reps)
        cases.append(dict(name="torch_topk_256x131072", op="torch_topk", B=1, S=131072,
                          time_us=us, bytes=x.numel() * 4, gbps=x.numel() * 4 / (us * 1e3)))

    train = []
    if "fwdbwd" in groups:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        lengths = [8192] if args.quick else [8192, 32768]
        D = 128
        for S in lengths + ([131072] if "fwdbwd_long" in groups else []):
            B = 131072 // S
            q, k, v = (torch.randn(B, Hq, S, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            do = torch.randn_like(q)

            def step():
                q.grad = k.grad = v.grad = None
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(do)

            flops = 14.0 * Hq * D * B * S * (S + 1) / 2
            # Both of torch's fast backends, flash (FlashAttention-2) and cuDNN: the targets
            # compare against whichever is faster on this GPU.
            for tag, backend in (("sdpa", SDPBackend.FLASH_ATTENTION),
                                 ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
                try:
                    with sdpa_kernel(backend):
                        with torch.no_grad():
                            fwd = time_us(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                          min(args.reps, 5), warmup=2)
                        us = time_us(step, min(args.reps, 5), warmup=2)
                except RuntimeError as e:  # a backend this build or GPU lacks
                    print(f"{tag} fwdbwd S={S}: not available ({str(e).splitlines()[0]})", file=sys.stderr)
                    continue
                train.append(dict(name=f"{tag}_fwdbwd_S{S}", op=f"{tag}_fwdbwd", B=B, S=S, time_us=us,
                                  fwd_us=fwd, flops=flops, tflops=flops / (us * 1e6)))
            del q, k, v, do
            torch.cuda.empty_cache()

    out = dict(tool="bench/torch_baselines.py", device=props.name, torch=torch.__version__,
               copy_gbps=copy_gbps, reps=args.reps, cases=cases, train=train)
    text = json.dumps(out, indent=2)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        import os
        os.replace(args.out + ".tmp", args.out)
    print(text)


if __name__ == "__main__":
    main()
