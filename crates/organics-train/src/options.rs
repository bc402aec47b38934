//! The choices a run is made of: task, model and backend.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

macro_rules! choice {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            /// Every choice, as written on the command line.
            pub const NAMES: &'static [&'static str] = &[$($text),*];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),* })
            }
        }

        impl FromStr for $name {
            type Err = TrainError;
            fn from_str(s: &str) -> Result<Self, TrainError> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok(Self::$variant),)*
                    other => Err(TrainError::Invalid(format!(
                        concat!("unknown ", $what, " '{}' (expected one of: {})"), other, Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}

choice!(
    /// What to learn.
    Task, "task", {
        /// Static MNIST images (paper Table 1).
        Mnist => "mnist",
        /// Sequential MNIST, one pixel a step in scan-line order (paper Table 2).
        Smnist => "smnist",
        /// Permuted sequential MNIST (paper Table 2).
        Psmnist => "psmnist",
    }
);

choice!(
    /// Which model.
    ModelKind, "model", {
        /// ORGaNICs (the paper's model for the task).
        Organics => "organics",
        /// Burn's LSTM (sequence tasks).
        Lstm => "lstm",
        /// One hidden layer (static task).
        Mlp => "mlp",
    }
);

choice!(
    /// Which optimizer.
    OptimizerKind, "optimizer", {
        /// Adam with L2 weight decay (the paper's, for every ORGaNICs run).
        Adam => "adam",
        /// RMSprop with smoothing ρ = 0.9, no momentum and ε = 1e-8 (Keras' RMSprop, as the
        /// LSTM baselines of the sequence-MNIST literature trained; docs/RESULTS.md).
        Rmsprop => "rmsprop",
    }
);

choice!(
    /// Which Burn backend.
    BackendKind, "backend", {
        /// Burn's pure-Rust CPU backend (the CPU default: faster than ndarray here).
        Flex => "flex",
        /// The ndarray CPU backend (deprecated by Burn 0.22, still supported).
        Ndarray => "ndarray",
        /// GPUs through wgpu (Vulkan, Metal, DX12; lavapipe in CI).
        Wgpu => "wgpu",
    }
);

choice!(
    /// How a model computes its gradients (every path gives the same values; tests check
    /// them against each other). The fused kernels: sequence ORGaNICs on every backend, the
    /// static model on flex, the LSTM on the CPU backends; the tensor-op path: sequence
    /// ORGaNICs only.
    GradientPath, "gradient path", {
        /// The hand-derived BPTT in fused kernels: on the host's cores on flex and ndarray,
        /// in CubeCL kernels on wgpu (the default everywhere).
        Fused => "fused",
        /// The hand-derived BPTT in Burn tensor ops on the device.
        Tensor => "tensor",
        /// Burn's autodiff through every step (the straightforward formulation).
        Autodiff => "autodiff",
    }
);

impl GradientPath {
    /// The fastest path for sequence ORGaNICs on `backend`: the fused kernels (on the
    /// host's cores on the CPU backends, CubeCL kernels on wgpu).
    pub fn for_backend(_backend: BackendKind) -> Self {
        GradientPath::Fused
    }

    /// The fastest path for the LSTM baseline on `backend`: its fused kernel runs on the
    /// host's cores, so on wgpu (where it would copy every batch to the host and back)
    /// autodiff keeps the values on the device.
    pub fn for_lstm(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Flex | BackendKind::Ndarray => GradientPath::Fused,
            BackendKind::Wgpu => GradientPath::Autodiff,
        }
    }

    /// The fastest path for the static ORGaNICs model on `backend` (measured, README
    /// Speed): the fused kernel on flex; autodiff on ndarray, whose tensors are read back
    /// to the host element by element (no faster than its autodiff), and on a GPU.
    pub fn for_static(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Flex => GradientPath::Fused,
            BackendKind::Ndarray | BackendKind::Wgpu => GradientPath::Autodiff,
        }
    }
}

choice!(
    /// Which per-epoch quantity `plot curves` draws.
    CurveMetric, "metric", {
        /// Validation accuracy (%).
        Accuracy => "accuracy",
        /// Largest real part of the layers' Jacobian eigenvalues on the validation probe
        /// images (static ORGaNICs; negative: stable).
        Stability => "stability",
    }
);

impl Task {
    /// Whether the task feeds pixel sequences.
    pub fn is_sequential(self) -> bool {
        !matches!(self, Task::Mnist)
    }
}

impl BackendKind {
    /// Whether tensors of this backend live in host memory (flex, ndarray).
    pub fn is_cpu(self) -> bool {
        matches!(self, BackendKind::Flex | BackendKind::Ndarray)
    }

    /// The device of this backend, or an error when this build or machine lacks it. On
    /// wgpu any adapter is accepted, a software one too (for evaluation and analysis, whose
    /// results do not depend on it); training uses [`BackendKind::training_device`].
    pub fn device(self) -> Result<Device, TrainError> {
        self.training_device(true).map(|(device, _)| device)
    }

    /// The `n` devices to train on in parallel: copies of the CPU device on flex and ndarray,
    /// GPUs `0..n` on wgpu (refused where fewer exist); for `n = 1`,
    /// [`training_device`](Self::training_device).
    #[allow(deprecated)]
    #[cfg_attr(not(feature = "wgpu"), allow(unused_variables))]
    pub fn training_devices(
        self,
        n: usize,
        allow_software_gpu: bool,
    ) -> Result<(Vec<Device>, Option<crate::run::gpu::Adapter>), TrainError> {
        let (first, adapter) = self.training_device(allow_software_gpu)?;
        if n <= 1 || self.is_cpu() {
            return Ok((vec![first; n.max(1)], adapter));
        }
        #[cfg(feature = "wgpu")]
        {
            let gpus = crate::run::gpu::hardware_adapters();
            if gpus < n {
                return Err(TrainError::Invalid(format!(
                    "--devices {n} on wgpu trains on the discrete GPUs 0..{n}, and this machine has {gpus}"
                )));
            }
            let devices = (0..n)
                .map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)))
                .collect();
            Ok((devices, adapter))
        }
        #[cfg(not(feature = "wgpu"))]
        Ok((vec![first; n], adapter))
    }

    /// The device to train or benchmark on, and on wgpu the adapter it runs on. A software
    /// adapter (llvmpipe, lavapipe: the CPU pretending to be a GPU, many times slower than
    /// `flex`) is refused unless `allow_software_gpu`.
    // ndarray is deprecated in burn 0.22 and kept as a second CPU backend; only the wgpu
    // backend has adapters to choose from.
    #[allow(deprecated)]
    #[cfg_attr(not(feature = "wgpu"), allow(unused_variables))]
    pub fn training_device(
        self,
        allow_software_gpu: bool,
    ) -> Result<(Device, Option<crate::run::gpu::Adapter>), TrainError> {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Flex => Ok((Device::flex(), None)),
            #[cfg(feature = "ndarray")]
            BackendKind::Ndarray => Ok((Device::ndarray(), None)),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => {
                let no_gpu = || {
                    TrainError::Invalid(
                        "backend wgpu: no GPU or Vulkan driver found (on Debian: apt-get install mesa-vulkan-drivers)".into(),
                    )
                };
                let adapter = crate::run::gpu::default_adapter().ok_or_else(no_gpu)?;
                if adapter.software && !allow_software_gpu {
                    return Err(TrainError::Invalid(format!(
                        "backend wgpu: the only adapter is a software renderer, {adapter}, which runs on the CPU and is slower than --backend flex; pass --allow-software-gpu to use it anyway"
                    )));
                }
                // An adapter exists, so cubecl should come up; should it still fail, its
                // panic becomes this error.
                let probe = std::panic::catch_unwind(|| {
                    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
                    let _ = Tensor::<1>::ones([1], &device).into_data();
                    device
                });
                let device = probe.map_err(|_| no_gpu())?;
                Ok((device, Some(adapter)))
            }
            #[allow(unreachable_patterns)]
            other => Err(TrainError::Invalid(format!(
                "backend {other} is not compiled in (enable the cargo feature '{other}')"
            ))),
        }
    }
}
