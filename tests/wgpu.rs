//! The wgpu backend next to ndarray, on real MNIST. Without a GPU these run on Mesa's software
//! Vulkan driver (lavapipe), which is slow, so they train on 5,000 images and validate on the
//! first 2,000 test images.
#![cfg(all(feature = "wgpu", feature = "ndarray"))]

mod common;

use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use common::{
    mnist_dir, mnist_mlp, real_mnist, run_ok, shared_temp_dir, stderr, stdout, train_args,
};
use mnist_mlp::backend::{Backend, BackendError};
use mnist_mlp::batcher::MnistBatcher;
use mnist_mlp::config::TrainConfig;
use mnist_mlp::data::MnistItem;
use mnist_mlp::model::MlpConfig;
use mnist_mlp::run_dir::{History, RunDir, RunInfo, RunStatus};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const EPOCHS: usize = 2;
const TRAIN_IMAGES: usize = 5000;
const VALID_IMAGES: usize = 2000;

/// The binary, with `XDG_RUNTIME_DIR` set: wgpu also probes OpenGL through EGL, whose Wayland
/// client prints "error: XDG_RUNTIME_DIR is invalid or not set" on stderr where it is unset (a
/// root shell, CI), which is not this program's output.
fn cli(home: &Path) -> Command {
    let mut command = mnist_mlp(home);
    command.env("XDG_RUNTIME_DIR", home);
    command
}

fn train(home: &Path, name: &str, backend: Backend) -> Command {
    let mut command = cli(home);
    train_args(&mut command, name)
        .args(["--dashboard", "plain", "--seed", "42"])
        .args(["--backend", backend.name()])
        .args(["--epochs", &EPOCHS.to_string()])
        .args(["--limit-train", &TRAIN_IMAGES.to_string()])
        .args(["--limit-valid", &VALID_IMAGES.to_string()]);
    command
}

/// The same run, seed and data, trained once on each backend (by the binary, as a user would),
/// shared by the tests below.
struct Runs {
    ndarray: PathBuf,
    wgpu: PathBuf,
    wgpu_stdout: String,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let adapter = usable_adapter();
        eprintln!("wgpu adapter: {adapter}");
        let home = shared_temp_dir();
        run_ok(&mut train(&home, "ndarray", Backend::Ndarray));
        let output = run_ok(&mut train(&home, "wgpu", Backend::Wgpu));
        Runs {
            ndarray: home.join("artifacts/runs/ndarray"),
            wgpu: home.join("artifacts/runs/wgpu"),
            wgpu_stdout: stdout(&output),
        }
    })
}

/// The adapter the suite trains on, or a quick failure that says what is missing. Without a
/// Vulkan driver wgpu falls back to OpenGL, where Mesa's llvmpipe trains these runs for many
/// minutes: not a configuration the suite is meant to time out on.
fn usable_adapter() -> String {
    let adapter = match Backend::Wgpu.open(0) {
        Ok(open) => open.description,
        Err(e) => panic!(
            "the wgpu suite needs a wgpu adapter (a GPU, or lavapipe: apt-get install \
             mesa-vulkan-drivers libvulkan1): {e}"
        ),
    };
    assert!(
        !adapter.contains("(Gl,"),
        "the wgpu suite found only an OpenGL adapter, {adapter}; it needs Vulkan, Metal or \
         DirectX 12 (without a GPU: apt-get install mesa-vulkan-drivers libvulkan1 for lavapipe)"
    );
    adapter
}

#[test]
fn the_adapter_is_not_the_opengl_fallback() {
    let adapter = usable_adapter();
    eprintln!("wgpu adapter: {adapter}");
}

fn history(run: &Path) -> History {
    RunDir::open(run).read_history().unwrap()
}

fn validation_items() -> Vec<MnistItem> {
    let mnist = real_mnist();
    (0..VALID_IMAGES)
        .map(|i| MnistItem {
            image: *mnist.valid.image(i),
            label: mnist.valid.label(i),
        })
        .collect()
}

/// The logits of a saved model of `run` (its final model or a checkpoint) for every validation
/// image, computed on `device`.
fn logits(run: &RunDir, model_file: &Path, device: &Device) -> Vec<f32> {
    let config = MlpConfig::load(run.model_config_path()).unwrap();
    let model = config
        .init(device)
        .load_record(ModuleRecord::load(model_file).unwrap());
    let mut out = Vec::new();
    for chunk in validation_items().chunks(1000) {
        let batch = MnistBatcher.batch(chunk.to_vec(), device);
        out.extend(
            model
                .forward(batch.images)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    }
    out
}

fn predictions(logits: &[f32]) -> Vec<usize> {
    logits
        .chunks_exact(10)
        .map(|row| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap())
        .collect()
}

fn accuracy(predicted: &[usize]) -> f64 {
    let items = validation_items();
    let correct = predicted
        .iter()
        .zip(&items)
        .filter(|(p, item)| **p == usize::from(item.label))
        .count();
    correct as f64 / items.len() as f64
}

/// The same seed draws the same initial weights on every backend (on the CPU), and the batches
/// are the same: wgpu, running Burn's ops, ends where ndarray with the fused kernels does, to
/// rounding. Measured on lavapipe: the losses agree to 5e-7 and every accuracy exactly; the
/// tolerance is 1e-4 on losses and two images on accuracies, where a wrong formula on Burn's
/// path (epsilon outside the square root) moves the loss by 8e-3.
#[test]
fn both_backends_train_to_the_same_metrics() {
    let runs = runs();
    let (cpu, gpu) = (history(&runs.ndarray), history(&runs.wgpu));
    assert_eq!((cpu.epochs(), gpu.epochs()), (EPOCHS, EPOCHS));
    eprintln!("ndarray: {cpu:?}\nwgpu:    {gpu:?}");
    for epoch in 0..EPOCHS {
        let (c, g) = (cpu.get(epoch).unwrap(), gpu.get(epoch).unwrap());
        for (metric, a, b, tolerance) in [
            ("loss", c.loss, g.loss, 1e-4),
            (
                "accuracy",
                c.accuracy,
                g.accuracy,
                2.0 / TRAIN_IMAGES as f64,
            ),
            ("val_loss", c.val_loss, g.val_loss, 1e-4),
            (
                "val_accuracy",
                c.val_accuracy,
                g.val_accuracy,
                2.0 / VALID_IMAGES as f64,
            ),
        ] {
            assert!(
                (a - b).abs() <= tolerance,
                "epoch {}: {metric} ndarray {a} vs wgpu {b}",
                epoch + 1
            );
        }
    }
    // Both learned: 5,000 images for 2 epochs reach well above 90 %.
    assert!(cpu.loss[1] < cpu.loss[0], "{cpu:?}");
    assert!(cpu.last().unwrap().val_accuracy > 0.9, "{cpu:?}");
}

#[test]
fn a_wgpu_run_records_what_an_ndarray_run_records() {
    let runs = runs();
    let (cpu, gpu) = (RunDir::open(&runs.ndarray), RunDir::open(&runs.wgpu));

    // The dashboard: one Keras-style line per epoch, showing the recorded numbers.
    let lines: Vec<&str> = runs
        .wgpu_stdout
        .lines()
        .filter(|l| l.starts_with("Epoch "))
        .collect();
    assert_eq!(lines.len(), EPOCHS, "{}", runs.wgpu_stdout);
    let last = history(&runs.wgpu).last().unwrap();
    assert!(
        lines[EPOCHS - 1].ends_with(&format!(
            "loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
            last.loss, last.accuracy, last.val_loss, last.val_accuracy
        )),
        "{}",
        lines[EPOCHS - 1]
    );
    assert_eq!(
        runs.wgpu_stdout.lines().last(),
        Some("artifacts/runs/wgpu"),
        "{}",
        runs.wgpu_stdout
    );

    // The same files, checkpoints included.
    let files = |run: &RunDir| {
        let mut names: Vec<String> = std::fs::read_dir(run.checkpoint_dir())
            .unwrap()
            .chain(std::fs::read_dir(run.path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&gpu), files(&cpu));
    assert!(
        gpu.checkpoint_path(mnist_mlp::run_dir::CheckpointPart::Model, 2)
            .is_file()
    );
    let csv = std::fs::read_to_string(gpu.history_csv_path()).unwrap();
    assert_eq!(csv.lines().count(), EPOCHS + 1, "{csv}");

    // run.json names the backend and the adapter; the config names both too.
    let info: RunInfo = gpu.read_info().unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.backend, "wgpu");
    let adapter = Backend::Wgpu.describe_device(0);
    assert_eq!(info.device, adapter);
    assert!(!adapter.starts_with("wgpu device"), "{adapter}");
    assert_eq!(cpu.read_info().unwrap().backend, "ndarray");
    let config_text = std::fs::read_to_string(gpu.config_path()).unwrap();
    assert_eq!(
        config_text.lines().next(),
        Some(format!("# Trained on wgpu device 0: {adapter}").as_str())
    );
    let config = TrainConfig::from_file(&gpu.config_path()).unwrap();
    assert_eq!((config.run.backend, config.run.device), (Backend::Wgpu, 0));
}

/// A model evaluates the same on either backend, wherever it was trained. Same weights, same
/// images: only float rounding differs (other summation orders in the matrix products), which
/// moves a logit by about 1e-5 and could flip an argmax only where two classes nearly tie.
#[test]
fn checkpoints_evaluate_the_same_on_both_backends() {
    let runs = runs();
    let cpu = Backend::Ndarray.device(0).unwrap();
    let gpu = Backend::Wgpu.device(0).unwrap();
    for (run, recorded_on) in [(&runs.wgpu, "wgpu"), (&runs.ndarray, "ndarray")] {
        let run = RunDir::open(run);
        let recorded = history(run.path()).last().unwrap().val_accuracy;
        for file in [
            run.model_path(),
            run.checkpoint_path(mnist_mlp::run_dir::CheckpointPart::Model, EPOCHS),
        ] {
            let on_cpu = logits(&run, &file, &cpu);
            let on_gpu = logits(&run, &file, &gpu);
            let max_diff = on_cpu
                .iter()
                .zip(&on_gpu)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let (p_cpu, p_gpu) = (predictions(&on_cpu), predictions(&on_gpu));
            let differing = p_cpu.iter().zip(&p_gpu).filter(|(a, b)| a != b).count();
            let (a_cpu, a_gpu) = (accuracy(&p_cpu), accuracy(&p_gpu));
            eprintln!(
                "{recorded_on} {}: max |logit difference| {max_diff:e}, {differing} predictions \
                 differ, accuracy ndarray {a_cpu} wgpu {a_gpu}, recorded {recorded}",
                file.display()
            );
            assert!(max_diff < 1e-3, "{max_diff}");
            assert!(
                differing <= 2,
                "{differing} of {VALID_IMAGES} predictions differ"
            );
            assert!((a_cpu - a_gpu).abs() <= 2e-4, "{a_cpu} vs {a_gpu}");
            // And what training recorded, on the backend it trained on.
            let own = if recorded_on == "wgpu" { a_gpu } else { a_cpu };
            assert!((own - recorded).abs() <= 2e-4, "{own} vs {recorded}");
        }
    }
}

#[test]
fn opening_a_wgpu_device_twice_gives_the_same_device() {
    let first = Backend::Wgpu.open(0).unwrap();
    let again = Backend::Wgpu.open(0).unwrap();
    assert_eq!(first.device, again.device);
    assert_eq!(first.description, again.description);
}

#[test]
fn a_device_number_the_machine_lacks_is_a_usage_error() {
    match Backend::Wgpu.open(999) {
        Err(e @ BackendError::NoDevice { .. }) => {
            assert!(e.is_bad_input());
            let message = e.to_string();
            assert!(
                message.starts_with("backend wgpu has no device 999; it has "),
                "{message}"
            );
            assert!(message.contains("0 ("), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let home = tempfile::tempdir().unwrap();
    let output = cli(home.path())
        .args(["train", "--backend", "wgpu", "--device", "999"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.starts_with("error: backend wgpu has no device 999; it has "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!home.path().join("artifacts").exists());
}

/// A machine with no adapter at all: hide every Vulkan driver from the Vulkan loader, and every
/// EGL driver (wgpu's OpenGL path) from libglvnd.
#[test]
fn no_adapter_is_a_usage_error_that_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let nothing = home.path().join("no-such-driver.json");
    let output = cli(home.path())
        .args(["train", "--data-dir"])
        .arg(mnist_dir())
        .args(["--backend", "wgpu", "--epochs", "1", "--limit-train", "100"])
        .env("VK_DRIVER_FILES", &nothing)
        .env("VK_ICD_FILENAMES", &nothing)
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", &nothing)
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: no wgpu adapter found: "), "{err}");
    assert!(err.contains("looked for Vulkan"), "{err}");
    assert!(err.contains("--backend ndarray"), "{err}");
    assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!home.path().join("artifacts").exists());
}

/// `summary` and `export` only read tensors: in a wgpu build on a machine with no adapter they
/// work on the CPU, and `eval --backend ndarray` scores a run there.
#[test]
fn reading_a_run_needs_no_adapter() {
    let runs = runs();
    let home = tempfile::tempdir().unwrap();
    let nothing = home.path().join("no-such-driver.json");
    let without_adapter = |args: &[&str]| {
        let mut command = cli(home.path());
        command
            .args(args)
            .env("VK_DRIVER_FILES", &nothing)
            .env("VK_ICD_FILENAMES", &nothing)
            .env("__EGL_VENDOR_LIBRARY_FILENAMES", &nothing);
        run_ok(&mut command)
    };
    let run = runs.wgpu.to_str().unwrap();
    let out = stdout(&without_adapter(&["summary", run]));
    assert!(out.contains("Total params: 669,706"), "{out}");
    let exported = home.path().join("w.safetensors");
    let out = stdout(&without_adapter(&[
        "export",
        run,
        "--out",
        exported.to_str().unwrap(),
    ]));
    assert!(exported.is_file(), "{out}");
    let out = stdout(&without_adapter(&[
        "eval",
        run,
        "--backend",
        "ndarray",
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recorded = history(&runs.wgpu).last().unwrap().val_accuracy;
    assert!(
        (e["accuracy"].as_f64().unwrap() - recorded).abs() <= 2e-4,
        "{out}"
    );
}

#[test]
fn wgpu_is_the_default_backend_when_compiled_in() {
    assert_eq!(Backend::preferred(), Backend::Wgpu);
    assert_eq!(TrainConfig::default().run.backend, Backend::Wgpu);
    assert_eq!(
        Backend::compiled(),
        [Backend::Ndarray, Backend::Flex, Backend::Wgpu]
    );
}
