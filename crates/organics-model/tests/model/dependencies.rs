//! The model crate embeds without training, dataset or backend code.

use std::process::Command;

#[test]
fn model_crate_pulls_in_no_training_data_or_backend_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "organics-model",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("burn v0.22"), "unexpected tree:\n{tree}");
    for forbidden in [
        "burn-train",
        "burn-dataset",
        "organics-data",
        "burn-ndarray",
        "burn-flex",
        "burn-wgpu",
        "ratatui",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{forbidden} "))),
            "organics-model depends on {forbidden}:\n{tree}"
        );
    }
}
