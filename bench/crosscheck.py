#!/usr/bin/env python3
"""The PyTorch and JAX implementations compute the same thing: from the same parameters
(a PyTorch model's, copied into JAX), the same loss and the same gradient of every
parameter, for the sMNIST model (both step layouts), the static model with W_r = I and
with a learned W_r (Algorithm 1); and one Adam step (PyTorch's, optax's and the written-out
one) moves the parameters the same way. Each check runs in float64, where the two must
agree to rounding, and in float32, the precision the benchmark runs in.

  .venv/bin/python bench/crosscheck.py [--hidden 32 --batch 16 --seq 100]

Prints one line per check and exits with status 1 if any difference exceeds its
tolerance (TOLERANCE below) or W's diagonal receives a gradient.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # before any array exists
import jax.numpy as jnp  # noqa: E402

import organics_jax as oj  # noqa: E402
import organics_torch as ot  # noqa: E402

# Largest allowed difference, relative to the largest magnitude of the PyTorch value: per
# loss and per gradient tensor; for the Adam step, per parameter tensor and relative to the
# learning rate (the size of Adam's first step, whose g / sqrt(g^2) amplifies the rounding
# of tiny gradients). Measured on x86_64 with the pinned versions: float64 below 1e-13,
# float32 below 2e-6 (gradients) and 5e-5 (Adam step); the bounds leave room for other
# CPUs and BLAS libraries.
TOLERANCE = {("float64", "grad"): 1e-9, ("float64", "adam"): 1e-9,
             ("float32", "grad"): 1e-4, ("float32", "adam"): 1e-3}

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--hidden", type=int, default=32, help="sMNIST hidden units")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--seq", type=int, default=100, help="sMNIST sequence length")
args = ap.parse_args()
torch.set_num_threads(2)

failures = []


def rel_diff(j, t) -> float:
    j, t = np.asarray(j, np.float64), np.asarray(t.detach().numpy() if torch.is_tensor(t) else t, np.float64)
    return float(np.max(np.abs(j - t)) / max(np.max(np.abs(t)), 1e-30))


def report(what: str, dtype: str, diffs: dict, kind: str = "grad"):
    """diffs: name -> relative difference; one line with the worst."""
    worst = max(diffs, key=diffs.get)
    tol = TOLERANCE[dtype, kind]
    ok = diffs[worst] <= tol
    print(f"{'ok      ' if ok else 'MISMATCH'} {dtype} {what}: worst {diffs[worst]:.1e} ({worst}), "
          f"tolerance {tol:.0e}")
    if not ok:
        failures.append(f"{dtype} {what}")


def loss_and_grads(model, x, labels, jax_loss, *jax_inputs):
    """Loss and gradients from both implementations; returns the relative differences."""
    model.zero_grad()
    loss_t = model.loss(x, labels)
    loss_t.backward()
    params, buffers = oj.from_torch(model)
    inputs = (jnp.asarray(x.numpy()), jnp.asarray(labels.numpy()))
    extra = (buffers,) if buffers else ()
    loss_j, grads_j = jax.value_and_grad(jax_loss)(params, *extra, *inputs, *jax_inputs)
    diffs = {"loss": rel_diff(loss_j, loss_t)}
    diffs.update({name: rel_diff(grads_j[name], p.grad) for name, p in model.named_parameters()})
    return diffs, grads_j


for dtype_name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
    # ---- sMNIST model, both layouts --------------------------------------------------
    torch.manual_seed(0)
    seq_model = ot.SequenceOrganics(1, args.hidden).to(dtype)
    x = torch.rand(args.batch, args.seq, 1, dtype=dtype)
    labels = torch.randint(0, 10, (args.batch,))
    for layout in ("ref", "fused"):
        seq_model.layout = layout
        diffs, grads_j = loss_and_grads(seq_model, x, labels, oj.sequence_loss, layout)
        report(f"sMNIST n={args.hidden} seq={args.seq} {layout}: loss and gradients", dtype_name, diffs)
        # W_ii = 1 sits on the clamp's edge: neither implementation may move it.
        diag = max(float(np.max(np.abs(np.diag(np.asarray(grads_j["log_w"]))))),
                   float(seq_model.log_w.grad.diagonal().abs().max()))
        if diag != 0.0:
            failures.append(f"{dtype_name} sMNIST {layout}: gradient on diag(log_w) {diag:.1e}")
            print(f"MISMATCH {dtype_name} sMNIST {layout}: diag(log_w) has gradient {diag:.1e}, must be 0")

    # ---- one Adam step of the sMNIST model -------------------------------------------
    seq_model.layout = "ref"
    lr = 0.01
    params0, buffers = oj.from_torch(seq_model)
    opt = ot.adam(seq_model, lr)
    ot.train_step(seq_model, opt, x, labels)
    params_t, _ = oj.from_torch(seq_model)
    for use_optax in (True, False):
        adam = oj.Adam(lr, use_optax=use_optax)
        step = oj.sequence_train_step(adam)
        params_j, _, _ = step(params0, adam.init(params0), buffers, jnp.asarray(x.numpy()),
                              jnp.asarray(labels.numpy()))
        diffs = {k: float(jnp.max(jnp.abs(params_j[k] - params_t[k]))) / lr for k in params_t}
        report(f"sMNIST one Adam step, PyTorch vs {'optax' if use_optax else 'written-out'}",
               dtype_name, diffs, "adam")

    # ---- static model, W_r = I and learned W_r ---------------------------------------
    for learned_wr in (False, True):
        torch.manual_seed(1)
        static = ot.StaticOrganics(learned_wr=learned_wr).to(dtype)
        if learned_wr:
            # At V = I every singular value is 1, so the gradient of sigma_max(V) is not
            # unique and the two SVDs may pick different ones; a small perturbation makes
            # the largest singular value simple, as it is after the first training step.
            with torch.no_grad():
                for layer in static.layers:
                    layer.v.add_(0.05 * torch.randn_like(layer.v))
        images = torch.rand(args.batch, 784, dtype=dtype)
        labels = torch.randint(0, 10, (args.batch,))
        diffs, _ = loss_and_grads(static, images, labels, oj.static_loss)
        what = "learned W_r (Algorithm 1, K = 10)" if learned_wr else "W_r = I"
        report(f"static MNIST {what}: loss and gradients", dtype_name, diffs)

if failures:
    print("CROSSCHECK FAILED:", "; ".join(failures))
    sys.exit(1)
print("CROSSCHECK OK")
