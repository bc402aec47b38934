//! The progress table of a folder of runs (`runs/`): one row per run, finished or not,
//! from each run's own files (config, checkpoints, metric logs, `results.json`, and the
//! plain progress log `train.log` that `runs/run.sh` keeps for the wall time), and one per
//! row of the folder's list of rows (`rows.txt`) that has not started yet.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use organics_data::PixelOrder;

use crate::config::TrainConfig;
use crate::error::{TrainError, file_err};
use crate::options::{BackendKind, ModelKind, OptimizerKind, Task};
use crate::run::checkpoint::last_complete_epoch;
use crate::run::dispatch::{ModelJob, RunBatcher, RunModel, with_model};
use crate::run::results::{RunResults, RunStatus};
use crate::run::train::{files, read_config};

/// The paper's test accuracy (%) for a sequence run, where the paper reports one.
pub fn paper_accuracy(
    task: Task,
    model: ModelKind,
    hidden: usize,
    learned_tau: bool,
) -> Option<f64> {
    // docs/MODEL.md §12 (paper Table 2).
    Some(match (task, model, hidden, learned_tau) {
        (Task::Smnist, ModelKind::Organics, 64, true) => 97.7,
        (Task::Psmnist, ModelKind::Organics, 64, true) => 89.9,
        (Task::Smnist, ModelKind::Organics, 128, true) => 97.8,
        (Task::Psmnist, ModelKind::Organics, 128, true) => 90.7,
        (Task::Smnist, ModelKind::Organics, 64, false) => 90.3,
        (Task::Psmnist, ModelKind::Organics, 64, false) => 80.3,
        (Task::Smnist, ModelKind::Organics, 128, false) => 94.8,
        (Task::Psmnist, ModelKind::Organics, 128, false) => 84.8,
        (Task::Smnist, ModelKind::Lstm, 128, _) => 97.3,
        (Task::Psmnist, ModelKind::Lstm, 128, _) => 92.6,
        _ => return None,
    })
}

/// The paper's test accuracy (%) for a static ORGaNICs model with these layers, where the
/// paper reports one (docs/MODEL.md §12, paper Table 1; its models learn `W_r`).
pub fn paper_static_accuracy(layers: &[usize]) -> Option<f64> {
    Some(match layers {
        [50] => 98.1,
        [80] => 98.2,
        [128, 64] => 98.1,
        _ => return None,
    })
}

/// One run's row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The run's folder name.
    pub name: String,
    /// Task, model, units and time constants, in words.
    pub what: String,
    /// Parameters that training changes.
    pub params: Option<usize>,
    /// Epochs with a complete checkpoint (or trained, once finished).
    pub epochs: usize,
    /// The epoch limit of its configuration.
    pub max_epochs: usize,
    /// Best validation accuracy so far (%), and its epoch.
    pub best_valid: Option<(f64, usize)>,
    /// Not started, training, stopped, finished or diverged (its `results.json` says the
    /// last two).
    pub progress: Progress,
    /// Test accuracy (%) once finished.
    pub test: Option<f64>,
    /// The paper's number (%).
    pub paper: Option<f64>,
    /// Largest gradient norm of any logged step.
    pub max_grad_norm: Option<f64>,
    /// Largest real part of a Jacobian eigenvalue at any validation image's fixed point, over
    /// every epoch (static ORGaNICs models, whose validation has the stability probe).
    pub max_eigenvalue: Option<f64>,
    /// Sequence ORGaNICs runs: units that receive input (a positive input weight; with the
    /// input drive not rectified, one not decayed to zero), of all units, in the weights of
    /// its best epoch or its newest checkpoint (see [`crate::analysis::inputs`]).
    pub inputs: Option<(usize, usize)>,
    /// Wall time, from `train.log`.
    pub wall: Option<WallTime>,
    /// Its task.
    pub task: Task,
    /// Validation accuracy (%) of each epoch, from its metric logs.
    pub valid: Vec<Option<f64>>,
    /// What sets the time of its epochs apart (model and its size, batch size, backend and
    /// devices, data sizes; not the sequence task's permutation or the time constants): a row
    /// not started yet is timed at the pace of the started rows with the same key.
    pub pace_key: String,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Listed in `rows.txt`, no run folder (one with a `config.json`) yet.
    NotStarted,
    /// Has a run folder; neither finished nor diverged.
    Training,
    /// Has a run folder, not finished, and the runs folder's row list no longer names it:
    /// `runs/run.sh` does not train it (a row kept for comparison, not continued).
    Stopped,
    /// Its `results.json` says finished.
    Finished,
    /// Its `results.json` says its loss, gradient norm or validation loss stopped being
    /// finite (or its test loss did), and no checkpoint is newer than that; `runs/run.sh`
    /// does not resume it (on the same backend it would repeat the same steps).
    Diverged {
        /// The epoch it diverged in (none when only the test loss did).
        epoch: Option<usize>,
    },
}

/// The list of rows a runs folder keeps beside the run folders (`runs/rows.txt`, which
/// `runs/run.sh` trains in order).
pub const ROW_LIST: &str = "rows.txt";

/// One row of a row list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRow {
    /// Its folder name under the runs folder.
    pub name: String,
    /// Its flags of `cargo xtask train`, one word each.
    pub flags: Vec<String>,
    /// Its line in the list (from 1), for messages.
    pub line: usize,
}

/// The rows of a row list: each line that is not blank and does not start with `#` (a
/// comment is a whole line) holds a row's folder name and then its flags of
/// `cargo xtask train`, separated by whitespace (Windows line ends too).
///
/// # Errors
/// [`TrainError::File`] if the list cannot be read, [`TrainError::Invalid`] for a name
/// that is not a plain folder name or that appears twice.
pub fn read_row_list(path: &Path) -> Result<Vec<ListedRow>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(file_err(path))?;
    let mut rows: Vec<ListedRow> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next().filter(|w| !w.starts_with('#')) else {
            continue;
        };
        let invalid = |why: &str| {
            TrainError::Invalid(format!(
                "{}, line {}: row `{name}` {why}",
                path.display(),
                number + 1
            ))
        };
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if !plain {
            return Err(invalid(
                "is not a plain folder name (letters, digits, - _ .)",
            ));
        }
        if rows.iter().any(|r| r.name == name) {
            return Err(invalid("appears twice"));
        }
        rows.push(ListedRow {
            name: name.to_string(),
            flags: words.map(str::to_string).collect(),
            line: number + 1,
        });
    }
    Ok(rows)
}

/// The rows of the list `path` with the configuration `config_of` makes of each one's
/// flags; an error of `config_of` is reported with the row's place in the list. A row whose
/// folder beside the list already holds a run must describe that run (its settings but
/// those a resume may change), so `runs/run.sh` never starts a resume that `train` would
/// refuse, and the list never misstates how a published run was trained.
///
/// # Errors
/// As [`read_row_list`], and [`TrainError::Invalid`] for flags `config_of` refuses or that
/// differ from the run in the row's folder.
pub fn checked_rows(
    path: &Path,
    config_of: impl Fn(&[String]) -> Result<TrainConfig, TrainError>,
) -> Result<Vec<(ListedRow, TrainConfig)>, TrainError> {
    let root = path.parent().unwrap_or(Path::new("."));
    read_row_list(path)?
        .into_iter()
        .map(|row| {
            let place = |e: String| {
                TrainError::Invalid(format!(
                    "{}, line {}: row `{}`: {e}",
                    path.display(),
                    row.line,
                    row.name
                ))
            };
            let config = config_of(&row.flags).map_err(|e| place(e.to_string()))?;
            let dir = root.join(&row.name);
            if dir.join(files::CONFIG).is_file() {
                let differences = read_config(&dir)?.differences(&config);
                if !differences.is_empty() {
                    return Err(place(format!(
                        "its flags differ from the run in {} ({})",
                        dir.display(),
                        differences.join("; ")
                    )));
                }
            }
            Ok((row, config))
        })
        .collect()
}

/// The rows of every run folder under `root`, sorted by name.
pub fn run_rows(root: &Path) -> Result<Vec<RunRow>, TrainError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(file_err(root))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(files::CONFIG).is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| run_row(d)).collect()
}

fn run_row(dir: &Path) -> Result<RunRow, TrainError> {
    let config = read_config(dir)?;
    let results: Option<RunResults> = std::fs::read_to_string(dir.join(files::RESULTS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let finished = results.as_ref().filter(|r| r.status == RunStatus::Finished);
    let epochs = match finished {
        Some(r) => r.epochs,
        None => last_complete_epoch(&dir.join(files::CHECKPOINTS)).unwrap_or(0),
    };
    let valid = crate::run::results::read_epoch_metric(dir, "valid", "Accuracy", epochs);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(RunRow {
        epochs,
        best_valid: crate::harness::patience::best_epoch(&valid)
            .and_then(|e| Some((valid[e - 1]?, e))),
        progress: match results.as_ref() {
            Some(r) if r.status == RunStatus::Finished => Progress::Finished,
            // A newer checkpoint than the diverged epoch means a later invocation trained
            // past it (on another backend) and ended without writing results.json.
            Some(r)
                if r.status == RunStatus::Diverged
                    && r.diverged_in_epoch.is_none_or(|e| e > epochs) =>
            {
                Progress::Diverged {
                    epoch: r.diverged_in_epoch,
                }
            }
            _ => Progress::Training,
        },
        test: finished.and_then(|r| r.test_accuracy).map(|a| 100.0 * a),
        max_grad_norm: crate::run::results::read_run_max(
            dir,
            "train",
            crate::harness::output::GRAD_NORM,
            epochs,
        ),
        max_eigenvalue: crate::run::results::read_run_max(
            dir,
            "valid",
            crate::harness::output::MAX_REAL_EIGENVALUE,
            epochs,
        ),
        wall: wall_time(&dir.join("train.log")),
        valid,
        // None until the run has weights to read.
        inputs: (config.task.is_sequential() && config.model == ModelKind::Organics)
            .then(|| crate::analysis::inputs::input_units(dir).ok())
            .flatten()
            .map(|u| (u.receiving, u.units)),
        ..planned_row(&name, &config)
    })
}

/// The number of parameters that training changes in the model of `config` (counted on a
/// freshly built model on the CPU: the count does not depend on the backend).
///
/// # Errors
/// [`TrainError`] if the CPU device cannot be made.
pub fn trainable_params(config: &TrainConfig) -> Result<usize, TrainError> {
    struct Count;
    impl ModelJob for Count {
        type Output = usize;
        fn run<M: RunModel, Bt: RunBatcher<M>>(self, model: M, _: Bt) -> usize {
            model.num_trainable_params()
        }
    }
    let device = BackendKind::Flex.device()?;
    Ok(with_model(config, &device, 0, PixelOrder::ScanLine, Count))
}

/// `, Adam ε …` where a run's Adam has an `ε` other than the default's.
fn adam_epsilon_note(config: &TrainConfig) -> String {
    if config.optimizer == OptimizerKind::Adam
        && config.adam_epsilon != TrainConfig::new().adam_epsilon
    {
        format!(", Adam ε {:e}", config.adam_epsilon)
    } else {
        String::new()
    }
}

/// The row of a run that has not started: `name` trained with `config`.
pub fn planned_row(name: &str, config: &TrainConfig) -> RunRow {
    let hidden = config.hidden_units();
    // What sets the run apart within its row: the time constants for ORGaNICs, the
    // optimizer and clipping for the baselines.
    let detail = match config.model {
        ModelKind::Organics => {
            let mut d = if config.learn_time_constants {
                "learned τ"
            } else {
                "fixed τ"
            }
            .to_string();
            // Settings that differ from the paper's, as the authors' later job scripts did.
            let paper = TrainConfig::new();
            if config.task.is_sequential() && config.learning_rate.is_some() {
                let _ = write!(d, ", lr {}", config.lr());
            }
            if config.lr_step_epochs != paper.lr_step_epochs || config.lr_gamma != paper.lr_gamma {
                let _ = write!(
                    d,
                    ", lr × {} every {} epochs",
                    config.lr_gamma, config.lr_step_epochs
                );
            }
            d.push_str(&adam_epsilon_note(config));
            if !config.rectified_input {
                d.push_str(", input drive W_zx x (not rectified)");
            }
            if !config.rectified {
                d.push_str(", main model (W_r y and y², not rectified)");
            }
            if config.task.is_sequential()
                && [config.r_max_y, config.r_max_a, config.r_max_b]
                    .iter()
                    .any(Option::is_some)
            {
                let cell = crate::run::train::seq_config(config).cell;
                let _ = write!(
                    d,
                    ", r_max {} / {} / {}",
                    cell.r_max_y, cell.r_max_a, cell.r_max_b
                );
            }
            d
        }
        _ => {
            let clip = config
                .clip
                .map(|c| format!(", clip {c}"))
                .unwrap_or_default();
            format!(
                "{} lr {}, batch {}{clip}{}",
                config.optimizer,
                config.lr(),
                config.batch_size,
                adam_epsilon_note(config)
            )
        }
    };
    let static_organics = !config.task.is_sequential() && config.model == ModelKind::Organics;
    let layers = config
        .layers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" + ");
    let recurrence = match (config.learn_recurrence, config.linear_gate) {
        (true, false) => "learned W_r",
        (true, true) => "learned W_r, the authors' gate 1 − a",
        (false, _) => "W_r = I",
    };
    // sMNIST and psMNIST steps cost the same (a fixed permutation of the same pixels); so
    // do the two time-constant settings to within the step-to-step noise (fixed ones only
    // leave θ out of training; the kernel is the same).
    let shape = if config.task.is_sequential() {
        format!("sequence {hidden}")
    } else if static_organics {
        format!("static {layers}, {recurrence}")
    } else {
        format!("static {hidden}")
    };
    RunRow {
        name: name.to_string(),
        what: if static_organics {
            format!("{} {} {layers}, {recurrence}", config.task, config.model)
        } else {
            format!("{} {} {hidden}, {detail}", config.task, config.model)
        },
        params: trainable_params(config).ok(),
        epochs: 0,
        max_epochs: config.epochs,
        best_valid: None,
        progress: Progress::NotStarted,
        test: None,
        paper: if static_organics {
            paper_static_accuracy(&config.layers)
                .filter(|_| config.learn_recurrence && !config.linear_gate)
        } else {
            paper_accuracy(
                config.task,
                config.model,
                hidden,
                config.learn_time_constants,
            )
        },
        max_grad_norm: None,
        max_eigenvalue: None,
        inputs: None,
        wall: None,
        task: config.task,
        valid: Vec::new(),
        pace_key: format!(
            "{} {shape}, batch {}, {} on {} device(s), data {:?} / {} / {:?}",
            config.model,
            config.batch_size,
            config.backend,
            config.devices,
            config.train_limit,
            config.valid_size,
            config.valid_limit
        ),
    }
}

/// The table's rows: every run folder under `root` and, where `root` holds a row list,
/// each listed row that has no run folder (one with a `config.json`) yet, with the
/// configuration `config_of` makes of its flags; sorted by name. Every listed row's flags
/// are checked, started or not. Where there is a list, a training run it does not name is
/// [`Progress::Stopped`].
///
/// # Errors
/// As [`run_rows`] and [`checked_rows`].
pub fn report_rows(
    root: &Path,
    config_of: impl Fn(&[String]) -> Result<TrainConfig, TrainError>,
) -> Result<Vec<RunRow>, TrainError> {
    let mut rows = run_rows(root)?;
    let list = root.join(ROW_LIST);
    if list.is_file() {
        let listed = checked_rows(&list, config_of)?;
        for row in &mut rows {
            if row.progress == Progress::Training && !listed.iter().any(|(l, _)| l.name == row.name)
            {
                row.progress = Progress::Stopped;
            }
        }
        for (listed, config) in listed {
            if !rows.iter().any(|r| r.name == listed.name) {
                rows.push(planned_row(&listed.name, &config));
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(rows)
}

/// The figure of `task`'s validation curves in a runs folder.
pub fn validation_figure_name(task: Task) -> String {
    format!("{task}-validation.svg")
}

/// Draws, for each task among `rows`, the validation accuracy per epoch of its runs into
/// `<dir>/<task>-validation.svg` (unfinished runs too: the curves come from the metric
/// logs); returns the figures' paths.
pub fn validation_figures(rows: &[RunRow], dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut written = Vec::new();
    for task in tasks_of(rows) {
        let curves: Vec<(String, Vec<(f64, f64)>)> = rows
            .iter()
            .filter(|r| r.task == task)
            .map(|r| {
                let points = r
                    .valid
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| ((i + 1) as f64, v)))
                    .collect();
                (r.name.clone(), points)
            })
            .filter(|(_, points): &(String, Vec<(f64, f64)>)| !points.is_empty())
            .collect();
        let out = dir.join(validation_figure_name(task));
        crate::figures::curves::draw_curves(
            curves,
            crate::options::CurveMetric::Accuracy,
            &format!("{task}: validation accuracy per epoch"),
            &out,
        )?;
        written.push(out);
    }
    Ok(written)
}

/// A run's wall time, from its progress log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallTime {
    /// Seconds of all invocations together.
    pub total: f64,
    /// Seconds per epoch over all of them.
    pub per_epoch: f64,
    /// Seconds per epoch in the newest invocation (over all of them until it has finished
    /// an epoch): the pace of the run as it goes now (its cores, its neighbours), for the
    /// time a run still needs.
    pub recent_per_epoch: f64,
}

/// The wall time of a plain progress log. Each invocation prints `training epochs A..=B`,
/// then `epoch E/B valid N/N items (S s)` at the end of each epoch, `S` counting from the
/// invocation's start.
pub fn wall_time(log: &Path) -> Option<WallTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let (mut total, mut last_in_invocation) = (0.0, 0.0);
    let (mut epochs_timed, mut in_invocation) = (0usize, 0usize);
    let mut recent_per_epoch = None;
    for line in text.lines() {
        if line.starts_with("training epochs ") {
            total += last_in_invocation;
            last_in_invocation = 0.0;
            in_invocation = 0;
            // A new invocation has no pace of its own until its first epoch ends.
            recent_per_epoch = None;
            continue;
        }
        let Some(rest) = line.strip_prefix("epoch ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (_, split, items) = (words.next(), words.next(), words.next());
        let complete = items
            .and_then(|i| i.split_once('/'))
            .is_some_and(|(a, b)| a == b);
        if split != Some("valid") || !complete {
            continue;
        }
        let seconds = rest
            .split_once('(')
            .and_then(|(_, s)| s.split_once(" s)"))
            .and_then(|(s, _)| s.parse::<f64>().ok());
        if let Some(s) = seconds {
            last_in_invocation = s;
            epochs_timed += 1;
            in_invocation += 1;
            recent_per_epoch = Some(s / in_invocation as f64);
        }
    }
    total += last_in_invocation;
    (epochs_timed > 0 && total > 0.0).then(|| WallTime {
        total,
        per_epoch: total / epochs_timed as f64,
        recent_per_epoch: recent_per_epoch.unwrap_or(total / epochs_timed as f64),
    })
}

/// `runs/README.md`: what the folder is, how to continue it, and the table of `rows`.
pub fn runs_readme(rows: &[RunRow]) -> String {
    format!(
        "# Runs of the paper's Tables 1 and 2\n\n\
         One folder per table row that has started: its `config.json`, its latest complete checkpoints (model, \
         optimizer, scheduler) and, with early stopping, those of its best validation epoch, \
         its per-epoch metrics `metrics.jsonl` (older runs: the metric logs `train/`, \
         `valid/`, converted when they resume), its progress log `train.log` and, once \
         finished, `model.bpk` (the weights of the best validation epoch) and `results.json`.\n\n\
         `bash runs/run.sh` trains the unfinished rows one after another, resuming each from its \
         checkpoint (the rows and their flags: `runs/rows.txt`; their settings explained: \
         docs/RESULTS.md); \
         `cargo xtask eval --artifact-dir runs/<row>` scores a run's weights on the test set; \
         `cargo xtask report --out runs/README.md` rewrites this page.\n\n\
         Test accuracy is shown once a run has finished; while it trains, its best validation \
         accuracy so far, and with its wall time the most it may still need: its remaining \
         epochs at the pace of its newest invocation (early stopping may end it sooner). A run \
         whose loss, gradient norm or validation loss stopped being finite shows the epoch \
         it diverged in; `runs/run.sh` does not resume it, as training is deterministic \
         and on the same backend would repeat the same steps. A row not started yet shows \
         its epoch limit at the fastest and the slowest pace of the started rows of its \
         kind (same model and size, batch size and backend; sMNIST and psMNIST, learned \
         and fixed time constants alike).\n\n{}{}",
        runs_table(rows),
        figure_links(rows)
    )
}

/// The tasks of the `rows` with at least one measured epoch (those that get a figure), each
/// once, in order of first appearance.
fn tasks_of(rows: &[RunRow]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for r in rows.iter().filter(|r| r.valid.iter().any(Option::is_some)) {
        if !tasks.contains(&r.task) {
            tasks.push(r.task);
        }
    }
    tasks
}

/// Markdown images of the validation figures of the tasks among `rows`.
fn figure_links(rows: &[RunRow]) -> String {
    let mut out = String::new();
    for task in tasks_of(rows) {
        let _ = write!(
            out,
            "\n![{task}: validation accuracy per epoch]({})\n",
            validation_figure_name(task)
        );
    }
    out
}

/// The table of `rows` in Markdown.
pub fn runs_table(rows: &[RunRow]) -> String {
    let mut out = String::from(
        "| run | model | parameters | epochs | best valid (epoch) | test | paper | largest grad norm | largest Re λ | units with input | wall time (per epoch; at most left) |\n|---|---|---:|---|---|---|---|---|---|---|---|\n",
    );
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}%"));
    for r in rows {
        let status = match r.progress {
            Progress::Finished => String::new(),
            Progress::Training => " (training)".into(),
            Progress::Stopped => " (stopped)".into(),
            Progress::NotStarted => " (not started)".into(),
            Progress::Diverged { epoch: Some(e) } => format!(" (diverged in epoch {e})"),
            Progress::Diverged { epoch: None } => " (diverged)".into(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} / {}{status} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.what,
            r.params.map_or("–".into(), thousands),
            r.epochs,
            r.max_epochs,
            r.best_valid
                .map_or("–".into(), |(a, e)| format!("{a:.2}% ({e})")),
            pct(r.test),
            r.paper.map_or("–".into(), |p| format!("{p}%")),
            r.max_grad_norm.map_or("–".into(), |g| {
                if g < 1e4 {
                    format!("{g:.2}")
                } else {
                    format!("{g:.2e}")
                }
            }),
            r.max_eigenvalue.map_or("–".into(), |l| format!("{l:.3}")),
            r.inputs
                .map_or("–".into(), |(with, all)| format!("{with} / {all}")),
            time_cell(r, rows),
        );
    }
    out
}

/// `n` with a comma between each group of three digits.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The wall-time cell of row `r`: time spent (per epoch), and for a training run the most
/// it may still need at its newest pace (early stopping may end it sooner).
fn time_cell(r: &RunRow, rows: &[RunRow]) -> String {
    let spent = |w: &WallTime| format!("{:.1} h ({:.0} s)", w.total / 3600.0, w.per_epoch);
    match (r.progress, &r.wall) {
        (Progress::NotStarted, _) => not_started_time(r, rows),
        (_, None) => "–".into(),
        (Progress::Finished | Progress::Stopped | Progress::Diverged { .. }, Some(w)) => spent(w),
        (Progress::Training, Some(w)) => {
            let left = r.max_epochs.saturating_sub(r.epochs) as f64 * w.recent_per_epoch;
            format!(
                "{}; ≤ {:.1} h left at {:.0} s",
                spent(w),
                left / 3600.0,
                w.recent_per_epoch
            )
        }
    }
}

/// The time cell of a row not started yet: its epoch limit at the fastest and at the
/// slowest newest pace of the started rows with its pace key (the pace depends on the cores
/// a run gets), or a dash where no such row has timed an epoch.
fn not_started_time(row: &RunRow, rows: &[RunRow]) -> String {
    let mut like: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r.progress != Progress::NotStarted && r.pace_key == row.pace_key)
        .filter_map(|r| Some((r.name.as_str(), r.wall?.recent_per_epoch)))
        .collect();
    like.sort_by(|a, b| a.1.total_cmp(&b.1));
    let at = |(name, pace): (&str, f64)| {
        format!(
            "≤ {:.1} h at `{name}`'s {pace:.0} s",
            row.max_epochs as f64 * pace / 3600.0
        )
    };
    match like.as_slice() {
        [] => "– (no run of its kind timed yet)".into(),
        [one] => at(*one),
        [fastest, .., slowest] => format!("{}; {}", at(*fastest), at(*slowest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers above are a copy of Table 2 in docs/MODEL.md §12: they must not drift.
    fn row(name: &str, task: Task, valid: Vec<Option<f64>>) -> RunRow {
        RunRow {
            name: name.into(),
            what: String::new(),
            params: Some(25_674),
            epochs: valid.len(),
            max_epochs: 300,
            best_valid: None,
            progress: Progress::Training,
            test: None,
            paper: None,
            max_grad_norm: None,
            max_eigenvalue: None,
            inputs: None,
            wall: None,
            task,
            valid,
            pace_key: "organics sequence 64, batch 256".into(),
        }
    }

    #[test]
    fn one_validation_figure_per_task_with_one_curve_per_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let rows = vec![
            row("psmnist-a", Task::Psmnist, vec![Some(50.0), Some(60.0)]),
            row("smnist-a", Task::Smnist, vec![Some(70.0), None, Some(90.0)]),
            row("smnist-b", Task::Smnist, vec![Some(20.0)]),
            row("smnist-c", Task::Smnist, vec![]),
        ];
        let written = validation_figures(&rows, dir.path()).expect("drawn");
        assert_eq!(
            written,
            vec![
                dir.path().join("psmnist-validation.svg"),
                dir.path().join("smnist-validation.svg")
            ]
        );
        let text = std::fs::read_to_string(&written[1]).expect("svg");
        let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
        let labels: Vec<&str> = doc
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text().map(str::trim))
            .filter(|t| t.starts_with("smnist-"))
            .collect();
        // a run with no measured epoch has no curve
        assert_eq!(labels, vec!["smnist-a", "smnist-b"]);
        // the curves are drawn at their values: 20% and 90% lie apart on the axis, between
        // its ends (accuracy in percent, not scaled again)
        let heights: Vec<f64> = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .filter_map(|n| n.attribute("cy")?.parse().ok())
            .collect();
        let (low, high) = heights
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &y| (l.min(y), h.max(y)));
        assert!(high - low > 100.0, "{heights:?}");
        // one marker per measured epoch: 2 + 1
        let markers = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert_eq!(markers, 3);
        let readme = runs_readme(&rows);
        assert!(readme.contains("](psmnist-validation.svg)"), "{readme}");
        assert!(readme.contains("](smnist-validation.svg)"), "{readme}");
    }

    #[test]
    fn the_table_shows_each_runs_largest_eigenvalue_where_it_was_probed() {
        let probed = RunRow {
            max_eigenvalue: Some(-0.5293),
            ..row("mnist-a", Task::Mnist, vec![Some(50.3)])
        };
        let table = runs_table(&[probed, row("smnist-a", Task::Smnist, vec![Some(70.0)])]);
        let cells = |name: &str| -> Vec<String> {
            let line = table.lines().find(|l| l.contains(name)).expect("row");
            line.split('|').map(|c| c.trim().to_string()).collect()
        };
        let header: Vec<String> = table
            .lines()
            .next()
            .expect("header")
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let column = header
            .iter()
            .position(|c| c == "largest Re λ")
            .expect("column");
        assert_eq!(cells("mnist-a")[column], "-0.529");
        assert_eq!(cells("smnist-a")[column], "–");
    }

    #[test]
    fn the_model_column_names_the_settings_that_differ_from_the_papers() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = TrainConfig::new()
            .with_task(Task::Psmnist)
            .with_learning_rate(Some(0.005))
            .with_lr_step_epochs(50)
            .with_r_max_y(Some(0.05))
            .with_r_max_a(Some(0.01))
            .with_adam_epsilon(1e-5);
        crate::run::train::write_json(&dir.path().join(files::CONFIG), &config).expect("config");
        let row = run_row(dir.path()).expect("row");
        let default_b = crate::run::train::seq_config(&config).cell.r_max_b;
        assert_eq!(
            row.what,
            format!(
                "psmnist organics 64, learned τ, lr 0.005, lr × 0.8 every 50 epochs, \
                 Adam ε 1e-5, r_max 0.05 / 0.01 / {default_b}"
            )
        );
        assert!(row.progress == Progress::Training && row.epochs == 0);
        let paper = TrainConfig::new().with_task(Task::Psmnist);
        crate::run::train::write_json(&dir.path().join(files::CONFIG), &paper).expect("config");
        assert_eq!(
            run_row(dir.path()).expect("row").what,
            "psmnist organics 64, learned τ"
        );
        // the cell's variants
        let variant = paper.with_rectified(false).with_rectified_input(false);
        crate::run::train::write_json(&dir.path().join(files::CONFIG), &variant).expect("config");
        assert_eq!(
            run_row(dir.path()).expect("row").what,
            "psmnist organics 64, learned τ, input drive W_zx x (not rectified), \
             main model (W_r y and y², not rectified)"
        );
        // a baseline trained with Adam: its ε too, where it is not the default
        let mlp = TrainConfig::new()
            .with_model(ModelKind::Mlp)
            .with_adam_epsilon(1e-5);
        let what = planned_row("m", &mlp).what;
        assert!(what.ends_with(", Adam ε 1e-5"), "{what}");
        assert!(
            !planned_row("m", &mlp.with_adam_epsilon(1e-8))
                .what
                .contains('ε')
        );
    }

    #[test]
    fn the_row_list_gives_names_and_flags_and_rejects_bad_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let list = dir.path().join(ROW_LIST);
        std::fs::write(
            &list,
            "# a comment\n\n  a-1 --task smnist  --hidden 64\nb\n   # indented\n",
        )
        .expect("list");
        let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read_row_list(&list).expect("read"),
            vec![
                ListedRow {
                    name: "a-1".into(),
                    flags: words(&["--task", "smnist", "--hidden", "64"]),
                    line: 3
                },
                ListedRow {
                    name: "b".into(),
                    flags: vec![],
                    line: 4
                },
            ]
        );
        // Windows line ends, and a last line without one
        std::fs::write(&list, "a --task smnist\r\n\r\nb --hidden 8").expect("list");
        let rows = read_row_list(&list).expect("read");
        assert_eq!(rows[0].flags, words(&["--task", "smnist"]));
        assert_eq!((rows[1].name.as_str(), rows[1].line), ("b", 3));
        assert_eq!(rows[1].flags, words(&["--hidden", "8"]));
        for (text, why) in [
            (
                "a --task smnist\nb\na --task psmnist\n",
                "line 3: row `a` appears twice",
            ),
            (
                "../up --task smnist\n",
                "line 1: row `../up` is not a plain folder name",
            ),
            (
                "x\n.hidden\n",
                "line 2: row `.hidden` is not a plain folder name",
            ),
        ] {
            std::fs::write(&list, text).expect("list");
            match read_row_list(&list) {
                Err(TrainError::Invalid(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            read_row_list(&dir.path().join("none.txt")),
            Err(TrainError::File { .. })
        ));
    }

    #[test]
    fn parameter_counts_are_the_model_notes_closed_forms() {
        // docs/MODEL.md §6: 6n² + 17n + 10 for the sequence model with learned time
        // constants; the fixed ones leave the 4n of θ out of training.
        for n in [64, 128] {
            let config = TrainConfig::new()
                .with_task(Task::Smnist)
                .with_hidden(Some(n));
            let learned = trainable_params(&config).expect("count");
            assert_eq!(learned, 6 * n * n + 17 * n + 10, "n = {n}");
            let fixed = trainable_params(&config.with_learn_time_constants(false)).expect("count");
            assert_eq!(fixed, learned - 4 * n, "n = {n}");
        }
        assert_eq!(thousands(25_674), "25,674");
        assert_eq!(thousands(100_490), "100,490");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn a_row_with_refused_flags_is_named_with_its_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let list = dir.path().join(ROW_LIST);
        std::fs::write(&list, "# rows\nok --task smnist\nbad --task cifar\n").expect("list");
        let result = checked_rows(&list, |flags| match flags {
            [_, task] if task == "cifar" => Err(TrainError::Invalid("unknown task".into())),
            _ => Ok(TrainConfig::new()),
        });
        match result {
            Err(TrainError::Invalid(m)) => {
                assert!(
                    m.ends_with("rows.txt, line 3: row `bad`: unknown task"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_row_must_describe_the_run_already_in_its_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = dir.path().join("a");
        std::fs::create_dir(&run).expect("dir");
        let trained = TrainConfig::new().with_task(Task::Smnist).with_epochs(300);
        crate::run::train::write_json(&run.join(files::CONFIG), &trained).expect("config");
        let list = dir.path().join(ROW_LIST);
        std::fs::write(&list, "a --task smnist\n").expect("list");
        // What a resume may change (epochs, patience, backend) may differ ...
        let longer = trained.clone().with_epochs(500).with_patience(Some(90));
        assert!(checked_rows(&list, |_| Ok(longer.clone())).is_ok());
        // ... nothing else.
        let other = trained.clone().with_adam_epsilon(1e-5);
        match checked_rows(&list, |_| Ok(other.clone())) {
            Err(TrainError::Invalid(m)) => assert!(
                m.contains("line 1: row `a`: its flags differ from the run in")
                    && m.contains("adam_epsilon: 1e-8 there, 0.00001 now"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_listed_row_without_a_folder_is_timed_at_the_pace_of_the_started_rows_of_its_kind() {
        let dir = tempfile::tempdir().expect("tmp");
        // A started run with two epochs of `pace` seconds each.
        let start = |name: &str, config: &TrainConfig, pace: u32| {
            let run = dir.path().join(name);
            std::fs::create_dir(&run).expect("dir");
            crate::run::train::write_json(&run.join(files::CONFIG), config).expect("config");
            std::fs::write(
                run.join("train.log"),
                format!(
                    "training epochs 1..=300\n\
                     epoch 1/300 valid 3000/3000 items ({pace} s)\n\
                     epoch 2/300 valid 3000/3000 items ({} s)\n",
                    2 * pace
                ),
            )
            .expect("log");
        };
        let smnist = TrainConfig::new().with_task(Task::Smnist).with_epochs(300);
        start("smnist-a", &smnist, 100);
        start("psmnist-d", &smnist.clone().with_task(Task::Psmnist), 300);
        std::fs::write(
            dir.path().join(ROW_LIST),
            "smnist-a --task smnist\npsmnist-b --task psmnist\nsmnist-c --hidden 128\n",
        )
        .expect("list");
        let asked = std::cell::RefCell::new(Vec::new());
        let rows = report_rows(dir.path(), |flags| {
            asked.borrow_mut().push(flags.join(" "));
            Ok(match flags {
                [_, task] if task == "psmnist" => smnist
                    .clone()
                    .with_task(Task::Psmnist)
                    .with_learn_time_constants(false),
                [_, task] if task == "smnist" => smnist.clone(),
                _ => smnist.clone().with_hidden(Some(128)),
            })
        })
        .expect("rows");
        // every listed row's flags are checked; the started row comes from its folder
        assert_eq!(
            *asked.borrow(),
            vec!["--task smnist", "--task psmnist", "--hidden 128"]
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["psmnist-b", "psmnist-d", "smnist-a", "smnist-c"]
        );
        assert_eq!(rows[0].progress, Progress::NotStarted);
        let table = runs_table(&rows);
        fn line<'a>(table: &'a str, name: &str) -> &'a str {
            let start = format!("| `{name}` |");
            table.lines().find(|l| l.starts_with(&start)).expect("row")
        }
        // 300 epochs at 100 s (8.3 h) and at 300 s (25 h): a psMNIST step with fixed time
        // constants costs what the learned ones' do, on either task
        assert!(
            line(&table, "psmnist-b").contains("| 0 / 300 (not started) |"),
            "{table}"
        );
        assert!(
            line(&table, "psmnist-b")
                .ends_with("| ≤ 8.3 h at `smnist-a`'s 100 s; ≤ 25.0 h at `psmnist-d`'s 300 s |"),
            "{table}"
        );
        assert!(line(&table, "smnist-a").contains("(training)"), "{table}");
        assert!(line(&table, "smnist-a").contains("h left at"), "{table}");
        // a started row the list no longer names is not trained on: stopped, no time left
        assert_eq!(rows[1].progress, Progress::Stopped);
        assert!(line(&table, "psmnist-d").contains("(stopped)"), "{table}");
        assert!(!line(&table, "psmnist-d").contains("left"), "{table}");
        // no 128-unit row has run: no pace to go by
        assert!(
            line(&table, "smnist-c").ends_with("| – (no run of its kind timed yet) |"),
            "{table}"
        );
        // a single run of its kind: one time
        let alone = report_rows(dir.path(), |flags| {
            Ok(match flags {
                [_, task] if task == "smnist" => smnist.clone(),
                _ => smnist.clone().with_task(Task::Psmnist),
            })
        })
        .expect("rows")
        .into_iter()
        .filter(|r| r.name != "psmnist-d")
        .collect::<Vec<_>>();
        let table = runs_table(&alone);
        assert!(
            line(&table, "psmnist-b").ends_with("| ≤ 8.3 h at `smnist-a`'s 100 s |"),
            "{table}"
        );
        // without a list, only the folders
        std::fs::remove_file(dir.path().join(ROW_LIST)).expect("rm");
        let rows =
            report_rows(dir.path(), |_| panic!("no list, no row to configure")).expect("rows");
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.progress == Progress::Training));
    }

    #[test]
    fn a_training_run_shows_the_time_it_may_still_need_at_its_newest_pace() {
        let wall = WallTime {
            total: 7200.0,
            per_epoch: 200.0,
            recent_per_epoch: 72.0,
        };
        // 36 of 300 epochs done: at most 264 · 72 s = 5.28 h left.
        let training = RunRow {
            wall: Some(wall),
            ..row("smnist-a", Task::Smnist, vec![Some(70.0); 36])
        };
        let finished = RunRow {
            wall: Some(wall),
            progress: Progress::Finished,
            test: Some(97.0),
            ..row("smnist-b", Task::Smnist, vec![Some(70.0); 36])
        };
        let table = runs_table(&[training, finished]);
        let line = |name: &str| table.lines().find(|l| l.contains(name)).expect("row");
        assert!(
            line("smnist-a").contains("| 2.0 h (200 s); ≤ 5.3 h left at 72 s |"),
            "{table}"
        );
        assert!(line("smnist-b").contains("| 2.0 h (200 s) |"), "{table}");
    }

    #[test]
    fn paper_static_numbers_match_the_model_notes() {
        let notes = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/MODEL.md"),
        )
        .expect("docs/MODEL.md");
        let table = &notes[notes.find("**Table 1").expect("Table 1 in §12")..];
        let table = &table[..table.find("**Table 2").expect("Table 2 after Table 1")];
        let mut rows = 0;
        for line in table.lines().filter(|l| l.starts_with("| ORGaNICs")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let layers: &[usize] = match cells[1] {
                "ORGaNICs, 50 neurons" => &[50],
                "ORGaNICs, 80 neurons" => &[80],
                "ORGaNICs, two layers" => &[128, 64],
                other => panic!("unknown row {other}"),
            };
            let value: f64 = cells[2]
                .trim_end_matches('%')
                .parse()
                .expect("a percentage");
            assert_eq!(paper_static_accuracy(layers), Some(value), "{line}");
            rows += 1;
        }
        assert_eq!(rows, 3, "every ORGaNICs row of Table 1 compared");
    }

    #[test]
    fn paper_numbers_match_the_model_notes() {
        let notes = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/MODEL.md"),
        )
        .expect("docs/MODEL.md");
        let table = &notes[notes.find("**Table 2").expect("Table 2 in §12")..];
        let mut rows = 0;
        for line in table
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("**Other"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | model | sMNIST | psMNIST | units | parameters |
            let [_, model, smnist, psmnist, units, _, _] = cells[..] else {
                continue;
            };
            let Ok(units) = units.parse::<usize>() else {
                continue;
            };
            let (kind, learned) = match model {
                m if m.starts_with("ORGaNICs, fixed") => (ModelKind::Organics, false),
                m if m.starts_with("ORGaNICs") => (ModelKind::Organics, true),
                m if m.starts_with("LSTM") => (ModelKind::Lstm, true),
                other => panic!("unknown row {other}"),
            };
            for (task, cell) in [(Task::Smnist, smnist), (Task::Psmnist, psmnist)] {
                let value: f64 = cell.trim_end_matches('%').parse().expect("a percentage");
                assert_eq!(
                    paper_accuracy(task, kind, units, learned),
                    Some(value),
                    "{line}"
                );
            }
            rows += 1;
        }
        assert_eq!(rows, 5, "every row of Table 2 compared");
    }

    #[test]
    fn wall_time_adds_invocations_and_counts_complete_epochs() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("train.log");
        std::fs::write(
            &log,
            "== start\ntraining epochs 1..=300\nepoch 1/300 train 100/100 items (40 s) | x\n\
             epoch 1/300 valid 3000/3000 items (50 s) | x\nepoch 2/300 valid 300/3000 items (95 s) | x\n\
             epoch 2/300 valid 3000/3000 items (100 s) | x\n== start\ntraining epochs 3..=300\n\
             epoch 3/300 valid 3000/3000 items (60 s) | x\n",
        )
        .expect("write");
        let w = wall_time(&log).expect("timed");
        assert_eq!(w.total, 160.0);
        assert!((w.per_epoch - 160.0 / 3.0).abs() < 1e-9);
        // The newest invocation: one epoch in 60 s.
        assert_eq!(w.recent_per_epoch, 60.0);
        // A newer one without a finished epoch has no pace of its own yet.
        let mut text = std::fs::read_to_string(&log).expect("read");
        text.push_str(
            "== start\ntraining epochs 4..=300\nepoch 4/300 train 10/100 items (9 s) | x\n",
        );
        std::fs::write(&log, text).expect("write");
        let w = wall_time(&log).expect("timed");
        assert_eq!(w.recent_per_epoch, w.per_epoch);
        assert_eq!(wall_time(&dir.path().join("none.log")), None);
    }
}
