#!/usr/bin/env python3
"""Training-step speed of the PyTorch and JAX ORGaNICs implementations.

  .venv/bin/python bench/bench.py --impl torch|jax|torch-lstm --task smnist|static \\
      --hidden 128 --batch 256 --seq 784 --steps 3 --threads 2 [--learned-wr] \\
      [--warmup 1] [--seed 0] [--lr X] [--variant ref|fused] [--no-optax]

One random batch of the task's shape (pixels uniform in [0, 1], random labels) is
trained on repeatedly: --warmup untimed steps (they include JAX's compilation), then
--steps timed ones, each forward, backward and Adam step. Progress goes to stderr, ONE
JSON line to stdout; its fields match `cargo xtask bench` where they overlap
(sec_per_step, step_sec_median, step_sec_min, samples_per_sec, peak_rss_mb).

smnist: rectified ORGaNICs over --seq steps of --input-size pixels, readout of the final
        y, cross-entropy, Adam lr 0.01, weight decay 1e-5 (L2). torch-lstm: nn.LSTM.
static: autoencoder 784-360-120-40, fixed-point layers 128 and 64 (W_r = I, or with
        --learned-wr a learned W_r and Algorithm 1), readout 10, cross-entropy + MSE
        reconstruction, Adam lr 1e-3, weight decay 1e-5. Its "hidden" is reported as
        [128, 64] and its "seq" as null.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--impl", choices=["torch", "jax", "torch-lstm"], required=True)
ap.add_argument("--task", choices=["smnist", "static"], default="smnist")
ap.add_argument("--hidden", type=int, default=128, help="sMNIST hidden units")
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--seq", type=int, default=784, help="sMNIST sequence length")
ap.add_argument("--input-size", type=int, default=1, help="sMNIST pixels per time step")
ap.add_argument("--steps", type=int, default=5, help="timed training steps")
ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--variant", choices=["ref", "fused"], default="ref",
                help="sMNIST step layout: ref = one matrix product per weight (as the authors' "
                     "code); fused = the same numbers with concatenated weights, 3 products a step")
ap.add_argument("--lr", type=float, default=None, help="default: 0.01 smnist, 0.001 static")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--learned-wr", action="store_true",
                help="static: learned W_r of spectral norm 1, Algorithm 1 (10 solves a layer)")
ap.add_argument("--no-optax", action="store_true", help="jax: the written-out Adam instead of optax's")
args = ap.parse_args()
if args.impl == "torch-lstm" and args.task != "smnist":
    ap.error("torch-lstm is an sMNIST baseline only")
if args.steps < 1:
    ap.error("--steps must be at least 1")

# Thread counts are read when torch / jax load, so they are fixed before the imports.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)
# XLA sizes its thread pool from the CPUs the process may run on.
if hasattr(os, "sched_setaffinity") and args.threads < len(os.sched_getaffinity(0)):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
if args.impl == "jax" and args.threads == 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
lr = args.lr if args.lr is not None else (0.01 if args.task == "smnist" else 0.001)
load_start = os.getloadavg()


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


if args.impl in ("torch", "torch-lstm"):
    import torch

    import organics_torch as ot

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    versions = {"torch": torch.__version__}
    if args.task == "static":
        model = ot.StaticOrganics(learned_wr=args.learned_wr)
        x = torch.rand(args.batch, 784)
    else:
        if args.impl == "torch":
            model = ot.SequenceOrganics(args.input_size, args.hidden, layout=args.variant)
        else:
            model = ot.SequenceLstm(args.input_size, args.hidden)
        x = torch.rand(args.batch, args.seq, args.input_size)
    labels = torch.randint(0, 10, (args.batch,))
    opt = ot.adam(model, lr)
    params = ot.count_trainable(model)

    def train_step():
        return ot.train_step(model, opt, x, labels)
else:
    import jax
    import jaxlib

    import organics_jax as oj

    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": oj.optax.__version__}
    k_init, k_x, k_labels = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    opt = oj.Adam(lr, use_optax=not args.no_optax)
    versions["optimizer"] = "optax" if opt.use_optax else "hand-written"
    labels = jax.random.randint(k_labels, (args.batch,), 0, 10)
    if args.task == "static":
        p = oj.init_static(k_init, learned_wr=args.learned_wr)
        x = jax.random.uniform(k_x, (args.batch, 784))
        step = oj.static_train_step(opt)
        extra = ()
    else:
        p, consts = oj.init_sequence(k_init, args.input_size, args.hidden)
        x = jax.random.uniform(k_x, (args.batch, args.seq, args.input_size))
        step = oj.sequence_train_step(opt, args.variant)
        extra = (consts,)
    state = [p, opt.init(p)]
    params = oj.count_params(p)

    def train_step():
        state[0], state[1], loss = step(state[0], state[1], *extra, x, labels)
        return float(loss)  # float() waits for the (asynchronous) computation

log(f"impl={args.impl} task={args.task} variant={args.variant} learned_wr={args.learned_wr} "
    f"hidden={args.hidden} batch={args.batch} seq={args.seq} threads={args.threads} params={params}")
losses, times = [], []
t0 = time.perf_counter()
for _ in range(args.warmup):
    losses.append(train_step())
warmup_sec = time.perf_counter() - t0
log(f"warm-up: {args.warmup} step(s) in {warmup_sec:.2f} s (includes any compilation)"
    + (f", loss {losses[-1]:.4f}" if losses else ""))
for i in range(args.steps):
    t = time.perf_counter()
    losses.append(train_step())
    times.append(time.perf_counter() - t)
    log(f"step {i + 1}/{args.steps}: {times[-1]:.3f} s, loss {losses[-1]:.4f}")

sec = statistics.fmean(times)
static = args.task == "static"
print(json.dumps({
    "impl": args.impl,
    "task": args.task,
    "hidden": [128, 64] if static else args.hidden,
    "batch": args.batch,
    "seq": None if static else args.seq,
    "steps": args.steps,
    "sec_per_step": round(sec, 5),
    "samples_per_sec": round(args.batch / sec, 2),
    # ru_maxrss is in KiB on Linux
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "variant": None if args.impl == "torch-lstm" else args.variant,
    "learned_wr": args.learned_wr if static else None,
    "input_size": 784 if static else args.input_size,
    "threads": args.threads,
    "params": params,
    "warmup_sec": round(warmup_sec, 3),
    "step_sec_min": round(min(times), 5),
    "step_sec_median": round(statistics.median(times), 5),
    "loss_first": round(losses[0], 5),
    "loss_last": round(losses[-1], 5),
    "loadavg_start": [round(v, 2) for v in load_start],
    "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    "versions": versions,
    "python": platform.python_version(),
}))
