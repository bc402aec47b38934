//! Bad input on the command line: one readable line and exit status 2.

use std::process::Command;

fn xtask(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs xtask with `args`, checks that it succeeded and returns its standard output.
fn xtask_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MNIST folder shipped in the repository.
fn shipped() -> String {
    format!("{}/../data/mnist", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bad_inputs_exit_2_with_a_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let art = tmp.path().join("run");
    let art = art.to_str().expect("utf8");
    let data = shipped();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--task", "cifar"], "unknown task 'cifar'"),
        (vec!["train", "--backend", "tpu"], "unknown backend 'tpu'"),
        (
            vec![
                "train",
                "--batch-size",
                "0",
                "--data-dir",
                &data,
                "--artifact-dir",
                art,
            ],
            "batch size must be at least 1",
        ),
        (
            vec![
                "train",
                "--data-dir",
                "/nonexistent/mnist",
                "--artifact-dir",
                art,
            ],
            "does not exist",
        ),
        (
            vec![
                "train",
                "--task",
                "mnist",
                "--model",
                "lstm",
                "--artifact-dir",
                art,
            ],
            "lstm is for the sequence tasks",
        ),
        (
            vec!["train", "--lr", "-0.001", "--artifact-dir", art],
            "learning rate must be a positive finite number",
        ),
        (
            vec!["train", "--clip=-1", "--artifact-dir", art],
            "gradient clipping norm must be",
        ),
        (
            vec!["train", "--lr-gamma", "0", "--artifact-dir", art],
            "lr gamma",
        ),
        (
            vec!["train", "--weight-decay", "NaN", "--artifact-dir", art],
            "weight decay must be",
        ),
        (
            vec![
                "train",
                "--task",
                "psmnist",
                "--r-max-y",
                "2",
                "--artifact-dir",
                art,
            ],
            "--r-max-y must be in (0, 1]",
        ),
        (
            vec!["train", "--r-max-a", "0.01", "--artifact-dir", art],
            "--r-max-a sets a step ratio of the ORGaNICs sequence cell",
        ),
        (
            vec!["train", "--resume", "--overwrite", "--artifact-dir", art],
            "cannot be used with",
        ),
        (
            vec!["eval", "--artifact-dir", "/nonexistent/run"],
            "is not a training run",
        ),
        (
            vec!["analyze", "stability", "--artifact-dir", "/nonexistent/run"],
            "is not a training run",
        ),
        (
            vec!["plot", "trajectories", "--artifact-dir", "/nonexistent/run"],
            "is not a training run",
        ),
        (
            vec!["analyze", "inputs", "--artifact-dir", "/nonexistent/run"],
            "is not a training run",
        ),
        (
            vec![
                "plot",
                "curves",
                "--metric",
                "loss",
                "--artifact-dir",
                "/nonexistent/run",
            ],
            "unknown metric 'loss'",
        ),
    ];
    for (args, needle) in cases {
        let (code, err) = xtask(&args);
        assert_eq!(code, 2, "{args:?}: exit {code}, stderr {err}");
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks '{needle}': {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn the_report_lists_the_rows_not_started_and_refuses_a_row_with_bad_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let runs = tmp.path().to_str().expect("utf8");
    let list = tmp.path().join("rows.txt");
    std::fs::write(
        &list,
        "# planned\na-row --task psmnist --hidden 32 --epochs 7\n",
    )
    .expect("list");
    let table = xtask_stdout(&["report", "--runs", runs]);
    assert!(
        table
            .contains("| `a-row` | psmnist organics 32, learned τ | 6,698 | 0 / 7 (not started) |"),
        "{table}"
    );
    assert_eq!(
        xtask_stdout(&["rows", "--runs", runs]),
        "a-row\t--task psmnist --hidden 32 --epochs 7\n"
    );
    for (row, message) in [
        (
            "b --task cifar",
            "rows.txt, line 2: row `b`: invalid value 'cifar'",
        ),
        (
            "c --task mnist --model lstm",
            "rows.txt, line 2: row `c`: model lstm is for the sequence tasks",
        ),
        (
            "d --hidden",
            "rows.txt, line 2: row `d`: a value is required",
        ),
        (
            "e --artifact-dir elsewhere",
            "rows.txt, line 2: row `e`: --artifact-dir, --resume and --overwrite are runs/run.sh's",
        ),
        (
            "a-row --task psmnist",
            "rows.txt, line 2: row `a-row` appears twice",
        ),
    ] {
        std::fs::write(&list, format!("a-row --task smnist\n{row}\n")).expect("list");
        for command in ["report", "rows"] {
            let (code, err) = xtask(&[command, "--runs", runs]);
            assert_eq!(code, 2, "{command} {row}: {err}");
            assert!(err.contains(message), "{command} {row}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{command} {row}: {err}");
        }
    }
    // The repository's own list: every row is accepted and shows in the report.
    let own = format!("{}/../runs", env!("CARGO_MANIFEST_DIR"));
    let rows = xtask_stdout(&["rows", "--runs", &own]);
    let table = xtask_stdout(&["report", "--runs", &own]);
    assert!(rows.lines().count() >= 11, "{rows}");
    for line in rows.lines() {
        let (name, _) = line.split_once('\t').expect("name, tab, flags");
        assert!(table.contains(&format!("| `{name}` |")), "{name}: {table}");
    }
}

#[test]
fn an_artifact_dir_of_another_run_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let art = tmp.path().to_str().expect("utf8").to_string();
    let data = shipped();
    let base = [
        "train",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--valid-limit",
        "32",
        "--test-limit",
        "32",
        "--plain",
    ];
    let mut first: Vec<&str> = base.to_vec();
    first.extend(["--data-dir", &data, "--artifact-dir", &art]);
    let (code, err) = xtask(&first);
    assert_eq!(code, 0, "{err}");
    let mut second = first.clone();
    second.extend(["--hidden", "20", "--resume"]);
    let (code, err) = xtask(&second);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another configuration"), "{err}");
    // and eval of the finished run works and prints JSON
    let line = xtask_stdout(&["eval", "--artifact-dir", &art, "--data-dir", &data]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json");
    assert!(v["test_accuracy"].as_f64().is_some());
}

#[test]
fn help_documents_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--help"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--task",
        "--model",
        "--backend",
        "--data-dir",
        "--epochs",
        "--batch-size",
        "--hidden",
        "--lr",
        "--seed",
        "--permutation-seed",
        "--train-limit",
        "--artifact-dir",
        "--resume",
        "--r-max-y",
        "--r-max-a",
        "--r-max-b",
        "[default: mnist]",
    ] {
        assert!(text.contains(flag), "train --help lacks {flag}");
    }
}

#[test]
fn analyze_commands_write_decodable_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let theorem = tmp.path().join("out/theorem.json");
    let (code, err) = xtask(&[
        "analyze",
        "theorem",
        "--trials",
        "10",
        "--out",
        theorem.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&theorem).expect("written")).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(4));
    // W_r = I: every circuit stable (Theorem 4.1)
    assert_eq!(rows[0]["stable"], 10);

    let conv = tmp.path().join("conv.json");
    let conv_svg = tmp.path().join("conv.svg");
    let (code, err) = xtask(&[
        "analyze",
        "convergence",
        "--trials",
        "5",
        "--iterations",
        "4",
        "--out",
        conv.to_str().expect("utf8"),
        "--figure",
        conv_svg.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&conv_svg).expect("figure written");
    roxmltree::Document::parse(&text).expect("decodable SVG");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conv).expect("written")).expect("json");
    assert_eq!(report["mean"].as_array().map(Vec::len), Some(4));

    let (code, err) = xtask(&["analyze", "theorem", "--trials", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("at least 1"), "{err}");
}

/// The arguments of `train` with `flags` on the shipped data into `art`, in plain mode.
fn train_args<'a>(data: &'a str, art: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--plain",
        "--data-dir",
        data,
        "--artifact-dir",
        art,
    ];
    args.extend(flags);
    args
}

/// Trains a tiny run with `flags` into `dir/run` and returns that path.
fn tiny_run(dir: &std::path::Path, flags: &[&str]) -> String {
    let art = dir.join("run").to_str().expect("utf8").to_string();
    let data = shipped();
    let (code, err) = xtask(&train_args(&data, &art, flags));
    assert_eq!(code, 0, "{err}");
    art
}

/// The flags of a one-epoch sMNIST run on a few images, over in about a second.
fn tiny_sequence_flags() -> Vec<&'static str> {
    vec![
        "--task",
        "smnist",
        "--hidden",
        "6",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--train-limit",
        "32",
        "--valid-limit",
        "16",
        "--test-limit",
        "4",
    ]
}

/// How many `tag` elements the SVG at `path` has (it must parse).
fn svg_elements(path: &std::path::Path, tag: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("figure written");
    let doc = roxmltree::Document::parse(&text).expect("decodable SVG");
    doc.descendants().filter(|n| n.has_tag_name(tag)).count()
}

#[test]
fn stability_commands_on_a_tiny_static_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let flags = [
        "--layers",
        "8",
        "--epochs",
        "2",
        "--train-limit",
        "64",
        "--valid-limit",
        "32",
        "--test-limit",
        "16",
    ];
    let art = tiny_run(tmp.path(), &flags);
    let data = shipped();
    let json = tmp.path().join("stability.json");
    let figure = tmp.path().join("stability.svg");
    let (code, err) = xtask(&[
        "analyze",
        "stability",
        "--artifact-dir",
        &art,
        "--limit",
        "10",
        "--data-dir",
        &data,
        "--out",
        json.to_str().expect("utf8"),
        "--figure",
        figure.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("json");
    assert_eq!(report["images"], 10);
    // W_r = I: no unstable fixed point (Theorem 4.1)
    assert_eq!(report["layers"][0]["not_stable"], 0);
    // one bar per non-empty bin, at least one
    assert!(svg_elements(&figure, "rect") > 1);

    let curve = tmp.path().join("curve.svg");
    let (code, err) = xtask(&[
        "plot",
        "curves",
        "--metric",
        "stability",
        "--artifact-dir",
        &art,
        "--out",
        curve.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(svg_elements(&curve, "circle"), 2, "one point per epoch");
}

#[test]
fn trajectories_command_on_a_tiny_sequence_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let art = tiny_run(tmp.path(), &tiny_sequence_flags());
    let data = shipped();
    let figure = tmp.path().join("traj.svg");
    let stdout = xtask_stdout(&[
        "plot",
        "trajectories",
        "--artifact-dir",
        &art,
        "--images",
        "2",
        "--neurons",
        "3",
        "--data-dir",
        &data,
        "--out",
        figure.to_str().expect("utf8"),
    ]);
    assert_eq!(stdout.matches("test image").count(), 2, "{stdout}");
    assert!(
        svg_elements(&figure, "polyline") >= 6,
        "2 panels x 3 neurons"
    );
}

/// A run resumes on a machine without any GPU adapter, although Burn loads the optimizer
/// state on its default device, a GPU in this build (the graphics drivers are hidden from
/// the resumed process here, and `BURN_DEVICE` is left unset).
#[cfg(target_os = "linux")]
#[test]
fn a_cpu_run_resumes_on_a_machine_without_a_gpu() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut flags = tiny_sequence_flags();
    let art = tiny_run(tmp.path(), &flags);
    assert_eq!(flags[4], "--epochs");
    flags[5] = "2";
    flags.push("--resume");
    let data = shipped();
    let args = train_args(&data, &art, &flags);
    // No Vulkan driver (the loader's lists of them) and no EGL vendor (glvnd's), so wgpu
    // finds no adapter through any graphics API.
    let none = tmp.path().join("none.json");
    std::fs::write(&none, "{}").expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(&args)
        .env_remove("BURN_DEVICE")
        .env("VK_ICD_FILENAMES", &none)
        .env("VK_DRIVER_FILES", &none)
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", &none)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Neither a panic nor the graphics drivers' complaints about a missing display.
    assert!(!err.contains("internal failure"), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&art).join("results.json")).expect("results"),
    )
    .expect("json");
    assert_eq!(results["epochs"], 2, "{results}");
    assert_eq!(results["resumed_from_epoch"], 1, "{results}");
}

/// SIGINT (Ctrl-C) to a training run: it stops after the current step with status 130,
/// keeps its complete epochs, and `--resume` continues it.
#[cfg(unix)]
#[test]
fn sigint_stops_a_run_cleanly_and_it_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let art = tmp.path().join("run");
    let art = art.to_str().expect("utf8").to_string();
    let data = shipped();
    let args = [
        "train",
        "--model",
        "mlp",
        "--epochs",
        "400",
        // the whole training split: an epoch takes a second or more, so the signal
        // arrives mid-run
        "--valid-limit",
        "32",
        "--test-limit",
        "32",
        "--plain",
        "--data-dir",
        &data,
        "--artifact-dir",
        &art,
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let checkpoints = std::path::Path::new(&art).join("checkpoint");
    let started = std::time::Instant::now();
    while organics_train::run::checkpoint::last_complete_epoch(&checkpoints).is_none() {
        assert!(started.elapsed().as_secs() < 300, "no epoch completed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("waits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped") && err.contains("--resume"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&art).join("results.json")).expect("results"),
    )
    .expect("json");
    assert_eq!(results["status"], "stopped");
    let stopped_at = results["epochs"].as_u64().expect("epochs");
    assert!((1..400).contains(&stopped_at));
    // the lock went with the process: resuming is accepted and finishes the run
    let mut resume: Vec<&str> = args.to_vec();
    let more = (stopped_at + 1).to_string();
    resume[4] = &more;
    resume.push("--resume");
    let (code, err) = xtask(&resume);
    assert_eq!(code, 0, "{err}");
}

/// Under Burn's terminal dashboard (a real terminal: util-linux `script` gives the run a
/// pseudo-terminal and forwards our bytes to it as key presses), Ctrl-C and the dashboard's
/// own stop (q, then s) each stop the run as a signal does: status 130, the stop recorded in
/// results.json, no weights of the interrupted epoch saved as a result.
#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_and_the_stop_key_under_the_dashboard_stop_the_run_cleanly() {
    use std::io::Write;
    for (what, keys) in [("ctrl-c", &[&b"\x03"[..]][..]), ("q s", &[b"q", b"s"])] {
        let tmp = tempfile::tempdir().expect("tmp");
        let art = tmp.path().join("run");
        let command = format!(
            "stty cols 120 rows 40; exec '{}' train --model mlp --epochs 400 --valid-limit 32 \
             --test-limit 32 --data-dir '{}' --artifact-dir '{}'",
            env!("CARGO_BIN_EXE_xtask"),
            shipped(),
            art.display()
        );
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("util-linux script runs");
        // The dashboard redraws constantly: read the screen as it comes, or a full pipe
        // would block the dashboard, and with it the keys it reads.
        let mut out = child.stdout.take().expect("out");
        let reader = std::thread::spawn(move || {
            let mut screen = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut screen);
            String::from_utf8_lossy(&screen).into_owned()
        });
        let checkpoints = art.join("checkpoint");
        let started = std::time::Instant::now();
        while organics_train::run::checkpoint::last_complete_epoch(&checkpoints).is_none() {
            assert!(
                started.elapsed().as_secs() < 300,
                "{what}: no epoch completed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut stdin = child.stdin.take().expect("stdin");
        for key in keys {
            stdin.write_all(key).expect("key");
            stdin.flush().expect("flush");
            // the dashboard reads keys between steps; give it time to open its menu
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed().as_secs() > 120 {
                let _ = child.kill();
                panic!("{what}: the run did not stop");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        drop(stdin);
        let screen = reader.join().expect("screen");
        assert_eq!(status.code(), Some(130), "{what}: {screen}");
        assert!(
            screen.contains("stopped during epoch") && screen.contains("--resume"),
            "{what}: {screen}"
        );
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(art.join("results.json")).expect("results"),
        )
        .expect("json");
        assert_eq!(results["status"], "stopped", "{what}");
        assert!(results["test_accuracy"].is_null(), "{what}");
        assert!(
            !art.join("model.bpk").exists(),
            "{what}: no mid-epoch weights"
        );
    }
}
