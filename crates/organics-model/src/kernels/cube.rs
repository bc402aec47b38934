//! The element-wise work of a sequence time step as fused CubeCL kernels on wgpu, forward and
//! back (cargo feature `wgpu`): [`BpttKernel::FusedGpu`](crate::BpttKernel::FusedGpu).
//!
//! Burn's tensor ops run every element-wise op of [`crate::cell`]'s step and of its
//! hand-derived backward pass ([`crate::grad::sequence`]) as a kernel of its own: dozens of
//! launches per time step, 784 steps per sequence. Here every step's input product is one
//! product over the whole sequence before the first step; a step forward is then its three
//! products (left to Burn's matmul) and one kernel; back, one kernel for the pool's delta, its
//! product, one kernel for everything else and one product for the deltas through `W_y` and
//! `W_a` together. The kernels compute the expressions of the tensor-op path in the same
//! order, so the two agree to rounding (tests on wgpu check both against autodiff).
//!
//! The kernels take plain (non-autodiff) `f32` tensors on a wgpu device. The states of the
//! whole sequence live in one `[T + 1, 5, batch, n]` buffer (`y, a, b0, b1` and the pool's
//! input `u = ⌊y⌋²⌊a⌋` of each state), the records in one `[T, 6, batch, n]` buffer (`zx, ry,
//! g0, g1, dy, da`) and the backward pass's deltas in `[T·batch, ·]` buffers, each kernel
//! addressing its step's slot: no copies between the steps, each weight gradient one product
//! at the end, and few bindings per kernel (some GPUs allow no more than 31 storage buffers
//! per kernel).

use burn::backend::DispatchDevice;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::cubecl;
use burn::prelude::*;
use burn::tensor::DType;

use crate::cell::{CellWeights, OrganicsState, PreparedCell};

/// The kernels themselves, in a module of their own: CubeCL's prelude has a `Tensor` too.
/// They are written in the forms the `#[cube]` macro expands (a comptime condition in an
/// `if` of its own, plain assignments to tensor elements), hence the two lints allowed.
#[allow(clippy::assign_op_pattern, clippy::collapsible_if)]
mod device {
    use super::cubecl;
    use cubecl::prelude::*;

    /// Element `(row, col)` of a 2-D tensor, through its strides.
    #[cube]
    fn at<F: Float>(t: &Tensor<F>, row: usize, col: usize) -> F {
        t[row * t.stride(0) + col * t.stride(1)]
    }

    /// Element `(k, row, col)` of a 3-D stack, through its strides.
    #[cube]
    fn at3<F: Float>(t: &Tensor<F>, k: usize, row: usize, col: usize) -> F {
        t[k * t.stride(0) + row * t.stride(1) + col * t.stride(2)]
    }

    /// `max(x, 0)`, NaN kept (as `kernels::elementwise::relu`).
    #[cube]
    fn relu<F: Float>(x: F) -> F {
        let mut out = x;
        if x < F::new(0.0) {
            out = F::new(0.0);
        }
        out
    }

    #[cube]
    fn sigmoid<F: Float>(x: F) -> F {
        F::new(1.0) / (F::exp(F::new(0.0) - x) + F::new(1.0))
    }

    /// The pool's input `u = ⌊y⌋² ⌊a⌋` (`y² ⌊a⌋` for the main model).
    #[cube]
    fn pool_of<F: Float>(y: F, a: F, #[comptime] rectified: bool) -> F {
        let mut y_act = y;
        if rectified {
            y_act = relu::<F>(y);
        }
        y_act * y_act * relu::<F>(a)
    }

    /// The first state, slot 0 of `states` (`[T + 1, 5, B, n]`), from `y, a, b0, b1`
    /// (`[B, n]` each, any strides).
    #[cube(launch)]
    pub fn initial<F: Float>(
        y: &Tensor<F>,
        a: &Tensor<F>,
        b0: &Tensor<F>,
        b1: &Tensor<F>,
        states: &mut Tensor<F>,
        #[comptime] rectified: bool,
    ) {
        let pos = ABSOLUTE_POS;
        let n = y.shape(1);
        let size = y.shape(0) * n;
        if pos >= size {
            terminate!();
        }
        let (row, j) = (pos / n, pos % n);
        let (yv, av) = (at::<F>(y, row, j), at::<F>(a, row, j));
        states[pos] = yv;
        states[size + pos] = av;
        states[2 * size + pos] = at::<F>(b0, row, j);
        states[3 * size + pos] = at::<F>(b1, row, j);
        states[4 * size + pos] = pool_of::<F>(yv, av, rectified);
    }

    /// Euler step `t` after its products (`crate::cell`'s equations): reads slot `t` of
    /// `states` (`[T + 1, 5, B, n]`: y, a, b0, b1, u) and row block `t` of `from_x`
    /// (`[T·B, 3n]`), writes slot `t + 1` of `states` and slot `t` of `records`
    /// (`[T, 6, B, n]`: zx, ry, g0, g1, dy, da).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn step<F: Float>(
        from_x: &Tensor<F>,
        from_y: &Tensor<F>,
        from_a: &Tensor<F>,
        pooled: &Tensor<F>,
        ratios: &Tensor<F>,
        states: &mut Tensor<F>,
        records: &mut Tensor<F>,
        t: u32,
        sigma_sq: f32,
        #[comptime] rectified: bool,
        #[comptime] rectified_input: bool,
    ) {
        let pos = ABSOLUTE_POS;
        let n = from_y.shape(1) / 3;
        let batch = from_y.shape(0);
        let size = batch * n;
        if pos >= size {
            terminate!();
        }
        let t = t as usize;
        let (row, j) = (pos / n, pos % n);
        let x_row = t * batch + row;
        let zx = at::<F>(from_x, x_row, j);
        let ry = at::<F>(from_y, row, j);
        let h0 =
            at::<F>(from_x, x_row, n + j) + at::<F>(from_y, row, n + j) + at::<F>(from_a, row, j);
        let h1 = at::<F>(from_x, x_row, 2 * n + j)
            + at::<F>(from_y, row, 2 * n + j)
            + at::<F>(from_a, row, n + j);
        let g0 = sigmoid::<F>(h0);
        let g1 = sigmoid::<F>(h1);
        let now = t * 5 * size + pos;
        let y = states[now];
        let a = states[now + size];
        let b0 = states[now + 2 * size];
        let b1 = states[now + 3 * size];
        let mut z = zx;
        if rectified_input {
            z = relu::<F>(zx);
        }
        let mut rec = ry;
        if rectified {
            rec = relu::<F>(ry);
        }
        let gate = F::new(1.0) - F::sqrt(relu::<F>(a));
        let dy = b1 * z + gate * rec - y;
        let da = b0 * b0 * F::cast_from(sigma_sq) + at::<F>(pooled, row, j) - a;
        let y2 = y + at::<F>(ratios, 0, j) * dy;
        let a2 = a + at::<F>(ratios, 1, j) * da;
        let next = now + 5 * size;
        states[next] = y2;
        states[next + size] = a2;
        states[next + 2 * size] = b0 + at::<F>(ratios, 2, j) * (g0 - b0);
        states[next + 3 * size] = b1 + at::<F>(ratios, 3, j) * (g1 - b1);
        states[next + 4 * size] = pool_of::<F>(y2, a2, rectified);
        let rec_at = t * 6 * size + pos;
        records[rec_at] = zx;
        records[rec_at + size] = ry;
        records[rec_at + 2 * size] = g0;
        records[rec_at + 3 * size] = g1;
        records[rec_at + 4 * size] = dy;
        records[rec_at + 5 * size] = da;
    }

    /// Going back through step `t`, before its products: the pool's output delta
    /// `δa = r_a ⊙ ḡ_a'` (with `ḡ_a'` = `g_part[1] + g_prod[:, n..]`) into row block `t` of
    /// `d_a` (`[T·B, n]`).
    #[cube(launch)]
    pub fn pool_back<F: Float>(
        g_part: &Tensor<F>,
        g_prod: &Tensor<F>,
        ratios: &Tensor<F>,
        d_a: &mut Tensor<F>,
        t: u32,
    ) {
        let pos = ABSOLUTE_POS;
        let n = g_part.shape(2);
        let size = g_part.shape(1) * n;
        if pos >= size {
            terminate!();
        }
        let (row, j) = (pos / n, pos % n);
        let ga = at3::<F>(g_part, 1, row, j) + at::<F>(g_prod, row, n + j);
        d_a[t as usize * size + pos] = at::<F>(ratios, 1, j) * ga;
    }

    /// Going back through step `t`, the element-wise rest (`crate::grad::sequence`'s
    /// equations). The gradients with respect to the state after the step are
    /// `g_part + [g_prod, 0, 0]` (`g_prod` = `[ḡ_y | ḡ_a]` from the products, `[B, 2n]`);
    /// writes row block `t` of the products' deltas `d_from_y = [δrec, δh0, δh1]` and
    /// `d_from_x = [δzx, δh0, δh1]` (`[T·B, 3n]` each), the state gradients before the step
    /// without their products into `grads` (`[4, B, n]`), and adds `Δ ⊙ ḡ'` of the four step
    /// ratios into `ratio_acc` (`[4, B, n]`).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn step_back<F: Float>(
        states: &Tensor<F>,
        records: &Tensor<F>,
        g_part: &Tensor<F>,
        g_prod: &Tensor<F>,
        d_a: &Tensor<F>,
        d_u: &Tensor<F>,
        ratios: &Tensor<F>,
        ratio_acc: &mut Tensor<F>,
        d_from_y: &mut Tensor<F>,
        d_from_x: &mut Tensor<F>,
        grads: &mut Tensor<F>,
        t: u32,
        sigma2: f32,
        #[comptime] rectified: bool,
        #[comptime] rectified_input: bool,
    ) {
        let pos = ABSOLUTE_POS;
        let n = d_u.shape(1);
        let batch = d_u.shape(0);
        let size = batch * n;
        if pos >= size {
            terminate!();
        }
        let t = t as usize;
        let (row, j) = (pos / n, pos % n);
        let now = t * 5 * size + pos;
        let y = states[now];
        let a = states[now + size];
        let b0 = states[now + 2 * size];
        let b1 = states[now + 3 * size];
        let rec_at = t * 6 * size + pos;
        let zx = records[rec_at];
        let ry = records[rec_at + size];
        let g0 = records[rec_at + 2 * size];
        let g1 = records[rec_at + 3 * size];
        let dy_s = records[rec_at + 4 * size];
        let da_s = records[rec_at + 5 * size];
        let gy = at3::<F>(g_part, 0, row, j) + at::<F>(g_prod, row, j);
        let ga = at3::<F>(g_part, 1, row, j) + at::<F>(g_prod, row, n + j);
        let gb0 = at3::<F>(g_part, 2, row, j);
        let gb1 = at3::<F>(g_part, 3, row, j);
        let da = d_a[t * size + pos];
        let du = at::<F>(d_u, row, j);
        let r_y = at::<F>(ratios, 0, j);
        let r_b0 = at::<F>(ratios, 2, j);
        let r_b1 = at::<F>(ratios, 3, j);

        let mut z = zx;
        if rectified_input {
            z = relu::<F>(zx);
        }
        let mut rec = ry;
        if rectified {
            rec = relu::<F>(ry);
        }
        let a_pos = relu::<F>(a);
        let sqrt_a = F::sqrt(a_pos);
        let gate = F::new(1.0) - sqrt_a;
        let mut y_act = y;
        if rectified {
            y_act = relu::<F>(y);
        }
        let y_sq = y_act * y_act;

        ratio_acc[pos] = ratio_acc[pos] + dy_s * gy;
        ratio_acc[size + pos] = ratio_acc[size + pos] + da_s * ga;
        ratio_acc[2 * size + pos] = ratio_acc[2 * size + pos] + (g0 - b0) * gb0;
        ratio_acc[3 * size + pos] = ratio_acc[3 * size + pos] + (g1 - b1) * gb1;

        let d_y = r_y * gy;
        let d_g0 = r_b0 * gb0;
        let d_g1 = r_b1 * gb1;
        let mut d_rec = d_y * gate;
        if rectified {
            if ry <= F::new(0.0) {
                d_rec = F::new(0.0);
            }
        }
        let d_h0 = d_g0 * g0 * (F::new(1.0) - g0);
        let d_h1 = d_g1 * g1 * (F::new(1.0) - g1);
        let mut d_zx = d_y * b1;
        if rectified_input {
            if zx <= F::new(0.0) {
                d_zx = F::new(0.0);
            }
        }
        // Masked where `a <= 0` only, so that a NaN passes as on the CPU paths.
        let mut d_a_pos = (F::new(0.0) - d_y * rec) / (sqrt_a * F::new(2.0)) + du * y_sq;
        if a <= F::new(0.0) {
            d_a_pos = F::new(0.0);
        }
        let mut d_y_act = du * a_pos * y_act * F::new(2.0);
        if rectified {
            if y <= F::new(0.0) {
                d_y_act = F::new(0.0);
            }
        }
        let base = (t * batch + row) * 3 * n;
        d_from_y[base + j] = d_rec;
        d_from_y[base + n + j] = d_h0;
        d_from_y[base + 2 * n + j] = d_h1;
        d_from_x[base + j] = d_zx;
        d_from_x[base + n + j] = d_h0;
        d_from_x[base + 2 * n + j] = d_h1;
        grads[pos] = gy - d_y + d_y_act;
        grads[size + pos] = ga - da + d_a_pos;
        grads[2 * size + pos] = gb0 - r_b0 * gb0 + b0 * da * F::cast_from(sigma2);
        grads[3 * size + pos] = gb1 - r_b1 * gb1 + z * d_y;
    }
}

/// Whether the fused kernels can run on `device`: a wgpu device, with or without autodiff
/// (the kernels run on the values; [`crate::grad::sequence`] bridges to autodiff).
pub(crate) fn available(device: &Device) -> bool {
    let plain = device.clone().inner();
    matches!(plain.as_dispatch(), DispatchDevice::Cube(d) if d.runtime() == cubecl::RuntimeId::Wgpu)
}

/// The CubeCL tensor behind a tensor on a wgpu device (its autodiff context dropped).
fn primitive<const D: usize>(t: Tensor<D>) -> CubeTensor {
    // `available` was checked where the kernel was chosen; anything else is a bug here.
    t.inner()
        .try_into_primitive::<CubeBackend>()
        .unwrap_or_else(|e| panic!("the fused wgpu kernels take wgpu tensors: {e:?}"))
}

fn wrap<const D: usize>(t: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<CubeBackend>(t)
}

/// A fresh contiguous `f32` tensor of `shape` on `like`'s device.
fn empty<const D: usize>(like: &CubeTensor, shape: [usize; D]) -> CubeTensor {
    let bytes = shape.iter().product::<usize>() * core::mem::size_of::<f32>();
    let handle = like.client.empty(bytes);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        handle,
        DType::F32,
    )
}

/// The launch grid for one thread per element of a `[batch, n]` state.
fn grid(
    like: &CubeTensor,
    elements: usize,
) -> (cubecl::prelude::CubeCount, cubecl::prelude::CubeDim) {
    let dim = cubecl::prelude::CubeDim::new(&like.client, elements);
    (
        cubecl::calculate_cube_count_elemwise(&like.client, elements, dim),
        dim,
    )
}

/// Rows `t·rows..(t + 1)·rows` of a `[T·rows, width]` tensor (a view where the offset is
/// aligned for the device, else a copy).
fn rows(all: &Tensor<2>, t: usize, rows: usize) -> Tensor<2> {
    all.clone().slice(s![t * rows..(t + 1) * rows, ..])
}

/// Block `k` of slot `t` of a `[T, K, batch, n]` stack, `[batch, n]`.
fn block(all: &Tensor<4>, t: usize, k: usize) -> Tensor<2> {
    let [_, _, batch, n] = all.dims();
    all.clone()
        .slice(s![t..t + 1, k..k + 1, .., ..])
        .reshape([batch, n])
}

/// Block `k` of the first `steps` slots of a `[T, K, batch, n]` stack, `[steps·batch, n]`.
fn blocks(all: &Tensor<4>, steps: usize, k: usize) -> Tensor<2> {
    let [_, _, batch, n] = all.dims();
    all.clone()
        .slice(s![0..steps, k..k + 1, .., ..])
        .reshape([steps * batch, n])
}

/// A sequence run by the fused kernels, recorded for its backward pass.
#[derive(Debug)]
pub(crate) struct CubeTape {
    /// The derived weights without autodiff.
    cell: PreparedCell,
    /// `r_y, r_a, r_b0, r_b1` stacked, `[4, n]`.
    ratios: Tensor<2>,
    /// The inputs, time-major, `[T·batch, n_in]`.
    inputs: Tensor<2>,
    /// The state before every step and after the last, `[T + 1, 5, batch, n]`.
    states: Tensor<4>,
    /// The record of every step, `[T, 6, batch, n]`.
    records: Tensor<4>,
}

impl CubeTape {
    /// Whether a sequence of `steps` steps, `batch` samples and `n` neurons fits the
    /// whole-sequence buffers on the device of `on` (any wgpu tensor): each buffer within the
    /// device's largest allocation and within 32-bit indices (the kernels' address type).
    /// Larger runs take the tensor-op path instead.
    pub(crate) fn fits<const D: usize>(
        on: &Tensor<D>,
        steps: usize,
        batch: usize,
        n: usize,
    ) -> bool {
        let Ok(like) = on.clone().inner().try_into_primitive::<CubeBackend>() else {
            return false;
        };
        // The largest buffers: the records, `[T, 6, batch, n]`, and the states, `[T + 1, 5,
        // batch, n]`.
        let elements = (steps + 1) * 6 * batch * n;
        let bytes = (elements * core::mem::size_of::<f32>()) as u64;
        elements < u32::MAX as usize && bytes <= like.client.properties().memory.max_page_size
    }

    /// Runs the steps over `input` (`[batch, T, n_in]`) from `initial` (plain tensors on a
    /// wgpu device).
    pub(crate) fn forward(cell: PreparedCell, initial: OrganicsState, input: Tensor<3>) -> Self {
        let [batch, steps, n_in] = input.dims();
        let n = initial.y.dims()[1];
        let w = &cell.w;
        let ratios = Tensor::cat(
            vec![w.r_y.clone(), w.r_a.clone(), w.r_b0.clone(), w.r_b1.clone()],
            0,
        );
        let ratios_p = primitive(ratios.clone());
        // Every step's input product at once: `[T·batch, 3n]`.
        let inputs = input.swap_dims(0, 1).reshape([steps * batch, n_in]);
        let from_x = primitive(inputs.clone().matmul(w.w_x.clone()));
        let y = primitive(initial.y);
        let states = empty(&y, [steps + 1, 5, batch, n]);
        let records = empty(&y, [steps.max(1), 6, batch, n]);
        let (count, dim) = grid(&y, batch * n);
        device::initial::launch::<f32>(
            &y.client,
            count.clone(),
            dim,
            y.clone().into_tensor_arg(),
            primitive(initial.a).into_tensor_arg(),
            primitive(initial.b0).into_tensor_arg(),
            primitive(initial.b1).into_tensor_arg(),
            states.clone().into_tensor_arg(),
            cell.rectified,
        );
        let states_t: Tensor<4> = wrap(states.clone());
        for t in 0..steps {
            let from_y = block(&states_t, t, 0).matmul(w.w_y.clone());
            let from_a = block(&states_t, t, 1).matmul(w.w_a.clone());
            let pooled = block(&states_t, t, 4).matmul(w.w_norm_t.clone());
            device::step::launch::<f32>(
                &y.client,
                count.clone(),
                dim,
                from_x.clone().into_tensor_arg(),
                primitive(from_y).into_tensor_arg(),
                primitive(from_a).into_tensor_arg(),
                primitive(pooled).into_tensor_arg(),
                ratios_p.clone().into_tensor_arg(),
                states.clone().into_tensor_arg(),
                records.clone().into_tensor_arg(),
                t as u32,
                cell.sigma_sq as f32,
                cell.rectified,
                cell.rectified_input,
            );
        }
        CubeTape {
            cell,
            ratios,
            inputs,
            states: states_t,
            records: wrap(records),
        }
    }

    /// The state after the last step.
    pub(crate) fn last(&self) -> OrganicsState {
        let t = self.states.dims()[0] - 1;
        OrganicsState {
            y: block(&self.states, t, 0),
            a: block(&self.states, t, 1),
            b0: block(&self.states, t, 2),
            b1: block(&self.states, t, 3),
        }
    }

    /// Backpropagates `grad_y` (the loss gradient with respect to the last `y`) through every
    /// step: the gradients with respect to the derived weights.
    pub(crate) fn backward(&self, grad_y: Tensor<2>) -> CellWeights<Tensor<2>> {
        let c = &self.cell;
        let [batch, n] = grad_y.dims();
        let steps = self.states.dims()[0] - 1;
        let device = grad_y.device();
        let ratios = primitive(self.ratios.clone());
        let like = primitive(grad_y.clone());
        let (count, dim) = grid(&like, batch * n);
        // `[W_yᵀ | [0; W_aᵀ]]`, `[3n, 2n]`: one product gives the gradients through both.
        let w_a_t = Tensor::cat(
            vec![Tensor::zeros([n, n], &device), c.w.w_a.clone().transpose()],
            0,
        );
        let w_back = Tensor::cat(vec![c.w.w_y.clone().transpose(), w_a_t], 1);
        let w_norm = c.w.w_norm_t.clone().transpose();
        // The gradients after the last step: ḡ_y given, the others zero.
        let zeros = Tensor::<2>::zeros([batch, n], &device);
        let mut g_part = Tensor::stack::<3>(vec![grad_y, zeros.clone(), zeros.clone(), zeros], 0);
        let mut g_prod = Tensor::<2>::zeros([batch, 2 * n], &device);
        let ratio_acc = primitive(Tensor::<3>::zeros([4, batch, n], &device));
        let d_a = empty(&like, [steps * batch, n]);
        let d_from_y = empty(&like, [steps * batch, 3 * n]);
        let d_from_x = empty(&like, [steps * batch, 3 * n]);
        let (d_a_t, d_from_y_t): (Tensor<2>, Tensor<2>) =
            (wrap(d_a.clone()), wrap(d_from_y.clone()));
        let (states, records) = (
            primitive(self.states.clone()),
            primitive(self.records.clone()),
        );
        for t in (0..steps).rev() {
            device::pool_back::launch::<f32>(
                &like.client,
                count.clone(),
                dim,
                primitive(g_part.clone()).into_tensor_arg(),
                primitive(g_prod.clone()).into_tensor_arg(),
                ratios.clone().into_tensor_arg(),
                d_a.clone().into_tensor_arg(),
                t as u32,
            );
            let d_u = rows(&d_a_t, t, batch).matmul(w_norm.clone());
            let grads = empty(&like, [4, batch, n]);
            device::step_back::launch::<f32>(
                &like.client,
                count.clone(),
                dim,
                states.clone().into_tensor_arg(),
                records.clone().into_tensor_arg(),
                primitive(g_part).into_tensor_arg(),
                primitive(g_prod).into_tensor_arg(),
                d_a.clone().into_tensor_arg(),
                primitive(d_u).into_tensor_arg(),
                ratios.clone().into_tensor_arg(),
                ratio_acc.clone().into_tensor_arg(),
                d_from_y.clone().into_tensor_arg(),
                d_from_x.clone().into_tensor_arg(),
                grads.clone().into_tensor_arg(),
                t as u32,
                (2.0 * c.sigma_sq) as f32,
                c.rectified,
                c.rectified_input,
            );
            g_prod = rows(&d_from_y_t, t, batch).matmul(w_back.clone());
            g_part = wrap(grads);
        }
        // The weight gradients Σ_t stateᵀ δ as one product each over all steps.
        let state = |k| blocks(&self.states, steps, k).transpose();
        let w_a = state(1).matmul(d_from_y_t.clone()).slice(s![.., n..3 * n]);
        let acc: Tensor<3> = wrap(ratio_acc);
        let [r_y, r_a, r_b0, r_b1] = [0, 1, 2, 3].map(|k| {
            acc.clone()
                .slice(s![k..k + 1, .., ..])
                .reshape([batch, n])
                .sum_dim(0)
        });
        CellWeights {
            w_x: self.inputs.clone().transpose().matmul(wrap(d_from_x)),
            w_y: state(0).matmul(d_from_y_t),
            w_a,
            w_norm_t: state(4).matmul(d_a_t),
            r_y,
            r_a,
            r_b0,
            r_b1,
        }
    }
}
