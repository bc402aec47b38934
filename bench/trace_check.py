#!/usr/bin/env python3
"""organics' first training steps of a sequence run, repeated in PyTorch.

`cargo xtask trace --artifact-dir runs/<row> --steps 20 --out DIR` records, for a
sequence ORGaNICs run of organics, the starting parameters (exactly as `train` initialised
them), the batches of the first steps (as `train` drew them) and the loss of every step,
then the parameters after the last step. This script loads the starting parameters into
the PyTorch model of organics_torch.py, trains on the same batches with torch.optim.Adam
(the run's learning rate, weight decay and epsilon), and compares step by step:

  .venv/bin/python bench/trace_check.py DIR [--threads 2]

It runs PyTorch twice: in float32 (the precision organics trains in) and in float64, the
reference. The two float32 implementations should be equally close to the reference: the
check fails (exit status 1) when the first step's loss (same parameters, same batch: the
forward pass alone) differs from the reference by more than 1e-5 relative, or when
organics' losses or final parameters are further from the reference than three times
PyTorch's own float32 error (plus a floor for noise, FLOOR_* below).

With --f32-adam burn the float32 run steps with `BurnAdam` below, Adam's update as Burn's
`Adam` evaluates it (its scalars in float32), instead of torch.optim.Adam (the float64
reference keeps torch.optim.Adam): it shows how far the same float32 model moves from the
reference when only the optimizer's arithmetic changes. organics' own optimizer evaluates
torch.optim.Adam's expressions.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import organics_torch as ot  # noqa: E402

# Allowed: organics' distance from the float64 reference at most FACTOR times PyTorch
# float32's, plus the floor (losses: absolute, in nats; parameters: absolute).
FACTOR = 3.0
FLOOR_LOSS = 1e-6
FLOOR_PARAM = 1e-6
FIRST_LOSS_RELATIVE = 1e-5

# organics' parameter paths -> the PyTorch model's names (readout weight transposed:
# Burn's Linear stores [d_input, d_output], PyTorch's [out, in]).
CELL = ["w_zx", "w_r", "w_b0x", "w_b0y", "w_b0a", "w_b1x", "w_b1y", "w_b1a", "log_w"]
NAMES = {f"inner.rnn.cell.{w}": w for w in CELL}
NAMES.update({f"inner.rnn.cell.tau_{s}.theta": f"theta_{s}" for s in ("y", "a", "b0", "b1")})
NAMES.update({f"inner.rnn.{s}": s for s in ("y0", "a0", "b0_0", "b1_0")})
NAMES.update({"inner.readout.weight": "readout.weight", "inner.readout.bias": "readout.bias"})


def load(trace_dir):
    with open(os.path.join(trace_dir, "trace.json")) as f:
        trace = json.load(f)
    inputs = np.fromfile(os.path.join(trace_dir, "inputs.f32"), dtype="<f4")
    shape = (trace["steps"], trace["batch"], trace["seq"], 1)
    if inputs.size != np.prod(shape):
        sys.exit(f"inputs.f32 has {inputs.size} values, trace.json says {shape}")
    return trace, inputs.reshape(shape)


def as_torch(p):
    values = np.asarray(p["values"], dtype=np.float32).reshape(p["shape"])
    if p["name"] == "inner.readout.weight":
        values = values.T
    return torch.from_numpy(np.ascontiguousarray(values))


def model_from(trace, dtype):
    """The PyTorch model with organics' starting parameters, in `dtype`."""
    ot.R_MAX_Y, ot.R_MAX_A, ot.R_MAX_B = trace["r_max"]
    initial = {p["name"]: p for p in trace["initial"]}
    n = initial["inner.rnn.cell.w_r"]["shape"][0]
    model = ot.SequenceOrganics(1, n, layout="fused",
                                rectified_input=trace["config"].get("rectified_input", True),
                                rectified=trace["config"].get("rectified", True))
    unknown = set(initial) - set(NAMES)
    if unknown:
        sys.exit(f"parameters this check does not know: {sorted(unknown)}")
    missing = set(NAMES) - set(initial)
    if missing:
        sys.exit(f"parameters missing from the trace: {sorted(missing)}")
    state = model.state_dict()
    for name, p in initial.items():
        target = NAMES[name]
        value = as_torch(p)
        if tuple(state[target].shape) != tuple(value.shape):
            sys.exit(f"{name}: shape {tuple(value.shape)}, PyTorch's {target} has {tuple(state[target].shape)}")
        state[target] = value
    model.load_state_dict(state)
    model.sigma.fill_(trace["sigma"])
    for name, p in initial.items():
        if not p["trained"] and isinstance(getattr_path(model, NAMES[name]), torch.nn.Parameter):
            getattr_path(model, NAMES[name]).requires_grad_(False)
    return model.to(dtype)


def getattr_path(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def powi_f32(a, n):
    """a**n for n >= 0 as Rust's f32::powi computes it (compiler-rt's __powisf2: repeated
    squaring, every product rounded to float32)."""
    a, r = np.float32(a), np.float32(1)
    while True:
        if n & 1:
            r = np.float32(r * a)
        n >>= 1
        if n == 0:
            return r
        a = np.float32(a * a)


class BurnAdam:
    """Adam as Burn's `Adam` computes it, every scalar a float32: g' = p wd + g,
    m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'^2,
    p -= ((m c) / (sqrt(v) + eps sqrt(1 - b2^t))) lr with c = sqrt(1 - b2^t) / (1 - b1^t),
    the powers by powi_f32. torch.optim.Adam computes the
    same update as (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps), its scalars in
    float64."""

    def __init__(self, params, lr, weight_decay, eps):
        f = np.float32
        self.params = list(params)
        self.lr, self.wd, self.eps = f(lr), f(weight_decay), f(eps)
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)
        self.t = 0

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        f = np.float32
        self.t += 1
        b1, b2 = f(0.9), f(0.999)
        bc2_sqrt = np.sqrt(f(1) - powi_f32(b2, self.t), dtype=f)
        c = float(f(bc2_sqrt / (f(1) - powi_f32(b1, self.t))))
        eps, lr = float(f(self.eps * bc2_sqrt)), float(self.lr)
        k1, k2 = float(f(1) - b1), float(f(1) - b2)
        for i, p in enumerate(self.params):
            g = p * float(self.wd) + p.grad
            if self.t == 1:
                m, v = g * k1, g * g * k2
            else:
                m = self.m[i] * float(b1) + g * k1
                v = self.v[i] * float(b2) + g * g * k2
            self.m[i], self.v[i] = m, v
            p -= (m * c) / (v.sqrt() + eps) * lr


def run(trace, inputs, dtype, adam="torch"):
    """Loss of every step and the parameters after the last, in PyTorch at `dtype`."""
    model = model_from(trace, dtype)
    config = trace["config"]
    optimizer = BurnAdam if adam == "burn" else torch.optim.Adam
    opt = optimizer([p for p in model.parameters() if p.requires_grad], lr=trace["lr"],
                    weight_decay=config["weight_decay"], eps=config["adam_epsilon"])
    losses = []
    for step in range(trace["steps"]):
        x = torch.from_numpy(inputs[step]).to(dtype)
        labels = torch.tensor(trace["labels"][step], dtype=torch.long)
        losses.append(ot.train_step(model, opt, x, labels))
    params = {}
    for name, target in NAMES.items():
        value = getattr_path(model, target).detach().to(torch.float64)
        params[name] = value.T if name == "inner.readout.weight" else value
    return np.array(losses), params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--f32-adam", choices=["torch", "burn"], default="torch",
                        help="the float32 run's optimizer (the float64 reference's is torch's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trace, inputs = load(args.trace_dir)
    config = trace["config"]
    if config.get("optimizer", "adam") != "adam" or config.get("clip") is not None:
        sys.exit("the check repeats Adam without clipping, as the ORGaNICs runs train")
    print(f"{trace['steps']} steps ({trace.get('gradients', 'fused')} gradients), batch {trace['batch']}, lr {trace['lr']}, weight decay "
          f"{config['weight_decay']}, Adam eps {config['adam_epsilon']}, r_max {trace['r_max']}")
    ours = np.array(trace["losses"])
    if args.f32_adam != "torch":
        print(f"PyTorch float32 steps with {args.f32_adam.capitalize()}'s Adam arithmetic")
    l32, p32 = run(trace, inputs, torch.float32, args.f32_adam)
    l64, p64 = run(trace, inputs, torch.float64)

    print(f"{'step':>4} {'organics':>12} {'PyTorch f32':>12} {'PyTorch f64':>12} "
          f"{'|organics-f64|':>15} {'|f32-f64|':>10}")
    for t in range(len(ours)):
        print(f"{t + 1:>4} {ours[t]:>12.7f} {l32[t]:>12.7f} {l64[t]:>12.7f} "
              f"{abs(ours[t] - l64[t]):>15.2e} {abs(l32[t] - l64[t]):>10.2e}")
    failures = []
    first = abs(ours[0] - l64[0]) / abs(l64[0])
    if first > FIRST_LOSS_RELATIVE:
        failures.append(f"first loss differs from the reference by {first:.2e} relative")
    loss_ours = np.max(np.abs(ours - l64))
    loss_torch = np.max(np.abs(l32 - l64))
    print(f"losses: organics within {loss_ours:.2e} of float64, PyTorch float32 within {loss_torch:.2e}")
    if loss_ours > FACTOR * loss_torch + FLOOR_LOSS:
        failures.append(f"losses: {loss_ours:.2e} from the reference against PyTorch float32's {loss_torch:.2e}")

    last = {p["name"]: p for p in trace["last"]}
    print(f"{'parameter after the last step':<32} {'|organics-f64|':>15} {'|f32-f64|':>10} "
          f"{'moved (f64)':>12}")
    first_values = {p["name"]: as_torch(p).to(torch.float64) for p in trace["initial"]}
    for name in NAMES:
        theirs = p64[name]
        # Parsed as float32 first: the JSON holds each float32's shortest decimal form.
        mine = torch.tensor(np.asarray(last[name]["values"], dtype=np.float32)
                            .astype(np.float64).reshape(last[name]["shape"]))
        start = first_values[name]
        if name == "inner.readout.weight":
            start = start.T
        d_ours = (mine - theirs).abs().max().item()
        d_torch = (p32[name] - theirs).abs().max().item()
        moved = (theirs - start).abs().max().item()
        print(f"{name:<32} {d_ours:>15.2e} {d_torch:>10.2e} {moved:>12.2e}")
        if d_ours > FACTOR * d_torch + FLOOR_PARAM:
            failures.append(f"{name}: {d_ours:.2e} from the reference against PyTorch float32's {d_torch:.2e}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("ok: organics' steps agree with PyTorch's as closely as PyTorch float32 does")


if __name__ == "__main__":
    main()
