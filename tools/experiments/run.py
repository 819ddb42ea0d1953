#!/usr/bin/env python3
"""The report's four findings on models topk trains: one command per study, at any scale.

    tools/experiments/run.sh STUDY [--scale cpu|gpu|demo|demo-base] [--config FILE] [--out DIR]
                               [--gpus N] [--time-limit SEC] [--dry-run] [--tables-only]

STUDY is one of
    models     train what the studies need (base models, then full and top-k SFT from them)
    rho        finding 1: exact top-k decoding vs full attention over rho and fixed k
    sft        finding 2: native top-k SFT vs full SFT from the same base, same data and steps,
               under full prefill + top-k decode (the report's protocol) and top-k prefill
    precision  finding 3: accuracy vs retrieval precision p (oracle selector at a fixed W)
    entropy    finding 4: attention entropy per layer and head (H / ln n) of base, full-SFT and
               top-k-SFT models on the same prompts
    adapt      beyond the report: entropy-adaptive per-head budgets vs a uniform budget
    cost       the expected GPU time of the scale's training runs (no run)
    all        models, then every study

The scale is a config file (tools/experiments/SCALE.json) naming the run files of examples/, the
seeds, the tasks and lengths, the policies. Each study trains what it needs (a finished run is
reused: `topk train` resumes), runs `topk eval`, and writes results/STUDY/SCALE/: table.md
(the numbers, the commands, the hardware and the time), *.csv and *.png (gnuplot). Every eval
folder keeps topk eval's own results.json/csv, layers.csv and command.txt.

A scale's base is trained from "run" (after "stage1", when given), or is a model folder that
is given ("folder": a shipped or downloaded model; nothing trains it). --tables-only trains and
evaluates nothing: it remakes the tables and plots from the evaluation folders already under
--out, e.g. on another machine than the one that ran them.

On CUDA every GPU of the machine is used (--gpus N for fewer): each evaluation holds one (an
evaluation of several lengths runs as one job per length, merged when all are done), the
training runs of one stage share them out (data-parallel, `topk train --gpus`), and `all`
evaluates every study's models in one pool before it writes the pages. --time-limit SEC returns
within SEC seconds (training stops at a step with a checkpoint, evaluations still running are
stopped and redone next time) with exit status 75 when work is left; the same command again
continues, so a long scale runs in pieces on a machine lent for minutes at a time.

Python 3 standard library only; gnuplot for the plots (skipped with a note when absent).
"""
import argparse
import concurrent.futures as cf
import csv
import datetime
import glob
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STUDIES = ["rho", "sft", "precision", "entropy", "adapt"]


# ---------------------------------------------------------------------------------------------
# running commands


class OutOfTime(Exception):
    """The invocation's --time-limit came before everything was done; what finished is kept."""


def visible_gpus():
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [x for x in env.split(",") if x.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        return [str(i) for i, l in enumerate(out.splitlines()) if l.startswith("GPU ")]
    except (OSError, subprocess.SubprocessError):
        return []


class Runner:
    def __init__(self, cfg, args):
        self.cfg = cfg
        self.topk = args.topk
        self.dry = args.dry_run
        self.device = args.device or cfg.get("device", "cpu")
        self.jobs = args.jobs or cfg.get("jobs", 1)
        self.threads = cfg.get("threads", 0)
        self.tables_only = args.tables_only
        self.log = []  # (what, command, seconds, cached)
        # On CUDA each job holds GPUs of its own (CUDA_VISIBLE_DEVICES): one for an evaluation,
        # a share of the GPUs for a training run (data-parallel). --gpus N uses N of them.
        self.gpu_ids = []
        if self.device == "cuda":
            ids = visible_gpus() or ["0"]
            n = args.gpus or cfg.get("gpus") or len(ids)
            if n > len(ids) and not self.dry and args.study != "cost":
                raise SystemExit(f"--gpus {n}: this machine shows {len(ids)} GPU(s)")
            self.gpu_ids = (ids + [str(i) for i in range(len(ids), n)])[:n]
        self.free = list(self.gpu_ids)
        self.cv = threading.Condition()
        # --time-limit: the wall-clock second by which this invocation returns. Training runs
        # stop at a step boundary with a checkpoint before it, evaluations still running then
        # are stopped (they run again, whole, next time), and nothing starts in its last minute.
        self.deadline = args.t0 + args.time_limit if args.time_limit else None
        self.late = []  # what the time limit cut short
        self.collect = None  # the pooled first pass of `all` gathers evaluations here
        self.ran = set()  # evaluation commands run by this invocation
        self.merges = []  # (folder, command line, per-length part folders) to merge when done

    def slots(self):
        return len(self.gpu_ids) if self.gpu_ids else self.jobs

    def left(self):
        return self.deadline - time.time() if self.deadline else None

    def env(self, gpus=None):
        e = dict(os.environ)
        if self.threads:
            e["OMP_NUM_THREADS"] = str(self.threads)
            e["OPENBLAS_NUM_THREADS"] = str(self.threads)
        if gpus:
            e["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return e

    def take(self, n):
        n = min(n, len(self.gpu_ids))  # never more than there are: it would wait for ever
        with self.cv:
            while len(self.free) < n:
                self.cv.wait()
            got, self.free = self.free[:n], self.free[n:]
            return got

    def give(self, got):
        with self.cv:
            back = set(self.free + got)
            self.free = [g for g in self.gpu_ids if g in back]  # lowest first, as listed
            self.cv.notify_all()

    def run(self, what, cmd, log_path, ngpu=0, timed=False):
        """Runs cmd (a list) on ngpu GPUs of its own, output to log_path; returns the wall seconds
        (None when the time limit stopped it or left it unstarted).
        timed: the command takes --stop-after-seconds (a training run), so the time limit ends
        it gently; any other command still running at the limit is stopped."""
        gpus = self.take(ngpu) if ngpu else []
        try:
            return self.run_on(what, cmd, log_path, gpus, timed)
        finally:
            if gpus:
                self.give(gpus)

    def run_on(self, what, cmd, log_path, gpus, timed):
        left = self.left()
        if left is not None and left < 60:
            print(f"[{now()}] {what}: not started, {max(left, 0):.0f} s of the time limit left", flush=True)
            self.late.append(what)
            return None
        if timed and left is not None:
            # Checkpointing and leaving take a little time after the last step.
            cmd = cmd + ["--stop-after-seconds", str(int(max(0, left - 45)))]
        line = " ".join(shlex.quote(c) for c in cmd)
        shown = (f"CUDA_VISIBLE_DEVICES={','.join(gpus)} " if gpus else "") + line
        if self.dry:
            print("[dry-run]", shown)
            self.log.append((what, line, 0.0, False))
            return 0.0
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        # A job the limit stopped before ran whole again; twice means it may never fit.
        stops_path = os.path.join(os.path.dirname(log_path), "stopped.json")
        stops = load_json(stops_path)["seconds"] if os.path.exists(stops_path) else []
        if len(stops) >= 2 and not timed:
            print(f"[{now()}] {what}: warning: stopped at the time limit {len(stops)} times after "
                  f"{', '.join(f'{x:.0f}' for x in stops)} s; it may need a longer --time-limit",
                  flush=True)
        print(f"[{now()}] {what}: {shown}", flush=True)
        t0 = time.time()
        with open(log_path, "w") as f:
            f.write(f"# {shown}\n# started {now()}\n")
            f.flush()
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env(gpus))
            try:
                # A timed run ends itself; give it a minute past the limit before stopping it.
                rc = proc.wait(None if left is None else left + (60 if timed else 0))
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                f.write(f"\n# stopped at the time limit, {now()}\n")
                print(f"[{now()}] {what}: stopped at the time limit", flush=True)
                write_json(stops_path, {"seconds": stops + [time.time() - t0]})
                self.late.append(what)
                return None
        dt = time.time() - t0
        if rc != 0:
            tail = open(log_path).read()[-2000:]
            raise SystemExit(f"{what} failed (exit {rc}); {log_path}:\n{tail}")
        if os.path.exists(stops_path):
            os.remove(stops_path)
        self.log.append((what, line, dt, False))
        print(f"[{now()}] {what}: done in {dt:.0f} s", flush=True)
        return dt

    def parallel(self, tasks):
        """tasks: list of (what, cmd, log_path[, ngpu[, timed]]); as many at a time as there are
        GPUs (each task holding its ngpu) or, on the CPU, self.jobs. Returns run's results in
        the tasks' order."""
        if self.dry or self.slots() <= 1 or len(tasks) <= 1:
            return [self.run(*t) for t in tasks]
        with cf.ThreadPoolExecutor(self.slots()) as ex:
            return [f.result() for f in [ex.submit(self.run, *t) for t in tasks]]


def now():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def hardware():
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine()}
    try:
        info["load_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if gpu.returncode == 0 and gpu.stdout.strip():
            info["gpu"] = gpu.stdout.strip().replace("\n", ", ")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            info["commit"] += " (with uncommitted changes)"
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------------------------
# models: base runs and SFT runs derived from the run files of examples/


def load_json(path):
    with open(os.path.join(ROOT, path)) as f:
        return json.load(f)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class Model:
    def __init__(self, name, kind, run, seed, base_seed=None, pre=None, folder=None):
        self.name, self.kind, self.run, self.seed, self.base_seed = name, kind, run, seed, base_seed
        self.pre = pre  # a model trained first, whose checkpoint this one starts from ("init")
        self.folder = folder  # a model folder that is given, not trained

    @property
    def out(self):
        return self.run["out"]

    @property
    def checkpoint(self):
        return self.folder or os.path.join(self.out, "checkpoint")


def base_model(cfg, seed):
    """A base model; with "stage1" in cfg["base"], trained in two stages: that run file first
    (short examples, where the retrieval heads form), then the base run file from its checkpoint.
    With "folder", the base is that model folder (a shipped or downloaded model) and trains not."""
    if cfg["base"].get("folder"):
        run = {"out": cfg["base"]["folder"], "seed": seed}
        return Model(f"base-s{seed}", "base", run, seed, folder=cfg["base"]["folder"])
    run = load_json(cfg["base"]["run"])
    run["seed"] = seed
    run["out"] = f'{cfg["runs"]}/base-s{seed}'
    pre = None
    if cfg["base"].get("stage1"):
        first = load_json(cfg["base"]["stage1"])
        first["seed"] = seed
        first["out"] = f'{cfg["runs"]}/base-s{seed}-stage1'
        pre = Model(f"base-s{seed}-stage1", "stage1", first, seed)
        run.pop("model", None)
        run["init"] = pre.checkpoint
    return Model(f"base-s{seed}", "base", run, seed, pre=pre)


def variants(cfg):
    """The SFT variants: "full" and "topk" (run files), then any of "more": {name: run file}."""
    v = [("full", cfg["sft"]["full"]), ("topk", cfg["sft"]["topk"])]
    return v + list(cfg["sft"].get("more", {}).items())


def variant_title(cfg, name):
    if name == "full":
        return "full SFT"
    return f"top-k SFT ({load_json(dict(variants(cfg))[name])['attention']})"


def sft_model(cfg, variant, base_seed, seed):
    run = load_json(dict(variants(cfg))[variant])
    run["seed"] = seed
    run["init"] = base_model(cfg, base_seed).checkpoint
    run["out"] = f'{cfg["runs"]}/sft-{variant}-b{base_seed}-s{seed}'
    return Model(f"sft-{variant}-b{base_seed}-s{seed}", f"sft-{variant}", run, seed, base_seed)


def indexer_models(cfg, base_seed):
    """A Lightning Indexer trained on a base model in DeepSeek's two stages, when the scale names
    the run files (cfg["indexer"]: "dense", then "sparse" from the dense stage's checkpoint); []
    when it names none."""
    ix = cfg.get("indexer")
    if not ix:
        return []
    base = base_model(cfg, base_seed)
    dense = load_json(ix["dense"])
    dense["init"] = base.checkpoint
    dense["out"] = f'{cfg["runs"]}/indexer-dense-b{base_seed}'
    d = Model(f"indexer-dense-b{base_seed}", "indexer-dense", dense, dense.get("seed", 0), base_seed)
    sparse = load_json(ix["sparse"])
    sparse["init"] = d.checkpoint
    sparse["out"] = f'{cfg["runs"]}/indexer-sparse-b{base_seed}'
    return [d, Model(f"indexer-sparse-b{base_seed}", "indexer-sparse", sparse, sparse.get("seed", 0),
                     base_seed, pre=d)]


def indexer_topk(cfg):
    return load_json(cfg["indexer"]["dense"])["indexer"]["index_topk"]


def base_source(cfg):
    b = cfg["base"]
    if b.get("folder"):
        return f"the model folder {b['folder']}" + (f", trained by {b['run']}" if b.get("run") else "")
    return f"run file {b['run']}"


def bases(cfg):
    return [base_model(cfg, s) for s in cfg["base"]["seeds"]]


def sfts(cfg):
    out = []
    for b in cfg["sft"]["base_seeds"]:
        for s in cfg["sft"]["seeds"]:
            for v, _ in variants(cfg):
                out.append(sft_model(cfg, v, b, s))
    return out


def trained(m):
    st = os.path.join(ROOT, m.checkpoint, "trainer_state.json")
    if not os.path.exists(st):
        return False
    with open(st) as f:
        s = json.load(f)
    return s.get("step", 0) >= m.run["steps"] and s.get("run", {}).get("seed") == m.run["seed"]


def train(r, models):
    """Trains the models that are not finished; base stage 1, bases, then what starts from them."""
    models = [m.pre for m in models if m.pre] + [m for m in models if not m.folder]
    if r.tables_only:  # nothing trains: the evaluations are already there
        for m in models:
            if any(x[0] == f"train {m.name}" for x in r.log):
                continue
            r.log.append((f"train {m.name}", f"{r.topk} train --config {m.out}/run.json",
                          train_seconds(m), True))
        return
    for group in ([m for m in models if m.kind == "stage1"], [m for m in models if m.kind == "base"],
                  [m for m in models if m.kind not in ("stage1", "base")]):
        todo = []
        for m in group:
            rf = os.path.join(ROOT, m.out, "run.json")
            if not r.dry:
                write_json(rf, m.run)
            if trained(m):
                if not any(x[0] == f"train {m.name}" for x in r.log):  # listed once per page
                    r.log.append((f"train {m.name}", f"{r.topk} train --config {m.out}/run.json",
                                  train_seconds(m), True))
                continue
            todo.append(m)
        todo = train_tasks(r, todo)
        for (what, cmd, *_), secs in zip(todo, r.parallel(todo)):
            m = next(x for x in group if f"train {x.name}" == what)
            if r.dry or secs is None:
                continue
            # A run split over invocations (--time-limit) adds up its parts.
            write_json(os.path.join(ROOT, m.out, "time.json"),
                       {"seconds": train_seconds(m) + secs, "finished": now() if trained(m) else None,
                        "hardware": hardware(), "command": " ".join(cmd), "gpus": gpus_of(cmd)})
        if r.deadline and not r.dry and \
                any(not trained(m) for m in group if any(t[0] == f"train {m.name}" for t in todo)):
            raise OutOfTime()


def train_tasks(r, todo_models):
    """(what, cmd, log, ngpu, timed) for models trained side by side: on CUDA the GPUs are shared
    out, a model taking several with `topk train --gpus` (the indexer stages train on one)."""
    share = max(1, len(r.gpu_ids) // max(1, len(todo_models))) if r.gpu_ids else 0
    out = []
    for m in todo_models:
        n = 1 if m.run.get("indexer_stage") else share
        cmd = [r.topk, "train", "--config", f"{m.out}/run.json", "--device", r.device]
        if n > 1:
            cmd += ["--gpus", str(n)]
        out.append((f"train {m.name}", cmd, os.path.join(ROOT, m.out, "train.log"), n, True))
    return out


def gpus_of(cmd):
    return int(cmd[cmd.index("--gpus") + 1]) if "--gpus" in cmd else 1


def train_seconds(m):
    p = os.path.join(ROOT, m.out, "time.json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f).get("seconds", 0.0)
    return 0.0


# ---------------------------------------------------------------------------------------------
# evals


def eval_cmd(r, cfg, model, policies, out, lengths=None, prefill="full", per_head=False):
    e = cfg["eval"]
    cmd = [r.topk, "eval", "--model", model.checkpoint, "--tasks", ",".join(e["tasks"]),
           "--lengths", ",".join(str(x) for x in (lengths or e["lengths"])),
           "--policies", ";".join(policies), "--samples", str(e["samples"]),
           "--seed", str(e["seed"]), "--mode", e["mode"], "--prefill", prefill,
           "--out", out, "--device", r.device, "--quiet"]
    if e.get("batch"):
        cmd += ["--batch", str(e["batch"])]
    if r.threads:
        cmd += ["--threads", str(r.threads)]
    if per_head:
        cmd += ["--per-head"]
    return cmd


class Collected(Exception):
    """A study's evaluations were put on r.collect (the pooled first pass of `all`)."""


def done_by(d, line):
    """The folder holds results.csv made by this command line."""
    c = os.path.join(d, "command.txt")
    return os.path.exists(os.path.join(d, "results.csv")) and os.path.exists(c) and \
        open(c).read().strip() == line


def seconds_of(d):
    tp = os.path.join(d, "time.json")
    return json.load(open(tp)).get("seconds", 0.0) if os.path.exists(tp) else 0.0


def evaluate(r, jobs):
    """jobs: list of (what, cmd, out_dir). Skips a job whose out_dir holds results.csv made by the
    same command. On GPUs a job of several lengths runs as one job per length (out_dir/L<n>),
    merged into out_dir when all are done: shorter jobs fill the GPUs more evenly and fit a
    --time-limit piece."""
    todo = []
    for what, cmd, out in jobs:
        line = " ".join(shlex.quote(c) for c in cmd)
        d = os.path.join(ROOT, out)
        if done_by(d, line):
            r.log.append((what, line, seconds_of(d), line not in r.ran))
            continue
        if r.tables_only:
            raise SystemExit(f"--tables-only: {out} holds no results.csv made by `{line}`")
        lengths = cmd[cmd.index("--lengths") + 1].split(",")
        if not r.gpu_ids or len(lengths) == 1:
            todo.append((what, cmd, os.path.join(d, "eval.log"), 1 if r.gpu_ids else 0))
            continue
        parts = []
        for L in lengths:
            sub = list(cmd)
            sub[sub.index("--lengths") + 1] = L
            sub[sub.index("--out") + 1] = f"{out}/L{L}"
            pd, sub_line = os.path.join(d, f"L{L}"), " ".join(shlex.quote(c) for c in sub)
            parts.append((pd, sub_line))
            if done_by(pd, sub_line):
                r.log.append((f"{what} @{L}", sub_line, seconds_of(pd), sub_line not in r.ran))
            else:
                todo.append((f"{what} @{L}", sub, os.path.join(pd, "eval.log"), 1))
        r.merges.append((d, line, parts))
    if r.collect is not None:
        r.collect += todo
        raise Collected()
    run_evals(r, todo)


def run_evals(r, todo):
    """Runs evaluations side by side, marks each finished one (command.txt, time.json), then
    merges the per-length parts of the jobs whose parts are all done."""
    for (what, cmd, log, _), secs in zip(todo, r.parallel(todo)):
        if r.dry or secs is None:
            continue
        line = " ".join(shlex.quote(c) for c in cmd)
        d = os.path.dirname(log)
        with open(os.path.join(d, "command.txt"), "w") as f:
            f.write(line + "\n")
        write_json(os.path.join(d, "time.json"), {"seconds": secs, "finished": now()})
        r.ran.add(line)
    merges, r.merges = r.merges, []
    for d, line, parts in merges:
        if r.dry or not all(done_by(pd, pl) for pd, pl in parts):
            continue
        for name in ("results.csv", "layers.csv"):
            rows = [open(os.path.join(pd, name)).read().splitlines() for pd, _ in parts]
            with open(os.path.join(d, name + ".tmp"), "w") as f:
                f.write("\n".join(rows[0] + [x for part in rows[1:] for x in part[1:]]) + "\n")
            os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
        write_json(os.path.join(d, "time.json"), {"seconds": sum(seconds_of(pd) for pd, _ in parts),
                                                   "finished": now(),
                                                   "parts": [os.path.relpath(pd, ROOT) for pd, _ in parts]})
        with open(os.path.join(d, "command.txt"), "w") as f:
            f.write(line + "\n")
        if any(pl in r.ran for _, pl in parts):
            r.ran.add(line)
    if r.late:
        raise OutOfTime()


def read_csv(path):
    with open(os.path.join(ROOT, path)) as f:
        return list(csv.DictReader(f))


def fnum(s):
    return float(s) if s not in ("", None) else float("nan")


# ---------------------------------------------------------------------------------------------
# statistics and output


def mean_sd(xs):
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan"), 0
    m = statistics.fmean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return m, sd, len(xs)


def fmt(m, sd=float("nan"), n=1, digits=1):
    if math.isnan(m):
        return "-"
    s = f"{m:.{digits}f}"
    if n > 1 and not math.isnan(sd):
        s += f" ± {sd:.{digits}f}"
    return s


def policy_label(p):
    if p == "full":
        return "full"
    body = p.split(":", 1)[1]
    kv = dict(x.split("=", 1) for x in body.split(","))
    kind = p.split(":", 1)[0]
    if kind == "topk":
        lab = f'rho={float(kv["ratio"]) * 100:g}%' if "ratio" in kv else f'k={kv["k"]}'
        if kv.get("adapt") == "entropy":
            lab += " adaptive"
        return lab
    if kind == "oracle":
        return f'p={kv["precision"]}'
    return p


def write_csv(path, rows, fields):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and not math.isnan(v)
                            else ("" if isinstance(v, float) else v)) for k, v in row.items()})


def gnuplot(out_png, script):
    """Runs a gnuplot script that draws out_png; returns a note."""
    if shutil.which("gnuplot") is None:
        return f"plot {os.path.basename(out_png)} skipped: gnuplot is not installed"
    gp = out_png[:-4] + ".gp"
    with open(gp, "w") as f:
        f.write(f"set terminal pngcairo size 1200,{script.get('height', 480)} font 'sans,10'\n")
        f.write(f"set output '{out_png}'\nset termoption noenhanced\n")
        f.write(script["body"])
    rc = subprocess.call(["gnuplot", gp], stderr=subprocess.DEVNULL)
    if rc != 0:
        return f"plot {os.path.basename(out_png)} failed (gnuplot exit {rc}; script {gp})"
    os.remove(gp)
    return f"wrote {out_png}"


def gp_data(points):
    """points: list of tuples -> inline gnuplot data block."""
    return "".join(" ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in p) + "\n"
                   for p in points) + "e\n"


def multiplot(panels, title, xlabel, ylabel, logx=False, yrange="[0:105]", xrange=None):
    """panels: list of (panel title, [(series label, [(x, y, err)], style)])."""
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    body = f"set multiplot layout {rows},{cols} title '{title}'\nset grid\nset key below font ',8'\n"
    body += f"set xlabel '{xlabel}'\nset ylabel '{ylabel}'\nset yrange {yrange}\n"
    if xrange:
        body += f"set xrange {xrange}\n"
    if logx:
        body += "set logscale x\n"
    for ptitle, series in panels:
        body += f"set title '{ptitle}'\n"
        plots, data = [], ""
        for label, pts, style in series:
            pts = sorted(pts)
            if not pts:
                continue
            if any(not math.isnan(p[2]) for p in pts):
                plots.append(f"'-' using 1:2:3 with yerrorlines {style} title '{label}'")
                data += gp_data([(x, y, 0.0 if math.isnan(e) else e) for x, y, e in pts])
            else:
                plots.append(f"'-' using 1:2 with linespoints {style} title '{label}'")
                data += gp_data([(x, y) for x, y, _ in pts])
        body += "plot " + ", ".join(plots) + "\n" + data if plots else ""
    body += "unset multiplot\n"
    return {"body": body, "height": 500 * rows}


class Page:
    """table.md of a study."""

    def __init__(self, title):
        self.parts = [f"# {title}\n"]

    def add(self, text):
        self.parts.append(text.rstrip() + "\n")

    def table(self, header, rows):
        s = "| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|\n"
        for r in rows:
            s += "| " + " | ".join(str(x) for x in r) + " |\n"
        self.parts.append(s)

    def write(self, path):
        with open(path, "w") as f:
            f.write("\n".join(self.parts))


def provenance(page, r, cfg, args, t0, notes):
    hw = hardware()
    page.add("## How these numbers were made\n")
    if r.tables_only:
        # The steps ran elsewhere: report that machine (from a trained model's time.json).
        ran = [json.load(open(p)).get("hardware") for p in
               sorted(glob.glob(os.path.join(ROOT, cfg["runs"], "*", "time.json")))]
        ran = next((x for x in ran if x), None)
        page.add(f"This page was remade from saved evaluation outputs (`--tables-only`) on "
                 f"{hw['cpu']}, commit {hw.get('commit', '?')}. The steps below ran on "
                 + (f"{ran.get('gpu', ran['cpu'])}, {ran['cores']} cores, commit {ran.get('commit', '?')}."
                    if ran else "another machine (no time.json of theirs was found)."))
        hw = ran or hw
    page.add(f"Command: `tools/experiments/run.sh {args.study} --scale {cfg['scale']}`"
             + (f" (config {args.config})" if args.config else "") + f", finished {now()}, "
             f"{time.time() - t0:.0f} s of wall time in this invocation (cached steps excluded).")
    page.add(f"Hardware: {hw.get('gpu', hw['cpu'])}, {hw['cores']} cores"
             + (f", load {hw['load_at_start']:.1f} when the table was written" if 'load_at_start' in hw else "")
             + f"; commit {hw.get('commit', '?')}; device {r.device}, "
             + (f"{len(r.gpu_ids)} GPU(s): an evaluation a GPU, training runs side by side with "
                f"the GPUs shared out." if r.gpu_ids else
                f"{r.jobs} job(s) at a time, {r.threads or 'all'} thread(s) each."))
    page.add("Steps (cached ones were run by an earlier invocation; their time is the time they "
             "took then):\n")
    page.table(["step", "seconds", "cached", "command"],
               [[w, f"{s:.0f}", "yes" if c else "", f"`{line}`"] for w, line, s, c in r.log])
    for n in notes:
        page.add(f"- {n}")


# ---------------------------------------------------------------------------------------------
# the studies


def kind_title(cfg, kind):
    return "base" if kind == "base" else variant_title(cfg, kind[4:])


def cells_by(rows, *keys):
    d = {}
    for row in rows:
        d.setdefault(tuple(row[k] for k in keys), []).append(row)
    return d


def study_rho(r, cfg, args, out):
    c = cfg["rho"]
    models = bases(cfg)
    train(r, models)
    pols = ["full"] + [f"topk:ratio={x:g}" for x in c["ratios"]] + [f"topk:k={k}" for k in c["ks"]]
    jobs = [(f"eval {m.name}", eval_cmd(r, cfg, m, pols, f"{out}/eval/{m.name}"), f"{out}/eval/{m.name}")
            for m in models]
    evaluate(r, jobs)
    if r.dry:
        return
    rows = []
    for m in models:
        for row in read_csv(f"{out}/eval/{m.name}/results.csv"):
            row["model"] = m.name
            rows.append(row)
    # mean and sd over base seeds of each (task, length, policy)
    agg = []
    for (task, length, pol), rs in cells_by(rows, "task", "length", "policy").items():
        s = mean_sd([fnum(x["score"]) for x in rs])
        agg.append({"task": task, "length": int(length), "policy": pol, "label": policy_label(pol),
                    "rho": mean_sd([fnum(x["rho"]) for x in rs])[0], "score": s[0], "score_sd": s[1],
                    "seeds": s[2], "mass": mean_sd([fnum(x["mass"]) for x in rs])[0],
                    "entropy_norm": mean_sd([fnum(x["entropy_norm"]) for x in rs])[0]})
    write_csv(f"{out}/rho.csv", agg, ["task", "length", "policy", "label", "rho", "score",
                                      "score_sd", "seeds", "mass", "entropy_norm"])
    write_csv(f"{out}/rho_per_seed.csv", rows, ["model", "task", "length", "policy", "examples",
                                                "score", "rho", "precision", "mass", "entropy",
                                                "entropy_norm", "decode_steps", "context_tokens"])
    page = Page(f"Finding 1: exact top-k decoding vs full attention ({cfg['scale']} scale)")
    page.add(f"Models: {', '.join(m.name for m in models)} ({base_source(cfg)}, seeds "
             f"{cfg['base']['seeds']}). Full-attention prefill, greedy decode under each policy; "
             f"{cfg['eval']['samples']} examples per task and length (seed {cfg['eval']['seed']}, "
             f"mode {cfg['eval']['mode']}). Score 0-100, mean ± sd over the base models.\n")
    labels = [policy_label(p) for p in pols]
    key = {(a["task"], a["length"], a["label"]): a for a in agg}
    tl = sorted({(a["task"], a["length"]) for a in agg})
    body = []
    for t, L in tl:
        body.append([f"{t} @{L}"] + [fmt(key[(t, L, lab)]["score"], key[(t, L, lab)]["score_sd"],
                                          key[(t, L, lab)]["seeds"]) for lab in labels])
    means = []
    for lab in labels:
        per_seed = {}
        for row in rows:
            if policy_label(row["policy"]) == lab:
                per_seed.setdefault(row["model"], []).append(fnum(row["score"]))
        means.append(fmt(*mean_sd([statistics.fmean(v) for v in per_seed.values()])))
    body.append(["**mean**"] + means)
    page.table(["task @ length"] + labels, body)
    page.add("\nAttention mass kept (full-softmax probability of the selected keys, mean over "
             "layers and heads and decode steps):\n")
    page.table(["task @ length"] + labels,
               [[f"{t} @{L}"] + [fmt(key[(t, L, lab)]["mass"], digits=3) for lab in labels] for t, L in tl])
    panels = []
    for t, L in tl:
        ser_r = [(key[(t, L, lab)]["rho"], key[(t, L, lab)]["score"], key[(t, L, lab)]["score_sd"])
                 for lab in labels if lab == "full" or lab.startswith("rho=")]
        ser_k = [(key[(t, L, lab)]["rho"], key[(t, L, lab)]["score"], key[(t, L, lab)]["score_sd"])
                 for lab in labels if lab.startswith("k=")]
        full = key[(t, L, "full")]["score"]
        panels.append((f"{t} @{L}", [("top-k, rho = ratio", ser_r, "lw 2 pt 7"),
                                     ("top-k, fixed k", ser_k, "lw 1 pt 5 dt 2"),
                                     ("full attention", [(1e-3, full, float('nan')), (1.0, full, float('nan'))], "lw 2 pt 0 dt 3 lc rgb '#444444'")]))
    notes = [gnuplot(f"{out}/acc_vs_rho.png", multiplot(panels, "exact top-k decoding: score vs rho",
                                                       "rho = W / n (measured)", "score", logx=True,
                                                       xrange="[0.003:1.2]"))]
    provenance(page, r, cfg, args, args.t0, notes)
    page.write(f"{out}/table.md")


def study_sft(r, cfg, args, out):
    c = cfg["sft_study"]
    ms = sfts(cfg)
    bs = [base_model(cfg, b) for b in cfg["sft"]["base_seeds"]]
    train(r, bs + ms)
    pols = ["full"] + [f"topk:ratio={x:g}" for x in c["ratios"]] + [f"topk:k={k}" for k in c.get("ks", [])]
    jobs = []
    for m in bs + ms:
        for pre in c["prefill"]:
            d = f"{out}/eval/{m.name}-prefill-{pre}"
            jobs.append((f"eval {m.name} prefill {pre}", eval_cmd(r, cfg, m, pols, d, prefill=pre), d))
    evaluate(r, jobs)
    if r.dry:
        return
    rows = []
    for m in bs + ms:
        for pre in c["prefill"]:
            for row in read_csv(f"{out}/eval/{m.name}-prefill-{pre}/results.csv"):
                row.update({"model": m.name, "kind": m.kind, "seed": m.seed, "prefill": pre,
                            "base_seed": m.base_seed if m.base_seed is not None else m.seed,
                            "label": policy_label(row["policy"])})
                rows.append(row)
    write_csv(f"{out}/sft_per_seed.csv", rows, ["model", "kind", "base_seed", "seed", "prefill",
                                                "task", "length", "policy", "label", "score", "rho",
                                                "mass", "entropy_norm"])
    kinds = ["base"] + [f"sft-{v}" for v, _ in variants(cfg)]
    agg = []
    groups = cells_by(rows, "kind", "prefill", "task", "length", "label")
    for (kind, pre, task, length, lab), rs in groups.items():
        s = mean_sd([fnum(x["score"]) for x in rs])
        agg.append({"kind": kind, "prefill": pre, "task": task, "length": int(length), "label": lab,
                    "rho": mean_sd([fnum(x["rho"]) for x in rs])[0], "score": s[0],
                    "score_sd": s[1], "n": s[2]})
    # paired difference top-k SFT - full SFT (same base, same seed: same data)
    diffs = []
    idx = {(x["kind"], x["prefill"], x["task"], x["length"], x["label"], x["base_seed"], x["seed"]):
           fnum(x["score"]) for x in rows}
    for (kind, pre, task, length, lab, b, s), v in idx.items():
        if kind in ("base", "sft-full"):
            continue
        w = idx.get(("sft-full", pre, task, length, lab, b, s))
        if w is not None:
            diffs.append({"variant": kind, "prefill": pre, "task": task, "length": int(length),
                          "label": lab, "base_seed": b, "seed": s, "diff": v - w})
    write_csv(f"{out}/sft.csv", agg, ["kind", "prefill", "task", "length", "label", "rho", "score",
                                      "score_sd", "n"])
    write_csv(f"{out}/sft_diff_per_seed.csv", diffs, ["variant", "prefill", "task", "length",
                                                      "label", "base_seed", "seed", "diff"])
    key = {(a["kind"], a["prefill"], a["task"], a["length"], a["label"]): a for a in agg}
    labels = [policy_label(p) for p in pols]
    tl = sorted({(a["task"], a["length"]) for a in agg})
    page = Page(f"Finding 2: native top-k SFT vs full SFT ({cfg['scale']} scale)")
    page.add(f"Base: {', '.join(b.name for b in bs)} ({base_source(cfg)}). SFT from it: "
             + ", ".join(f"{f} (`{load_json(f)['attention']}`)" for _, f in variants(cfg))
             + f"; the same data and steps for all (same seed = same batches), seeds "
             f"{cfg['sft']['seeds']}. Evaluated with "
             f"{cfg['eval']['samples']} examples per task and length; score mean ± sd over seeds. "
             f"'prefill full' is the report's protocol (full prefill, top-k decode); 'prefill "
             f"policy' prefills with the same top-k policy.\n")

    def mean_over_tasks(kind, pre, lab):
        per = {}
        for x in rows:
            if x["kind"] == kind and x["prefill"] == pre and x["label"] == lab:
                per.setdefault((x["base_seed"], x["seed"]), []).append(fnum(x["score"]))
        return mean_sd([statistics.fmean(v) for v in per.values()])

    for pre in c["prefill"]:
        page.add(f"\n### prefill {pre}: mean over tasks and lengths\n")
        body = []
        for lab in labels:
            row = [lab] + [fmt(*mean_over_tasks(k, pre, lab)) for k in kinds]
            for k in kinds[2:]:
                d = {}
                for x in diffs:
                    if x["variant"] == k and x["prefill"] == pre and x["label"] == lab:
                        d.setdefault((x["base_seed"], x["seed"]), []).append(x["diff"])
                row.append(fmt(*mean_sd([statistics.fmean(v) for v in d.values()])))
            body.append(row)
        page.table(["decode policy"] + [kind_title(cfg, k) for k in kinds] +
                   [f"{kind_title(cfg, k)} − full SFT (paired)" for k in kinds[2:]], body)
        page.add(f"\n### prefill {pre}: per task and length\n")
        body = []
        for t, L in tl:
            for lab in labels:
                body.append([f"{t} @{L}", lab] +
                            [fmt(key[(k, pre, t, L, lab)]["score"], key[(k, pre, t, L, lab)]["score_sd"],
                                 key[(k, pre, t, L, lab)]["n"]) if (k, pre, t, L, lab) in key else "-"
                             for k in kinds])
        page.table(["task @ length", "decode policy"] + [kind_title(cfg, k) for k in kinds], body)
    sft_entropy(page, cfg, out, bs + ms, kinds, "full" if "full" in c["prefill"] else c["prefill"][0])
    panels = []
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    styles = {}
    for i, k in enumerate(kinds[1:]):
        styles[(k, "full")] = f"lw 2 pt 7 lc rgb '{colors[i % len(colors)]}'"
        styles[(k, "policy")] = f"lw 1 pt 5 dt 2 lc rgb '{colors[i % len(colors)]}'"
    styles[("base", "full")] = "lw 1 pt 6 lc rgb '#777777'"
    name = {k: kind_title(cfg, k) for k in kinds}
    for t, L in tl + [("mean", 0)]:
        series = []
        for (kind, pre), st in styles.items():
            if pre not in c["prefill"]:
                continue
            pts = []
            for lab in labels:
                if (kind, pre, t, L, lab) in key or t == "mean":
                    if not (lab == "full" or lab.startswith("rho=")):
                        continue  # fixed-k decodes are in the tables
                    rho_ = 1.0 if lab == "full" else float(lab[4:-1]) / 100
                    if t == "mean":
                        m_, sd_, _ = mean_over_tasks(kind, pre, lab)
                    else:
                        a = key[(kind, pre, t, L, lab)]
                        m_, sd_ = a["score"], a["score_sd"]
                    pts.append((rho_, m_, sd_))
            series.append((f"{name[kind]}, prefill {pre}", pts, st))
        panels.append(("mean over tasks" if t == "mean" else f"{t} @{L}", series))
    notes = [gnuplot(f"{out}/acc_vs_rho.png", multiplot(
        panels, "top-k SFT vs full SFT: score vs decode rho (mean +- sd over seeds)",
        "decode rho (1 = full attention)", "score", logx=True, xrange="[0.003:1.2]"))]
    provenance(page, r, cfg, args, args.t0, notes)
    page.write(f"{out}/table.md")


def sft_entropy(page, cfg, out, models, kinds, pre):
    """Finding 4 from the SFT study's own evaluations: the attention entropy (H / ln n, eval's
    statistics) of each model while it decodes with full attention, per layer (mean over heads,
    tasks and decode steps), mean ± sd over seeds. The entropy study adds per-head numbers."""
    rows = []
    for m in models:
        for x in read_csv(f"{out}/eval/{m.name}-prefill-{pre}/layers.csv"):
            if x["policy"] == "full" and x["head"] == "all":
                rows.append(dict(x, kind=m.kind, model=m.name))
    agg = entropy_by_kind(rows)
    layers = sorted({int(l) for (_, l, _) in agg})
    if not layers:
        return
    # Per kind: each model's mean over its layers, then mean ± sd over the models.
    per = {(k, int(l)): [a for a, _ in v] for (k, l, _), v in agg.items()}
    for k in kinds:
        by_model = [per[(k, L)] for L in layers if (k, L) in per]
        if by_model:
            per[(k, "mean")] = [statistics.fmean(x) for x in zip(*by_model)]
    page.add(f"\n### Attention entropy while decoding with full attention (prefill {pre})\n")
    page.add("H / ln n of each layer (mean over heads, tasks and decode steps), mean ± sd over "
             "seeds; the report's finding 4 is that top-k SFT lowers it.\n")
    page.table(["layer"] + [kind_title(cfg, k) for k in kinds],
               [[str(L)] + [fmt(*mean_sd(per.get((k, L), [])), digits=3) for k in kinds]
                for L in layers + ["mean"]])


def indexer_points(page, cfg, out, ixm):
    """The trained indexer's rows of the precision study: per task, length and stage, its score and
    measured precision under `indexer` decoding beside full attention and exact top-k at the same
    budget, and its precision per layer. Returns {(task, length, kind): aggregate}."""
    W = indexer_topk(cfg)
    rows, layers = [], []
    for L in cfg["eval"]["lengths"]:
        for m in ixm:
            d = f"{out}/eval/{m.name}-L{L}"
            for row in read_csv(f"{d}/results.csv"):
                row["kind"] = m.kind
                rows.append(row)
            for row in read_csv(f"{d}/layers.csv"):
                if row["policy"] == "indexer" and row["head"] == "all":
                    row["kind"] = m.kind
                    layers.append(row)
    agg, pts = [], {}
    for (task, length, kind, pol), rs in cells_by(rows, "task", "length", "kind", "policy").items():
        s = mean_sd([fnum(x["score"]) for x in rs])
        a = {"task": task, "length": int(length), "stage": kind, "policy": pol, "W": W,
             "precision": mean_sd([fnum(x["precision"]) for x in rs])[0], "score": s[0],
             "score_sd": s[1], "seeds": s[2], "mass": mean_sd([fnum(x["mass"]) for x in rs])[0]}
        agg.append(a)
        if pol == "indexer":
            pts[(task, int(length), kind)] = a
    write_csv(f"{out}/indexer.csv", agg, ["task", "length", "stage", "policy", "W", "precision",
                                          "score", "score_sd", "seeds", "mass"])
    key = {(a["task"], a["length"], a["stage"], a["policy"]): a for a in agg}
    page.add(f"\n### The trained Lightning Indexer\n\nRun files {cfg['indexer']['dense']} (dense "
             f"warm-up, the model frozen) then {cfg['indexer']['sparse']} (sparse stage), on each base "
             f"model; decoding with the indexer's own top-{W} (`indexer`) beside exact top-{W}. Score "
             f"with the measured precision and the attention mass kept in brackets.\n")
    body = []
    for task, length in sorted({(a["task"], a["length"]) for a in agg}):
        for kind in ("indexer-dense", "indexer-sparse"):
            if (task, length, kind, "indexer") not in key:
                continue
            f, e, i = (key[(task, length, kind, p)] for p in ("full", f"topk:k={W}", "indexer"))
            body.append([f"{task} @{length}", kind.split("-")[1], fmt(f["score"], f["score_sd"], f["seeds"]),
                         f"{fmt(e['score'], e['score_sd'], e['seeds'])} (mass {e['mass']:.2f})",
                         f"{fmt(i['score'], i['score_sd'], i['seeds'])} (prec {i['precision']:.2f}, "
                         f"mass {i['mass']:.2f})"])
    page.table(["task @ length", "stage", "full", f"exact top-{W}", "indexer"], body)
    per = {}
    for row in layers:
        per.setdefault((row["task"], int(row["length"]), row["kind"]), {}).setdefault(
            int(row["layer"]), []).append(fnum(row["precision"]))
    page.add("\nThe indexer's precision per layer (mean over base models):\n")
    page.table(["task @ length", "stage"] + [f"layer {l}" for l in sorted({l for v in per.values() for l in v})],
               [[f"{t} @{L}", k.split("-")[1]] + [f"{mean_sd(v[l])[0]:.2f}" for l in sorted(v)]
                for (t, L, k), v in sorted(per.items())])
    return pts


def study_precision(r, cfg, args, out):
    c = cfg["precision"]
    models = bases(cfg)
    train(r, models)
    jobs = []
    ws = {}
    for L in cfg["eval"]["lengths"]:
        W = max(1, round(L * c["w_fraction"]))
        ws[L] = W
        pols = ["full", f"topk:k={W}"] + [f"oracle:k={W},precision={p:g}" for p in c["precisions"]]
        for m in models:
            d = f"{out}/eval/{m.name}-L{L}"
            jobs.append((f"eval {m.name} @{L}", eval_cmd(r, cfg, m, pols, d, lengths=[L]), d))
    # The trained indexer: both stages, each decoding with its own selection beside exact top-k
    # at the same budget.
    ixm = [m for b in cfg["base"]["seeds"] for m in indexer_models(cfg, b)]
    if ixm:
        train(r, [m for m in ixm if m.kind == "indexer-dense"])
        train(r, [m for m in ixm if m.kind == "indexer-sparse"])
        for L in cfg["eval"]["lengths"]:
            pols = ["full", f"topk:k={indexer_topk(cfg)}", "indexer"]
            for m in ixm:
                d = f"{out}/eval/{m.name}-L{L}"
                jobs.append((f"eval {m.name} @{L}", eval_cmd(r, cfg, m, pols, d, lengths=[L]), d))
    evaluate(r, jobs)
    if r.dry:
        return
    rows = []
    for L in cfg["eval"]["lengths"]:
        for m in models:
            for row in read_csv(f"{out}/eval/{m.name}-L{L}/results.csv"):
                row["model"] = m.name
                rows.append(row)
    agg = []
    for (task, length, pol), rs in cells_by(rows, "task", "length", "policy").items():
        s = mean_sd([fnum(x["score"]) for x in rs])
        agg.append({"task": task, "length": int(length), "policy": pol, "label": policy_label(pol),
                    "W": ws[int(length)], "precision": mean_sd([fnum(x["precision"]) for x in rs])[0],
                    "score": s[0], "score_sd": s[1], "seeds": s[2],
                    "mass": mean_sd([fnum(x["mass"]) for x in rs])[0]})
    write_csv(f"{out}/precision.csv", agg, ["task", "length", "W", "policy", "label", "precision",
                                            "score", "score_sd", "seeds", "mass"])
    key = {(a["task"], a["length"], a["policy"]): a for a in agg}
    tl = sorted({(a["task"], a["length"]) for a in agg})
    page = Page(f"Finding 3: accuracy vs retrieval precision ({cfg['scale']} scale)")
    page.add(f"The oracle selector (docs/eval.md) at a fixed W = {c['w_fraction']:g} x n (the "
             f"report's W = 2048 at 128K scaled to the context: W = {ws}), keeping a fraction p "
             f"of the exact top-W and filling the rest with other keys; full prefill. Models "
             f"{', '.join(m.name for m in models)}; score mean ± sd over them. 'prec' is the "
             f"measured retrieval precision.\n")
    ps = [f"{p:g}" for p in c["precisions"]]
    body = []
    for t, L in tl:
        W = ws[L]
        row = [f"{t} @{L}", fmt(key[(t, L, 'full')]["score"], key[(t, L, 'full')]["score_sd"], key[(t, L, 'full')]["seeds"]),
               fmt(key[(t, L, f'topk:k={W}')]["score"], key[(t, L, f'topk:k={W}')]["score_sd"], key[(t, L, f'topk:k={W}')]["seeds"])]
        for p in ps:
            a = key[(t, L, f"oracle:k={W},precision={p}")]
            row.append(f"{fmt(a['score'], a['score_sd'], a['seeds'])} (prec {a['precision']:.2f})")
        body.append(row)
    page.table(["task @ length", "full", "exact top-W"] + [f"p = {p}" for p in ps], body)
    ix = indexer_points(page, cfg, out, ixm) if ixm else {}
    if not ixm:
        page.add("\nThe trained Lightning Indexer's point is not on this curve: this scale names no "
                 "indexer run files (\"indexer\": {\"dense\", \"sparse\"}; docs/results.md, "
                 "finding 3).\n")
    panels = []
    for t, L in tl:
        W = ws[L]
        pts = [(key[(t, L, f"oracle:k={W},precision={p}")]["precision"],
                key[(t, L, f"oracle:k={W},precision={p}")]["score"],
                key[(t, L, f"oracle:k={W},precision={p}")]["score_sd"]) for p in ps]
        full = key[(t, L, "full")]["score"]
        series = [("oracle selector", pts, "lw 2 pt 7"),
                  ("full attention", [(0.0, full, float('nan')), (1.0, full, float('nan'))], "lw 1 pt 0 dt 3")]
        for kind, style in (("indexer-dense", "pt 5 ps 2"), ("indexer-sparse", "pt 9 ps 2")):
            if (t, L, kind) in ix:
                a = ix[(t, L, kind)]
                series.append((f"trained indexer, {kind.split('-')[1]} stage",
                               [(a["precision"], a["score"], a["score_sd"])], style))
        panels.append((f"{t} @{L} (W = {W})", series))
    notes = [gnuplot(f"{out}/acc_vs_precision.png", multiplot(
        panels, "score vs retrieval precision at a fixed W", "retrieval precision p (measured)",
        "score", xrange="[-0.05:1.05]"))]
    provenance(page, r, cfg, args, args.t0, notes)
    page.write(f"{out}/table.md")


def entropy_by_kind(rows):
    """layers.csv rows (with "kind" and "model" added) -> {(kind, layer, head): [(H / ln n, H) of
    each model of that kind]}, each model's value the mean over its tasks, lengths and steps."""
    per_model = {}
    for x in rows:
        per_model.setdefault((x["kind"], x["model"], x["layer"], x["head"]), []).append(
            (fnum(x["entropy_norm"]), fnum(x["entropy"])))
    agg = {}
    for (kind, model, layer, head), v in per_model.items():
        agg.setdefault((kind, layer, head), []).append(
            (statistics.fmean(a for a, _ in v), statistics.fmean(b for _, b in v)))
    return agg


def study_entropy(r, cfg, args, out):
    ms = [base_model(cfg, b) for b in cfg["sft"]["base_seeds"]] + sfts(cfg)
    train(r, ms)
    jobs = []
    for m in ms:
        d = f"{out}/eval/{m.name}"
        jobs.append((f"eval {m.name}", eval_cmd(r, cfg, m, ["full"], d, per_head=True), d))
    evaluate(r, jobs)
    if r.dry:
        return
    rows = []
    for m in ms:
        for row in read_csv(f"{out}/eval/{m.name}/layers.csv"):
            row.update({"model": m.name, "kind": m.kind, "seed": m.seed})
            rows.append(row)
    write_csv(f"{out}/entropy_per_model.csv", rows, ["model", "kind", "seed", "task", "length",
                                                     "layer", "head", "entropy", "entropy_norm"])
    kinds = ["base"] + [f"sft-{v}" for v, _ in variants(cfg)]
    agg = entropy_by_kind(rows)
    heads = sorted({(int(l), h) for (_, l, h) in agg}, key=lambda x: (x[0], x[1] != "all", int(x[1]) if x[1] != "all" else -1))
    table_rows, csv_rows = [], []
    for l, h in heads:
        row = [str(l), h]
        for k in kinds:
            v = agg.get((k, str(l), h), [])
            m, sd, n = mean_sd([a for a, _ in v])
            row.append(fmt(m, sd, n, 3))
            csv_rows.append({"kind": k, "layer": l, "head": h, "entropy_norm": m, "sd": sd, "n": n,
                             "entropy": mean_sd([b for _, b in v])[0]})
        table_rows.append(row)
    write_csv(f"{out}/entropy.csv", csv_rows, ["kind", "layer", "head", "entropy_norm", "sd", "n", "entropy"])
    # per task: mean over layers and heads ("all" rows)
    page = Page(f"Finding 4: attention entropy of base, full-SFT and top-k-SFT models ({cfg['scale']} scale)")
    page.add(f"Each model decodes the same prompts ({', '.join(cfg['eval']['tasks'])} at "
             f"{cfg['eval']['lengths']}, {cfg['eval']['samples']} examples, seed "
             f"{cfg['eval']['seed']}) with full attention; H is the Shannon entropy of the decoded "
             f"token's full softmax, H/ln n normalised by the visible keys (docs/eval.md), averaged "
             f"over decode steps, examples, tasks and lengths. Mean ± sd over the SFT seeds "
             f"{cfg['sft']['seeds']} (the base: over base seeds {cfg['sft']['base_seeds']}).\n")
    page.add("### H / ln n per layer ('all' = mean over heads) and head\n")
    page.table(["layer", "head"] + [kind_title(cfg, k) for k in kinds], table_rows)
    by_task = {}
    for x in rows:
        if x["head"] == "all":
            by_task.setdefault((x["kind"], x["task"], x["length"], x["model"]), []).append(fnum(x["entropy_norm"]))
    tl = sorted({(t, int(L)) for (_, t, L, _) in by_task})
    body = []
    for t, L in tl:
        row = [f"{t} @{L}"]
        for k in kinds:
            v = [statistics.fmean(vals) for (kk, tt, LL, _), vals in by_task.items() if kk == k and tt == t and int(LL) == L]
            row.append(fmt(*mean_sd(v), digits=3))
        body.append(row)
    page.add("\n### H / ln n per task (mean over layers and heads)\n")
    page.table(["task @ length"] + [kind_title(cfg, k) for k in kinds], body)
    xs = [(l, h) for l, h in heads if h != "all"]
    series = []
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    styles = {"base": "lw 1 pt 6 lc rgb '#777777'"}
    for i, k in enumerate(kinds[1:]):
        styles[k] = f"lw 2 pt 7 lc rgb '{colors[i % len(colors)]}'"
    for k in kinds:
        pts = []
        for i, (l, h) in enumerate(xs):
            v = agg.get((k, str(l), h), [])
            m, sd, _ = mean_sd([a for a, _ in v])
            pts.append((float(i), m, sd))
        series.append((kind_title(cfg, k), pts, styles[k]))
    labels = ", ".join(f"'L{l}H{h}' {i}" for i, (l, h) in enumerate(xs))
    sc = multiplot([("H / ln n per head (x: layer, head)", series)], "attention entropy per head",
                   "head", "H / ln n", yrange="[0:1]", xrange=f"[-0.5:{len(xs) - 0.5}]")
    sc["body"] = sc["body"].replace("set title", f"set xtics ({labels}) rotate by 45 right\nset title", 1)
    notes = [gnuplot(f"{out}/entropy_per_head.png", sc)]
    provenance(page, r, cfg, args, args.t0, notes)
    page.write(f"{out}/table.md")


def study_adapt(r, cfg, args, out):
    c = cfg["adapt"]
    models = bases(cfg) + ([m for m in sfts(cfg)] if c.get("sft_models") else [])
    train(r, models)
    pols = ["full"]
    for x in c["ratios"]:
        pols += [f"topk:ratio={x:g}", f"topk:ratio={x:g},adapt=entropy"]
    jobs = [(f"eval {m.name}", eval_cmd(r, cfg, m, pols, f"{out}/eval/{m.name}"), f"{out}/eval/{m.name}")
            for m in models]
    evaluate(r, jobs)
    if r.dry:
        return
    rows = []
    for m in models:
        for row in read_csv(f"{out}/eval/{m.name}/results.csv"):
            row.update({"model": m.name, "kind": m.kind, "label": policy_label(row["policy"])})
            rows.append(row)
    agg = []
    for (kind, task, length, lab), rs in cells_by(rows, "kind", "task", "length", "label").items():
        s = mean_sd([fnum(x["score"]) for x in rs])
        agg.append({"kind": kind, "task": task, "length": int(length), "label": lab,
                    "rho": mean_sd([fnum(x["rho"]) for x in rs])[0], "score": s[0],
                    "score_sd": s[1], "n": s[2], "mass": mean_sd([fnum(x["mass"]) for x in rs])[0]})
    write_csv(f"{out}/adapt.csv", agg, ["kind", "task", "length", "label", "rho", "score",
                                        "score_sd", "n", "mass"])
    key = {(a["kind"], a["task"], a["length"], a["label"]): a for a in agg}
    page = Page(f"Beyond the report: entropy-adaptive per-head budget ({cfg['scale']} scale)")
    page.add("`topk:ratio=R,adapt=entropy` (docs/eval.md, section Entropy-adaptive budget): at "
             "each decode step and layer, the query heads share H x W keys (W = ceil(R n), the "
             "uniform budget), one each and the rest in proportion to each head's full-softmax "
             f"entropy. Same mean budget as `topk:ratio=R`. Models {', '.join(m.name for m in models)}; "
             "mean ± sd over them. Cells: score (attention mass kept).\n")
    kinds = sorted({a["kind"] for a in agg})
    tl = sorted({(a["task"], a["length"]) for a in agg})
    for kind in kinds:
        page.add(f"\n### {kind}\n")
        body = []
        for t, L in tl:
            for x in c["ratios"]:
                u = key[(kind, t, L, f"rho={x * 100:g}%")]
                a = key[(kind, t, L, f"rho={x * 100:g}% adaptive")]
                body.append([f"{t} @{L}", f"{x * 100:g}%",
                             f"{fmt(u['score'], u['score_sd'], u['n'])} ({u['mass']:.3f})",
                             f"{fmt(a['score'], a['score_sd'], a['n'])} ({a['mass']:.3f})",
                             fmt(a["score"] - u["score"])])
        page.table(["task @ length", "rho", "uniform", "adaptive", "adaptive − uniform"], body)
    panels = []
    for t, L in tl:
        series = []
        for kind in kinds:
            for suffix, st in (("", "lw 2 pt 7"), (" adaptive", "lw 2 pt 5 dt 2")):
                pts = [(x, key[(kind, t, L, f"rho={x * 100:g}%{suffix}")]["score"],
                        key[(kind, t, L, f"rho={x * 100:g}%{suffix}")]["score_sd"]) for x in c["ratios"]]
                series.append((f"{kind} {'adaptive' if suffix else 'uniform'}", pts, st))
        panels.append((f"{t} @{L}", series))
    notes = [gnuplot(f"{out}/acc_vs_rho.png", multiplot(
        panels, "entropy-adaptive vs uniform budget", "rho (mean budget / n)", "score", logx=True))]
    provenance(page, r, cfg, args, args.t0, notes)
    page.write(f"{out}/table.md")


# ---------------------------------------------------------------------------------------------
# expected GPU time


def flops_per_token(model, S):
    """Training FLOPs per token: 6 x (non-embedding matrices + LM head) + causal attention
    12 L Hq D S / 2 (docs/benchmarks.md counts the same way)."""
    d = model["hidden_size"]
    L = model["num_hidden_layers"]
    Hq = model["num_attention_heads"]
    Hkv = model.get("num_key_value_heads", Hq)
    D = model.get("head_dim", d // Hq)
    ffn = model["intermediate_size"]
    V = model.get("vocab_size", 259)
    per_layer = d * Hq * D * 2 + d * Hkv * D * 2 + 3 * d * ffn
    return 6 * (L * per_layer + V * d) + 12 * L * Hq * D * S / 2, L, Hq, D


def run_cost(cfg_cost, run, model_cfg):
    c = cfg_cost
    t = run["task"]
    S = t.get("length", 0)
    if t.get("min_length"):
        S = (S + t["min_length"]) / 2  # mean example length (uniform draw)
    tokens = run["steps"] * run["batch_tokens"] * run.get("grad_accum", 1)
    f, L, Hq, D = flops_per_token(model_cfg, S)
    full_s = tokens * f / (c["full_tflops"] * 1e12 * c["small_model_efficiency"])
    if run.get("attention", "full").startswith("topk"):
        # measured: native top-k attention at ns per (token, layer, query head), D = 64
        ns = c["topk_attention_ns"]
        pts = sorted((int(k), v) for k, v in ns.items())
        if S <= pts[0][0]:
            per = pts[0][1] * S / pts[0][0]
        else:
            per = pts[-1][1]
            for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
                if s0 <= S <= s1:
                    per = v0 * (v1 / v0) ** (math.log(S / s0) / math.log(s1 / s0))
        attn_full = tokens * 12 * L * Hq * D * S / 2 / (c["full_tflops"] * 1e12 * c["small_model_efficiency"])
        secs = full_s - attn_full + tokens * L * Hq * per * 1e-9 * (D / 64)
    else:
        secs = full_s
    return tokens, f, secs


def eval_cost(cfg, model_cfg):
    """Expected GPU hours of every study's evals: prefill tokens at a third of the training FLOPs
    and the same rate (top-k prefill: the top-k attention cost, forward only), plus decode steps
    (policies x examples x decode_steps_per_example / batch) x decode_step_ms."""
    c = cfg["cost"]["eval"]
    e = cfg["eval"]
    eff = cfg["cost"]["full_tflops"] * 1e12 * cfg["cost"]["small_model_efficiency"]
    B = max(1, e.get("batch") or 1)
    nb, ns = len(cfg["base"]["seeds"]), len(cfg["sft"]["seeds"]) * len(cfg["sft"]["base_seeds"])
    nbase_sft = len(cfg["sft"]["base_seeds"])
    nv = len(variants(cfg))

    def one(lengths, policies, prefill="full", adaptive=0):
        ex = len(e["tasks"]) * e["samples"]
        secs, steps = 0.0, 0
        for L in lengths:
            f, Lr, Hq, D = flops_per_token(model_cfg, L)
            pre = ex * L * (f / 3) / eff  # a forward is a third of a training step's FLOPs
            if prefill == "policy":
                # top-k prefill: the dense part, plus half the top-k training attention cost
                per = cfg["cost"]["topk_attention_ns"]["4096"] * (L / 4096) ** 0.6 / 2
                attn_full = 12 * Lr * Hq * D * L / 2 / 3
                pre_topk = ex * L * ((f / 3 - attn_full) / eff + Lr * Hq * per * 1e-9)
                secs += pre + pre_topk * (len(policies) - 1)
            else:
                secs += pre
            st = ex * len(policies) * c["decode_steps_per_example"] // B
            steps += st
            secs += st * c["decode_step_ms"] * 1e-3 * (1 + (c["adaptive_slowdown"] - 1) * adaptive / len(policies))
        return secs, steps

    rows, total = [], 0.0
    ex = len(e["tasks"]) * len(e["lengths"]) * e["samples"]
    r = cfg["rho"]
    pols = 1 + len(r["ratios"]) + len(r["ks"])
    s_, st = one(e["lengths"], range(pols))
    rows.append(["rho", nb, ex, pols, nb * st, nb * s_ / 3600])
    c2 = cfg["sft_study"]
    pols = 1 + len(c2["ratios"]) + len(c2.get("ks", []))
    secs, steps = 0.0, 0
    for pre in c2["prefill"]:
        s_, st = one(e["lengths"], range(pols), pre)
        secs += s_ * (nbase_sft + nv * ns)
        steps += st * (nbase_sft + nv * ns)
    rows.append(["sft", (nbase_sft + nv * ns) * len(c2["prefill"]), ex, pols, steps, secs / 3600])
    pp = cfg["precision"]
    pols = 2 + len(pp["precisions"])
    s_, st = one(e["lengths"], range(pols))
    rows.append(["precision", nb * len(e["lengths"]), ex // len(e["lengths"]), pols, nb * st,
                 nb * s_ * 1.5 / 3600])  # the oracle's selection runs on the host: 1.5x assumed
    if cfg.get("indexer"):  # both indexer stages of each base: full, exact top-k, the indexer
        s_, st = one(e["lengths"], range(3))
        rows.append(["precision (indexer)", 2 * nb * len(e["lengths"]), ex // len(e["lengths"]), 3,
                     2 * nb * st, 2 * nb * s_ / 3600])
    s_, st = one(e["lengths"], range(1))
    rows.append(["entropy", nbase_sft + nv * ns, ex, 1, (nbase_sft + nv * ns) * st,
                 (nbase_sft + nv * ns) * s_ / 3600])
    a = cfg["adapt"]
    nm = nb + (nv * ns if a.get("sft_models") else 0)
    pols = 1 + 2 * len(a["ratios"])
    s_, st = one(e["lengths"], range(pols), adaptive=len(a["ratios"]))
    rows.append(["adapt", nm, ex, pols, nm * st, nm * s_ / 3600])
    total = sum(x[-1] for x in rows)
    return [[x[0], str(x[1]), str(x[2]), str(x[3]), f"{x[4]:,}", f"{x[5]:.2f}"] for x in rows], total


def stage_wall(runs, G, eff2):
    """Wall seconds of one training stage on G GPUs as train_tasks runs it: runs side by side,
    each data-parallel over G // len(runs) GPUs (indexer stages on one), longest first onto the
    least loaded share. runs: (seconds on one GPU, data-parallel allowed)."""
    share = max(1, G // max(1, len(runs)))
    slots = [0.0] * max(1, G // share)
    for secs, dp in sorted(runs, reverse=True):
        n = share if dp else 1
        i = slots.index(min(slots))
        slots[i] += secs / (n * eff2 ** math.log2(n))
    return max(slots)


def study_cost(r, cfg, args, out):
    c = cfg["cost"]
    page = Page(f"Expected GPU time of the {cfg['scale']} scale")
    page.add(c["basis"] + "\n")
    rows = []
    nb = len(cfg["base"]["seeds"])
    # (what, run file, count, the run file whose model it has, its training stage in train())
    items = []
    if cfg["base"].get("stage1"):
        items.append(("base, stage 1 (short examples)", cfg["base"]["stage1"], nb, None, 0))
    items.append(("base", cfg["base"]["run"], nb, cfg["base"].get("stage1"), 1))
    for v, f in variants(cfg):
        items.append((variant_title(cfg, v), f, len(cfg["sft"]["seeds"]) * len(cfg["sft"]["base_seeds"]), None, 2))
    if cfg.get("indexer"):  # the dense stage trains beside the SFT runs, then the sparse stage
        items.append(("Lightning Indexer, dense stage", cfg["indexer"]["dense"], nb, None, 2))
        items.append(("Lightning Indexer, sparse stage", cfg["indexer"]["sparse"], nb, None, 3))
    for extra in c.get("extra_runs", []):
        items.append((extra["what"], extra["run"], extra.get("count", 1), extra.get("model_run"), None))
    total = 0.0
    base_model_cfg = load_json(cfg["base"].get("stage1") or cfg["base"]["run"])["model"]
    G = max(1, len(r.gpu_ids))
    eff2 = c.get("data_parallel_efficiency", 0.93)
    stages = {}  # training stage -> [(seconds on one GPU, data-parallel allowed)]
    for what, path, count, model_run, stage in items:
        run = load_json(path)
        # A run that starts from another run's checkpoint ("init") has that run's model.
        mc = run.get("model") or (load_json(model_run)["model"] if model_run else base_model_cfg)
        tokens, f, secs = run_cost(c, run, mc)
        total += secs * count
        if stage is not None:
            stages.setdefault(stage, []).extend([(secs, not run.get("indexer_stage"))] * count)
        rows.append([what, path, f"{count}", f"{tokens / 1e6:.0f}M", f"{f / 1e6:.0f}",
                     run.get("attention", "full"), f"{secs / 60:.1f}", f"{secs * count / 3600:.2f}"])
    wall = sum(stage_wall(v, G, eff2) for v in stages.values())
    ev_rows, ev = eval_cost(cfg, base_model_cfg)
    total_h = total / 3600 + ev
    page.table(["run", "run file", "runs", "tokens each", "MFLOP / token", "attention",
                "minutes each", "GPU hours (all runs)"], rows)
    page.add("\nEvaluation, per study (prefill and decode as explained above):\n")
    page.table(["study", "eval runs", "examples each", "policies", "decode steps", "GPU hours"], ev_rows)
    page.add(f"\n**Total: {total_h:.1f} GPU hours** on one H200 (training {total / 3600:.1f}, "
             f"evaluation {ev:.1f}).\n")
    wall_h = wall / 3600 + ev / G
    page.add(f"On {G} GPU(s) of one host (`--gpus {G}`; the study's runs only, the extra runs "
             f"left out): **{wall_h * 60:.0f} minutes of wall time**, training "
             f"{wall / 60:.0f} and evaluation {ev / G * 60:.0f}. Runs of one stage train side by side "
             f"with the GPUs shared out (the indexer stages on one GPU each), each data-parallel "
             f"over its share at {eff2:g}x per "
             f"doubling of GPUs (measured 0.93 from one to two H200s on the 124.7M-parameter "
             f"model, docs/benchmarks.md; not measured on these models), and the evaluations "
             f"fill every GPU.\n")
    write_csv(f"{out}/cost.csv", [dict(zip(["run", "file", "runs", "tokens", "mflop_per_token",
                                            "attention", "minutes_each", "gpu_hours"], x)) for x in rows],
              ["run", "file", "runs", "tokens", "mflop_per_token", "attention", "minutes_each", "gpu_hours"])
    page.write(f"{out}/table.md")
    print(open(f"{out}/table.md").read())


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", choices=STUDIES + ["models", "cost", "all"])
    ap.add_argument("--scale", default="cpu", help="tools/experiments/SCALE.json (cpu or gpu)")
    ap.add_argument("--config", help="another config file (overrides --scale)")
    ap.add_argument("--out", default="results", help="results root (default results/)")
    ap.add_argument("--topk", default=os.environ.get("TOPK", "build/topk"), help="the topk binary")
    ap.add_argument("--device", help="cpu or cuda (default: the config's)")
    ap.add_argument("--jobs", type=int, help="processes at a time on the CPU (default: the config's)")
    ap.add_argument("--gpus", type=int, help="on CUDA, use this many GPUs (default: the config's "
                    "\"gpus\", else every GPU the machine shows): an evaluation a GPU, training "
                    "runs side by side with the GPUs shared out (data-parallel)")
    ap.add_argument("--time-limit", type=float, metavar="SEC",
                    help="return within SEC seconds of wall time: training runs stop at a step with "
                         "a checkpoint, evaluations still running are stopped, and the exit status "
                         "is 75 when anything is left; the same command again continues")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--tables-only", action="store_true",
                    help="train and evaluate nothing: remake tables and plots from the evaluation "
                         "outputs already under --out (with the runs' time.json for the times)")
    args = ap.parse_args()
    args.t0 = time.time()
    cfg_path = os.path.abspath(args.config) if args.config else \
        os.path.join(ROOT, "tools", "experiments", f"{args.scale}.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if args.config:
        args.config = os.path.relpath(cfg_path, ROOT)
    # Everything below is relative to the repository root, so that the recorded commands are too.
    args.out = os.path.relpath(os.path.abspath(args.out), ROOT)
    if os.path.isabs(args.topk):
        args.topk = os.path.relpath(args.topk, ROOT)
    os.chdir(ROOT)
    if not args.dry_run and not args.tables_only and args.study != "cost" and not os.path.exists(args.topk):
        raise SystemExit(f"{args.topk} not found: build first (make build) or pass --topk")
    r = Runner(cfg, args)
    try:
        run_studies(r, cfg, args)
    except OutOfTime:
        print(f"[{now()}] time limit reached; left for the next invocation: "
              + (", ".join(r.late) if r.late else "training") + ". Run the same command again "
              "to continue (finished runs and evaluations are kept).", flush=True)
        sys.exit(75)


def run_studies(r, cfg, args):
    studies = STUDIES if args.study == "all" else [args.study]
    if args.study in ("models", "all"):
        # The indexers' dense stage needs only the base, so it trains beside the SFT runs.
        ixm = [m for b in cfg["base"]["seeds"] for m in indexer_models(cfg, b)]
        train(r, bases(cfg) + sfts(cfg) + [m for m in ixm if m.kind == "indexer-dense"])
        train(r, [m for m in ixm if m.kind == "indexer-sparse"])
        if args.study == "models":
            return
    if args.study == "all" and r.slots() > 1 and not r.dry and not r.tables_only:
        # Every study's evaluations in one pool first, so that no GPU (or job slot) waits for a
        # study's last evaluation; then each study finds its evaluations done and writes its page.
        r.collect = []
        for s in studies:
            os.makedirs(os.path.join(args.out, s, cfg["scale"]), exist_ok=True)
            try:
                STUDY_FN[s](r, cfg, args, os.path.join(args.out, s, cfg["scale"]))
            except Collected:
                pass
        pending, r.collect = r.collect, None
        r.log = [x for x in r.log if x[0].startswith("train")]
        run_evals(r, pending)
    for s in studies:
        out = os.path.join(args.out, s, cfg["scale"])
        os.makedirs(out, exist_ok=True)
        r.log = [x for x in r.log if x[0].startswith("train")] if args.study == "all" else r.log
        args.t0 = time.time()
        STUDY_FN[s](r, cfg, args, out)
        if not r.dry and s != "cost":
            print(f"wrote {out}/table.md")


STUDY_FN = {"rho": study_rho, "sft": study_sft, "precision": study_precision,
            "entropy": study_entropy, "adapt": study_adapt, "cost": study_cost}

if __name__ == "__main__":
    main()
