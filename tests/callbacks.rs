//! What a practitioner reaches for after the tutorial, on real MNIST through the real `Learner`:
//! a validation split, more epochs on a run, a warm start, early stopping, ReduceLROnPlateau,
//! checkpoint retention and `runs prune`.

mod common;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::store::ModuleRecord;
use common::{
    assert_fails, mnist_dir, mnist_mlp, real_mnist, run_of, run_ok, shared_temp_dir, stdout,
};
use mnist_mlp::backend::Backend;
use mnist_mlp::batcher::MnistBatcher;
use mnist_mlp::callbacks::{EarlyStopping, Monitor};
use mnist_mlp::config::{Overrides, RunSettings, TrainConfig};
use mnist_mlp::data::{MnistItem, MnistSplit};
use mnist_mlp::kernels::Kernels;
use mnist_mlp::run_dir::{CheckpointPart, History, RunDir, RunStatus, ValidatedOn};
use mnist_mlp::training::watch::series;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(shared_temp_dir)
}

/// `train` of run `name` on the first 1,500 training images, validated on 300, seed 11.
fn train(name: &str, epochs: usize) -> Command {
    let mut command = mnist_mlp(home());
    command
        .arg("train")
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "artifacts", "--run-name", name])
        .args([
            "--limit-train",
            "1500",
            "--limit-valid",
            "300",
            "--seed",
            "11",
        ])
        .args(["--epochs", &epochs.to_string(), "--dashboard", "none"]);
    command
}

fn resume(name: &str, epochs: usize) -> Command {
    let mut command = mnist_mlp(home());
    command
        .arg("train")
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "artifacts", "--resume", name])
        .args(["--epochs", &epochs.to_string(), "--dashboard", "none"]);
    command
}

fn read(run: &RunDir, file: PathBuf) -> Vec<u8> {
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e} ({})", file.display(), run.name()))
}

/// Runs trained once and shared: `whole6`, six epochs at the constant rate.
fn whole6() -> RunDir {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        run_ok(&mut train("whole6", 6));
    });
    run_of(home(), "whole6")
}

/// Every weight and bias of a model file, layer by layer (the files themselves hold parameter
/// ids that differ from process to process).
fn weights(model_file: &Path, run: &RunDir) -> Vec<Vec<f32>> {
    let device = Backend::Ndarray.device(0).unwrap();
    let config = run.read_model_config().unwrap();
    let model = mnist_mlp::saved::load_file(model_file, &config, &device).unwrap();
    let mut all = Vec::new();
    for layer in &model.layers {
        all.push(layer.weight.val().into_data().try_to_vec::<f32>().unwrap());
        if let Some(bias) = &layer.bias {
            all.push(bias.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    all
}

/// Whether two model files hold the same weights, bit for bit.
fn same_weights(a: &RunDir, a_file: PathBuf, b: &RunDir, b_file: PathBuf) -> bool {
    let (wa, wb) = (weights(&a_file, a), weights(&b_file, b));
    wa.len() == wb.len()
        && wa.iter().zip(&wb).all(|(x, y)| {
            x.iter()
                .map(|v| v.to_bits())
                .eq(y.iter().map(|v| v.to_bits()))
        })
}

/// Accuracy of a model file on `split`, computed here with Burn's own layers.
fn accuracy_on(model_file: &Path, run: &RunDir, split: &MnistSplit) -> f64 {
    let device = Backend::Ndarray.device(0).unwrap();
    let record = ModuleRecord::load(model_file).unwrap();
    let model = run
        .read_model_config()
        .unwrap()
        .init(&device)
        .load_record(record)
        .with_kernels(Kernels::Burn);
    let items: Vec<MnistItem> = (0..split.len())
        .map(|i| MnistItem {
            image: *split.image(i),
            label: split.label(i),
        })
        .collect();
    let batch = MnistBatcher.batch(items, &device);
    let predicted = model.forward(batch.images).argmax(1).reshape([split.len()]);
    let correct = predicted
        .equal(batch.targets)
        .int()
        .sum()
        .into_scalar::<i64>();
    correct as f64 / split.len() as f64
}

/// Keras's `validation_split=0.1` on MNIST: the first 54,000 training images train, the last
/// 6,000 validate; the test images are not used.
#[test]
fn a_validation_split_of_a_tenth_trains_on_54000_and_validates_on_the_last_6000() {
    let mnist = real_mnist();
    let config = TrainConfig::resolve(
        Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/train.toml"
        ))),
        &Overrides {
            settings: RunSettings {
                validation_split: Some(0.1),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let (train, valid) = config.splits(mnist.clone()).unwrap();
    assert_eq!((train.len(), valid.len()), (54_000, 6_000));
    assert_eq!(train.labels(), &mnist.train.labels()[..54_000]);
    assert_eq!(valid.labels(), &mnist.train.labels()[54_000..]);
    assert_eq!(valid.pixels(), &mnist.train.pixels()[54_000 * 784..]);
    // Other fractions cut where Keras's floor(n * (1 - F)) does.
    for (split, at) in [
        (0.2, 48_000),
        (0.25, 45_000),
        (0.3, 42_000),
        (0.001, 59_940),
    ] {
        let mut config = config.clone();
        config.train.validation_split = split;
        assert_eq!(
            config.validation_split_at(60_000).unwrap(),
            Some(at),
            "{split}"
        );
    }
    // With --limit-train, the split is of the images trained on.
    let mut limited = config.clone();
    limited.train.limit_train = Some(1000);
    let (train, valid) = limited.splits(mnist.clone()).unwrap();
    assert_eq!((train.len(), valid.len()), (900, 100));
    assert_eq!(valid.labels(), &mnist.train.labels()[900..1000]);
}

/// A real run with a split records it, and its val_accuracy is the accuracy on the split's
/// images (scored here from the checkpoint), not on the test images; `eval` stays on the test
/// images.
#[test]
fn a_run_with_a_split_validates_on_it_and_says_so() {
    run_ok(
        mnist_mlp(home())
            .arg("train")
            .arg("--data-dir")
            .arg(mnist_dir())
            .args(["--artifact-dir", "artifacts", "--run-name", "split"])
            .args([
                "--limit-train",
                "2000",
                "--validation-split",
                "0.25",
                "--seed",
                "3",
            ])
            .args(["--epochs", "1", "--dashboard", "none"]),
    );
    let run = run_of(home(), "split");
    let info = run.read_info().unwrap();
    assert_eq!((info.train_images, info.valid_images), (1500, 500));
    assert_eq!(info.validated_on, ValidatedOn::Split);
    let history = run.read_history().unwrap();
    let valid = real_mnist().train.first(2000).split_at(1500).1;
    let model = run.checkpoint_path(CheckpointPart::Model, 1);
    // Burn's metric counts in percent; the same count either way.
    let scored = accuracy_on(&model, &run, &valid);
    assert!(
        (scored - history.val_accuracy[0]).abs() < 1e-9,
        "{scored} vs {history:?}"
    );

    let runs = stdout(&run_ok(mnist_mlp(home()).args([
        "runs",
        "--artifact-dir",
        "artifacts",
    ])));
    let row = runs.lines().find(|l| l.starts_with("split ")).unwrap();
    assert!(row.contains(" split "), "{runs}");
    let eval = stdout(&run_ok(
        mnist_mlp(home())
            .args(["eval", "split", "--artifact-dir", "artifacts", "--data-dir"])
            .arg(mnist_dir()),
    ));
    assert!(eval.contains("on 10,000 test images"), "{eval}");
}

/// `--resume RUN --epochs N` carries a finished run on: at the constant rate its history and
/// final weights are those of one run of N epochs, byte for byte.
#[test]
fn resuming_to_more_epochs_equals_one_longer_run() {
    let whole = whole6();
    run_ok(&mut train("short", 3));
    let out = stdout(&run_ok(&mut resume("short", 6)));
    assert!(out.contains("Resumed after epoch 3"), "{out}");
    let short = run_of(home(), "short");
    for file in [RunDir::history_json_path, RunDir::history_csv_path] {
        assert!(read(&short, file(&short)) == read(&whole, file(&whole)));
    }
    assert!(same_weights(
        &short,
        short.model_path(),
        &whole,
        whole.model_path()
    ));
    let info = short.read_info().unwrap();
    assert_eq!((info.epochs_done, info.epochs_planned), (6, 6));
    assert_eq!(short.read_config().unwrap().train.epochs, 6);

    // Fewer epochs than done, or a cosine schedule, are refused with the reason.
    let output = resume("short", 4).output().unwrap();
    assert_fails(
        &output,
        2,
        "error: artifacts/runs/short: has trained 6 epochs already; --epochs 4 would not add any\n",
    );
    run_ok(train("cos", 1).args(["--schedule", "cosine"]));
    let output = resume("cos", 2).output().unwrap();
    assert_fails(
        &output,
        2,
        "error: artifacts/runs/cos: its cosine schedule's rate at every step depends on the run's \
         length, so its 1 epochs are not those of a 2-epoch run; start a new run from its weights \
         with --init-from instead\n",
    );
}

/// `--init-from RUN:CHECKPOINT` starts from those weights (the first epoch's training begins
/// from them, so it differs from a fresh start), records the epoch taken, and refuses a model
/// of another shape with one line.
#[test]
fn init_from_starts_from_another_runs_weights() {
    let whole = whole6();
    run_ok(train("warm", 1).args(["--init-from", "whole6:best", "--learning-rate", "0.0001"]));
    let warm = run_of(home(), "warm");
    let best = whole.read_history().unwrap().best_epoch().unwrap().0;
    let config = warm.read_config().unwrap();
    assert_eq!(config.train.init_from, Some(format!("whole6:{best}")));
    // One epoch at a tenth of the rate from a trained model beats six from scratch by far
    // less than one from scratch: it starts near the source's accuracy.
    let warm_acc = warm.read_history().unwrap().val_accuracy[0];
    let whole_best = whole.read_history().unwrap().val_accuracy[best - 1];
    assert!(
        (warm_acc - whole_best).abs() < 0.03,
        "{warm_acc} vs {whole_best}"
    );

    let output = train("wrong", 1)
        .args(["--init-from", "whole6", "--hidden", "64"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: train.init_from: whole6 is a 784-512-512-10 model, but this run's is 784-64-10; \
         the layer widths (--hidden) must agree\n",
    );
    assert!(
        !run_of(home(), "wrong").path().exists(),
        "nothing half-written"
    );
}

/// Early stopping through the real Learner stops where the pure decision over the full run's
/// recorded history says, records the same epochs byte for byte, and restores the best
/// weights into model.bpk.
#[test]
fn early_stopping_stops_where_its_rule_says_and_restores_the_best_weights() {
    let whole = whole6();
    let full: History = whole.read_history().unwrap();
    for (monitor, patience) in [("val_loss", 0), ("val_accuracy", 1), ("loss", 0)] {
        let name = format!("es-{monitor}-{patience}");
        run_ok(train(&name, 6).args([
            "--early-stopping",
            "--early-stopping-monitor",
            monitor,
            "--early-stopping-patience",
            &patience.to_string(),
            "--restore-best-weights",
        ]));
        let stopping = EarlyStopping {
            enabled: true,
            monitor: match monitor {
                "val_loss" => Monitor::ValLoss,
                "val_accuracy" => Monitor::ValAccuracy,
                _ => Monitor::Loss,
            },
            patience,
            restore_best_weights: true,
            ..EarlyStopping::default()
        };
        let expected = stopping.decide(series(&full, stopping.monitor));
        let run = run_of(home(), &name);
        let info = run.read_info().unwrap();
        let history = run.read_history().unwrap();
        let epochs = expected.stopped_after.unwrap_or(6);
        assert_eq!(info.stopped_early, expected.stopped_after, "{name}");
        assert_eq!(
            (info.status, info.epochs_done),
            (RunStatus::Finished, epochs)
        );
        let mut prefix = full.clone();
        prefix.truncate(epochs);
        assert_eq!(history, prefix, "{name}");
        // model.bpk holds the best epoch's weights.
        let best = expected.best.unwrap();
        assert!(
            read(&run, run.model_path())
                == read(&run, run.checkpoint_path(CheckpointPart::Model, best)),
            "{name}"
        );
        assert_eq!(info.restored_epoch, (best != epochs).then_some(best));
    }

    // mode max on the loss: never an improvement after the first epoch, so patience 1 stops
    // after epoch 2 whatever the data, and epoch 1's weights are restored.
    run_ok(train("es-forced", 6).args([
        "--early-stopping",
        "--early-stopping-monitor",
        "loss",
        "--early-stopping-mode",
        "max",
        "--early-stopping-patience",
        "1",
        "--restore-best-weights",
    ]));
    let run = run_of(home(), "es-forced");
    let info = run.read_info().unwrap();
    assert_eq!(
        (info.stopped_early, info.restored_epoch),
        (Some(2), Some(1))
    );
    let epoch1 = whole.checkpoint_path(CheckpointPart::Model, 1);
    assert!(same_weights(&run, run.model_path(), &whole, epoch1));
    // An early-stopped run is not resumed.
    let output = resume("es-forced", 8).output().unwrap();
    assert_fails(
        &output,
        2,
        "error: artifacts/runs/es-forced: early stopping ended it after epoch 2; start a new run \
         from its weights with --init-from instead\n",
    );
}

/// ReduceLROnPlateau changes the rate from the epoch after the plateau on (mode max on the
/// loss: a plateau at epoch 2 whatever the data), and a run carried on with --resume --epochs
/// replays it: the same history as the run trained that long at once.
#[test]
fn reduce_lr_on_plateau_takes_effect_and_survives_a_resume() {
    let whole = whole6();
    let plateau = [
        "--reduce-lr-on-plateau",
        "--reduce-lr-monitor",
        "loss",
        "--reduce-lr-mode",
        "max",
        "--reduce-lr-patience",
        "0",
        "--reduce-lr-factor",
        "0.5",
    ];
    run_ok(train("plateau4", 4).args(plateau));
    let reduced = run_of(home(), "plateau4").read_history().unwrap();
    let constant = whole.read_history().unwrap();
    assert_eq!(reduced.loss[..2], constant.loss[..2]);
    assert_ne!(reduced.loss[2], constant.loss[2]);

    run_ok(train("plateau2", 2).args(plateau));
    run_ok(&mut resume("plateau2", 4));
    let resumed = run_of(home(), "plateau2");
    let at_once = run_of(home(), "plateau4");
    assert!(
        read(&resumed, resumed.history_json_path()) == read(&at_once, at_once.history_json_path())
    );
}

/// Epoch by epoch, which parts are on disk (model, optimizer, scheduler).
fn on_disk(run: &RunDir) -> Vec<(usize, [bool; 3])> {
    run.checkpoints()
        .unwrap()
        .iter()
        .map(|c| (c.epoch, c.sizes.map(|s| s.is_some())))
        .collect()
}

/// `--keep-last 2` keeps the last two epochs whole and the best epoch's weights as training
/// goes; `runs prune` applies a rule to a run that kept everything, and leaves a live run alone.
#[test]
fn retention_and_prune_leave_exactly_the_checkpoints_the_rule_names() {
    let whole = whole6();
    let best = whole.read_history().unwrap().best_epoch().unwrap().0;
    run_ok(train("kept", 6).args(["--keep-last", "2"]));
    let kept = run_of(home(), "kept");
    let mut expected = vec![(5, [true; 3]), (6, [true; 3])];
    if best < 5 {
        expected.insert(0, (best, [true, false, false]));
    }
    assert_eq!(on_disk(&kept), expected);
    // The same training, whatever it deleted.
    assert!(same_weights(
        &kept,
        kept.model_path(),
        &whole,
        whole.model_path()
    ));

    // A copy of the six-epoch run, pruned to its last epoch.
    run_ok(&mut train("pruned", 6));
    let pruned = run_of(home(), "pruned");
    assert_eq!(on_disk(&pruned).len(), 6);
    let dry = stdout(&run_ok(mnist_mlp(home()).args([
        "runs",
        "prune",
        "pruned",
        "--keep-last",
        "1",
        "--keep-best",
        "false",
        "--dry-run",
        "--artifact-dir",
        "artifacts",
    ])));
    assert!(dry.contains("would free"), "{dry}");
    assert_eq!(on_disk(&pruned).len(), 6);
    // A live run (this process, say) is not touched.
    let mut info = pruned.read_info().unwrap();
    let finished = info.clone();
    info.status = RunStatus::Running;
    info.owner = mnist_mlp::run_dir::Owner::me();
    pruned.write_info(&info).unwrap();
    let out = stdout(&run_ok(mnist_mlp(home()).args([
        "runs",
        "prune",
        "pruned",
        "--keep-last",
        "1",
        "--artifact-dir",
        "artifacts",
    ])));
    assert!(out.contains("left alone: still training"), "{out}");
    assert_eq!(on_disk(&pruned).len(), 6);
    pruned.write_info(&finished).unwrap();
    let out = stdout(&run_ok(mnist_mlp(home()).args([
        "runs",
        "prune",
        "pruned",
        "--keep-last",
        "1",
        "--keep-best",
        "false",
        "--artifact-dir",
        "artifacts",
    ])));
    assert!(out.contains("freed"), "{out}");
    assert_eq!(on_disk(&pruned), vec![(6, [true; 3])]);
    // What is left still loads and resumes.
    run_ok(&mut resume("pruned", 7));
    assert_eq!(pruned.read_info().unwrap().epochs_done, 7);
}
