//! `cargo xtask`: the command-line front door of organics.
//!
//! Errors print as one line on stderr. Exit status: 0 done; 1 a failure (diverged, an I/O
//! error, a damaged file); 2 bad input (an unknown task, a value out of range, a missing
//! data folder, an artifact folder of another run or in use by one); 130 stopped on request
//! (Ctrl-C, SIGTERM, the dashboard's stop), resumable with `--resume`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use organics_train::{
    BackendKind, BenchOptions, CurveMetric, GradientPath, ModelKind, OptimizerKind, RunOptions,
    Task, TrainConfig, TrainError,
};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Train, evaluate and benchmark ORGaNICs models",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model; writes config, checkpoints, metrics and results.json to --artifact-dir.
    Train(Box<TrainArgs>),
    /// Score a trained run on the test set (same data, split and permutation).
    Eval(EvalArgs),
    /// Time training steps on random data of the real shape; prints one JSON line.
    Bench(BenchArgs),
    /// Record the first training steps of a sequence ORGaNICs run (its starting parameters,
    /// batches, every step's loss and the parameters after) for another implementation to
    /// repeat: `bench/trace_check.py` repeats them in PyTorch and compares.
    Trace {
        /// The run whose config.json to follow (only its configuration is read).
        #[arg(long)]
        artifact_dir: PathBuf,
        /// Training steps to record (1 to 200).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// The folder to write trace.json and inputs.f32 into.
        #[arg(long)]
        out: PathBuf,
        /// Folder with the MNIST files [default: as for train].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// How the steps compute their gradients: fused, tensor or autodiff [default: as
        /// train does].
        #[arg(long, value_parser = parse::<GradientPath>)]
        gradients: Option<GradientPath>,
    },
    /// Stability experiments on random circuits; prints a table and writes JSON.
    #[command(subcommand)]
    Analyze(AnalyzeCommand),
    /// Figures as SVG.
    #[command(subcommand)]
    Plot(PlotCommand),
    /// The progress table of a folder of runs (default `runs/`, the paper's Table 2):
    /// epochs, best validation and test accuracy, the paper's number, gradient norms, time.
    Report {
        /// The folder holding one run folder per row.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Also write the table, with a short description, to this Markdown file, and the
        /// validation curves of each task (`<task>-validation.svg`) beside it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The rows of a runs folder's list (`runs/rows.txt`), each checked as `train` would
    /// take it: one line a row, its name, a tab, its flags (what `runs/run.sh` trains).
    Rows {
        /// The folder holding the list.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
}

#[derive(Subcommand)]
enum PlotCommand {
    /// Phase portraits of the 2-D circuit (one y, one a): flow field, nullclines, fixed
    /// points (filled: stable, hollow: unstable) for the paper's three parameter sets, main
    /// and rectified model (paper Fig. 1).
    Phase {
        /// Where the SVG goes.
        #[arg(long, default_value = "docs/phase-portraits.svg")]
        out: PathBuf,
    },
    /// Per-epoch curves of finished runs, one line per --artifact-dir: validation accuracy,
    /// or (--metric stability) the leading Jacobian eigenvalue on the validation probe
    /// images of static ORGaNICs runs (paper Fig. 6).
    Curves {
        /// A run's artifact directory (repeat for several runs).
        #[arg(long = "artifact-dir", required = true)]
        artifact_dirs: Vec<PathBuf>,
        /// What to draw: accuracy, stability.
        #[arg(long, default_value = "accuracy", value_parser = parse::<CurveMetric>)]
        metric: CurveMetric,
        /// Figure title.
        #[arg(long, default_value = "Validation accuracy")]
        title: String,
        /// Where the SVG goes.
        #[arg(long, default_value = "docs/learning-curves.svg")]
        out: PathBuf,
    },
    /// y(t) of a trained sequence ORGaNICs model over the pixel steps of the first test
    /// images, one panel per image (paper Fig. 7).
    Trajectories {
        /// The sequence ORGaNICs run (smnist or psmnist).
        #[arg(long)]
        artifact_dir: PathBuf,
        /// Test images (one panel each).
        #[arg(long, default_value_t = 3)]
        images: usize,
        /// Neurons drawn per panel: those whose y varies most over time.
        #[arg(long, default_value_t = 6)]
        neurons: usize,
        /// MNIST folder (else ORGANICS_DATA_DIR, the cache, or a download).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where the SVG goes.
        #[arg(long, default_value = "docs/trajectories.svg")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AnalyzeCommand {
    /// Fraction of random circuits with a stable fixed point: W_r = I (Theorem 4.1) and
    /// general W_r of spectral norm 1, 2, 3 (Conjecture 5.3).
    Theorem {
        /// Principal neurons per circuit.
        #[arg(long, default_value_t = 10)]
        n: usize,
        /// Circuits per case.
        #[arg(long, default_value_t = 1000)]
        trials: usize,
        /// Seed of the random circuits.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the JSON goes.
        #[arg(long, default_value = "docs/analysis/theorem.json")]
        out: PathBuf,
    },
    /// Algorithm 1's error per iteration against a long simulation (paper Fig. 4); a
    /// table, JSON and a figure.
    Convergence {
        /// Principal neurons per circuit (and as many modulators).
        #[arg(long, default_value_t = 10)]
        n: usize,
        /// Random circuits.
        #[arg(long, default_value_t = 1000)]
        trials: usize,
        /// Iterations of Algorithm 1.
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        /// Seed of the random circuits.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the JSON goes.
        #[arg(long, default_value = "docs/analysis/convergence.json")]
        out: PathBuf,
        /// Where the figure (SVG) goes.
        #[arg(long, default_value = "docs/convergence.svg")]
        figure: PathBuf,
    },
    /// On a trained static ORGaNICs run: the largest real part of the Jacobian's
    /// eigenvalues at each test image's fixed point, per layer (paper Fig. 5); a table,
    /// a JSON summary and a histogram per layer.
    Stability {
        /// The static ORGaNICs run.
        #[arg(long)]
        artifact_dir: PathBuf,
        /// Analyse only the first N test images (default: all 10,000).
        #[arg(long)]
        limit: Option<usize>,
        /// Histogram bins.
        #[arg(long, default_value_t = 40)]
        bins: usize,
        /// MNIST folder (else ORGANICS_DATA_DIR, the cache, or a download).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where the JSON goes.
        #[arg(long, default_value = "docs/analysis/stability.json")]
        out: PathBuf,
        /// Where the histogram SVG goes.
        #[arg(long, default_value = "docs/stability-histogram.svg")]
        figure: PathBuf,
    },
    /// On a trained sequence ORGaNICs run: how many units have a positive input weight and
    /// so receive input from MNIST's non-negative pixels (the others never do); with
    /// --linear-input-drive, how many have an input weight that has not decayed to zero.
    Inputs {
        /// The sequence ORGaNICs run (its best weights, or its newest checkpoint).
        #[arg(long)]
        artifact_dir: PathBuf,
    },
}

fn parse<T: std::str::FromStr<Err = TrainError>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: TrainError| e.to_string())
}

/// The training defaults: the flags below show and use [`TrainConfig`]'s, their one home.
fn defaults() -> TrainConfig {
    TrainConfig::new()
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// Task: mnist (static images), smnist (pixel sequences), psmnist (permuted pixel sequences).
    #[arg(long, default_value_t = defaults().task, value_parser = parse::<Task>)]
    task: Task,
    /// Model: organics, or the baselines lstm (sequence tasks) and mlp (mnist).
    #[arg(long, default_value_t = defaults().model, value_parser = parse::<ModelKind>)]
    model: ModelKind,
    /// Backend: flex (CPU, default), ndarray (CPU) or wgpu (GPU).
    #[arg(long, default_value_t = defaults().backend, value_parser = parse::<BackendKind>)]
    backend: BackendKind,
    /// Folder with the four MNIST IDX files (raw or .gz). Default: $ORGANICS_DATA_DIR, then the
    /// burn-dataset cache, then a download into it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Data set: mnist or fashion-mnist.
    #[arg(long, default_value_t = defaults().dataset)]
    dataset: String,
    /// Epochs in total (a resumed run continues up to this many).
    #[arg(long, default_value_t = defaults().epochs)]
    epochs: usize,
    /// Batch size (per device).
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// Devices to train on in parallel, each with a batch of --batch-size per step (GPUs
    /// 0..N on wgpu; on the CPU backends copies of the CPU, for checks rather than speed).
    #[arg(long, default_value_t = defaults().devices)]
    devices: usize,
    /// Hidden units [default: 64 for organics on sequences, 128 for lstm, 50 for mlp].
    #[arg(long)]
    hidden: Option<usize>,
    /// ORGaNICs layer sizes of the static model, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = defaults().layers)]
    layers: Vec<usize>,
    /// Learning rate [default: 0.01 for sequence tasks, 0.001 for mnist].
    #[arg(long)]
    lr: Option<f64>,
    /// Optimizer: adam (the paper's) or rmsprop (rho 0.9, no momentum: the LSTM literature's).
    #[arg(long, default_value_t = defaults().optimizer, value_parser = parse::<OptimizerKind>)]
    optimizer: OptimizerKind,
    /// Weight decay (L2, added to the gradient).
    #[arg(long, default_value_t = defaults().weight_decay)]
    weight_decay: f64,
    /// Adam's epsilon (PyTorch's default; docs/MODEL.md §11).
    #[arg(long, default_value_t = defaults().adam_epsilon)]
    adam_epsilon: f64,
    /// Learning-rate decay factor.
    #[arg(long, default_value_t = defaults().lr_gamma)]
    lr_gamma: f64,
    /// Epochs between learning-rate decays.
    #[arg(long, default_value_t = defaults().lr_step_epochs)]
    lr_step: usize,
    /// Clip gradients to this norm (off by default, as in the paper).
    #[arg(long)]
    clip: Option<f64>,
    /// Stop early once the validation accuracy has not improved for this many epochs.
    #[arg(long)]
    patience: Option<usize>,
    /// LSTM: initial forget-gate bias (1 in the LSTM literature) [default: Burn's initialisation].
    #[arg(long)]
    forget_bias: Option<f64>,
    /// Hold the sequence cell's time constants fixed (paper's "fixed time constants" rows).
    #[arg(long)]
    fixed_time_constants: bool,
    /// ORGaNICs sequence cell: largest step ratio dt/tau of y, in (0, 1] [default: the
    /// paper's, docs/MODEL.md section 5].
    #[arg(long)]
    r_max_y: Option<f64>,
    /// ORGaNICs sequence cell: largest step ratio of a, in (0, 1] [default: the paper's].
    #[arg(long)]
    r_max_a: Option<f64>,
    /// ORGaNICs sequence cell: largest step ratio of b0 and b1, in (0, 1] [default: the
    /// paper's].
    #[arg(long)]
    r_max_b: Option<f64>,
    /// Learn W_r (spectral norm 1, Algorithm 1) in the static layers instead of W_r = I
    /// (closed-form fixed point, the default: far cheaper per step on the CPU, see
    /// docs/SPEED.md).
    #[arg(long)]
    learned_recurrence: bool,
    /// With --learned-recurrence: gate Algorithm 1's solve by 1 - a, as the authors' static
    /// code does, instead of the circuit's 1 - sqrt(a) (docs/MODEL.md section 11).
    #[arg(long)]
    linear_gate: bool,
    /// Sequence ORGaNICs: the input drive z = W_zx x without rectification, as a branch of
    /// the authors' code has it, instead of the model's ⌊W_zx x⌋ (docs/MODEL.md section 11).
    #[arg(long)]
    linear_input_drive: bool,
    /// Sequence ORGaNICs: the paper's main model (W_r y and y² in place of ⌊W_r y⌋ and
    /// ⌊y⌋²), the authors' rnnCell_unrectified, instead of the rectified model
    /// (docs/MODEL.md section 11).
    #[arg(long)]
    main_model: bool,
    /// Seed of initialisation, split and shuffling.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Seed of the psMNIST pixel permutation.
    #[arg(long, default_value_t = defaults().permutation_seed)]
    permutation_seed: u64,
    /// Validation images held out of the 60,000 training images.
    #[arg(long, default_value_t = defaults().valid_size)]
    valid_size: usize,
    /// Train on only the first N training images (after the split) [default: all].
    #[arg(long)]
    train_limit: Option<usize>,
    /// Validate on only the first N validation images [default: all].
    #[arg(long)]
    valid_limit: Option<usize>,
    /// Test on only the first N test images [default: all].
    #[arg(long)]
    test_limit: Option<usize>,
    /// Where the run's files go (default: artifacts/TASK-MODEL, e.g. artifacts/mnist-organics).
    #[arg(long)]
    artifact_dir: Option<PathBuf>,
    /// Continue the run in --artifact-dir from its newest intact checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace the run already in --artifact-dir (its checkpoints, metrics, weights, results).
    #[arg(long)]
    overwrite: bool,
    /// Plain progress lines even on a terminal (instead of Burn's TUI).
    #[arg(long)]
    plain: bool,
    /// With --backend wgpu: train even when the only adapter is a software renderer
    /// (llvmpipe, lavapipe), which runs on the CPU and is slower than --backend flex.
    #[arg(long)]
    allow_software_gpu: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The run's artifact directory.
    #[arg(long)]
    artifact_dir: PathBuf,
    /// Backend [default: the run's own].
    #[arg(long, value_parser = parse::<BackendKind>)]
    backend: Option<BackendKind>,
    /// Folder with the MNIST files [default: as for train].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn bench_defaults() -> BenchOptions {
    BenchOptions::default()
}

#[derive(Args)]
struct BenchArgs {
    /// Task: smnist (sequence step) or mnist (static step).
    #[arg(long, default_value_t = bench_defaults().task, value_parser = parse::<Task>)]
    task: Task,
    /// Model: organics, lstm (smnist) or mlp (mnist).
    #[arg(long, default_value_t = bench_defaults().model, value_parser = parse::<ModelKind>)]
    model: ModelKind,
    /// Backend: flex, ndarray or wgpu.
    #[arg(long, default_value_t = bench_defaults().backend, value_parser = parse::<BackendKind>)]
    backend: BackendKind,
    /// Hidden units of the sequence model.
    #[arg(long, default_value_t = bench_defaults().hidden)]
    hidden: usize,
    /// ORGaNICs layer sizes of the static model.
    #[arg(long, value_delimiter = ',', default_values_t = bench_defaults().layers)]
    layers: Vec<usize>,
    /// Learn W_r in the static layers (Algorithm 1) instead of W_r = I.
    #[arg(long)]
    learned_recurrence: bool,
    /// Batch size.
    #[arg(long, default_value_t = bench_defaults().batch)]
    batch: usize,
    /// Sequence length (smnist).
    #[arg(long, default_value_t = bench_defaults().seq)]
    seq: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = bench_defaults().steps)]
    steps: usize,
    /// ORGaNICs and the LSTM: how gradients are computed: fused (hand-derived, in fused
    /// kernels: on the CPU backends one host kernel, on wgpu CubeCL kernels for sequence
    /// ORGaNICs; the default, except for the LSTM on wgpu, whose fused kernel runs on the
    /// host), tensor (sequence ORGaNICs: the hand-derived BPTT in Burn tensor ops) or
    /// autodiff (Burn's autodiff).
    #[arg(long, value_parser = parse::<GradientPath>)]
    gradients: Option<GradientPath>,
    /// Step with Burn's tensor-op Adam instead of the one-pass host Adam (CPU backends).
    #[arg(long)]
    burn_adam: bool,
    /// With --backend wgpu: time it even on a software adapter (llvmpipe, lavapipe).
    #[arg(long)]
    allow_software_gpu: bool,
}

fn exit_code(e: &TrainError) -> u8 {
    use organics_data::DataError;
    match e {
        TrainError::Stopped { .. } => 130,
        TrainError::Invalid(_)
        | TrainError::ConfigMismatch { .. }
        | TrainError::Locked { .. }
        | TrainError::NoCheckpoint(_) => 2,
        TrainError::Data(
            DataError::NotFound { .. }
            | DataError::BadDataDir { .. }
            | DataError::NotAFile { .. }
            | DataError::WrongRole { .. }
            | DataError::ShippedChanged { .. }
            | DataError::Invalid(_),
        ) => 2,
        _ => 1,
    }
}

/// The training configuration the flags of `train` give.
fn train_config(a: &TrainArgs) -> TrainConfig {
    TrainConfig::new()
        .with_task(a.task)
        .with_model(a.model)
        .with_backend(a.backend)
        .with_dataset(a.dataset.clone())
        .with_epochs(a.epochs)
        .with_batch_size(a.batch_size)
        .with_devices(a.devices)
        .with_hidden(a.hidden)
        .with_layers(a.layers.clone())
        .with_learning_rate(a.lr)
        .with_optimizer(a.optimizer)
        .with_weight_decay(a.weight_decay)
        .with_adam_epsilon(a.adam_epsilon)
        .with_forget_bias(a.forget_bias)
        .with_lr_gamma(a.lr_gamma)
        .with_lr_step_epochs(a.lr_step)
        .with_clip(a.clip)
        .with_patience(a.patience)
        .with_learn_time_constants(!a.fixed_time_constants)
        .with_r_max_y(a.r_max_y)
        .with_r_max_a(a.r_max_a)
        .with_r_max_b(a.r_max_b)
        .with_learn_recurrence(a.learned_recurrence)
        .with_linear_gate(a.linear_gate)
        .with_rectified_input(!a.linear_input_drive)
        .with_rectified(!a.main_model)
        .with_seed(a.seed)
        .with_permutation_seed(a.permutation_seed)
        .with_valid_size(a.valid_size)
        .with_train_limit(a.train_limit)
        .with_valid_limit(a.valid_limit)
        .with_test_limit(a.test_limit)
}

/// The configuration of a row of a runs folder's row list: its flags as `train` reads them.
/// The folder and whether to resume are `runs/run.sh`'s to give, so a row may not set them.
fn row_config(flags: &[String]) -> Result<TrainConfig, TrainError> {
    let args = ["xtask", "train"]
        .into_iter()
        .map(String::from)
        .chain(flags.iter().cloned());
    match Cli::try_parse_from(args).map(|cli| cli.command) {
        Ok(Command::Train(a)) => {
            if a.artifact_dir.is_some() || a.resume || a.overwrite {
                return Err(TrainError::Invalid(
                    "--artifact-dir, --resume and --overwrite are runs/run.sh's to give".into(),
                ));
            }
            let config = train_config(&a);
            config.validate()?;
            Ok(config)
        }
        Ok(_) => Err(TrainError::Invalid("not flags of `train`".into())),
        Err(e) => {
            // clap's message is several lines (usage, help hint); its first says what is wrong.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("unreadable flags");
            Err(TrainError::Invalid(
                first.trim_start_matches("error: ").to_string(),
            ))
        }
    }
}

fn run(cli: Cli) -> Result<(), TrainError> {
    match cli.command {
        Command::Train(a) => {
            let config = train_config(&a);
            let artifact_dir = a
                .artifact_dir
                .unwrap_or_else(|| PathBuf::from(format!("artifacts/{}-{}", a.task, a.model)));
            let opts = RunOptions {
                resume: a.resume,
                overwrite: a.overwrite,
                data_dir: a.data_dir,
                plain: a.plain,
                allow_software_gpu: a.allow_software_gpu,
                stop: stop_on_signals(),
                ..RunOptions::new(artifact_dir)
            };
            let results = organics_train::train(&config, &opts)?;
            println!(
                "test accuracy {:.2}% (loss {:.4}) after {} epochs; results in {}",
                100.0 * results.test_accuracy.unwrap_or(f64::NAN),
                results.test_loss.unwrap_or(f64::NAN),
                results.epochs,
                opts.artifact_dir.join("results.json").display()
            );
        }
        Command::Eval(a) => {
            let r = organics_train::evaluate(&a.artifact_dir, a.data_dir, a.backend)?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| TrainError::Training(e.to_string()))?
            );
        }
        Command::Trace {
            artifact_dir,
            steps,
            out,
            data_dir,
            gradients,
        } => {
            let t =
                organics_train::run::trace::trace(&artifact_dir, steps, &out, data_dir, gradients)?;
            let first = t.losses.first().copied().unwrap_or(f64::NAN);
            let last = t.losses.last().copied().unwrap_or(f64::NAN);
            println!(
                "{} steps of {} recorded in {} ({} gradients): loss {first:.6} at the first, {last:.6} at the last",
                t.steps,
                artifact_dir.display(),
                out.display(),
                t.gradients
            );
        }
        Command::Bench(a) => {
            let r = organics_train::bench(&BenchOptions {
                task: a.task,
                model: a.model,
                backend: a.backend,
                hidden: a.hidden,
                layers: a.layers,
                learn_recurrence: a.learned_recurrence,
                batch: a.batch,
                seq: a.seq,
                steps: a.steps,
                gradients: a.gradients,
                burn_adam: a.burn_adam,
                allow_software_gpu: a.allow_software_gpu,
            })?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| TrainError::Training(e.to_string()))?
            );
        }
        Command::Analyze(AnalyzeCommand::Theorem {
            n,
            trials,
            seed,
            out,
        }) => {
            let rows = organics_train::analysis::experiments::theorem(n, trials, seed)?;
            print!(
                "{}",
                organics_train::analysis::experiments::theorem_table(&rows)
            );
            organics_train::analysis::experiments::write_report(&out, &rows)?;
            println!("written to {}", out.display());
        }
        Command::Analyze(AnalyzeCommand::Convergence {
            n,
            trials,
            iterations,
            seed,
            out,
            figure,
        }) => {
            let report =
                organics_train::analysis::experiments::convergence(n, trials, iterations, seed)?;
            println!(
                "{} trials ({} skipped: simulation did not settle)",
                report.trials, report.skipped
            );
            print!(
                "{}",
                organics_train::analysis::experiments::convergence_table(&report)
            );
            organics_train::analysis::experiments::write_report(&out, &report)?;
            organics_train::figures::convergence::convergence_figure(&report, &figure)?;
            println!("written to {} and {}", out.display(), figure.display());
        }
        Command::Plot(PlotCommand::Curves {
            artifact_dirs,
            metric,
            title,
            out,
        }) => {
            organics_train::figures::curves::learning_curves(&artifact_dirs, metric, &title, &out)?;
            println!("written to {}", out.display());
        }
        Command::Plot(PlotCommand::Trajectories {
            artifact_dir,
            images,
            neurons,
            data_dir,
            out,
        }) => {
            let s = organics_train::figures::trajectories::trajectories(
                &artifact_dir,
                data_dir,
                images,
                neurons,
                &out,
            )?;
            for img in &s.images {
                println!(
                    "test image {}: digit {}, predicted {}",
                    img.index, img.label, img.predicted
                );
            }
            println!("neurons drawn: {:?} over {} steps", s.neurons, s.steps);
            println!("written to {}", out.display());
        }
        Command::Analyze(AnalyzeCommand::Stability {
            artifact_dir,
            limit,
            bins,
            data_dir,
            out,
            figure,
        }) => {
            let report = organics_train::analysis::stability::trained_stability(
                &artifact_dir,
                data_dir,
                limit,
                bins,
                |done, total| eprintln!("fixed points analysed: {done}/{total} test images"),
            )?;
            print!(
                "{}",
                organics_train::analysis::stability::stability_table(&report)
            );
            organics_train::analysis::experiments::write_report(&out, &report)?;
            organics_train::figures::stability::stability_histograms(&report, &figure)?;
            println!("written to {} and {}", out.display(), figure.display());
        }
        Command::Analyze(AnalyzeCommand::Inputs { artifact_dir }) => {
            let units = organics_train::analysis::inputs::input_units(&artifact_dir)?;
            print!("{}", units.table());
        }
        Command::Report { runs, out } => {
            let rows = organics_train::run::report::report_rows(&runs, row_config)?;
            print!("{}", organics_train::run::report::runs_table(&rows));
            if let Some(out) = out {
                let text = organics_train::run::report::runs_readme(&rows);
                std::fs::write(&out, text).map_err(|e| TrainError::File {
                    path: out.clone(),
                    message: e.to_string(),
                })?;
                println!("written to {}", out.display());
                // The page shows the figures by relative links: they go beside it.
                let beside = out.parent().unwrap_or(std::path::Path::new("."));
                for figure in organics_train::run::report::validation_figures(&rows, beside)? {
                    println!("written to {}", figure.display());
                }
            }
        }
        Command::Rows { runs } => {
            let list = runs.join(organics_train::run::report::ROW_LIST);
            for (row, _) in organics_train::run::report::checked_rows(&list, row_config)? {
                println!("{}\t{}", row.name, row.flags.join(" "));
            }
        }
        Command::Plot(PlotCommand::Phase { out }) => {
            let marked = organics_train::figures::phase::phase_portraits(&out)?;
            for m in &marked {
                println!(
                    "{:<32} fixed point y = {:>8.4}, a = {:>8.4}: {}",
                    m.panel,
                    m.y,
                    m.a,
                    if m.stable { "stable" } else { "unstable" }
                );
            }
            println!("written to {}", out.display());
        }
    }
    Ok(())
}

/// Keeps freed tensor buffers in the process instead of handing them back to the kernel.
///
/// A training step allocates and frees thousands of 100-KB-class buffers. glibc serves those
/// from fresh `mmap`s and trims freed memory eagerly, so every buffer costs page faults;
/// perf showed about 15% of an sMNIST step in page faults and page clearing. With a high
/// mmap threshold and trim threshold the buffers are reused, and the step is about 20% faster
/// on flex (`cargo xtask bench`, interleaved runs).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    use std::ffi::c_int;
    // glibc's malloc.h
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // SAFETY: mallopt only changes allocator tuning; it is called before any thread starts.
    // A rejected value (return 0) leaves glibc's default, which is only slower.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Turns SIGINT and SIGTERM into a clean stop of a training run: the training loop checks
/// the flag after every step, finishes that step and returns [`TrainError::Stopped`] with its
/// complete epochs checkpointed. A second signal ends the process at once (status 130).
fn stop_on_signals() -> organics_train::harness::guard::StopRequest {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = organics_train::harness::guard::StopRequest::default();
    for signal in [SIGINT, SIGTERM] {
        // The conditional shutdown is registered first so that it sees the flag as it was
        // before this signal: it exits only on a second one.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    keep_ctrl_c_under_the_dashboard(stop.clone());
    stop
}

/// Burn's terminal dashboard puts the terminal in raw mode, where Ctrl-C is a key press
/// and no longer a SIGINT, and the dashboard ignores that key. While a run lasts, this keeps
/// the terminal's ISIG flag on, so Ctrl-C stops the run there as everywhere else.
fn keep_ctrl_c_under_the_dashboard(stop: organics_train::harness::guard::StopRequest) {
    use rustix::termios::{LocalModes, OptionalActions, isatty, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    if !isatty(&stdin) {
        return;
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut modes) = tcgetattr(&stdin)
                && !modes.local_modes.contains(LocalModes::ISIG)
            {
                modes.local_modes.insert(LocalModes::ISIG);
                let _ = tcsetattr(&stdin, OptionalActions::Now, &modes);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
}

/// Reports a panic (a bug, or a failure deep in a dependency) as one line instead of a
/// backtrace; the process then exits non-zero as Rust does for a panic.
fn report_panics_in_one_line() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal failure: {message}{place} (RUST_BACKTRACE=1 for details)");
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

/// Burn puts a resumed run's optimizer state on its default device before moving it to the
/// run's own; with the wgpu feature compiled in, that default is a GPU, which a CPU run
/// neither needs nor may have (cubecl then panics, and probing the graphics drivers prints
/// their complaints). Unless the user chose a default (`BURN_DEVICE`), it is the CPU.
fn default_device_on_the_cpu() {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if std::env::var_os("BURN_DEVICE").is_none() {
        let cpu = if cfg!(feature = "flex") {
            "flex"
        } else {
            "ndarray"
        };
        // SAFETY: called first in main, before any thread starts, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("BURN_DEVICE", cpu) };
    }
}

fn main() -> ExitCode {
    default_device_on_the_cpu();
    keep_freed_memory();
    report_panics_in_one_line();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
