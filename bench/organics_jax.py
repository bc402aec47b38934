"""ORGaNICs in JAX: the models of organics_torch.py, compiled by XLA.

Parameters are flat dicts keyed by the names of the PyTorch modules' state dicts
("w_zx", "log_w", "readout.weight", "layers.0.v", ...), with the same shapes, so
`from_torch` turns a PyTorch model into this file's parameters (crosscheck.py relies on
it). The sequence model runs its time steps with lax.scan; a whole training step (loss,
gradients, Adam) is one jitted function. Every function follows the dtype of the
parameters, so the cross-check can also run in float64.

  python bench/organics_jax.py     prints the trainable parameter counts
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

R_MAX_Y, R_MAX_A, R_MAX_B = 0.02, 0.005, 0.1
DENSE_ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _fan_in_uniform(key, shape, fan_in=None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = shape[1] by default: PyTorch's
    Kaiming-uniform with a = sqrt(5), which is also nn.Linear's weight and bias init."""
    bound = 1.0 / math.sqrt(fan_in or shape[1])
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _dense_init(key, params, name, fan_in, fan_out):
    kw, kb = jax.random.split(key)
    params[f"{name}.weight"] = _fan_in_uniform(kw, (fan_out, fan_in))
    params[f"{name}.bias"] = _fan_in_uniform(kb, (fan_out,), fan_in)


def _dense(params, name, x):
    return x @ params[f"{name}.weight"].T + params[f"{name}.bias"]


def normalization_weights(log_w):
    """W = clamp(exp(L), 0, 1) with no gradient where the clamp is active, L >= 0; see
    organics_torch.normalization_weights. (jnp.clip would pass half the gradient at
    L = 0, where the diagonal starts.) The inner where keeps exp from overflowing in the
    branch that is not taken, whose gradient would otherwise be 0 * inf."""
    inside = log_w < 0
    return jnp.where(inside, jnp.exp(jnp.where(inside, log_w, 0.0)), 1.0)


def count_params(params) -> int:
    return int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(params)))


def from_torch(module):
    """(parameters, buffers) of a PyTorch module as this file's dicts of arrays."""
    as_jax = lambda t: jnp.asarray(t.detach().cpu().numpy())  # noqa: E731
    return ({k: as_jax(v) for k, v in module.named_parameters()},
            {k: as_jax(v) for k, v in module.named_buffers()})


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


# --------------------------------------------------------------------------------------
# sequence model (sMNIST)
# --------------------------------------------------------------------------------------
def init_sequence(key, n_in=1, n=128, classes=10):
    """(params, consts) of the rectified ORGaNICs sequence model; consts are sigma and the
    fixed initial state."""
    k = iter(jax.random.split(key, 17))
    w_zx = _fan_in_uniform(next(k), (n, n_in))
    params = {
        "w_zx": w_zx / jnp.linalg.norm(w_zx, ord=2),
        "w_r": jax.nn.initializers.orthogonal()(next(k), (n, n), jnp.float32),
    }
    for gain in ("b0", "b1"):
        params[f"w_{gain}x"] = _fan_in_uniform(next(k), (n, n_in))
        params[f"w_{gain}y"] = _fan_in_uniform(next(k), (n, n))
        params[f"w_{gain}a"] = _fan_in_uniform(next(k), (n, n))
    log_w = jnp.log(jnp.maximum(jax.random.uniform(next(k), (n, n)), 1e-8))
    params["log_w"] = log_w.at[jnp.diag_indices(n)].set(0.0)
    for state in ("y", "a", "b0", "b1"):
        params[f"theta_{state}"] = jax.random.normal(next(k), (n,))
    _dense_init(next(k), params, "readout", n, classes)
    y0 = jax.random.uniform(next(k), (n,))
    consts = {
        "sigma": jnp.ones((n,)),
        "y0": y0 / jnp.linalg.norm(y0),
        "a0": jax.random.uniform(next(k), (n,)),
        "b0_0": jnp.ones((n,)),
        "b1_0": jax.random.uniform(next(k), (n,)),
    }
    return params, consts


def sequence_logits(params, consts, x, layout="ref"):
    """x: [batch, steps, n_in] -> logits [batch, classes]; the equations and the two
    layouts are those of organics_torch.SequenceOrganics."""
    p = params
    relu, sigmoid = jax.nn.relu, jax.nn.sigmoid
    n = p["w_r"].shape[0]
    r_y = R_MAX_Y * sigmoid(p["theta_y"])
    r_a = R_MAX_A * sigmoid(p["theta_a"])
    r_b0 = R_MAX_B * sigmoid(p["theta_b0"])
    r_b1 = R_MAX_B * sigmoid(p["theta_b1"])
    w_t = normalization_weights(p["log_w"]).T
    sigma2 = consts["sigma"] ** 2
    start = tuple(jnp.broadcast_to(consts[s], (x.shape[0], n)).astype(x.dtype)
                  for s in ("y0", "a0", "b0_0", "b1_0"))
    x_steps = jnp.swapaxes(x, 0, 1)

    def update(state, z, g0, g1, recurrent):
        y, a, b0, b1 = state
        ra = relu(a)
        return (y + r_y * (-y + b1 * z + (1 - jnp.sqrt(ra)) * relu(recurrent)),
                a + r_a * (-a + sigma2 * b0 ** 2 + (relu(y) ** 2 * ra) @ w_t),
                b0 + r_b0 * (sigmoid(g0) - b0),
                b1 + r_b1 * (sigmoid(g1) - b1))

    if layout == "ref":
        def step(state, x_t):
            y, a = state[0], state[1]
            g0 = x_t @ p["w_b0x"].T + y @ p["w_b0y"].T + a @ p["w_b0a"].T
            g1 = x_t @ p["w_b1x"].T + y @ p["w_b1y"].T + a @ p["w_b1a"].T
            return update(state, relu(x_t @ p["w_zx"].T), g0, g1, y @ p["w_r"].T), None

        final, _ = jax.lax.scan(step, start, x_steps)
    elif layout == "fused":
        w_x = jnp.concatenate([p["w_zx"], p["w_b0x"], p["w_b1x"]])
        w_y = jnp.concatenate([p["w_r"], p["w_b0y"], p["w_b1y"]]).T
        w_a = jnp.concatenate([p["w_b0a"], p["w_b1a"]]).T

        def step(state, p_x):
            p_y, p_a = state[0] @ w_y, state[1] @ w_a
            g0 = p_x[:, n:2 * n] + p_y[:, n:2 * n] + p_a[:, :n]
            g1 = p_x[:, 2 * n:] + p_y[:, 2 * n:] + p_a[:, n:]
            return update(state, relu(p_x[:, :n]), g0, g1, p_y[:, :n]), None

        final, _ = jax.lax.scan(step, start, x_steps @ w_x.T)
    else:
        raise ValueError(f"layout must be ref or fused, not {layout!r}")
    return _dense(p, "readout", final[0])


def sequence_loss(params, consts, x, labels, layout="ref"):
    return cross_entropy(sequence_logits(params, consts, x, layout), labels)


# --------------------------------------------------------------------------------------
# static model (MNIST)
# --------------------------------------------------------------------------------------
ENCODER = ((784, 360, "relu"), (360, 120, "relu"), (120, 40, "sigmoid"))
DECODER = ((40, 120, "relu"), (120, 360, "relu"), (360, 784, "sigmoid"))


def init_static(key, layers=(128, 64), classes=10, learned_wr=False):
    """Parameters of organics_torch.StaticOrganics (same names: "encoder.0.weight", ...;
    the ReLU and sigmoid modules take the odd indices there)."""
    k = iter(jax.random.split(key, 16))
    params = {}
    for part, spec in (("encoder", ENCODER), ("decoder", DECODER)):
        for i, (fan_in, fan_out, _) in enumerate(spec):
            _dense_init(next(k), params, f"{part}.{2 * i}", fan_in, fan_out)
    sizes = (ENCODER[-1][1], *layers)
    for i, (m, n) in enumerate(zip(sizes, sizes[1:])):
        pre = f"layers.{i}"
        params[f"{pre}.w_zx"] = _fan_in_uniform(next(k), (n, m))
        params[f"{pre}.w_bx"] = jax.random.normal(next(k), (n, m))
        log_w = jax.random.uniform(next(k), (n, n), jnp.float32, -1.0, 0.0)
        params[f"{pre}.log_w"] = log_w.at[jnp.diag_indices(n)].set(0.0)
        params[f"{pre}.beta0"] = jnp.zeros((n,))
        if learned_wr:
            params[f"{pre}.v"] = jnp.eye(n)
    _dense_init(next(k), params, "readout", sizes[-1], classes)
    return params


def fixed_point_rates(params, pre, u, iterations=10, sigma=1.0):
    """relu(y_s)^2 of one layer; see organics_torch.FixedPointLayer."""
    p = lambda name: params[f"{pre}.{name}"]  # noqa: E731
    z = u @ p("w_zx").T
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    drive = jax.nn.sigmoid(u @ p("w_bx").T) * z
    base = (sigma * jax.nn.sigmoid(p("beta0"))) ** 2
    w_t = jnp.exp(p("log_w")).T
    if f"{pre}.v" not in params:
        return jax.nn.relu(drive / jnp.sqrt(base + drive ** 2 @ w_t)) ** 2
    w_r = p("v") / jnp.linalg.norm(p("v"), ord=2)
    a = base + (drive @ w_r.T) ** 2 @ w_t
    eye = jnp.eye(w_r.shape[0], dtype=w_r.dtype)
    y = drive
    for _ in range(iterations):  # unrolled under jit, like the PyTorch loop under autograd
        system = eye - (1 - jnp.sqrt(a))[:, :, None] * w_r
        y = jnp.linalg.solve(system, drive[:, :, None])[:, :, 0]
        a = base + (a * y ** 2) @ w_t
    return jax.nn.relu(y) ** 2


def static_loss(params, images, labels):
    def mlp(part, spec, h):
        for i, (_, _, act) in enumerate(spec):
            h = DENSE_ACTIVATIONS[act](_dense(params, f"{part}.{2 * i}", h))
        return h

    code = mlp("encoder", ENCODER, images)
    reconstruction = mlp("decoder", DECODER, code)
    h, i = code, 0
    while f"layers.{i}.w_zx" in params:
        h = fixed_point_rates(params, f"layers.{i}", h)
        i += 1
    logits = _dense(params, "readout", h)
    return cross_entropy(logits, labels) + jnp.mean((reconstruction - images) ** 2)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
class Adam:
    """Adam with weight decay as L2 (added to the gradient before the moments), the
    semantics of torch.optim.Adam(weight_decay=...): through optax, or written out (the
    two are checked against each other and against PyTorch by crosscheck.py)."""

    def __init__(self, lr, weight_decay=1e-5, b1=0.9, b2=0.999, eps=1e-8, use_optax=True):
        self.lr, self.weight_decay, self.b1, self.b2, self.eps = lr, weight_decay, b1, b2, eps
        self.use_optax = use_optax
        self.tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr, b1, b2, eps))

    def init(self, params):
        if self.use_optax:
            return self.tx.init(params)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return jnp.zeros((), jnp.int32), zeros, zeros

    def update(self, grads, state, params):
        if self.use_optax:
            updates, state = self.tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        t, m, v = state
        t = t + 1
        tm = jax.tree_util.tree_map
        g = tm(lambda g, p: g + self.weight_decay * p, grads, params)
        m = tm(lambda m, g: self.b1 * m + (1 - self.b1) * g, m, g)
        v = tm(lambda v, g: self.b2 * v + (1 - self.b2) * g * g, v, g)
        c1, c2 = 1 - self.b1 ** t, 1 - self.b2 ** t
        params = tm(lambda p, m, v: p - self.lr * (m / c1) / (jnp.sqrt(v / c2) + self.eps), params, m, v)
        return params, (t, m, v)


def sequence_train_step(opt: Adam, layout="ref"):
    """jitted (params, opt_state, consts, x, labels) -> (params, opt_state, loss)."""
    @jax.jit
    def step(params, opt_state, consts, x, labels):
        loss, grads = jax.value_and_grad(sequence_loss)(params, consts, x, labels, layout)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss
    return step


def static_train_step(opt: Adam):
    """jitted (params, opt_state, images, labels) -> (params, opt_state, loss)."""
    @jax.jit
    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(static_loss)(params, images, labels)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss
    return step


if __name__ == "__main__":
    key = jax.random.PRNGKey(0)
    for n in (64, 128):
        print(f"sMNIST ORGaNICs n={n}: {count_params(init_sequence(key, 1, n)[0]):,} trainable parameters")
    print(f"static ORGaNICs, W_r = I: {count_params(init_static(key)):,} trainable parameters")
    print(f"static ORGaNICs, learned W_r: {count_params(init_static(key, learned_wr=True)):,} "
          "trainable parameters")
