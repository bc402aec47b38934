//! Which adapter wgpu runs on, found before any GPU work starts.
//!
//! cubecl (Burn's wgpu runtime) settles on the first graphics API, in the order Vulkan,
//! DX12, OpenGL (Metal on macOS), that offers a GPU, or failing that the first that offers
//! anything, and its default device is that API's first adapter. This module asks wgpu the
//! same questions, so a run can say which adapter it trains on, refuse a software one
//! (llvmpipe, lavapipe) unless asked to use it, and report a machine without any adapter as
//! an error instead of a panic inside cubecl.

/// An adapter as wgpu describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// The adapter's name (`"NVIDIA H200"`, `"llvmpipe (LLVM 15.0.6, 256 bits)"`).
    pub name: String,
    /// discrete GPU, integrated GPU, virtual GPU, CPU (software), other.
    pub kind: &'static str,
    /// The graphics API (Vulkan, Metal, Dx12, Gl).
    pub api: String,
    /// Whether it is a CPU rasteriser rather than a GPU.
    pub software: bool,
}

impl std::fmt::Display for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.kind, self.api)
    }
}

/// The adapter wgpu's default device lands on, or `None` when the machine has none.
#[cfg(feature = "wgpu")]
pub fn default_adapter() -> Option<Adapter> {
    use wgpu::{Backend, DeviceType};
    let chain: &[Backend] = if cfg!(target_os = "macos") {
        &[Backend::Metal]
    } else {
        &[Backend::Vulkan, Backend::Dx12, Backend::Gl]
    };
    let mut software_only = None;
    for &api in chain {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters: Vec<wgpu::AdapterInfo> =
            futures_lite::future::block_on(instance.enumerate_adapters(api.into()))
                .iter()
                .map(wgpu::Adapter::get_info)
                .collect();
        let Some(first) = adapters.first() else {
            continue;
        };
        let describe = |info: &wgpu::AdapterInfo| Adapter {
            name: info.name.clone(),
            kind: match info.device_type {
                DeviceType::DiscreteGpu => "discrete GPU",
                DeviceType::IntegratedGpu => "integrated GPU",
                DeviceType::VirtualGpu => "virtual GPU",
                DeviceType::Cpu => "CPU (software)",
                DeviceType::Other => "other",
            },
            api: format!("{:?}", info.backend),
            software: info.device_type == DeviceType::Cpu,
        };
        if adapters.iter().any(|a| a.device_type != DeviceType::Cpu) {
            return Some(describe(first));
        }
        if software_only.is_none() {
            software_only = Some(describe(first));
        }
    }
    software_only
}

/// The number of discrete GPUs wgpu sees through the graphics API that sees the most (the
/// devices `--devices` trains on are cubecl's `DiscreteGpu(0..n)`).
#[cfg(feature = "wgpu")]
pub fn hardware_adapters() -> usize {
    use wgpu::{Backend, DeviceType};
    let chain: &[Backend] = if cfg!(target_os = "macos") {
        &[Backend::Metal]
    } else {
        &[Backend::Vulkan, Backend::Dx12, Backend::Gl]
    };
    chain
        .iter()
        .map(|&api| {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: api.into(),
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            futures_lite::future::block_on(instance.enumerate_adapters(api.into()))
                .iter()
                .filter(|a| a.get_info().device_type == DeviceType::DiscreteGpu)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Without the wgpu feature there is no adapter.
#[cfg(not(feature = "wgpu"))]
pub fn default_adapter() -> Option<Adapter> {
    None
}

/// Why Burn's default device cannot come up here, if it cannot.
///
/// Burn loads a resumed run's optimizer state on its default device (burn-optim 0.22,
/// `ModuleOptimizer::load_record` calls `Device::default()`) and moves it to each
/// parameter's device at the next step, whatever device the run trains on. With the wgpu
/// feature compiled in and `BURN_DEVICE` unset that default is a GPU, and on a machine
/// without one cubecl panics. `BURN_DEVICE=flex` (or `ndarray`) keeps the default on the
/// CPU; the `xtask` binary sets it unless the user did.
pub fn default_device_problem() -> Option<String> {
    let chosen = std::env::var("BURN_DEVICE").ok();
    default_device_problem_with(chosen.as_deref(), || {
        cfg!(feature = "wgpu") && default_adapter().is_none()
    })
}

/// [`default_device_problem`] for a given `BURN_DEVICE` and a probe for a missing adapter
/// (called only when the default would be a GPU).
fn default_device_problem_with(
    burn_device: Option<&str>,
    no_adapter: impl FnOnce() -> bool,
) -> Option<String> {
    // Burn reads any other value itself, and reports a bad one.
    if burn_device.is_some() || !no_adapter() {
        return None;
    }
    Some(
        "resuming loads the optimizer state on Burn's default device, which in this build is a GPU, \
         and this machine has no GPU adapter: set BURN_DEVICE=flex (the state then moves to the \
         run's device at the first step)"
            .into(),
    )
}

/// Counts the GPU kernels issued between [`LaunchCount::start`] and [`LaunchCount::by_kernel`],
/// by kernel, through CubeCL's launch observer (called on the issuing thread for every
/// launch). Without the `wgpu` feature nothing is counted and the totals are `None`.
pub struct LaunchCount {
    #[cfg(feature = "wgpu")]
    counted: std::sync::Arc<Launched>,
    #[cfg(feature = "wgpu")]
    _watching: burn::cubecl::logging::LaunchObservation,
}

#[cfg(feature = "wgpu")]
#[derive(Default)]
struct Launched(std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>);

#[cfg(feature = "wgpu")]
impl burn::cubecl::logging::LaunchObserver for Launched {
    fn launched(&self, kernel: &'static str) {
        // A poisoned lock only means another count panicked: keep counting.
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(kernel).or_default() += 1;
    }
}

impl LaunchCount {
    /// Starts counting (CubeCL watches one observer per process: the latest replaces it).
    pub fn start() -> Self {
        #[cfg(feature = "wgpu")]
        {
            let counted = std::sync::Arc::new(Launched::default());
            let watching = burn::cubecl::logging::LaunchObservation::new(counted.clone());
            LaunchCount {
                counted,
                _watching: watching,
            }
        }
        #[cfg(not(feature = "wgpu"))]
        LaunchCount {}
    }

    /// The kernels launched since [`start`](Self::start), by kernel name.
    pub fn by_kernel(&self) -> Option<std::collections::BTreeMap<String, usize>> {
        #[cfg(feature = "wgpu")]
        {
            let counts = self.counted.0.lock().unwrap_or_else(|e| e.into_inner());
            Some(counts.iter().map(|(k, v)| (short_name(k), *v)).fold(
                std::collections::BTreeMap::new(),
                |mut acc, (k, v)| {
                    *acc.entry(k).or_default() += v;
                    acc
                },
            ))
        }
        #[cfg(not(feature = "wgpu"))]
        None
    }
}

/// A kernel's type name without its module path and generic arguments
/// (`burn_cubecl::kernel::matmul::Matmul<f32>` → `Matmul`).
#[cfg(feature = "wgpu")]
fn short_name(name: &str) -> String {
    let base = name.split('<').next().unwrap_or(name);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

#[cfg(test)]
mod tests {
    use super::default_device_problem_with;

    #[test]
    fn a_missing_gpu_matters_only_while_the_default_device_is_left_to_burn() {
        let msg = default_device_problem_with(None, || true).expect("refused");
        assert!(msg.contains("BURN_DEVICE=flex"), "{msg}");
        assert_eq!(default_device_problem_with(None, || false), None);
        assert_eq!(default_device_problem_with(Some("flex"), || true), None);
        // A chosen device is not probed at all.
        assert_eq!(
            default_device_problem_with(Some("ndarray"), || panic!("probed")),
            None
        );
    }
}
