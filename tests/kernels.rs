//! `--kernels fused|burn`: the fused CPU kernels and Burn's own ops train to the same numbers,
//! the choice is recorded and shown, the scalar fallback of the kernels trains as the AVX2 path
//! does, and a diverging run fails the same way on every path.

mod common;

use common::{assert_fails, mnist_mlp, run_of, run_ok, shared_temp_dir, stdout, train_args};
use mnist_mlp::config::TrainConfig;
use mnist_mlp::kernels::Kernels;
use mnist_mlp::run_dir::{History, RunStatus};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One epoch of 200 steps (6,400 images at batch 32), validated on 1,000.
fn train(home: &Path, name: &str, extra: &[&str]) -> Command {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name)
        .args([
            "--epochs",
            "1",
            "--limit-train",
            "6400",
            "--limit-valid",
            "1000",
        ])
        .args(["--seed", "5", "--dashboard", "none"])
        .args(extra);
    command
}

/// The home holding the run `fused` (the default on ndarray), trained once for the tests here.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        run_ok(&mut train(&home, "fused", &["--backend", "ndarray"]));
        home
    })
}

fn history(name: &str) -> History {
    run_of(home(), name).read_history().unwrap()
}

/// The losses of the run's one epoch agree within `tolerance`, and the accuracies within two
/// images of the 1,000 validated (one of the 6,400 trained).
fn assert_metrics_close(a: &str, b: &str, tolerance: f64) {
    let (x, y) = (history(a), history(b));
    let (x, y) = (x.last().unwrap(), y.last().unwrap());
    eprintln!("DBG {a} {x:?}\nDBG {b} {y:?}");
    for (metric, u, v, tolerance) in [
        ("loss", x.loss, y.loss, tolerance),
        ("accuracy", x.accuracy, y.accuracy, 1.0 / 6400.0),
        ("val_loss", x.val_loss, y.val_loss, tolerance),
        ("val_accuracy", x.val_accuracy, y.val_accuracy, 2.0 / 1000.0),
    ] {
        assert!(
            (u - v).abs() <= tolerance,
            "{metric}: {a} {u} vs {b} {v} (tolerance {tolerance})"
        );
    }
}

/// Burn's ops on ndarray: the same maths in another order (and another matmul), from the same
/// initial weights and batches. After 200 steps the losses agree to 1e-5 (measured: 1e-8),
/// where a wrong formula moves them by far more (epsilon outside the square root, as Burn's
/// RmsProp has it: 8e-3).
#[test]
fn fused_and_burn_kernels_train_to_the_same_metrics() {
    let burn = ["--backend", "ndarray", "--kernels", "burn"];
    run_ok(&mut train(home(), "burn", &burn));
    assert_metrics_close("fused", "burn", 1e-5);
    // Not the same run twice: rounding differs somewhere.
    assert_ne!(history("fused"), history("burn"));

    // Recorded in config.toml and run.json, shown by inspect.
    for (name, kernels) in [("fused", Kernels::Fused), ("burn", Kernels::Burn)] {
        let run = run_of(home(), name);
        let config = TrainConfig::from_file(&run.config_path()).unwrap();
        assert_eq!(config.run.kernels, Some(kernels), "{name}");
        let info = run.read_info().unwrap();
        assert_eq!(
            (info.kernels, info.status),
            (Some(kernels), RunStatus::Finished)
        );
        let output =
            run_ok(mnist_mlp(home()).args(["inspect", name, "--artifact-dir", "artifacts"]));
        assert!(
            stdout(&output).contains(&format!("\n  kernels:  {kernels}\n")),
            "{}",
            stdout(&output)
        );
    }
}

/// Burn's flex backend runs Burn's ops (its default) with its own matmul: the same metrics, to
/// 1e-4 on the losses (measured: 4e-5).
#[test]
fn the_flex_backend_trains_to_the_same_metrics() {
    run_ok(&mut train(home(), "flex", &["--backend", "flex"]));
    assert_metrics_close("fused", "flex", 1e-4);
    let info = run_of(home(), "flex").read_info().unwrap();
    assert_eq!(
        (info.backend.as_str(), info.kernels),
        ("flex", Some(Kernels::Burn))
    );
}

#[test]
fn the_fused_kernels_on_another_backend_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let output = train(
        home.path(),
        "x",
        &["--backend", "flex", "--kernels", "fused"],
    )
    .output()
    .unwrap();
    assert_fails(
        &output,
        2,
        "error: run.kernels: the fused kernels run on the ndarray backend only; use burn \
         (got fused with backend flex)\n",
    );
    assert!(!home.path().join("artifacts").exists());
    let output = train(home.path(), "x", &["--kernels", "fast"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        common::stderr(&output).contains("unknown kernels `fast`; expected fused or burn"),
        "{}",
        common::stderr(&output)
    );
}

/// `MNIST_MLP_NO_SIMD=1` turns off the kernels' AVX2 loops, as on a CPU without AVX2 (ARM, say):
/// every product goes to gemm and the optimizer runs its plain loop. The same run then ends
/// with the same metrics, to rounding.
#[test]
fn the_kernels_without_avx2_train_as_with_it() {
    run_ok(train(home(), "no-simd", &["--backend", "ndarray"]).env("MNIST_MLP_NO_SIMD", "1"));
    assert_metrics_close("fused", "no-simd", 1e-5);
    assert_ne!(history("fused"), history("no-simd"));
}

/// A learning rate of 1e30 makes the weights overflow within a few steps. Whichever path
/// computes them (the fused kernels, dense or sparse; Burn's ops; flex), the run stops at the
/// same batch with the same one-line error, and saves no model.
#[test]
fn a_diverging_run_fails_the_same_on_every_path() {
    let mut errors = Vec::new();
    for (name, args) in [
        (
            "div-fused",
            &["--backend", "ndarray", "--kernels", "fused"][..],
        ),
        ("div-burn", &["--backend", "ndarray", "--kernels", "burn"]),
        ("div-no-simd", &["--backend", "ndarray"]),
        ("div-flex", &["--backend", "flex"]),
    ] {
        let mut command = train(home(), name, args);
        command.args(["--learning-rate", "1e30"]);
        if name == "div-no-simd" {
            command.env("MNIST_MLP_NO_SIMD", "1");
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = common::stderr(&output);
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        let run = run_of(home(), name);
        assert!(!run.model_path().exists(), "{name}");
        assert_eq!(run.read_info().unwrap().status, RunStatus::Failed, "{name}");
        errors.push(stderr.replace(name, "RUN"));
    }
    assert!(
        errors[0].contains("the training loss became"),
        "{}",
        errors[0]
    );
    for error in &errors[1..] {
        assert_eq!(error, &errors[0]);
    }
}
