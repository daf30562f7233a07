//! `mnist-mlp train` end to end, on real MNIST (a subset, so that debug builds stay quick).

mod common;

use burn::config::Config;
use common::{
    Pty, accuracy_of, mnist_mlp, open_pty, read_screen, run_ok, stderr, stderr_and_exit, stdout,
    train_args,
};
use mnist_mlp::config::TrainConfig;
use mnist_mlp::model::MlpConfig;
use mnist_mlp::run_dir::{History, RunDir, RunInfo, RunStatus};
use std::path::Path;
use std::process::{Command, Stdio};

/// `train` with one Keras-style line per epoch.
fn train(home: &Path, name: &str, extra: &[&str]) -> Command {
    let mut command = train_quietly(home, name);
    command.args(["--dashboard", "plain"]).args(extra);
    command
}

/// `train` with no dashboard chosen.
fn train_quietly(home: &Path, name: &str) -> Command {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name)
        // The CPU backend, also in a wgpu build (where wgpu is the default; tests/wgpu.rs).
        .args(["--backend", "ndarray"]);
    command
}

#[test]
fn train_records_a_complete_run() {
    let home = tempfile::tempdir().unwrap();
    let output = run_ok(&mut train(
        home.path(),
        "quick",
        &[
            "--epochs",
            "2",
            "--limit-train",
            "3000",
            "--limit-valid",
            "1000",
        ],
    ));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();

    // One Keras-style line per epoch, then the summary, then the run directory.
    let epoch_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epoch_lines.len(), 2, "{out}");
    for (i, line) in epoch_lines.iter().enumerate() {
        let prefix = format!("Epoch {}/2 - ", i + 1);
        assert!(line.starts_with(&prefix), "{line}");
        for key in [
            " - loss: ",
            " - accuracy: ",
            " - val_loss: ",
            " - val_accuracy: ",
        ] {
            assert!(line.contains(key), "{line}");
        }
    }
    let run_path = home.path().join("artifacts/runs/quick");
    assert_eq!(lines.last().copied(), Some("artifacts/runs/quick"));
    let run = RunDir::open(&run_path);

    // config.toml: the effective config, flags applied.
    let config = TrainConfig::from_file(&run.config_path()).unwrap();
    assert_eq!(config.train.epochs, 2);
    assert_eq!(config.train.batch_size, 32);
    assert_eq!(config.train.limit_train, Some(3000));
    assert_eq!(config.optimizer.learning_rate, 0.001);
    assert_eq!(config.run.name.as_deref(), Some("quick"));

    // history.json in Keras's shape, two epochs, and learning happened.
    let history: History =
        serde_json::from_str(&std::fs::read_to_string(run.history_json_path()).unwrap()).unwrap();
    assert_eq!(history.epochs(), 2);
    let last = history.last().unwrap();
    assert!(history.loss[1] < history.loss[0], "{history:?}");
    assert!(last.accuracy > 0.9 && last.accuracy <= 1.0, "{history:?}");
    assert!(
        last.val_accuracy > 0.88 && last.val_accuracy <= 1.0,
        "{history:?}"
    );
    assert!(last.val_loss > 0.0 && last.val_loss < 0.5, "{history:?}");
    // The printed line shows the recorded numbers.
    assert!(
        epoch_lines[1].ends_with(&format!(
            "loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
            last.loss, last.accuracy, last.val_loss, last.val_accuracy
        )),
        "{}",
        epoch_lines[1]
    );

    // history.csv as Keras's CSVLogger.
    let csv = std::fs::read_to_string(run.history_csv_path()).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "epoch,loss,accuracy,val_loss,val_accuracy");
    assert_eq!(
        rows[2],
        format!(
            "1,{},{},{},{}",
            last.loss, last.accuracy, last.val_loss, last.val_accuracy
        )
    );

    // run.json.
    let info: RunInfo =
        serde_json::from_str(&std::fs::read_to_string(run.info_path()).unwrap()).unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!((info.epochs_done, info.epochs_planned), (2, 2));
    assert_eq!(info.epoch_seconds.len(), 2);
    assert_eq!((info.train_images, info.valid_images), (3000, 1000));
    assert_eq!(info.backend, "ndarray");

    // One checkpoint per epoch: model, optimizer and scheduler.
    let mut checkpoints: Vec<String> = std::fs::read_dir(run.checkpoint_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    checkpoints.sort();
    assert_eq!(
        checkpoints,
        [
            "model-1.bpk",
            "model-2.bpk",
            "optim-1.bpk",
            "optim-2.bpk",
            "scheduler-1.bpk",
            "scheduler-2.bpk"
        ]
    );

    // The final model and its config: loading them reproduces the recorded val_accuracy, and
    // the last checkpoint holds the same weights.
    let model_config = MlpConfig::load(run.model_config_path()).unwrap();
    assert_eq!(model_config, MlpConfig::tutorial());
    let accuracy = accuracy_of(&run.model_path(), &model_config, 1000);
    assert!(
        (accuracy - last.val_accuracy).abs() < 1e-9,
        "{accuracy} vs {last:?}"
    );
    let from_checkpoint = accuracy_of(
        &run.checkpoint_dir().join("model-2.bpk"),
        &model_config,
        1000,
    );
    assert_eq!(from_checkpoint, accuracy);
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let home = tempfile::tempdir().unwrap();
    let args = [
        "--epochs",
        "1",
        "--limit-train",
        "1500",
        "--limit-valid",
        "500",
        "--seed",
        "7",
    ];
    run_ok(&mut train(home.path(), "a", &args));
    run_ok(&mut train(home.path(), "b", &args));
    let read = |name: &str| {
        std::fs::read_to_string(
            home.path()
                .join(format!("artifacts/runs/{name}/history.json")),
        )
        .unwrap()
    };
    assert_eq!(read("a"), read("b"));
    // Another seed is another run.
    run_ok(&mut train(
        home.path(),
        "c",
        &[
            "--epochs",
            "1",
            "--limit-train",
            "1500",
            "--limit-valid",
            "500",
            "--seed",
            "8",
        ],
    ));
    assert_ne!(read("a"), read("c"));
}

#[test]
fn bad_values_are_rejected_before_anything_is_written() {
    let home = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--epochs", "0"],
            "error: train.epochs: must be at least 1 (got 0)\n",
        ),
        (
            &["--batch-size", "0"],
            "error: train.batch_size: must be at least 1 (got 0)\n",
        ),
        (
            &["--learning-rate", "-1"],
            "error: optimizer.learning_rate: must be a finite number above 0 (got -1.0)\n",
        ),
        (
            &["--learning-rate", "NaN"],
            "error: optimizer.learning_rate: must be a finite number above 0 (got NaN)\n",
        ),
    ];
    for (args, expected) in cases {
        let output = train(home.path(), "never", args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&output), expected);
    }

    let config = home.path().join("bad.toml");
    std::fs::write(&config, "[train]\nepochs = 5\nbatchsize = 32\n").unwrap();
    let output = train(
        home.path(),
        "never",
        &["--config", config.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("error: {}: ", config.display())),
        "{err}"
    );
    assert!(
        err.contains("train.batchsize: unknown key `batchsize`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let output = train(home.path(), "never", &["--config", "missing.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("error: missing.toml: cannot read config: "));

    assert!(!home.path().join("artifacts").exists());
}

/// A build without the `wgpu` feature says how to get it.
#[cfg(not(feature = "wgpu"))]
#[test]
fn a_backend_not_compiled_in_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    // Not through `train`, which picks ndarray.
    let output = mnist_mlp(home.path())
        .args(["train", "--backend", "wgpu"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: backend wgpu is not in this build (it has: ndarray, flex); rebuild with \
         `cargo build --release --features wgpu`\n"
    );
    let output = mnist_mlp(home.path())
        .args(["train", "--backend", "cuda"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown backend `cuda`; expected one of: ndarray, flex, wgpu"),
        "{}",
        stderr(&output)
    );
    assert!(!home.path().join("artifacts").exists());
}

/// `train --verbose N`, on a subset small enough for several runs.
fn train_verbose(home: &Path, name: &str, verbose: &str) -> Command {
    let mut command = train_quietly(home, name);
    command.args(["--verbose", verbose, "--epochs", "2"]).args([
        "--limit-train",
        "2000",
        "--limit-valid",
        "500",
    ]);
    command
}

/// What Keras leaves after an epoch at verbose=1, from the run's own history.
fn keras_metrics(h: &History, epoch: usize) -> String {
    format!(
        " - accuracy: {:.4} - loss: {:.4} - val_accuracy: {:.4} - val_loss: {:.4}",
        h.accuracy[epoch], h.loss[epoch], h.val_accuracy[epoch], h.val_loss[epoch]
    )
}

/// Keras's `fit(verbose=...)`, piped: 0 prints only the summary and the run directory, 1 the
/// line each bar leaves, 2 one line per epoch; `--verbose` with `--dashboard` is a usage error.
#[test]
fn the_three_verbose_levels_of_keras() {
    let home = tempfile::tempdir().unwrap();
    let history = |name: &str| {
        RunDir::open(home.path().join("artifacts/runs").join(name))
            .read_history()
            .unwrap()
    };

    let out = stdout(&run_ok(&mut train_verbose(home.path(), "v0", "0")));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Trained 2/2 epochs: "), "{out}");
    assert_eq!(lines[1], "artifacts/runs/v0");

    let out = stdout(&run_ok(&mut train_verbose(home.path(), "v1", "1")));
    let lines: Vec<&str> = out.lines().collect();
    let h = history("v1");
    assert_eq!(lines.len(), 6, "{out}");
    for epoch in 0..2 {
        assert_eq!(lines[2 * epoch], format!("Epoch {}/2", epoch + 1), "{out}");
        // 2,000 images in steps of 32: 63 steps, the last one of 16.
        let line = lines[2 * epoch + 1];
        assert!(line.starts_with("63/63 - "), "{out}");
        assert!(line.contains("s/step"), "{out}");
        assert!(line.ends_with(&keras_metrics(&h, epoch)), "{out}");
    }

    let out = stdout(&run_ok(&mut train_verbose(home.path(), "v2", "2")));
    let epochs: Vec<&str> = out.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{out}");
    assert!(epochs[1].starts_with("Epoch 2/2 - "), "{out}");
    // The same seed and data: the three levels trained the same run.
    assert_eq!(history("v2"), h);
    assert_eq!(history("v0"), h);

    let output = train_verbose(home.path(), "both", "1")
        .args(["--dashboard", "plain"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot be used with"));
    assert!(!home.path().join("artifacts/runs/both").exists());
}

/// On a terminal, `--verbose 1` draws Keras's bar: it moves through the epoch's steps and is
/// left behind with the epoch's metrics.
#[test]
fn verbose_1_draws_the_keras_progress_bar_on_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let Pty { master, slave } = open_pty();
    let mut command = train_verbose(home.path(), "bar", "1");
    command
        .env("TERM", "xterm-256color")
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(command);
    drop(slave);
    let screen = read_screen(master);
    let (status, err) = stderr_and_exit(&mut child);
    let screen = screen.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let h = RunDir::open(home.path().join("artifacts/runs/bar"))
        .read_history()
        .unwrap();
    for epoch in 0..2 {
        assert!(
            screen.contains(&format!("Epoch {}/2", epoch + 1)),
            "{screen}"
        );
        assert!(screen.contains(&keras_metrics(&h, epoch)), "{screen}");
    }
    assert!(screen.contains("63/63 ━━━━━━━━━━━━━━━━━━━━ "), "{screen}");
    assert!(screen.contains(" - accuracy: "), "{screen}");
    // Each finished bar stays on its own line.
    let after_first = &screen[screen.find(&keras_metrics(&h, 0)).unwrap()..];
    let next = after_first.find("Epoch 2/2").unwrap();
    assert!(after_first[..next].contains('\n'), "{screen}");
}
