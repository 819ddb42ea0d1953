#!/usr/bin/env python3
"""Hugging Face transformers baselines for the engine benchmarks (`topk bench train --device
cuda` and `topk bench generate`), on the same Llama-shaped model (a baseline only: the product
never depends on Python).

Training: bf16 weights, SDPA attention, fused AdamW, packed batches of --batch-tokens random
tokens (batch-tokens / S sequences of length S); eager and torch.compile. Reports the median
step over --steps after warm-up, tokens/s and peak memory.
Generation: bf16, SDPA, a KV cache (DynamicCache) filled by a chunked prefill of random tokens,
then one token per sequence per step, as `generate` does after its prefill; median step time.

  python3 bench/hf_engine_baselines.py [--out FILE] [--train-S 4096,16384] [--gen-S 32768,131072]
                                       [--gen-B 1,8] [--no-compile] [--steps N]
"""
import argparse
import json
import os
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def model_config(args, max_pos):
    return LlamaConfig(vocab_size=args.vocab, hidden_size=args.d_model,
                       intermediate_size=args.ffn, num_hidden_layers=args.layers,
                       num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                       head_dim=args.d_model // args.heads, max_position_embeddings=max_pos,
                       tie_word_embeddings=False, attn_implementation="sdpa")


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def bench_train(args, S, compiled):
    torch.manual_seed(0)
    model = LlamaForCausalLM(model_config(args, S)).to("cuda", torch.bfloat16)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    n = max(1, args.batch_tokens // S)
    step_fn = model
    if compiled:
        step_fn = torch.compile(model)
    gen = torch.Generator(device="cuda").manual_seed(1)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        ids = torch.randint(0, 256, (n, S), device="cuda", generator=gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = step_fn(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    t = median(times)
    row = dict(name="hf_train_step", mode="compile" if compiled else "eager", S=S, seqs=n,
               tokens_per_step=n * S, median_step_ms=1e3 * t, tokens_per_s=n * S / t,
               peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30, params=params,
               loss_last=float(out.loss))
    del model, opt, step_fn, out
    torch.cuda.empty_cache()
    return row


@torch.no_grad()
def bench_generate(args, B, S):
    torch.manual_seed(0)
    cap = S + args.warmup + args.steps + 1
    model = LlamaForCausalLM(model_config(args, cap)).to("cuda", torch.bfloat16).eval()
    from transformers import DynamicCache
    cache = DynamicCache()
    gen = torch.Generator(device="cuda").manual_seed(2)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for at in range(0, S, args.chunk):
        n = min(args.chunk, S - at)
        ids = torch.randint(0, args.vocab, (B, n), device="cuda", generator=gen)
        pos = torch.arange(at, at + n, device="cuda")
        model(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=pos,
              logits_to_keep=1)
    torch.cuda.synchronize()
    prefill_s = time.perf_counter() - t0
    times = []
    for i in range(args.warmup + args.steps):
        ids = torch.randint(0, args.vocab, (B, 1), device="cuda", generator=gen)
        pos = torch.tensor([S + i], device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=pos)
        out.logits[:, -1].argmax(-1).cpu()  # the token goes back to the host, as in generate
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    t = median(times)
    row = dict(name="hf_decode_step", B=B, S=S, median_step_ms=1e3 * t, tokens_per_s=B / t,
               prefill_s=prefill_s, peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
    del model, cache
    torch.cuda.empty_cache()
    return row


def ints(s):
    return [int(x) for x in s.split(",") if x]


def add_model_args(ap):
    """The GPU engine's benchmark model (topk bench train|generate defaults), shared with
    ddp_baseline.py."""
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--train-S", type=ints, default=[4096, 16384])
    ap.add_argument("--gen-S", type=ints, default=[32768, 131072])
    ap.add_argument("--gen-B", type=ints, default=[1, 8])
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--no-compile", action="store_true")
    add_model_args(ap)
    args = ap.parse_args()
    import transformers
    rows = []
    for S in args.train_S:
        for compiled in ([False] if args.no_compile else [False, True]):
            rows.append(bench_train(args, S, compiled))
            print(json.dumps(rows[-1]), flush=True)
    for B in args.gen_B:
        for S in args.gen_S:
            rows.append(bench_generate(args, B, S))
            print(json.dumps(rows[-1]), flush=True)
    out = dict(tool="bench/hf_engine_baselines.py", device=torch.cuda.get_device_name(0),
               torch=torch.__version__, transformers=transformers.__version__, rows=rows)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
