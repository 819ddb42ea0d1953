#!/usr/bin/env python3
"""PyTorch DistributedDataParallel baseline for `topk bench train --gpus N` (a baseline only: the
product never depends on Python).

The model is hf_engine_baselines.py's Llama (bf16 weights, SDPA attention, fused AdamW); the
global batch is the same for every world size: --batch-tokens / S sequences of length S of random
bytes, each rank taking its contiguous 1/N of them, as topk's ranks do. DDP sums the gradients in
buckets (--bucket-mb, 25 by default as in topk) overlapped with the backward. Reports rank 0's
median step after warm-up (a barrier starts each step), global tokens/s and peak memory.

  torchrun --standalone --nproc-per-node N bench/ddp_baseline.py [--S 4096]
      [--batch-tokens 32768] [--steps 10] [--warmup 3] [--compile] [--out FILE]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from transformers import LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_engine_baselines import add_model_args, median, model_config  # noqa: E402  (the same model)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--S", type=int, default=4096)
    ap.add_argument("--batch-tokens", type=int, default=32768)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bucket-mb", type=float, default=25)
    ap.add_argument("--compile", action="store_true")
    add_model_args(ap)
    args = ap.parse_args()
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    n = max(1, args.batch_tokens // args.S)
    if n % world:
        raise SystemExit(f"{n} sequences per step do not split over {world} ranks")
    per = n // world

    torch.manual_seed(0)  # the same weights on every rank (DDP also broadcasts rank 0's)
    model = LlamaForCausalLM(model_config(args, args.S)).to("cuda", torch.bfloat16)
    model.train()
    ddp = DDP(model, device_ids=[local], bucket_cap_mb=args.bucket_mb,
              gradient_as_bucket_view=True)
    step_fn = torch.compile(ddp) if args.compile else ddp
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(1)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        # The global batch on every rank, then this rank's shard of it.
        ids = torch.randint(0, 256, (n, args.S), device="cuda", generator=gen)
        ids = ids[rank * per:(rank + 1) * per]
        dist.barrier()
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
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)
    if rank == 0:
        t = median(times)
        row = dict(name="ddp_train_step", gpus=world, mode="compile" if args.compile else "eager",
                   S=args.S, seqs=n, tokens_per_step=n * args.S, median_step_ms=1e3 * t,
                   tokens_per_s=n * args.S / t, tokens_per_s_per_gpu=n * args.S / t / world,
                   peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30,
                   params=sum(p.numel() for p in model.parameters()),
                   loss_last=float(loss) / world, bucket_mb=args.bucket_mb)
        print(json.dumps(row), flush=True)
        if args.out:
            out_doc = dict(tool="bench/ddp_baseline.py", device=torch.cuda.get_device_name(0),
                           torch=torch.__version__, rows=[row])
            with open(args.out + ".tmp", "w") as f:
                json.dump(out_doc, f, indent=2)
            os.replace(args.out + ".tmp", args.out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
