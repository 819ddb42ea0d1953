#!/usr/bin/env python3
"""Checks that a checkpoint folder written by topk loads in Hugging Face transformers and gives
the same logits as topk.

Run where torch, transformers and safetensors are installed:

    python3 tools/hf_check_export.py MODEL_DIR GOLDEN.safetensors [--atol 1e-4]

MODEL_DIR holds config.json and model.safetensors. GOLDEN.safetensors holds input_ids
(I32 [B, T]) and logits (F32 [B, T, V]) computed by topk (`topk_tests` writes one with
TOPK_EXPORT_DIR set). Exits 1 when the largest difference exceeds atol.
"""
import argparse
import sys

import torch
import transformers
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("golden")
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        a.model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    g = load_file(a.golden)
    ids = g["input_ids"].long()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    want = g["logits"].float()
    if logits.shape != want.shape:
        print("shape mismatch: transformers %s, topk %s" % (tuple(logits.shape), tuple(want.shape)))
        return 1
    diff = (logits - want).abs().max().item()
    print("%s: %s max abs diff %.3g (logits absmax %.3g)" %
          (a.model_dir, type(model).__name__, diff, want.abs().max().item()))
    return 0 if diff <= a.atol else 1


if __name__ == "__main__":
    sys.exit(main())
