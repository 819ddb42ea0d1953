#!/usr/bin/env python3
"""Golden fixtures from Hugging Face transformers for topk's model tests.

Run where torch, transformers and safetensors are installed:

    python3 tools/hf_make_fixtures.py OUT_DIR

It builds tiny random LlamaForCausalLM (untied head, llama3 rope scaling),
Qwen2ForCausalLM (q/k/v biases) and Qwen3ForCausalLM (q/k norms, tied head) models with head
dim 64 and weights that bf16 holds exactly, computes their logits in fp32, saves them in bf16,
and writes for each OUT_DIR/hf_tiny_<name>/{config.json, model.safetensors, golden.safetensors}.
golden.safetensors holds input_ids (I32 [B, T]) and logits (F32 [B, T, V]) from the eager
attention path. OUT_DIR/fixtures.tar packs the three folders. Copy them to tests/data/.
"""
import inspect
import os
import sys
import tarfile

import torch
import transformers
from safetensors.torch import save_file

# Head dim 64: the CUDA attention kernels are built for head dims 64 and 128, and the engine's
# GPU tests run on these fixtures too.
V, HIDDEN, INTER, LAYERS, HEADS, KV, HD = 300, 256, 256, 2, 4, 2, 64
BOS, EOS, PAD = 256, 257, 258
B, T = 2, 12


def make_config(cls, theta, scaling, **kw):
    base = dict(vocab_size=V, hidden_size=HIDDEN, intermediate_size=INTER,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV,
                max_position_embeddings=128, bos_token_id=BOS, eos_token_id=EOS,
                pad_token_id=PAD, **kw)
    if "head_dim" in inspect.signature(cls.__init__).parameters:
        base["head_dim"] = HD
    if "rope_parameters" in inspect.signature(cls.__init__).parameters:
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp = dict(scaling, rope_theta=theta)
        cfg = cls(rope_parameters=rp, **base)
    else:
        cfg = cls(rope_theta=theta, rope_scaling=scaling, **base)
    return cfg


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g) / (HIDDEN / 64) ** 0.5)
            # Values a bf16 file holds exactly: the fixture is stored in bf16 (half the size)
            # and its golden logits are those of these very weights, computed in fp32.
            p.copy_(p.bfloat16().float())


def build(out, name, cls, model_cls, theta, scaling, seed, **kw):
    torch.manual_seed(seed)
    cfg = make_config(cls, theta, scaling, **kw)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).float().eval()
    randomize(model, seed)
    d = os.path.join(out, "hf_tiny_" + name)
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, 256, (B, T), generator=g)
    ids[:, 0] = BOS
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": logits.contiguous()},
              os.path.join(d, "golden.safetensors"))
    print(name, "logits", tuple(logits.shape), "absmax %.4f" % logits.abs().max().item())
    return d


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    os.makedirs(out, exist_ok=True)
    print("torch", torch.__version__, "transformers", transformers.__version__)
    llama3 = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    dirs = [
        build(out, "llama", transformers.LlamaConfig, transformers.LlamaForCausalLM,
              10000.0, llama3, 1, tie_word_embeddings=False, rms_norm_eps=1e-5),
        build(out, "qwen2", transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              10000.0, None, 2, tie_word_embeddings=False, rms_norm_eps=1e-6),
        build(out, "qwen3", transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              1000000.0, None, 3, tie_word_embeddings=True, rms_norm_eps=1e-6),
    ]
    with tarfile.open(os.path.join(out, "fixtures.tar"), "w") as tar:
        for d in dirs:
            tar.add(d, arcname=os.path.basename(d))
    for d in dirs:
        print(open(os.path.join(d, "config.json")).read())


if __name__ == "__main__":
    main()
