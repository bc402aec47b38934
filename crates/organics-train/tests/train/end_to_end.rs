//! Every task and model trains on a small subset of the real data: the loss falls and
//! results.json is written and parses.

use crate::common;

use organics_train::{BackendKind, ModelKind, OptimizerKind, RunResults, Task, TrainConfig};

fn run(task: Task, model: ModelKind, limit: usize, seq_hidden: Option<usize>) {
    run_with(task, model, limit, seq_hidden, |c| c);
}

fn run_with(
    task: Task,
    model: ModelKind,
    limit: usize,
    seq_hidden: Option<usize>,
    settings: impl FnOnce(TrainConfig) -> TrainConfig,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = common::small(task, model, BackendKind::Ndarray)
        .with_train_limit(Some(limit))
        // a few hundred optimizer steps in all: 2 epochs of limit / batch
        .with_batch_size(if task == Task::Mnist { 16 } else { 8 })
        .with_hidden(seq_hidden);
    if task == Task::Mnist {
        config = config
            .with_layers(vec![32, 16])
            .with_learning_rate(Some(0.003))
            .with_learn_recurrence(true);
    }
    let config = settings(config);
    let results =
        organics_train::train(&config, &common::opts(dir.path(), false)).expect("training runs");
    let text =
        std::fs::read_to_string(dir.path().join("results.json")).expect("results.json written");
    let parsed: RunResults = serde_json::from_str(&text).expect("results.json parses");
    assert_eq!(parsed, results);
    assert_eq!((parsed.task, parsed.model, parsed.epochs), (task, model, 2));
    assert_eq!(parsed.train_samples, limit);
    assert!(parsed.params > 0 && parsed.wall_seconds > 0.0);
    let losses: Vec<f64> = parsed
        .train_loss
        .iter()
        .map(|l| l.expect("train loss logged"))
        .collect();
    assert!(
        losses[1] < losses[0],
        "{task}/{model}: train loss did not fall: {losses:?}"
    );
    assert!(parsed.test_accuracy.is_some_and(|a| a > 0.0 && a <= 1.0));
    assert!(dir.path().join("model.bpk").is_file() && dir.path().join("config.json").is_file());
}

#[test]
fn static_organics_trains() {
    run(Task::Mnist, ModelKind::Organics, 2048, None);
}

#[test]
fn static_mlp_trains() {
    run(Task::Mnist, ModelKind::Mlp, 2048, None);
}

#[test]
fn smnist_organics_trains() {
    run(Task::Smnist, ModelKind::Organics, 512, Some(32));
}

#[test]
fn psmnist_organics_trains() {
    run(Task::Psmnist, ModelKind::Organics, 512, Some(32));
}

#[test]
fn smnist_lstm_trains() {
    run(Task::Smnist, ModelKind::Lstm, 512, Some(32));
}

/// The LSTM baseline with the literature's settings (docs/RESULTS.md): RMSprop at 1e-3,
/// gradient-norm clipping at 1, forget-gate bias 1, no weight decay.
#[test]
fn smnist_lstm_trains_with_the_literature_settings() {
    run_with(Task::Smnist, ModelKind::Lstm, 512, Some(32), |c| {
        c.with_optimizer(OptimizerKind::Rmsprop)
            .with_learning_rate(Some(1e-3))
            .with_clip(Some(1.0))
            .with_forget_bias(Some(1.0))
            .with_weight_decay(0.0)
    });
}
