#!/usr/bin/env python3
"""GPU checks of the Python package (python/): run on a machine with a GPU, torch and
transformers, from the repository root, after the CMake build (build/topk and
build/python/libtopk_capi.so with the CUDA backend):

    python3 tools/python_gpu_check.py --build build

1. pytest python/tests: every op on CUDA tensors against the plain torch implementation
   (forward, gradients, selection), the Hugging Face attention function, and a tiny Llama
   through transformers on CPU and CUDA;
2. streams: topk's ops on a non-default torch stream read what that stream wrote just before
   (a GPU sleep, then a copy, then the op) and match the default stream's result;
3. Hugging Face: tiny random Llama and Qwen2 models (built here, float32) with
   attn_implementation="topk" (full attention) against "sdpa": logits, greedy generation for
   one prompt and for a left-padded batch, and the gradients of a training step under native
   top-k training with k >= S (which is full attention, so they must match sdpa's);
4. against topk's own engine: the same checkpoint saved to a folder, greedy generation with
   full prefill and exact top-k decoding (topk.hf.register(k=K) on CUDA and on CPU) must give
   the tokens of `build/topk generate --ids ... --attention topk:k=K --device cpu`.

When `import topk` fails, the package is first built into OUT/topk-py with pip (using
BUILD/python/libtopk_capi.so when present). Prints a summary; exits 1 when a check fails.
Options: --out DIR (default $OUT or ./out), --topk BIN (default BUILD/topk), --k K (default 8),
--skip-pytest.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_package(args):
    try:
        import topk  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("TOPK_GPU_CHECK_REEXEC"):
        raise SystemExit("python_gpu_check: the topk package still does not import")
    site = os.path.join(os.path.abspath(args.out), "topk-py")
    env = dict(os.environ)
    lib = os.path.join(os.path.abspath(args.build), "python", "libtopk_capi.so")
    if os.path.exists(lib):
        env["TOPK_CAPI_LIB"] = lib
    print(f"building the topk package into {site}" + (f" with {lib}" if "TOPK_CAPI_LIB" in env else
                                                       " (CMake builds libtopk_capi.so)"), flush=True)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation",
                           "--no-deps", "--no-index", "--upgrade", "--target", site,
                           os.path.join(ROOT, "python")], env=env)
    env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    env["TOPK_GPU_CHECK_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


RESULTS = []


def check(name):
    def wrap(fn):
        def run(*a, **kw):
            t0 = time.time()
            try:
                detail = fn(*a, **kw) or ""
                status = "PASS"
            except SkipCheck as e:
                status, detail = "SKIP", str(e)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                status, detail = "FAIL", f"{type(e).__name__}: {e}"
            RESULTS.append((name, status, f"{detail} ({time.time() - t0:.1f} s)"))
            print(f"== {name}: {status} {detail}", flush=True)
        return run
    return wrap


class SkipCheck(Exception):
    pass


# ---------------------------------------------------------------------------------------------


@check("pytest python/tests (CPU and CUDA)")
def run_pytest():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(ROOT, "python", "tests")], capture_output=True, text=True)
    print(r.stdout[-6000:], r.stderr[-3000:])
    last = (r.stdout.strip().splitlines() or ["?"])[-1]
    assert r.returncode == 0, last
    return last


@check("streams: ops run on torch's current stream")
def stream_check():
    import torch
    import topk
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    B, T, S, Hq, Hkv, D = 4, 64, 4096, 8, 2, 128
    src = [torch.randn(x, generator=g, device=dev) for x in
           ((B, T, Hq, D), (B, S, Hkv, D), (B, S, Hkv, D))]
    want_o, _ = topk.attention(*src, causal=True)
    want_t = topk.topk_attention(*src, k=64)
    s = torch.cuda.Stream()  # a non-blocking stream: the legacy stream does not wait for it
    bufs = [torch.zeros_like(x) for x in src]
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        # Warm up on s first: topk waits for the device when the stream changes and when a
        # workspace grows, which would hide a launch on the wrong stream below.
        topk.attention(*bufs, causal=True)
        warm = [x.clone().requires_grad_(True) for x in bufs]
        topk.topk_attention(*warm, k=64).sum().backward()
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time on s before the inputs exist
        for b, x in zip(bufs, src):
            b.copy_(x)
        o, _ = topk.attention(*bufs, causal=True)
        t = topk.topk_attention(*bufs, k=64)
        bufs2 = [x.clone().requires_grad_(True) for x in bufs]
        topk.topk_attention(*bufs2, k=64).sum().backward()
    s.synchronize()
    d1 = (o - want_o).abs().max().item()
    d2 = (t - want_t).abs().max().item()
    assert d1 == 0 and d2 == 0, f"results on a side stream differ: {d1}, {d2}"
    assert all(torch.isfinite(x.grad).all() for x in bufs2)
    return "side stream = default stream, bit for bit"


# ---------------------------------------------------------------------------------------------
# Tiny Hugging Face models

V, HIDDEN, INTER, LAYERS, HEADS, KV = 300, 256, 256, 2, 4, 2
BOS, EOS, PAD = 256, 299, 258


def make_model(kind, seed):
    import torch
    import transformers
    torch.manual_seed(seed)
    base = dict(vocab_size=V, hidden_size=HIDDEN, intermediate_size=INTER,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV,
                max_position_embeddings=512, bos_token_id=BOS, eos_token_id=EOS,
                pad_token_id=PAD, tie_word_embeddings=False)
    if kind == "llama":
        cfg, cls = transformers.LlamaConfig(**base), transformers.LlamaForCausalLM
    else:
        cfg, cls = transformers.Qwen2Config(**base), transformers.Qwen2ForCausalLM
    model = cls(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g) / (HIDDEN / 64) ** 0.5)
        model.lm_head.weight.mul_(6.0)  # decisive logits: greedy choices far from ties
    return model


def set_impl(model, name):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


def prompt(n, seed, batch=1):
    import torch
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (batch, n), generator=g)
    ids[:, 0] = BOS
    return ids


def greedy(model, ids, mask, n):
    import torch
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                             eos_token_id=EOS, pad_token_id=PAD)
    return out[:, ids.shape[1]:].cpu()


def until_eos(row):
    out = []
    for t in row.tolist():
        if t == EOS:
            break
        out.append(t)
    return out


@check("HF: attn_implementation='topk' (full) vs 'sdpa': logits and greedy tokens")
def hf_vs_sdpa(kind, device):
    import torch
    import topk.hf
    topk.hf.register()  # no budget: full attention everywhere
    model = make_model(kind, 1).to(device)
    ids = prompt(48, 2, batch=2).to(device)
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # left padding of the second row
    ids[1, :7] = PAD
    res = {}
    for impl in ("sdpa", "topk"):
        set_impl(model, impl)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        res[impl] = (logits, greedy(model, ids[:1], None, 24), greedy(model, ids, mask, 24))
    top = res["sdpa"][0].abs().max().item()
    d0 = (res["topk"][0][0] - res["sdpa"][0][0]).abs().max().item() / top
    d1 = (res["topk"][0][1, 7:] - res["sdpa"][0][1, 7:]).abs().max().item() / top
    assert d0 < 1e-4 and d1 < 1e-4, f"logits differ by {d0:.2e} / {d1:.2e} of their max {top:.1f}"
    assert torch.equal(res["topk"][1], res["sdpa"][1]), \
        f"tokens differ:\n{res['topk'][1].tolist()}\n{res['sdpa'][1].tolist()}"
    assert torch.equal(res["topk"][2], res["sdpa"][2]), \
        f"batched tokens differ:\n{res['topk'][2].tolist()}\n{res['sdpa'][2].tolist()}"
    return f"{kind}/{device}: max |logit diff| / max |logit| {max(d0, d1):.1e}, 24 + 2x24 tokens equal"


@check("HF: native top-k training (train='topk', k >= S) vs sdpa gradients")
def hf_training(kind, device):
    import torch
    import topk.hf
    model = make_model(kind, 3).to(device).train()
    ids = prompt(40, 4, batch=2).to(device)
    grads = {}
    for impl, opts in (("sdpa", {}), ("topk", dict(k=64, train="topk"))):
        set_impl(model, impl)
        model.zero_grad()
        with topk.hf.using(**opts):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        grads[impl] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    worst = max(((grads["topk"][n] - g).abs().max() / (g.abs().max() + 1e-12)).item()
                for n, g in grads["sdpa"].items())
    assert worst < 1e-3, f"relative gradient difference {worst:.2e}"
    with topk.hf.using(k=4, train="topk"):  # a real top-k training step runs and is finite
        set_impl(model, "topk")
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    return f"{kind}/{device}: max relative gradient difference {worst:.1e}"


@check("HF top-k decoding vs topk's engine (build/topk generate)")
def hf_vs_engine(kind, topk_bin, k, workdir):
    import torch
    import topk.hf
    if not topk_bin or not os.path.exists(topk_bin):
        raise SkipCheck(f"no engine binary ({topk_bin}); pass --topk build/topk")
    model = make_model(kind, 5)
    d = os.path.join(workdir, f"hf_{kind}")
    model.save_pretrained(d, safe_serialization=True)
    ids = prompt(40, 6)
    n = 32
    eng = {}
    for policy in ("full", f"topk:k={k}"):
        r = subprocess.run([topk_bin, "generate", "--model", d, "--ids",
                            ",".join(map(str, ids[0].tolist())), "--attention", policy,
                            "--max-new", str(n), "--device", "cpu"],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"topk generate failed: {r.stderr[-2000:]}"
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        eng[policy] = [int(x) for x in line.split(",") if x.strip()]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    topk.hf.register()
    notes = []
    for dev in devices:
        m = model.to(dev)
        set_impl(m, "topk")
        for policy, opts in (("full", dict(k=None, ratio=None)), (f"topk:k={k}", dict(k=k))):
            with topk.hf.using(**opts):
                hf = until_eos(greedy(m, ids.to(dev), None, n)[0])
            assert hf == eng[policy], f"{dev} {policy}: HF {hf}\n engine {eng[policy]}"
            notes.append(f"{dev} {policy} {len(hf)} tokens")
    full_vs_topk = eng["full"] != eng[f"topk:k={k}"]
    return (f"{kind}: " + ", ".join(notes) +
            ("; top-k changed the continuation" if full_vs_topk else
             "; (top-k and full gave the same tokens here)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--topk", default=None)
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--skip-pytest", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ensure_package(args)
    import torch
    import topk
    print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
          f"topk cuda {topk.cuda_available()}", flush=True)
    try:
        import transformers
        print(f"transformers {transformers.__version__}", flush=True)
        have_hf = True
    except ImportError:
        have_hf = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if not args.skip_pytest:
        run_pytest()
    gpu = torch.cuda.is_available() and topk.cuda_available()
    if gpu:
        stream_check()
    else:
        RESULTS.append(("streams", "SKIP", "no GPU or no CUDA backend in topk"))
    if have_hf:
        for kind in ("llama", "qwen2"):
            for dev in ["cpu"] + (["cuda"] if gpu else []):
                hf_vs_sdpa(kind, dev)
            hf_training(kind, "cuda" if gpu else "cpu")
            topk_bin = args.topk or os.path.join(args.build, "topk")
            with tempfile.TemporaryDirectory(dir=args.out) as wd:
                hf_vs_engine(kind, topk_bin, args.k, wd)
    else:
        RESULTS.append(("Hugging Face checks", "SKIP", "transformers is not installed"))
    print("\nsummary")
    for name, status, detail in RESULTS:
        print(f"  {status:4s}  {name}: {detail}")
    with open(os.path.join(args.out, "python_gpu_check.txt"), "w") as f:
        for name, status, detail in RESULTS:
            f.write(f"{status}\t{name}\t{detail}\n")
    passed = sum(s == "PASS" for _, s, _ in RESULTS)
    failed = sum(s == "FAIL" for _, s, _ in RESULTS)
    skipped = sum(s == "SKIP" for _, s, _ in RESULTS)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
