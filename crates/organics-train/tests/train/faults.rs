//! Faults a careful user runs into: each ends with a clear error or the correct result,
//! never silently wrong, never a panic, and nothing is lost.

use crate::common;

use std::sync::atomic::Ordering;

use organics_train::run::checkpoint::{checkpoint_path, last_complete_epoch};
use organics_train::run::lock::RunLock;
use organics_train::{BackendKind, ModelKind, RunStatus, Task, TrainConfig, TrainError};

fn mlp() -> TrainConfig {
    common::small(Task::Mnist, ModelKind::Mlp, BackendKind::Ndarray)
}

fn train(config: &TrainConfig, dir: &std::path::Path, resume: bool) -> Result<(), TrainError> {
    organics_train::train(config, &common::opts(dir, resume)).map(|_| ())
}

#[test]
fn a_huge_learning_rate_on_the_fused_static_kernel_is_caught() {
    // The default static model on flex (fused kernel), at a learning rate that destroys it.
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::small(Task::Mnist, ModelKind::Organics, BackendKind::Flex)
        .with_learning_rate(Some(1e6));
    let err = train(&config, dir.path(), false).expect_err("must diverge");
    let text = err.to_string();
    assert!(matches!(err, TrainError::NonFinite { .. }), "{text}");
    assert!(
        text.contains("epoch") && text.contains("iteration"),
        "{text}"
    );
    // nothing is presented as a result; results.json says how the run ended
    assert!(!dir.path().join("model.bpk").exists());
    let results: organics_train::RunResults = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results.json"),
    )
    .expect("parses");
    assert_eq!(results.status, RunStatus::Diverged);
    assert_eq!((results.test_accuracy, results.test_loss), (None, None));
    let epoch = results.diverged_in_epoch.expect("the epoch it diverged in");
    assert!(text.contains(&format!("at epoch {epoch},")), "{text}");
    // it says a checkpoint exists only when one does
    match last_complete_epoch(&dir.path().join("checkpoint")) {
        Some(epoch) => assert!(text.contains(&format!("epoch {epoch} is kept")), "{text}"),
        None => assert!(text.contains("no checkpoint exists"), "{text}"),
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_intact_one() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp(), dir.path(), false).expect("two epochs");
    let ck = dir.path().join("checkpoint");
    assert_eq!(last_complete_epoch(&ck), Some(2));
    let model2 = checkpoint_path(&ck, "model", 2);
    let bytes = std::fs::read(&model2).expect("read");
    std::fs::write(&model2, &bytes[..bytes.len() / 2]).expect("truncate");
    let resumed = organics_train::train(&mlp().with_epochs(3), &common::opts(dir.path(), true))
        .expect("resumes from epoch 1");
    assert_eq!(resumed.resumed_from_epoch, Some(1));
    assert_eq!(resumed.epochs, 3);
}

#[test]
fn garbage_or_foreign_checkpoints_give_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp().with_epochs(1), dir.path(), false).expect("one epoch");
    let ck = dir.path().join("checkpoint");
    // a checkpoint of another model (other width) in place of this one's
    let other = tempfile::tempdir().expect("tmp");
    train(
        &mlp().with_epochs(1).with_hidden(Some(7)),
        other.path(),
        false,
    )
    .expect("other run");
    std::fs::copy(
        checkpoint_path(&other.path().join("checkpoint"), "model", 1),
        checkpoint_path(&ck, "model", 1),
    )
    .expect("copy");
    let err = train(&mlp(), dir.path(), true).expect_err("foreign checkpoint");
    assert!(err.to_string().contains("no intact checkpoint"), "{err}");
    // garbage
    std::fs::write(checkpoint_path(&ck, "model", 1), b"\x00garbage\xff").expect("w");
    let err = train(&mlp(), dir.path(), true).expect_err("garbage");
    assert!(err.to_string().contains("does not decode"), "{err}");
}

#[test]
fn a_stop_request_keeps_the_complete_epochs_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp().with_epochs(1), dir.path(), false).expect("one epoch");
    let model_of_epoch_1 = std::fs::read(dir.path().join("model.bpk")).expect("model");
    let opts = common::opts(dir.path(), true);
    opts.stop.store(true, Ordering::Relaxed);
    let err = organics_train::train(&mlp().with_epochs(3), &opts).expect_err("stopped");
    let text = err.to_string();
    assert!(
        matches!(err, TrainError::Stopped { epoch: 2, .. }),
        "{text}"
    );
    assert!(text.contains("--resume"), "{text}");
    assert_eq!(last_complete_epoch(&dir.path().join("checkpoint")), Some(1));
    assert_eq!(
        std::fs::read(dir.path().join("model.bpk")).expect("model"),
        model_of_epoch_1,
        "no mid-epoch weights saved as a result"
    );
    let results: organics_train::RunResults = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results"),
    )
    .expect("parses");
    assert_eq!(results.status, RunStatus::Stopped);
    assert_eq!(results.epochs, 1);
    assert_eq!(results.test_accuracy, None);
    let done = organics_train::train(&mlp().with_epochs(3), &common::opts(dir.path(), true))
        .expect("resumes");
    assert_eq!((done.status, done.epochs), (RunStatus::Finished, 3));
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let _held = RunLock::acquire(dir.path()).expect("lock");
    let err = train(&mlp(), dir.path(), false).expect_err("in use");
    assert!(matches!(err, TrainError::Locked { .. }), "{err}");
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn an_earlier_run_without_its_config_is_not_overwritten_silently() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp().with_epochs(1), dir.path(), false).expect("one epoch");
    std::fs::remove_file(dir.path().join("config.json")).expect("rm");
    let model = std::fs::read(dir.path().join("model.bpk")).expect("model");
    let err = train(&mlp().with_epochs(1), dir.path(), false).expect_err("refused");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("model.bpk")).expect("kept"),
        model
    );
    // the same with checkpoints and config present, without --resume
    let opts = organics_train::RunOptions {
        overwrite: true,
        ..common::opts(dir.path(), false)
    };
    organics_train::train(&mlp().with_epochs(1).with_seed(7), &opts).expect("overwritten");
    let err = train(&mlp().with_epochs(1), dir.path(), false).expect_err("refused again");
    assert!(err.to_string().contains("--overwrite"), "{err}");
}

#[test]
fn resuming_a_finished_run_with_fewer_epochs_is_refused_and_keeps_its_results() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp(), dir.path(), false).expect("two epochs");
    let before = std::fs::read(dir.path().join("results.json")).expect("results");
    let err = train(&mlp().with_epochs(1), dir.path(), true).expect_err("nothing to do");
    assert!(err.to_string().contains("greater than 2"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("results.json")).expect("results"),
        before
    );
}

#[test]
fn out_of_range_settings_are_refused_before_anything_is_written() {
    let cases = [
        mlp().with_clip(Some(-1.0)),
        mlp().with_clip(Some(f64::NAN)),
        mlp().with_lr_gamma(0.0),
        mlp().with_lr_gamma(f64::NAN),
        mlp().with_weight_decay(-1.0),
        mlp().with_weight_decay(f64::NAN),
        mlp().with_learning_rate(Some(-0.001)),
        mlp().with_learning_rate(Some(f64::INFINITY)),
    ];
    for config in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let err = train(&config, dir.path(), false).expect_err("refused");
        assert!(matches!(err, TrainError::Invalid(_)), "{err}");
        assert!(!dir.path().join("config.json").exists(), "{err}");
    }
}

#[test]
fn sizes_that_cannot_fit_in_memory_are_refused_up_front() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::small(Task::Smnist, ModelKind::Organics, BackendKind::Flex)
        .with_hidden(Some(100_000));
    let err = train(&config, dir.path(), false).expect_err("too large");
    assert!(err.to_string().contains("GB of memory"), "{err}");
    let config = mlp()
        .with_model(ModelKind::Organics)
        .with_layers(vec![300_000]);
    let err = train(&config, dir.path(), false).expect_err("too large");
    assert!(err.to_string().contains("GB of memory"), "{err}");
}

#[test]
fn an_empty_test_file_is_an_error_not_zero_accuracy() {
    let data = tempfile::tempdir().expect("tmp");
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
        let gz = std::fs::read(common::data_dir().join(format!("{name}.gz"))).expect("read");
        std::fs::write(data.path().join(format!("{name}.gz")), gz).expect("write");
    }
    let mut images = Vec::new();
    for x in [2051u32, 0, 28, 28] {
        images.extend(x.to_be_bytes());
    }
    let mut labels = Vec::new();
    for x in [2049u32, 0] {
        labels.extend(x.to_be_bytes());
    }
    std::fs::write(data.path().join("t10k-images-idx3-ubyte"), images).expect("w");
    std::fs::write(data.path().join("t10k-labels-idx1-ubyte"), labels).expect("w");
    let dir = tempfile::tempdir().expect("tmp");
    let opts = organics_train::RunOptions {
        data_dir: Some(data.path().into()),
        ..common::opts(dir.path(), false)
    };
    let err = organics_train::train(&mlp().with_test_limit(None), &opts).expect_err("empty");
    assert!(err.to_string().contains("test set is empty"), "{err}");
}

/// Every temporary file left under `dir`.
fn temporary_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                found.push(path);
            }
        }
    }
    found
}

/// A full disk, for real and without privileges: `/dev/full` accepts the open and fails
/// every write with ENOSPC, so a file linked to it is a file on a full disk.
#[cfg(target_os = "linux")]
fn on_a_full_disk(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("/dev/full", path).expect("symlink");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_the_metric_logs_stops_the_run_with_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp().with_epochs(1), dir.path(), false).expect("one epoch");
    // metrics.jsonl is rewritten through <name>.tmp at the end of each epoch and split
    let metrics = dir.path().join("metrics.jsonl");
    let full = dir.path().join("metrics.jsonl.tmp");
    on_a_full_disk(&full);
    let err = train(&mlp().with_epochs(3), dir.path(), true).expect_err("disk full");
    let text = err.to_string();
    assert!(matches!(err, TrainError::WriteFailed { .. }), "{text}");
    assert!(text.contains(&metrics.display().to_string()), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("epoch 1 is kept"), "{text}");
    // stopped at once: epoch 2 never completed, nothing of it is presented as a result
    assert_eq!(last_complete_epoch(&dir.path().join("checkpoint")), Some(1));
    assert!(temporary_files(dir.path()).is_empty());
    // the failed temporary file was removed (here: the link to the full device), so there
    // is room again and the run resumes from epoch 1
    assert!(
        std::fs::symlink_metadata(&full).is_err(),
        "temporary file left"
    );
    let done = organics_train::train(&mlp().with_epochs(3), &common::opts(dir.path(), true))
        .expect("resumes");
    assert_eq!((done.resumed_from_epoch, done.epochs), (Some(1), 3));
    // the failed write lost nothing: every epoch's metrics are there, epoch 1's included
    assert!(
        done.valid_accuracy.iter().all(Option::is_some),
        "{:?}",
        done.valid_accuracy
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_a_checkpoint_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tmp");
    train(&mlp().with_epochs(1), dir.path(), false).expect("one epoch");
    let ck = dir.path().join("checkpoint");
    // the optimizer record of epoch 2 is written through <name>.tmp, then renamed
    on_a_full_disk(&ck.join("optim-2.bpk.tmp"));
    let err = train(&mlp().with_epochs(3), dir.path(), true).expect_err("disk full");
    let text = err.to_string();
    assert!(matches!(err, TrainError::WriteFailed { .. }), "{text}");
    assert!(
        text.contains(&checkpoint_path(&ck, "optim", 2).display().to_string()),
        "{text}"
    );
    // Burn writes checkpoints in the background, so epoch 3 may have run (and been
    // checkpointed) before the failure stopped the run; either way the message names the
    // newest complete epoch, and epoch 2, whose optimizer record is missing, is not one.
    let kept = last_complete_epoch(&ck).expect("a complete epoch");
    assert!(kept == 1 || kept == 3, "{kept}");
    assert!(text.contains(&format!("epoch {kept} is kept")), "{text}");
    assert!(!organics_train::run::checkpoint::complete_epochs(&ck).contains(&2));
    assert!(
        temporary_files(dir.path()).is_empty(),
        "the link is removed"
    );
}
