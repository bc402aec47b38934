"""ORGaNICs in PyTorch: the models the Rust crates implement, for the speed comparison.

The equations, initialisations and defaults are those of docs/MODEL.md; this file names
its parameters after that page (w_zx, w_r, log_w, theta_y, ...), and organics_jax.py uses
the very same names, so a state dict of one loads into the other (see crosscheck.py).

  SequenceOrganics  rectified ORGaNICs, explicit Euler over a pixel sequence, learned time
                    constants, linear readout of the final y (sMNIST)
  SequenceLstm      nn.LSTM with a linear readout of its final output (the paper's baseline)
  FixedPointLayer   the rates of an ORGaNICs layer's fixed point: closed form for W_r = I,
                    Algorithm 1 (K unrolled linear solves) for a learned W_r
  StaticOrganics    autoencoder 784-360-120-40, fixed-point layers 128 and 64, readout 10

  python bench/organics_torch.py     prints the trainable parameter counts
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Largest Euler step ratio dt/tau of each state (docs/MODEL.md, section 5).
R_MAX_Y, R_MAX_A, R_MAX_B = 0.02, 0.005, 0.1


def kaiming_a5(rows: int, cols: int) -> torch.Tensor:
    """Kaiming-uniform with a = sqrt(5), the initialisation of nn.Linear's weight:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    w = torch.empty(rows, cols)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return w


def normalization_weights(log_w: torch.Tensor) -> torch.Tensor:
    """W = clamp(exp(L), 0, 1), written so that W_ij = 1 exactly when L_ij >= 0 and passes
    no gradient there.

    The diagonal of L starts at exactly 0, on the clamp's upper edge. In the authors'
    PyTorch code the clamp passes no gradient at its edge, so W_ii = 1 for the whole run;
    this keeps that on purpose rather than by whichever convention a framework's clamp
    happens to have (organics_jax.py writes the same expression)."""
    inside = log_w < 0
    return torch.where(inside, torch.exp(torch.where(inside, log_w, 0.0)), 1.0)


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------
# sequence model (sMNIST)
# --------------------------------------------------------------------------------------
class SequenceOrganics(nn.Module):
    """Rectified ORGaNICs unrolled by explicit Euler, one input vector per time step:

        z   = relu(W_zx x)        (W_zx x with rectified_input=False)
        (with rectified=False, the main model: W_r y for relu(W_r y), y^2 for relu(y)^2)
        b0' = b0 + r_b0 (sigmoid(W_b0x x + W_b0y y + W_b0a a) - b0)
        b1' = b1 + r_b1 (sigmoid(W_b1x x + W_b1y y + W_b1a a) - b1)
        y'  = y + r_y (-y + b1 z + (1 - sqrt(relu a)) relu(W_r y))
        a'  = a + r_a (-a + sigma^2 b0^2 + W (relu(y)^2 relu(a)))

    with r_s = R_MAX_s sigmoid(theta_s). All four states update from the values at step
    t. Logits = readout(y_T).

    layout "ref" does one matrix product per weight matrix and step, as the authors'
    code does; "fused" computes the same numbers with the input projections of all steps
    in one product and the weights that multiply y (W_r, W_b0y, W_b1y) and a (W_b0a,
    W_b1a) concatenated: three products a step instead of eight.
    """

    def __init__(self, n_in: int = 1, n: int = 128, classes: int = 10, layout: str = "ref",
                 rectified_input: bool = True, rectified: bool = True):
        super().__init__()
        if layout not in ("ref", "fused"):
            raise ValueError(f"layout must be ref or fused, not {layout!r}")
        self.n, self.layout = n, layout
        # False: z = W_zx x without rectification (organics' --linear-input-drive).
        self.rectified_input = rectified_input
        # False: the main model (organics' --main-model), the authors' rnnCell_unrectified.
        self.rectified = rectified
        w_zx = kaiming_a5(n, n_in)
        self.w_zx = nn.Parameter(w_zx / torch.linalg.matrix_norm(w_zx, ord=2))
        self.w_r = nn.Parameter(nn.init.orthogonal_(torch.empty(n, n)))
        for gain in ("b0", "b1"):
            setattr(self, f"w_{gain}x", nn.Parameter(kaiming_a5(n, n_in)))
            setattr(self, f"w_{gain}y", nn.Parameter(kaiming_a5(n, n)))
            setattr(self, f"w_{gain}a", nn.Parameter(kaiming_a5(n, n)))
        log_w = torch.log(torch.rand(n, n).clamp_min(1e-8))
        log_w.fill_diagonal_(0.0)
        self.log_w = nn.Parameter(log_w)
        for state in ("y", "a", "b0", "b1"):
            setattr(self, f"theta_{state}", nn.Parameter(torch.randn(n)))
        self.readout = nn.Linear(n, classes)
        # Fixed, not learned: sigma and the initial state (the same for every sample).
        self.register_buffer("sigma", torch.ones(n))
        y0 = torch.rand(n)
        self.register_buffer("y0", y0 / y0.norm())
        self.register_buffer("a0", torch.rand(n))
        self.register_buffer("b0_0", torch.ones(n))
        self.register_buffer("b1_0", torch.rand(n))

    def rect(self, v: torch.Tensor) -> torch.Tensor:
        """The rectification of the circuit: relu in the rectified model, none in the main."""
        return F.relu(v) if self.rectified else v

    def step_ratios(self):
        return (R_MAX_Y * torch.sigmoid(self.theta_y), R_MAX_A * torch.sigmoid(self.theta_a),
                R_MAX_B * torch.sigmoid(self.theta_b0), R_MAX_B * torch.sigmoid(self.theta_b1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, steps, n_in] -> logits [batch, classes]."""
        batch = x.shape[0]
        y, a, b0, b1 = (s.expand(batch, -1) for s in (self.y0, self.a0, self.b0_0, self.b1_0))
        r_y, r_a, r_b0, r_b1 = self.step_ratios()
        w = normalization_weights(self.log_w)
        sigma2 = self.sigma ** 2
        n = self.n
        if self.layout == "ref":
            for x_t in x.unbind(1):
                z = F.linear(x_t, self.w_zx)
                z = F.relu(z) if self.rectified_input else z
                g0 = torch.sigmoid(F.linear(x_t, self.w_b0x) + F.linear(y, self.w_b0y)
                                   + F.linear(a, self.w_b0a))
                g1 = torch.sigmoid(F.linear(x_t, self.w_b1x) + F.linear(y, self.w_b1y)
                                   + F.linear(a, self.w_b1a))
                ra = F.relu(a)
                y_next = y + r_y * (-y + b1 * z + (1 - torch.sqrt(ra)) * self.rect(F.linear(y, self.w_r)))
                a_next = a + r_a * (-a + sigma2 * b0 ** 2 + F.linear(self.rect(y) ** 2 * ra, w))
                b0 = b0 + r_b0 * (g0 - b0)
                b1 = b1 + r_b1 * (g1 - b1)
                y, a = y_next, a_next
        else:
            w_x = torch.cat([self.w_zx, self.w_b0x, self.w_b1x])
            w_y = torch.cat([self.w_r, self.w_b0y, self.w_b1y]).t()
            w_a = torch.cat([self.w_b0a, self.w_b1a]).t()
            w_t = w.t()
            # unbind rather than indexing [:, t], and split rather than slicing: autograd
            # turns each index or slice into a zero-filled gradient of the whole tensor
            # (for [:, t], a [batch, steps, 3n] one every step, quadratic in the length).
            inputs = (part.unbind(1) for part in F.linear(x, w_x).split(n, dim=2))
            for x_z, x_b0, x_b1 in zip(*inputs):
                y_r, y_b0, y_b1 = (y @ w_y).split(n, dim=1)
                a_b0, a_b1 = (a @ w_a).split(n, dim=1)
                ra = F.relu(a)
                z = F.relu(x_z) if self.rectified_input else x_z
                y_next = y + r_y * (-y + b1 * z + (1 - torch.sqrt(ra)) * self.rect(y_r))
                a_next = a + r_a * (-a + sigma2 * b0 ** 2 + (self.rect(y) ** 2 * ra) @ w_t)
                b0 = b0 + r_b0 * (torch.sigmoid(x_b0 + y_b0 + a_b0) - b0)
                b1 = b1 + r_b1 * (torch.sigmoid(x_b1 + y_b1 + a_b1) - b1)
                y, a = y_next, a_next
        return self.readout(y)

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), labels)


class SequenceLstm(nn.Module):
    """The paper's sMNIST baseline: one LSTM layer, readout of its last output."""

    def __init__(self, n_in: int = 1, n: int = 128, classes: int = 10):
        super().__init__()
        self.lstm = nn.LSTM(n_in, n, batch_first=True)
        self.readout = nn.Linear(n, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.readout(out[:, -1])

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), labels)


# --------------------------------------------------------------------------------------
# static model (MNIST)
# --------------------------------------------------------------------------------------
class FixedPointLayer(nn.Module):
    """Firing rates relu(y_s)^2 of an ORGaNICs layer's fixed point (docs/MODEL.md, 3-4, 7):

        z = W_zx u / |W_zx u|,  b1 = sigmoid(W_bx u),  b0 = sigmoid(beta0),  sigma = 1
        W_r = I:      a_s = sigma^2 b0^2 + W (b1 z)^2,  y_s = b1 z / sqrt(a_s)
        W_r learned:  W_r = V / sigma_max(V), V starting at I; Algorithm 1 with K
                      iterations, each one linear solve per sample; autograd differentiates
                      the unrolled iterations.

    W = exp(L), L ~ U(-1, 0) with a zero diagonal; W_bx ~ N(0, 1) (the authors' code
    overwrites its Kaiming initialisation with a normal draw).
    """

    def __init__(self, m: int, n: int, learned_wr: bool = False, iterations: int = 10):
        super().__init__()
        self.iterations = iterations
        self.w_zx = nn.Parameter(kaiming_a5(n, m))
        self.w_bx = nn.Parameter(torch.randn(n, m))
        log_w = torch.empty(n, n).uniform_(-1.0, 0.0)
        log_w.fill_diagonal_(0.0)
        self.log_w = nn.Parameter(log_w)
        self.beta0 = nn.Parameter(torch.zeros(n))
        self.v = nn.Parameter(torch.eye(n)) if learned_wr else None
        self.sigma = 1.0

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = F.linear(u, self.w_zx)
        # The floor only guards an all-zero projection (0/0), as the Rust layer does.
        z = z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(1e-12)
        drive = torch.sigmoid(F.linear(u, self.w_bx)) * z
        base = (self.sigma * torch.sigmoid(self.beta0)) ** 2
        w = torch.exp(self.log_w)
        if self.v is None:
            return F.relu(drive / torch.sqrt(base + F.linear(drive ** 2, w))) ** 2
        w_r = self.v / torch.linalg.matrix_norm(self.v, ord=2)
        # a > 0 throughout (base > 0, W >= 0), so sqrt(a) needs no rectification here.
        a = base + F.linear(F.linear(drive, w_r) ** 2, w)
        eye = torch.eye(w_r.shape[0], dtype=w_r.dtype)
        y = drive
        for _ in range(self.iterations):
            system = eye - (1 - torch.sqrt(a)).unsqueeze(-1) * w_r  # I - D(1 - sqrt a) W_r
            y = torch.linalg.solve(system, drive.unsqueeze(-1)).squeeze(-1)
            a = base + F.linear(a * y ** 2, w)
        return F.relu(y) ** 2


class StaticOrganics(nn.Module):
    """Autoencoder 784-360-120-40 (ReLU, ReLU, sigmoid) with its mirrored decoder (sigmoid
    output), ORGaNICs fixed-point layers on the code, linear readout.
    Loss = cross-entropy + MSE(reconstruction, image)."""

    def __init__(self, image: int = 784, code: int = 40, layers=(128, 64), classes: int = 10,
                 learned_wr: bool = False):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(image, 360), nn.ReLU(), nn.Linear(360, 120), nn.ReLU(),
                                     nn.Linear(120, code), nn.Sigmoid())
        self.decoder = nn.Sequential(nn.Linear(code, 120), nn.ReLU(), nn.Linear(120, 360), nn.ReLU(),
                                     nn.Linear(360, image), nn.Sigmoid())
        sizes = (code, *layers)
        self.layers = nn.ModuleList(FixedPointLayer(m, n, learned_wr) for m, n in zip(sizes, sizes[1:]))
        self.readout = nn.Linear(sizes[-1], classes)

    def forward(self, images: torch.Tensor):
        code = self.encoder(images)
        h = code
        for layer in self.layers:
            h = layer(h)
        return self.readout(h), self.decoder(code)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, reconstruction = self(images)
        return F.cross_entropy(logits, labels) + F.mse_loss(reconstruction, images)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def adam(model: nn.Module, lr: float, weight_decay: float = 1e-5) -> torch.optim.Adam:
    """Adam with weight decay as L2 (added to the gradient), as the paper trains."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               labels: torch.Tensor) -> float:
    """One training step (forward, backward, Adam); returns the loss before the step."""
    opt.zero_grad(set_to_none=True)
    loss = model.loss(x, labels)
    loss.backward()
    opt.step()
    return loss.item()


if __name__ == "__main__":
    torch.manual_seed(0)
    for n in (64, 128):
        print(f"sMNIST ORGaNICs n={n}: {count_trainable(SequenceOrganics(1, n)):,} trainable parameters")
    print(f"sMNIST LSTM n=128: {count_trainable(SequenceLstm(1, 128)):,} trainable parameters")
    print(f"static ORGaNICs, W_r = I: {count_trainable(StaticOrganics()):,} trainable parameters")
    print(f"static ORGaNICs, learned W_r: {count_trainable(StaticOrganics(learned_wr=True)):,} "
          "trainable parameters")
