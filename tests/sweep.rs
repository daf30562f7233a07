//! `sweep`: a spec expands into trials that workers claim and train as ordinary runs. Several
//! workers at once train each trial once; a scheduler's index (Slurm, Kubernetes) picks one
//! trial; a worker killed mid-trial is taken over and its trial ends as an uninterrupted run;
//! successive halving keeps the best 1/eta, and its survivors equal uninterrupted runs; a bad
//! spec is a one-line error that writes nothing. Tiny runs on the real MNIST.

mod common;

use common::{
    PATIENCE, mnist_dir, mnist_mlp, names_in, read_info, run_ok, snapshot, stderr, stdout,
    wait_exit,
};
use mnist_mlp::backend::Backend;
use mnist_mlp::run_dir::{RunDir, RunStatus};
use mnist_mlp::saved::{self, Weights};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A 4-trial grid of tiny runs: widths 16 and 32 × two learning rates.
fn grid_spec(name: &str, epochs: usize, extra: &str) -> String {
    format!(
        "[sweep]\nname = \"{name}\"\nmethod = \"grid\"\n{extra}\n\
         [sweep.grid]\nhidden = [[16], [32]]\nlearning_rate = [1e-3, 3e-4]\n\
         [base.train]\nepochs = {epochs}\nlimit_train = 1000\nlimit_valid = 300\nseed = 5\n"
    )
}

fn sweep(home: &Path, args: &[&str]) -> Command {
    let mut command = mnist_mlp(home);
    command
        .arg("sweep")
        .args(args)
        .args(["--artifact-dir", "artifacts"]);
    command
}

fn init(home: &Path, spec: &str) {
    std::fs::write(home.join("spec.toml"), spec).unwrap();
    run_ok(&mut sweep(home, &["init", "spec.toml"]));
}

fn work(home: &Path, name: &str) -> Command {
    let mut command = sweep(home, &["work", name]);
    command
        .arg("--data-dir")
        .arg(mnist_dir())
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    command
}

fn sweep_dir(home: &Path, name: &str) -> PathBuf {
    home.join("artifacts/sweeps").join(name)
}

fn trial(home: &Path, name: &str, index: usize) -> RunDir {
    RunDir::open(sweep_dir(home, name).join(format!("runs/trial-{index:03}")))
}

fn claims(home: &Path, name: &str, rung: usize) -> Vec<String> {
    names_in(&sweep_dir(home, name).join(format!("claims/r{rung}")))
}

/// `train` of a trial's own config file (as `sweep init` wrote it) as run `run`, uninterrupted.
fn reference(home: &Path, sweep: &str, index: usize, run: &str) -> RunDir {
    let config = sweep_dir(home, sweep).join(format!("trials/trial-{index:03}.toml"));
    let mut command = mnist_mlp(home);
    command
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "artifacts", "--run-name", run])
        .args(["--dashboard", "none"]);
    run_ok(&mut command);
    RunDir::open(home.join("artifacts/runs").join(run))
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `name=value` lines of a worker's output, by trial.
fn finished_trials(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.strip_suffix(" epochs"))
        .filter_map(|l| l.split_once(": finished "))
        .map(|(trial, _)| trial.to_string())
        .collect()
}

#[test]
fn two_workers_at_once_train_each_trial_of_a_grid_once() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(home, &grid_spec("grid", 2, ""));
    let spawn = || {
        work(home, "grid")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let workers = [spawn(), spawn()];
    let outputs: Vec<Output> = workers
        .into_iter()
        .map(|w| w.wait_with_output().unwrap())
        .collect();
    let mut trained = Vec::new();
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
        trained.extend(finished_trials(&stdout(output)));
    }
    trained.sort();
    assert_eq!(
        trained,
        ["trial-000", "trial-001", "trial-002", "trial-003"]
    );
    // One claim per trial: no trial was taken twice.
    assert_eq!(claims(home, "grid", 0), trained);
    assert_eq!(names_in(&sweep_dir(home, "grid").join("runs")), trained);
    let mut accuracies = Vec::new();
    for index in 0..4 {
        let run = trial(home, "grid", index);
        let info = read_info(&run).unwrap();
        assert_eq!(info.status, RunStatus::Finished);
        assert_eq!((info.epochs_done, info.epochs_planned), (2, 2));
        let history = run.read_history().unwrap();
        assert_eq!(history.epochs(), 2);
        accuracies.push(history.last().unwrap().val_accuracy);
    }
    // Each worker printed its trials' final metrics, as the histories hold them.
    let all: String = outputs.iter().map(stdout).collect();
    for index in 0..4 {
        let last = trial(home, "grid", index).read_history().unwrap().last();
        let last = last.unwrap();
        let block = format!(
            "# trial-{index:03}: finished 2 epochs\nloss={}\naccuracy={}\nval_loss={}\n\
             val_accuracy={}\n",
            last.loss, last.accuracy, last.val_loss, last.val_accuracy
        );
        assert!(all.contains(&block), "{all}");
    }

    // The status table: best val_accuracy first, every trial finished.
    let table = stdout(&run_ok(&mut sweep(home, &["status", "grid"])));
    let rows: Vec<&str> = table.lines().skip(3).collect();
    assert_eq!(rows.len(), 4, "{table}");
    let mut sorted = accuracies.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let shown: Vec<f64> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(7).unwrap().parse().unwrap())
        .collect();
    let expected: Vec<f64> = sorted
        .iter()
        .map(|a| format!("{a:.4}").parse().unwrap())
        .collect();
    assert_eq!(shown, expected, "{table}");
    assert!(rows.iter().all(|r| r.ends_with("finished")), "{table}");
    assert!(
        rows.iter().any(|r| r
            .split_whitespace()
            .take(3)
            .eq(["trial-002", "32", "0.001"])),
        "{table}"
    );

    // `status --json`: the same ranking, exact values, each trial's settings.
    let status: serde_json::Value = serde_json::from_str(&stdout(&run_ok(&mut sweep(
        home,
        &["status", "grid", "--json"],
    ))))
    .unwrap();
    assert_eq!(status["name"], "grid");
    assert_eq!(status["method"], "grid");
    assert_eq!(status["epochs"], 2);
    let listed = status["trials"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{status}");
    for (row, expected) in listed.iter().zip(&sorted) {
        let name = row["name"].as_str().unwrap();
        let index: usize = name.strip_prefix("trial-").unwrap().parse().unwrap();
        let last = trial(home, "grid", index)
            .read_history()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(row["last"]["val_accuracy"].as_f64(), Some(*expected));
        assert_eq!(row["last"]["loss"].as_f64(), Some(last.loss));
        assert_eq!(row["state"], "finished");
        assert_eq!(
            (row["epochs_done"].as_u64(), row["epochs_planned"].as_u64()),
            (Some(2), Some(2))
        );
    }
    let two = listed.iter().find(|t| t["name"] == "trial-002").unwrap();
    let setting = |suffix: &str| {
        let settings = two["settings"].as_object().unwrap();
        let key = settings.keys().find(|k| k.ends_with(suffix)).unwrap();
        settings[key].clone()
    };
    assert_eq!(setting(".hidden"), serde_json::json!([32]));
    assert_eq!(setting(".learning_rate").as_f64(), Some(0.001));

    // A trial is an ordinary run for the other commands.
    let runs = stdout(&run_ok(mnist_mlp(home).args([
        "runs",
        "--artifact-dir",
        "artifacts/sweeps/grid",
    ])));
    assert_eq!(runs.matches(" finished").count(), 4, "{runs}");
    let inspect = stdout(&run_ok(
        mnist_mlp(home).args(["inspect", "artifacts/sweeps/grid/runs/trial-001"]),
    ));
    assert!(inspect.contains("learning_rate = 0.0003"), "{inspect}");

    // A worker finding nothing left exits at once, having trained nothing.
    let output = run_ok(&mut work(home, "grid"));
    assert_eq!(stdout(&output), "");
    assert_eq!(claims(home, "grid", 0), trained);
}

#[test]
fn a_schedulers_index_trains_that_trial_only() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    for (name, variable) in [
        ("slurm", "SLURM_ARRAY_TASK_ID"),
        ("k8s", "JOB_COMPLETION_INDEX"),
    ] {
        init(home, &grid_spec(name, 1, ""));
        let output = run_ok(work(home, name).env(variable, "2"));
        assert_eq!(claims(home, name, 0), ["trial-002"], "{variable}");
        assert_eq!(names_in(&sweep_dir(home, name).join("runs")), ["trial-002"]);
        let last = trial(home, name, 2).read_history().unwrap().last().unwrap();
        assert_eq!(
            stdout(&output),
            format!(
                "# trial-002: finished 1 epochs\nloss={}\naccuracy={}\nval_loss={}\n\
                 val_accuracy={}\n",
                last.loss, last.accuracy, last.val_loss, last.val_accuracy
            )
        );
        // Again: done is done, and nothing changes.
        let before = snapshot(&sweep_dir(home, name));
        let output = run_ok(work(home, name).env(variable, "2"));
        assert_eq!(stdout(&output), "");
        assert_eq!(
            stderr(&output),
            "trial-002: already finished 1 epochs; nothing to do\n"
        );
        assert_eq!(snapshot(&sweep_dir(home, name)), before);
    }
    // --index wins over the environment; an index out of range or not a number is bad input.
    let output = work(home, "slurm")
        .args(["--index", "9"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .output()
        .unwrap();
    common::assert_fails(
        &output,
        2,
        "error: --index 9: the sweep has 4 trials (0 to 3)\n",
    );
    let output = work(home, "slurm")
        .env("SLURM_ARRAY_TASK_ID", "x")
        .output()
        .unwrap();
    common::assert_fails(
        &output,
        2,
        "error: SLURM_ARRAY_TASK_ID: \"x\" is not a trial number\n",
    );
    assert_eq!(claims(home, "slurm", 0), ["trial-002"]);
}

#[test]
fn a_worker_killed_mid_trial_is_taken_over_and_the_trial_equals_an_uninterrupted_run() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(
        home,
        "[sweep]\nname = \"kill\"\nmethod = \"grid\"\n[sweep.grid]\nhidden = [[32]]\n\
         [base.train]\nepochs = 3\nlimit_train = 1500\nlimit_valid = 300\nseed = 11\n",
    );
    let mut first = work(home, "kill")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = trial(home, "kill", 0);
    let start = Instant::now();
    while read_info(&run).is_none_or(|i| i.epochs_done < 1) {
        assert!(start.elapsed() < PATIENCE, "no epoch done");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: signals our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(first.id() as i32, libc::SIGKILL) }, 0);
    wait_exit(&mut first);
    let info = read_info(&run).unwrap();
    assert_eq!(
        info.status,
        RunStatus::Running,
        "killed: it never said otherwise"
    );
    assert!((1..3).contains(&info.epochs_done), "killed too late");
    let done = info.epochs_done;

    let output = run_ok(&mut work(home, "kill"));
    assert!(
        stderr(&output).contains(&format!("trial-000: resuming after epoch {done}")),
        "{}",
        stderr(&output)
    );
    assert_eq!(finished_trials(&stdout(&output)), ["trial-000"]);
    // The claim left by the killed worker, and the one that took it over.
    assert_eq!(claims(home, "kill", 0), ["trial-000", "trial-000.1"]);

    let whole = reference(home, "kill", 0, "whole");
    assert_same_run(&whole, &run);
    let info = read_info(&run).unwrap();
    assert_eq!((info.status, info.epochs_done), (RunStatus::Finished, 3));
}

/// `b` recorded the same history, byte for byte, and the same final weights as `a`.
fn assert_same_run(a: &RunDir, b: &RunDir) {
    for file in ["history.json", "history.csv"] {
        assert_eq!(
            read(a.path().join(file)),
            read(b.path().join(file)),
            "{file}"
        );
    }
    let device = Backend::Ndarray.device(0).unwrap();
    let a = saved::load(a, Some(Weights::Final), &device).unwrap().model;
    let b = saved::load(b, Some(Weights::Final), &device).unwrap().model;
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        let wa: Vec<f32> = la.weight.val().into_data().try_to_vec().unwrap();
        let wb: Vec<f32> = lb.weight.val().into_data().try_to_vec().unwrap();
        assert!(wa == wb, "weights differ");
    }
}

#[test]
fn halving_keeps_the_best_half_and_its_survivors_equal_uninterrupted_runs() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // 4 trials × 1 epoch → the best 2 × 2 epochs → the best 1 × 3 epochs.
    init(
        home,
        &grid_spec("halve", 3, "halving = { min_epochs = 1, eta = 2 }"),
    );
    let workers: Vec<_> = (0..2)
        .map(|_| {
            work(home, "halve")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut out = String::new();
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        out.push_str(&stdout(&output));
    }
    let histories: Vec<_> = (0..4)
        .map(|i| trial(home, "halve", i).read_history().unwrap())
        .collect();
    let best = |candidates: &[usize], epoch: usize, keep: usize| {
        let mut ranked = candidates.to_vec();
        ranked.sort_by(|&a, &b| {
            let score = |i: usize| histories[i].get(epoch - 1).unwrap().val_accuracy;
            score(b).total_cmp(&score(a)).then(a.cmp(&b))
        });
        ranked.truncate(keep);
        ranked.sort_unstable();
        ranked
    };
    let second = best(&[0, 1, 2, 3], 1, 2);
    let winner = best(&second, 2, 1);
    let epochs: Vec<usize> = (0..4).map(|i| histories[i].epochs()).collect();
    for i in 0..4 {
        let expected = if winner.contains(&i) {
            3
        } else if second.contains(&i) {
            2
        } else {
            1
        };
        assert_eq!(
            epochs[i], expected,
            "trial {i}: {epochs:?}, {second:?}, {winner:?}"
        );
        let info = read_info(&trial(home, "halve", i)).unwrap();
        assert_eq!(info.epochs_planned, 3);
        let status = if expected == 3 {
            RunStatus::Finished
        } else {
            RunStatus::Interrupted
        };
        assert_eq!((info.status, info.epochs_done), (status, expected));
    }
    let names = |trials: &[usize]| -> Vec<String> {
        trials.iter().map(|i| format!("trial-{i:03}")).collect()
    };
    assert_eq!(claims(home, "halve", 1), names(&second));
    assert_eq!(claims(home, "halve", 2), names(&winner));
    assert_eq!(finished_trials(&out), names(&winner));

    // Survivors, trained rung by rung and resumed in between, equal uninterrupted runs: the
    // winner whole, the other survivor for the epochs it had.
    let w = winner[0];
    let whole = reference(home, "halve", w, "whole");
    assert_same_run(&whole, &trial(home, "halve", w));
    let other = second.iter().find(|&&i| i != w).copied().unwrap();
    let uninterrupted = reference(home, "halve", other, "other")
        .read_history()
        .unwrap();
    let mut cut = uninterrupted.clone();
    cut.truncate(2);
    assert_eq!(trial(home, "halve", other).read_history().unwrap(), cut);
    assert_ne!(uninterrupted, cut);

    let table = stdout(&run_ok(&mut sweep(home, &["status", "halve"])));
    assert!(
        table.contains("trials×epochs per rung: 4×1 → 2×2 → 1×3"),
        "{table}"
    );
    assert_eq!(table.matches("stopped at rung 0").count(), 2, "{table}");
    assert_eq!(table.matches("stopped at rung 1").count(), 1, "{table}");
    let first_row = table.lines().nth(3).unwrap();
    assert!(first_row.starts_with(&format!("trial-{w:03}")), "{table}");
}

#[test]
fn a_bad_spec_is_a_one_line_error_naming_the_key_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let head = "[sweep]\nname = \"bad\"\nmethod = \"grid\"\n";
    let cases = [
        (
            format!("{head}epoch = 3\n[sweep.grid]\nhidden = [[8]]\n"),
            "error: spec.toml: sweep.epoch: unknown key `epoch`, expected one of",
        ),
        (
            format!("{head}[sweep.grid]\nwidth = [[8]]\n"),
            "error: spec.toml: sweep.grid.width: unknown setting (one of epochs, batch_size,",
        ),
        (
            format!("{head}[sweep.grid]\ntrain.epoch = [1, 2]\n"),
            "error: spec.toml: sweep.grid.train.epoch: unknown key `epoch`, expected one of",
        ),
        (
            format!("{head}[sweep.grid]\nhidden = []\n"),
            "error: spec.toml: sweep.grid.hidden: empty list: give at least one value\n",
        ),
        (
            format!("{head}[sweep.grid]\n"),
            "error: spec.toml: sweep.grid: empty: name at least one setting and its values\n",
        ),
        (
            format!(
                "{head}halving = {{ min_epochs = 1, eta = 1 }}\n[sweep.grid]\nhidden = [[8]]\n"
            ),
            "error: spec.toml: sweep.halving.eta: must be at least 2 (got 1)\n",
        ),
        (
            "[sweep]\nname = \"bad\"\nmethod = \"random\"\ncount = 3\n[sweep.random]\n\
             learning_rate = { log_uniform = [0, 1e-2] }\n"
                .to_string(),
            "error: spec.toml: sweep.random.learning_rate: log_uniform needs [low, high] with \
             0 < low < high (got [0, 0.01])\n",
        ),
        (
            format!("{head}[sweep.grid]\nlearning_rate = [1e-3, -1.0]\n"),
            "error: spec.toml: trial-001 (optimizer.learning_rate = -1.0): \
             optimizer.learning_rate: must be a finite number above 0 (got -1.0)\n",
        ),
        (
            format!("{head}[sweep.grid]\nhidden = [[8]]\n[base.train]\nepoch = 3\n"),
            "error: spec.toml: base config: train.epoch: unknown key `epoch`, expected one of",
        ),
    ];
    for (spec, expected) in cases {
        std::fs::write(home.join("spec.toml"), &spec).unwrap();
        let before = snapshot(home);
        let output = sweep(home, &["init", "spec.toml"]).output().unwrap();
        let err = stderr(&output);
        assert!(err.starts_with(expected), "{spec}\n{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert_eq!(stdout(&output), "");
        assert_eq!(snapshot(home), before, "{spec}: something was written");
        assert!(!home.join("artifacts").exists());
    }
    // A sweep's name is taken once.
    init(home, &format!("{head}[sweep.grid]\nhidden = [[8]]\n"));
    let before = snapshot(home);
    let output = sweep(home, &["init", "spec.toml"]).output().unwrap();
    common::assert_fails(
        &output,
        2,
        "error: artifacts/sweeps/bad: sweep already exists; pick another sweep.name\n",
    );
    assert_eq!(snapshot(home), before);
}

#[test]
fn random_draws_are_recorded_in_range_and_repeat_with_the_seed() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let spec = |name: &str, seed: u64| {
        format!(
            "[sweep]\nname = \"{name}\"\nmethod = \"random\"\ncount = 6\nseed = {seed}\n\
             [sweep.random]\nlearning_rate = {{ log_uniform = [1e-4, 1e-2] }}\n\
             batch_size = {{ int_uniform = [16, 64] }}\nhidden = [[16], [32]]\n"
        )
    };
    let settings = |name: &str| -> Vec<toml::Table> {
        let text = read(sweep_dir(home, name).join("sweep.toml"));
        let resolved: toml::Table = toml::from_str(&text).unwrap();
        resolved["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["settings"].as_table().unwrap().clone())
            .collect()
    };
    init(home, &spec("a", 3));
    init(home, &spec("b", 3));
    init(home, &spec("c", 4));
    let a = settings("a");
    assert_eq!(a.len(), 6);
    assert_eq!(a, settings("b"));
    assert_ne!(a, settings("c"));
    for (index, trial) in a.iter().enumerate() {
        let lr = trial["optimizer.learning_rate"].as_float().unwrap();
        let batch = trial["train.batch_size"].as_integer().unwrap();
        assert!(
            (1e-4..1e-2).contains(&lr) && (16..=64).contains(&batch),
            "{trial:?}"
        );
        // Each trial's config holds its draws, as `train --config` reads them.
        let config = mnist_mlp::config::TrainConfig::from_file(
            &sweep_dir(home, "a").join(format!("trials/trial-{index:03}.toml")),
        )
        .unwrap();
        assert_eq!(config.optimizer.learning_rate, lr);
        assert_eq!(config.train.batch_size as i64, batch);
        assert_eq!(
            toml::Value::try_from(&config.model.hidden).unwrap(),
            trial["model.hidden"]
        );
    }
}

// Pods: each worker as a Kubernetes pod runs, PID 1 of a PID namespace of its own, with a host
// name of its own (a UTS namespace), over one sweep directory. `unshare` makes them (root).

/// Whether this machine lets the tests make namespaces (`unshare` as root); says so when not,
/// and fails instead where `MNIST_MLP_REQUIRE_PODS` is set (`.ci/run`, as root).
fn pods_possible() -> bool {
    static POSSIBLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *POSSIBLE.get_or_init(|| {
        let tried = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--uts", "true"])
            .output();
        let why = match tried {
            Ok(output) if output.status.success() => return true,
            Ok(output) => format!(
                "unshare --pid --fork --mount-proc --uts is not permitted here (root is \
                 needed): {}",
                stderr(&output).trim()
            ),
            Err(e) => format!("no unshare here: {e}"),
        };
        assert!(
            std::env::var_os("MNIST_MLP_REQUIRE_PODS").is_none(),
            "MNIST_MLP_REQUIRE_PODS is set, but {why}"
        );
        // Past the test harness's capture, so that the run says it.
        let _ = writeln!(std::io::stderr(), "skipping the pods: {why}");
        false
    })
}

/// `mnist-mlp args` as a pod called `host` runs it: PID 1 of a new PID namespace, with `host`
/// as its host name in a new UTS namespace; in a process group of its own, which [`kill_pod`]
/// kills.
fn pod(home: &Path, host: &str, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("unshare");
    command
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--uts",
            "--kill-child",
            "--",
        ])
        .args(["sh", "-c", "hostname \"$0\" && exec \"$@\"", host])
        .arg(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("MNIST_DATA_DIR")
        .env_remove("MNIST_MIRROR")
        .env_remove("RUST_BACKTRACE")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .current_dir(home)
        .process_group(0);
    common::dies_with_parent(&mut command);
    command
}

/// `sweep work NAME` in a pod, with `extra` flags.
fn pod_worker(home: &Path, host: &str, name: &str, extra: &[&str]) -> Command {
    let data = mnist_dir();
    let mut args = vec!["sweep", "work", name, "--artifact-dir", "artifacts"];
    args.extend(["--data-dir", data.to_str().unwrap()]);
    args.extend(extra);
    pod(home, host, &args)
}

/// Kills the pod and everything in it, as a node losing it does.
fn kill_pod(pod: &mut std::process::Child) {
    // SAFETY: signals the process group of our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(-(pod.id() as i32), libc::SIGKILL) }, 0);
    wait_exit(pod);
}

/// Waits until `done` holds of the trial's run.json.
fn wait_for(run: &RunDir, done: impl Fn(&mnist_mlp::run_dir::RunInfo) -> bool) {
    let start = Instant::now();
    while read_info(run).is_none_or(|i| !done(&i)) {
        assert!(
            start.elapsed() < PATIENCE,
            "{}: not yet",
            run.path().display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_pod_killed_mid_trial_is_retried_and_its_retry_takes_the_trial_over_at_once() {
    if !pods_possible() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(
        home,
        "[sweep]\nname = \"pods\"\nmethod = \"grid\"\n[sweep.grid]\nhidden = [[32]]\n\
         [base.train]\nepochs = 3\nlimit_train = 1500\nlimit_valid = 300\nseed = 11\n",
    );
    // A Kubernetes Indexed Job's pod: its index in the environment.
    let indexed = |home: &Path| {
        let mut command = pod_worker(home, "pods-0", "pods", &[]);
        command.env("JOB_COMPLETION_INDEX", "0");
        command
    };
    let mut first = indexed(home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = trial(home, "pods", 0);
    wait_for(&run, |i| i.epochs_done >= 1);
    kill_pod(&mut first);
    let info = read_info(&run).unwrap();
    assert_eq!(info.status, RunStatus::Running);
    assert!((1..3).contains(&info.epochs_done), "killed too late");
    // Recorded as the pod saw itself: PID 1 of its namespace, its host name.
    assert_eq!(info.owner.pid, 1);
    assert_eq!(info.owner.host.as_deref(), Some("pods-0"));
    let done = info.epochs_done;

    // The retry: PID 1 again, the same host name, a new namespace; the default --stale-after
    // (120 s) would outlast the test, so only taking over at once passes.
    let output = run_ok(&mut indexed(home));
    assert!(
        stderr(&output).contains(&format!("trial-000: resuming after epoch {done}")),
        "{}",
        stderr(&output)
    );
    assert_eq!(finished_trials(&stdout(&output)), ["trial-000"]);
    assert_eq!(claims(home, "pods", 0), ["trial-000", "trial-000.1"]);
    let whole = reference(home, "pods", 0, "whole");
    assert_same_run(&whole, &run);
    let info = read_info(&run).unwrap();
    assert_eq!((info.status, info.epochs_done), (RunStatus::Finished, 3));
}

#[test]
fn under_halving_two_pods_one_of_them_killed_complete_the_sweep() {
    if !pods_possible() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(
        home,
        &grid_spec("pods", 3, "halving = { min_epochs = 1, eta = 2 }"),
    );
    let stale = ["--stale-after", "4"];
    let spawn = |host: &str| {
        pod_worker(home, host, "pods", &stale)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let survivor = spawn("pods-0");
    let mut doomed = spawn("pods-1");
    // Killed while it trains a trial.
    let start = Instant::now();
    let killed = loop {
        let held = (0..4).find(|&i| {
            read_info(&trial(home, "pods", i)).is_some_and(|info| {
                info.status == RunStatus::Running && info.owner.host.as_deref() == Some("pods-1")
            })
        });
        if let Some(index) = held {
            break index;
        }
        assert!(start.elapsed() < PATIENCE, "pods-1 trained nothing");
        std::thread::sleep(Duration::from_millis(2));
    };
    kill_pod(&mut doomed);
    let output = survivor.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // It took the trial over when the heartbeat was --stale-after old, never refusing it as
    // still live.
    assert!(
        !stderr(&output).contains("leaving it"),
        "{}",
        stderr(&output)
    );

    // Every rung settled: one trial finished all 3 epochs, equal to an uninterrupted run.
    let table = stdout(&run_ok(&mut sweep(home, &["status", "pods"])));
    assert_eq!(table.matches("finished").count(), 1, "{table}");
    assert_eq!(table.matches("stopped at rung 0").count(), 2, "{table}");
    assert_eq!(table.matches("stopped at rung 1").count(), 1, "{table}");
    assert!(!table.contains("interrupted"), "{table}");
    let winner = (0..4)
        .find(|&i| read_info(&trial(home, "pods", i)).unwrap().status == RunStatus::Finished)
        .unwrap();
    let whole = reference(home, "pods", winner, "whole");
    assert_same_run(&whole, &trial(home, "pods", winner));
    // The killed pod's trial was taken over: a second claim in the rung it was killed in.
    let taken = format!("trial-{killed:03}.1");
    assert!(
        (0..3).any(|rung| claims(home, "pods", rung).contains(&taken)),
        "{taken}: {:?}",
        (0..3).map(|r| claims(home, "pods", r)).collect::<Vec<_>>()
    );
}

#[test]
fn a_trial_trained_in_one_pod_shows_live_from_another_until_its_heartbeat_stops() {
    if !pods_possible() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(
        home,
        // Long enough to outlast the test on a fast, quiet machine (it is killed at the end);
        // one checkpoint kept, so its epochs do not fill the disk.
        "[sweep]\nname = \"live\"\nmethod = \"grid\"\n[sweep.grid]\nhidden = [[32]]\n\
         [base.train]\nepochs = 2000\nlimit_train = 20000\nlimit_valid = 100\n\
         [base.checkpoints]\nkeep_last = 1\n",
    );
    let mut trainer = pod_worker(home, "trainer", "live", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = trial(home, "live", 0);
    wait_for(&run, |i| i.epochs_done >= 1);
    let status = |stale: &str| {
        let args = ["sweep", "status", "live", "--artifact-dir", "artifacts"];
        let mut command = pod(home, "observer", &args);
        let output = run_ok(command.args(["--stale-after", stale]));
        stdout(&output)
            .lines()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    // Another host name in another namespace: by the heartbeat, fresh.
    let row = status("3");
    assert!(row.ends_with("  running"), "{row}");
    let runs = pod(
        home,
        "observer",
        &["runs", "--artifact-dir", "artifacts/sweeps/live"],
    )
    .output()
    .unwrap();
    assert!(stdout(&runs).contains("running"), "{}", stdout(&runs));
    // Longer than --stale-after: the heartbeat goes on while the trial trains.
    std::thread::sleep(Duration::from_secs(4));
    assert!(read_info(&run).unwrap().status == RunStatus::Running);
    let row = status("3");
    assert!(row.ends_with("  running"), "{row}");
    // From here, the test's own namespace, below which the pod runs.
    let here = stdout(&run_ok(&mut sweep(home, &["status", "live"])));
    assert!(
        here.lines().nth(3).unwrap().ends_with("  running"),
        "{here}"
    );

    kill_pod(&mut trainer);
    std::thread::sleep(Duration::from_secs(4));
    let row = status("3");
    assert!(row.ends_with("  interrupted (owner gone)"), "{row}");
    let here = stdout(&run_ok(&mut sweep(
        home,
        &["status", "live", "--stale-after", "3"],
    )));
    assert!(
        here.lines()
            .nth(3)
            .unwrap()
            .ends_with("  interrupted (owner gone)"),
        "{here}"
    );
}

#[test]
fn every_train_flag_is_a_setting_of_a_grid() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // A value for each flag, unlike the default, that trains in a moment; in groups whose
    // settings go together (one optimizer's keys; init_from needs a run to start from), each
    // group a sweep of one trial.
    let small = [
        ("epochs", "1"),
        ("limit_train", "500"),
        ("limit_valid", "100"),
        ("hidden", "[16]"),
    ];
    let tensorboard = format!("{:?}", home.join("tb").display().to_string());
    let base = [
        ("tensorboard", tensorboard.as_str()),
        ("log_every_steps", "5"),
        // Nothing listens there: the trial says so once and trains on.
        ("mlflow", "\"http://127.0.0.1:9\""),
        ("mlflow_experiment", "\"flags\""),
        ("batch_size", "64"),
        ("seed", "3"),
        ("shuffle", "false"),
        ("learning_rate", "0.002"),
        ("rho", "0.8"),
        ("epsilon", "1e-6"),
        ("schedule", "\"cosine\""),
        ("backend", "\"ndarray\""),
        ("device", "0"),
        ("kernels", "\"burn\""),
        ("augment", "true"),
        ("threads", "1"),
        ("dropout", "0.1"),
        ("weight_decay", "0.001"),
        ("keep_last", "1"),
        ("keep_best", "false"),
    ];
    let adam = [
        ("optimizer", "\"adam\""),
        ("beta_1", "0.8"),
        ("beta_2", "0.99"),
        ("amsgrad", "true"),
        ("validation_split", "0.2"),
        ("early_stopping", "true"),
        ("early_stopping_monitor", "\"val_accuracy\""),
        ("early_stopping_min_delta", "0.01"),
        ("early_stopping_patience", "2"),
        ("early_stopping_mode", "\"max\""),
        ("early_stopping_baseline", "0.05"),
        ("restore_best_weights", "true"),
        ("early_stopping_start_from_epoch", "1"),
        ("reduce_lr_on_plateau", "true"),
        ("reduce_lr_monitor", "\"loss\""),
        ("reduce_lr_factor", "0.5"),
        ("reduce_lr_patience", "2"),
        ("reduce_lr_mode", "\"min\""),
        ("reduce_lr_min_delta", "0.01"),
        ("reduce_lr_cooldown", "1"),
        ("min_lr", "0.00001"),
    ];
    let first_run = sweep_dir(home, "flags-0").join("runs/trial-000");
    let init_from = format!("{:?}", first_run.display().to_string());
    let sgd = [
        ("optimizer", "\"sgd\""),
        ("momentum", "0.5"),
        ("nesterov", "true"),
        ("init_from", init_from.as_str()),
    ];
    let groups: [&[(&str, &str)]; 3] = [&base, &adam, &sgd];
    let keys = mnist_mlp::config::setting_keys();
    for (flag, _) in keys {
        assert!(
            flag == "run_name"
                || small
                    .iter()
                    .chain(groups.concat().iter())
                    .any(|(n, _)| n == flag),
            "--{flag}: add a sample value to this test"
        );
    }
    for (i, group) in groups.iter().enumerate() {
        let name = format!("flags-{i}");
        let mut grid = String::new();
        let mut expected = Vec::new();
        for (flag, value) in small.iter().chain(group.iter()) {
            grid.push_str(&format!("{flag} = [{value}]\n"));
            let (_, key) = keys.iter().find(|(f, _)| f == flag).unwrap();
            expected.push((key.clone(), value.to_string()));
        }
        init(
            home,
            &format!("[sweep]\nname = \"{name}\"\nmethod = \"grid\"\n[sweep.grid]\n{grid}"),
        );
        // Each flag's value reached its key of the trial's config.
        let config: toml::Table =
            toml::from_str(&read(sweep_dir(home, &name).join("trials/trial-000.toml"))).unwrap();
        for (key, value) in &expected {
            let (section, leaf) = key.split_once('.').unwrap();
            let found = config.get(section).and_then(|s| s.get(leaf));
            let wanted: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .unwrap()
                .remove("v")
                .unwrap();
            assert_eq!(found, Some(&wanted), "{name}: {key}");
        }
        let output = run_ok(&mut work(home, &name));
        assert_eq!(finished_trials(&stdout(&output)), ["trial-000"], "{name}");
    }
    // The base group's trial logged to TensorBoard, in its own run's directories.
    for part in ["train", "validation"] {
        let dir = home.join("tb/trial-000").join(part);
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, 1, "{}", dir.display());
    }
    // The sweep names its trials itself.
    std::fs::write(
        home.join("spec.toml"),
        "[sweep]\nname = \"named\"\nmethod = \"grid\"\n[sweep.grid]\nrun_name = [\"a\"]\n",
    )
    .unwrap();
    let output = sweep(home, &["init", "spec.toml"]).output().unwrap();
    common::assert_fails(
        &output,
        2,
        "error: spec.toml: sweep.grid.run_name: set by the sweep itself\n",
    );
}

#[test]
fn a_hand_edited_sweep_toml_is_refused_by_status_and_by_serve_for_that_sweep_only() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    init(
        home,
        &grid_spec("good", 3, "halving = { min_epochs = 1, eta = 2 }"),
    );
    let good = read(sweep_dir(home, "good").join("sweep.toml"));
    assert!(good.contains("eta = 2"), "{good}");
    let cases = [
        (
            "eta1",
            good.replace("eta = 2", "eta = 1"),
            "halving.eta: must be at least 2 (got 1)",
        ),
        (
            "eta0",
            good.replace("eta = 2", "eta = 0"),
            "halving.eta: must be at least 2 (got 0)",
        ),
        (
            "late",
            good.replace("min_epochs = 1", "min_epochs = 4"),
            "halving.min_epochs: must be below the trials' epochs (3) (got 4)",
        ),
        (
            "typo",
            good.replace("eta = 2", "eta = \"2\""),
            "halving.eta: invalid type: string \"2\", expected a whole number of 0 or more (line ",
        ),
    ];
    for (name, text, fault) in &cases {
        let dir = sweep_dir(home, name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("sweep.toml"),
            text.replace("\"good\"", &format!("{name:?}")),
        )
        .unwrap();
        let output = sweep(home, &["status", name]).output().unwrap();
        let err = stderr(&output);
        let file = format!("artifacts/sweeps/{name}/sweep.toml");
        assert!(err.starts_with(&format!("error: {file}: {fault}")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(output.status.code(), Some(2), "{err}");
    }
    // `train --run-name v1..2` records a run that serve serves.
    common::train_for(home, "v1..2", 100, 1);

    let server = common::Serving::start(home, "artifacts", &[]);
    for _ in 0..2 {
        let list = server.get_json("api/sweeps", 200);
        let rows = list.as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["eta0", "eta1", "good", "late", "typo"]);
        for row in rows {
            let name = row["name"].as_str().unwrap();
            if name == "good" {
                assert_eq!(row["trials"], 4, "{row}");
                continue;
            }
            let (_, _, fault) = cases.iter().find(|(n, _, _)| *n == name).unwrap();
            assert_eq!(row["status"], "unreadable", "{row}");
            let error = row["error"].as_str().unwrap();
            assert!(error.contains(fault), "{error}");
        }
        for (name, _, fault) in &cases {
            let answer = server.get_json(&format!("api/sweeps/{name}"), 500);
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(fault), "{error}");
        }
        let good = server.get_json("api/sweeps/good", 200);
        assert_eq!(good["rungs"].as_array().unwrap().len(), 3, "{good}");
    }
    let run = server.get_json("api/runs/v1..2", 200);
    assert_eq!(run["row"]["name"], "v1..2", "{run}");
}
