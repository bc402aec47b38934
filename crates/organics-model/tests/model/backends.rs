//! The same forward pass on ndarray, flex and wgpu.
//!
//! CI runs wgpu on Mesa's lavapipe (a software Vulkan driver). Where no adapter exists at
//! all the wgpu half is skipped with a printed reason.

use burn::prelude::*;
use burn::tensor::{DeviceKind, Distribution};
use organics_model::{OrganicsCellConfig, SeqClassifierConfig, StaticClassifierConfig};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

fn wgpu_device() -> Option<Device> {
    // cubecl panics when no adapter can be found; a probe turns that into `None`.
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let ok = values(Tensor::<1>::ones([2], &device)) == vec![1.0, 1.0];
        ok.then_some(device)
    });
    probe.ok().flatten()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: largest difference {worst} > {tol}");
}

#[test]
#[allow(deprecated)] // ndarray is deprecated in burn 0.22 but is a supported backend here
fn forward_agrees_across_backends() {
    let reference = Device::ndarray();
    reference.seed(3);
    let seq = SeqClassifierConfig::new(OrganicsCellConfig::new(1, 16)).init(&reference);
    let x = Tensor::<3>::random([4, 50, 1], Distribution::Uniform(0.0, 1.0), &reference);
    let stat = StaticClassifierConfig::new()
        .with_layers(vec![12, 8])
        .init(&reference);
    let img = Tensor::<2>::random([4, 784], Distribution::Uniform(0.0, 1.0), &reference);
    let want_seq = values(seq.forward(x.clone()));
    let want_static = values(stat.forward(img.clone()).logits);

    let mut devices = vec![("flex", Device::flex())];
    match wgpu_device() {
        Some(d) => devices.push(("wgpu", d)),
        None => eprintln!(
            "SKIPPED wgpu half: no wgpu adapter on this machine (install mesa-vulkan-drivers)"
        ),
    }
    for (name, device) in devices {
        let got_seq = values(
            seq.clone()
                .to_device(&device)
                .forward(x.clone().to_device(&device)),
        );
        assert_close(
            &want_seq,
            &got_seq,
            1e-4,
            &format!("sequence model on {name}"),
        );
        let got_static = values(
            stat.clone()
                .to_device(&device)
                .forward(img.clone().to_device(&device))
                .logits,
        );
        assert_close(
            &want_static,
            &got_static,
            1e-4,
            &format!("static model on {name}"),
        );
    }
}
