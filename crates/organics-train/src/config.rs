//! The configuration of a training run, saved as `config.json` in its artifact directory.

use burn::config::Config;

use crate::error::TrainError;
use crate::options::{BackendKind, ModelKind, OptimizerKind, Task};

/// Everything that defines a training run (paper defaults, docs/MODEL.md §6, §7 and §9).
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// The task.
    #[config(default = "Task::Mnist")]
    pub task: Task,
    /// The model.
    #[config(default = "ModelKind::Organics")]
    pub model: ModelKind,
    /// Data set name (`mnist` or `fashion-mnist`).
    #[config(default = "String::from(\"mnist\")")]
    pub dataset: String,
    /// Hidden units: ORGaNICs n for sequence tasks, LSTM units, MLP hidden units.
    /// Default: 64 (ORGaNICs, sequence tasks); the LSTM baseline uses 128, the MLP 50.
    pub hidden: Option<usize>,
    /// ORGaNICs layer sizes of the static model. Default: `[128, 64]`, the two-layer model.
    #[config(default = "vec![128, 64]")]
    pub layers: Vec<usize>,
    /// Learn the sequence cell's time constants. Default: true.
    #[config(default = true)]
    pub learn_time_constants: bool,
    /// Learn `W_r` in the static layers (Algorithm 1) instead of `W_r = I` (closed form).
    /// Default: false. Our choice: on the CPU the learned path costs several times more per
    /// step (ten linear solves per sample and layer; measured in docs/SPEED.md), so the
    /// default run finishes in under a minute rather than in about five.
    #[config(default = false)]
    pub learn_recurrence: bool,
    /// With `learn_recurrence`: gate Algorithm 1 by `1 − a`, as the authors' static-task code
    /// does, instead of the circuit's `1 − √a` (docs/MODEL.md §11). Default: false; kept to
    /// measure the difference.
    #[config(default = false)]
    pub linear_gate: bool,
    /// Rectify the sequence cell's input drive, `z = ⌊W_zx x⌋` (the default, the model of
    /// docs/MODEL.md §6). `false` gives `z = W_zx x`, the input drive of a branch of the
    /// authors' code (docs/MODEL.md §11), kept to measure the difference: with it a unit
    /// whose input weight is negative still receives the (non-negative) pixels.
    #[config(default = true)]
    pub rectified_input: bool,
    /// The sequence cell's circuit: the rectified model (the default, docs/MODEL.md §2 and
    /// §6) or, with `false`, the main model, `W_r y` and `y²` in place of `⌊W_r y⌋` and
    /// `⌊y⌋²`: the model of the authors' `rnnCell_unrectified`, which their final 64-unit
    /// psMNIST job scripts also trained (docs/MODEL.md §11), kept to measure the difference.
    #[config(default = true)]
    pub rectified: bool,
    /// Epochs. Default: 10.
    #[config(default = 10)]
    pub epochs: usize,
    /// Batch size per device. Default: 256.
    #[config(default = 256)]
    pub batch_size: usize,
    /// Devices trained on in parallel (burn-train's multi-device strategy): each takes a
    /// batch of `batch_size` per step, and one optimizer step follows the mean gradient over
    /// all of them. Copies of the CPU device on flex and ndarray (which split the same cores:
    /// for checks, not for speed), GPUs 0..N on wgpu. Default: 1.
    #[config(default = 1)]
    pub devices: usize,
    /// Learning rate. Default: 0.01 for sequence tasks, 0.001 for static MNIST.
    pub learning_rate: Option<f64>,
    /// The optimizer. Default: Adam, the paper's.
    #[config(default = "OptimizerKind::Adam")]
    pub optimizer: OptimizerKind,
    /// Weight decay (L2 added to the gradient, as PyTorch's Adam). Default: 1e-5.
    #[config(default = 1e-5)]
    pub weight_decay: f64,
    /// Adam's `ε`, in the update's denominator `√v̂ + ε`. Default: 1e-8, PyTorch's, which the
    /// authors' training code used (Burn's `AdamConfig` has 1e-5); the paper does not give
    /// it. It decides whether a sequence ORGaNICs unit whose input weight has turned
    /// negative can ever get input again (docs/MODEL.md §11, item 8). Runs whose
    /// `config.json` predates this setting used 1e-5 ([`TrainConfig::from_json`]). Ignored
    /// by RMSprop.
    #[config(default = 1e-8)]
    pub adam_epsilon: f64,
    /// Step decay factor of the learning rate. Default: 0.8.
    #[config(default = 0.8)]
    pub lr_gamma: f64,
    /// Epochs between learning-rate decays. Default: 30.
    #[config(default = 30)]
    pub lr_step_epochs: usize,
    /// Gradient-norm clipping; off by default, as in the paper.
    pub clip: Option<f64>,
    /// Seed of the model initialisation, split and shuffling. Default: 42.
    #[config(default = 42)]
    pub seed: u64,
    /// Seed of the psMNIST pixel permutation. Default: 0.
    #[config(default = 0)]
    pub permutation_seed: u64,
    /// Validation images held out of the training set. Default: 3000
    /// ([`organics_data::VALID_SIZE`], the paper's 57,000 / 3,000 split).
    #[config(default = "organics_data::VALID_SIZE")]
    pub valid_size: usize,
    /// Use only the first N training images (after the split). Default: all.
    pub train_limit: Option<usize>,
    /// Use only the first N validation images. Default: all.
    pub valid_limit: Option<usize>,
    /// Use only the first N test images. Default: all.
    pub test_limit: Option<usize>,
    /// Stop once the validation accuracy has not improved for this many epochs. Default: off
    /// (train all `epochs`). Counted over the whole run, resumed invocations included.
    pub patience: Option<usize>,
    /// LSTM only: the initial bias of the forget gate (1 in the LSTM literature, after
    /// Jozefowicz et al. 2015). Default: Burn's initialisation.
    pub forget_bias: Option<f64>,
    /// ORGaNICs on the sequence tasks: the largest step ratio `r_max` of `y`, of `a` and of
    /// `b0` and `b1` (docs/MODEL.md §5). Default: unset, the cell's defaults (the paper's).
    /// The authors' final 64-unit psMNIST job scripts used 0.05, 0.01 and 0.1. A run started
    /// without one is resumed without it: a value equal to the default counts as a
    /// different setting.
    pub r_max_y: Option<f64>,
    /// See `r_max_y`.
    pub r_max_a: Option<f64>,
    /// See `r_max_y`.
    pub r_max_b: Option<f64>,
    /// Backend the run was started on (not part of what must match on resume).
    #[config(default = "BackendKind::Flex")]
    pub backend: BackendKind,
}

impl TrainConfig {
    /// Hidden units after defaults.
    pub fn hidden_units(&self) -> usize {
        self.hidden.unwrap_or(match self.model {
            ModelKind::Organics => 64,
            ModelKind::Lstm => 128,
            ModelKind::Mlp => 50,
        })
    }

    /// Learning rate after defaults.
    pub fn lr(&self) -> f64 {
        self.learning_rate.unwrap_or(if self.task.is_sequential() {
            0.01
        } else {
            0.001
        })
    }

    /// A config from its JSON text. A setting missing from the text (a `config.json` written
    /// before the setting existed) takes its default, so older runs still read and resume,
    /// except `adam_epsilon`: an Adam run from before it existed used Burn's 1e-5
    /// ([`LEGACY_ADAM_EPSILON`]), and resumes with it.
    pub fn from_json(text: &str) -> Result<TrainConfig, serde_json::Error> {
        let stored: serde_json::Value = serde_json::from_str(text)?;
        let mut value = serde_json::to_value(TrainConfig::new())?;
        match (value.as_object_mut(), stored.as_object()) {
            (Some(defaults), Some(stored)) => {
                let rmsprop = stored
                    .get("optimizer")
                    .and_then(|o| serde_json::from_value::<OptimizerKind>(o.clone()).ok())
                    == Some(OptimizerKind::Rmsprop);
                if !stored.contains_key("adam_epsilon") && !rmsprop {
                    defaults.insert("adam_epsilon".into(), LEGACY_ADAM_EPSILON.into());
                }
                for (key, v) in stored {
                    defaults.insert(key.clone(), v.clone());
                }
            }
            _ => value = stored,
        }
        serde_json::from_value(value)
    }

    /// Checks the combination before anything is built.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Invalid(m));
        match (self.task, self.model) {
            (Task::Mnist, ModelKind::Lstm) => {
                return bad("model lstm is for the sequence tasks (smnist, psmnist)".into());
            }
            (Task::Smnist | Task::Psmnist, ModelKind::Mlp) => {
                return bad("model mlp is for the static task (mnist)".into());
            }
            _ => {}
        }
        if self.linear_gate && !(self.learn_recurrence && self.task == Task::Mnist) {
            return bad(
                "--linear-gate changes Algorithm 1 of the static model: it needs --task mnist \
                 and --learned-recurrence"
                    .into(),
            );
        }
        // The settings of the sequence ORGaNICs cell alone, by the flag that sets them.
        let sequence_organics = self.task.is_sequential() && self.model == ModelKind::Organics;
        let cell_only = [
            (!self.rectified_input, "--linear-input-drive"),
            (!self.rectified, "--main-model"),
        ];
        if let Some((_, flag)) = cell_only.iter().find(|(set, _)| *set && !sequence_organics) {
            return bad(format!(
                "{flag} changes the sequence ORGaNICs cell: it needs --task smnist or psmnist \
                 and --model organics"
            ));
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.hidden == Some(0) || self.layers.contains(&0) || self.layers.is_empty() {
            return bad("hidden and layer sizes must be at least 1".into());
        }
        if self.patience == Some(0) {
            return bad("patience must be at least 1 epoch".into());
        }
        if self.lr_step_epochs == 0 {
            return bad("lr step must be at least 1 epoch".into());
        }
        if !(self.lr() > 0.0 && self.lr().is_finite()) {
            return bad(format!(
                "learning rate must be a positive finite number, got {}",
                self.lr()
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight decay must be a finite number >= 0, got {}",
                self.weight_decay
            ));
        }
        // ε = 0 divides by zero wherever a gradient has always been 0; the optimizer
        // computes in f32, where a positive f64 below its range is 0 too.
        let epsilon = self.adam_epsilon as f32;
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return bad(format!(
                "adam epsilon must be a positive finite number, got {}",
                self.adam_epsilon
            ));
        }
        // A factor of 0 would stop learning after the first decay, one above 1 would grow the
        // learning rate without bound: neither is a decay.
        if !(self.lr_gamma > 0.0 && self.lr_gamma <= 1.0) {
            return bad(format!(
                "lr gamma (the learning-rate decay factor) must be in (0, 1], got {}",
                self.lr_gamma
            ));
        }
        if let Some(clip) = self.clip
            && !(clip > 0.0 && clip.is_finite())
        {
            return bad(format!(
                "gradient clipping norm must be a positive finite number, got {clip}"
            ));
        }
        if let Some(bias) = self.forget_bias {
            if self.model != ModelKind::Lstm {
                return bad(
                    "--forget-bias sets the LSTM's forget gate: it needs --model lstm".into(),
                );
            }
            if !bias.is_finite() {
                return bad(format!("forget bias must be a finite number, got {bias}"));
            }
        }
        let step_ratios = [
            ("--r-max-y", self.r_max_y),
            ("--r-max-a", self.r_max_a),
            ("--r-max-b", self.r_max_b),
        ];
        for (flag, r) in step_ratios {
            let Some(r) = r else { continue };
            if self.model != ModelKind::Organics || !self.task.is_sequential() {
                return bad(format!(
                    "{flag} sets a step ratio of the ORGaNICs sequence cell: it needs --model \
                     organics and --task smnist or psmnist"
                ));
            }
            // A step ratio is Δt/τ: above 1 a forward-Euler step overshoots its target.
            if !(r > 0.0 && r <= 1.0) {
                return bad(format!("{flag} must be in (0, 1], got {r}"));
            }
        }
        if self.devices == 0 || self.devices > 64 {
            return bad(format!("devices must be in 1..=64, got {}", self.devices));
        }
        if self.valid_size == 0 {
            return bad("the validation split must hold at least 1 image".into());
        }
        if matches!(self.train_limit, Some(0))
            || matches!(self.valid_limit, Some(0))
            || matches!(self.test_limit, Some(0))
        {
            return bad("limits must be at least 1".into());
        }
        Ok(())
    }

    /// How `other` differs from this run, setting by setting (`name: this there, that now`),
    /// leaving out the [`RESUMABLE`] ones; empty when both describe the same run.
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(other).unwrap_or_default(),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["the settings cannot be compared".into()];
        };
        a.iter()
            .filter(|(k, _)| !RESUMABLE.contains(&k.as_str()))
            .filter(|(k, va)| b.get(*k) != Some(*va))
            .map(|(k, va)| {
                format!(
                    "{k}: {va} there, {} now",
                    b.get(k).cloned().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Whether `other` describes the same run (all but the [`RESUMABLE`] settings).
    pub fn same_run(&self, other: &TrainConfig) -> bool {
        self.differences(other).is_empty()
    }
}

/// Adam's `ε` in runs whose `config.json` predates [`TrainConfig::adam_epsilon`]: Burn's
/// `AdamConfig` default, which they trained with.
pub const LEGACY_ADAM_EPSILON: f64 = 1e-5;

/// The settings a resumed run may change: the backend it continues on, its epoch limit and
/// its patience.
pub const RESUMABLE: [&str; 3] = ["backend", "epochs", "patience"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_may_change_only_the_resumable_settings() {
        let run = TrainConfig::new();
        let resumed = run
            .clone()
            .with_backend(BackendKind::Ndarray)
            .with_epochs(300)
            .with_patience(Some(90));
        assert!(run.same_run(&resumed), "{:?}", run.differences(&resumed));
        let other = run.clone().with_lr_gamma(0.5).with_seed(7);
        let found = run.differences(&other);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|d| d.starts_with("lr_gamma: 0.8 there, 0.5 now"))
        );
        assert!(found.iter().any(|d| d.starts_with("seed: 42 there, 7 now")));
        assert!(!run.same_run(&other));
    }

    #[test]
    fn adam_epsilon_defaults_to_pytorchs_and_older_adam_runs_read_as_burns() {
        assert_eq!(TrainConfig::new().adam_epsilon, 1e-8);
        // A config.json written before the setting: Adam runs trained with Burn's 1e-5.
        let mut old = serde_json::to_value(TrainConfig::new().with_task(Task::Smnist)).unwrap();
        old.as_object_mut().unwrap().remove("adam_epsilon");
        let read = TrainConfig::from_json(&old.to_string()).unwrap();
        assert_eq!(read.adam_epsilon, LEGACY_ADAM_EPSILON);
        assert_eq!(read.task, Task::Smnist);
        // ... also when the optimizer itself predates its setting (Adam by default).
        old.as_object_mut().unwrap().remove("optimizer");
        let read = TrainConfig::from_json(&old.to_string()).unwrap();
        assert_eq!(read.adam_epsilon, LEGACY_ADAM_EPSILON);
        // RMSprop never used it: such a run resumes under the default.
        let mut lstm = serde_json::to_value(
            TrainConfig::new()
                .with_task(Task::Smnist)
                .with_model(ModelKind::Lstm)
                .with_optimizer(OptimizerKind::Rmsprop),
        )
        .unwrap();
        lstm.as_object_mut().unwrap().remove("adam_epsilon");
        let read = TrainConfig::from_json(&lstm.to_string()).unwrap();
        assert_eq!(read.adam_epsilon, 1e-8);
        // A stored value is kept, and a resume under another one is another run.
        let set = TrainConfig::new().with_adam_epsilon(1e-6);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(TrainConfig::from_json(&json).unwrap().adam_epsilon, 1e-6);
        let found = set.differences(&TrainConfig::new());
        assert_eq!(
            found,
            vec!["adam_epsilon: 1e-6 there, 1e-8 now".to_string()]
        );
        for bad in [0.0, -1e-8, 1e-46, 1e39, f64::NAN, f64::INFINITY] {
            let err = TrainConfig::new()
                .with_adam_epsilon(bad)
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("adam epsilon"), "{err}");
        }
    }

    #[test]
    fn step_ratios_are_for_the_organics_sequence_cell_and_in_range() {
        let seq = TrainConfig::new().with_task(Task::Psmnist);
        assert!(
            seq.clone()
                .with_r_max_y(Some(0.05))
                .with_r_max_a(Some(0.01))
                .with_r_max_b(Some(1.0))
                .validate()
                .is_ok()
        );
        for bad in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let err = seq.clone().with_r_max_a(Some(bad)).validate().unwrap_err();
            assert!(
                err.to_string().contains("--r-max-a must be in (0, 1]"),
                "{err}"
            );
        }
        let lstm = seq
            .clone()
            .with_model(ModelKind::Lstm)
            .with_r_max_y(Some(0.05));
        assert!(
            lstm.validate()
                .unwrap_err()
                .to_string()
                .contains("--r-max-y")
        );
        let mnist = TrainConfig::new().with_r_max_b(Some(0.1));
        assert!(
            mnist
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--r-max-b")
        );
        // The model of the run gets the ratios set, the cell's defaults for the others.
        let set = seq.clone().with_r_max_a(Some(0.01)).with_r_max_b(Some(0.3));
        let cell = crate::run::train::seq_config(&set).cell;
        let default = crate::run::train::seq_config(&seq).cell;
        assert_eq!((cell.r_max_a, cell.r_max_b), (0.01, 0.3));
        assert_eq!(cell.r_max_y, default.r_max_y);
        assert_ne!(default.r_max_a, 0.01);
        // A config.json written before these settings existed reads as the defaults.
        let old = serde_json::to_value(&seq).expect("json");
        let mut old = old.as_object().expect("object").clone();
        for key in ["r_max_y", "r_max_a", "r_max_b"] {
            assert!(old.remove(key).is_some(), "{key} is saved");
        }
        let read = TrainConfig::from_json(&serde_json::Value::Object(old).to_string())
            .expect("an older config");
        assert!(read.same_run(&seq));
    }

    #[test]
    fn the_forget_bias_is_for_a_finite_lstm_bias() {
        let lstm = TrainConfig::new()
            .with_task(Task::Smnist)
            .with_model(ModelKind::Lstm)
            .with_optimizer(OptimizerKind::Rmsprop);
        assert!(lstm.clone().with_forget_bias(Some(1.0)).validate().is_ok());
        let nan = lstm.with_forget_bias(Some(f64::NAN));
        assert!(matches!(nan.validate(), Err(TrainError::Invalid(_))));
        let organics = TrainConfig::new()
            .with_task(Task::Smnist)
            .with_forget_bias(Some(1.0));
        assert!(matches!(organics.validate(), Err(TrainError::Invalid(_))));
        assert_eq!(
            "RMSprop".parse::<OptimizerKind>().ok(),
            Some(OptimizerKind::Rmsprop)
        );
        assert!("sgd".parse::<OptimizerKind>().is_err());
    }

    #[test]
    fn the_authors_gate_needs_a_learned_recurrence_on_the_static_task() {
        let gated = TrainConfig::new().with_linear_gate(true);
        assert!(matches!(gated.validate(), Err(TrainError::Invalid(_))));
        assert!(gated.clone().with_learn_recurrence(true).validate().is_ok());
        let sequence = gated.with_learn_recurrence(true).with_task(Task::Smnist);
        assert!(matches!(sequence.validate(), Err(TrainError::Invalid(_))));
        // The input drive without rectification is a setting of the sequence cell only.
        let linear = TrainConfig::new().with_rectified_input(false);
        assert!(matches!(linear.validate(), Err(TrainError::Invalid(_))));
        let linear = linear.with_task(Task::Psmnist);
        assert!(linear.validate().is_ok());
        assert!(!crate::run::train::seq_config(&linear).cell.rectified_input);
        assert!(matches!(
            linear.with_model(ModelKind::Lstm).validate(),
            Err(TrainError::Invalid(_))
        ));
        // So is the main model's circuit.
        let main = TrainConfig::new().with_rectified(false);
        assert!(matches!(main.validate(), Err(TrainError::Invalid(_))));
        let main = main.with_task(Task::Smnist);
        assert!(main.validate().is_ok());
        let cell = crate::run::train::seq_config(&main).cell;
        assert!(!cell.rectified && cell.rectified_input);
        assert!(
            crate::run::train::seq_config(&TrainConfig::new())
                .cell
                .rectified
        );
        assert!(matches!(
            main.with_model(ModelKind::Lstm).validate(),
            Err(TrainError::Invalid(_))
        ));
        // A config saved before the setting existed reads as the circuit's gate.
        let mut old = serde_json::to_value(TrainConfig::new().with_seed(7)).expect("json");
        old.as_object_mut().expect("object").remove("linear_gate");
        for key in ["rectified_input", "rectified"] {
            old.as_object_mut().expect("object").remove(key);
        }
        let read = TrainConfig::from_json(&old.to_string()).expect("an older config.json");
        assert_eq!(read, TrainConfig::new().with_seed(7));
        assert!(TrainConfig::from_json("[1, 2]").is_err());
        // So does one from before the optimizer and forget-bias settings: Adam, Burn's init.
        let mut old = serde_json::to_value(TrainConfig::new()).expect("json");
        for key in ["optimizer", "forget_bias"] {
            old.as_object_mut().expect("object").remove(key);
        }
        let read = TrainConfig::from_json(&old.to_string()).expect("an older config.json");
        assert_eq!(
            (read.optimizer, read.forget_bias),
            (OptimizerKind::Adam, None)
        );
        assert!(TrainConfig::from_json(r#"{"epochs": "many"}"#).is_err());
    }
}
