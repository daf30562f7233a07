//! Training: the tutorial's `model.fit(x_train, y_train, batch_size=32, epochs=5,
//! validation_data=(x_valid, y_valid))`, run by Burn's `Learner` and recorded in a run directory.

mod checkpoint;
mod dashboard;
mod experiment_log;
mod fit;
mod history;
mod interrupt;
mod keras_bar;
mod loader;
mod step;
mod terminal;

pub use checkpoint::{AtomicCheckpointer, EveryEpoch, SaveTracker};
pub use dashboard::{Dashboard, EpochLines, TEST_HOLD};
pub use history::HistoryLogger;
pub use interrupt::INTERRUPTED;
pub use loader::MnistLoader;

use crate::backend::BackendError;
use crate::config::TrainConfig;
use crate::data::Mnist;
use crate::data::dataset::DataError;
use crate::run_dir::{History, RunDir, RunDirError, RunInfo, RunStatus};
use crate::saved::{self, LoadError};
use burn::tensor::Device;
use burn::train::Interrupter;
use fit::{Plan, fit};
use interrupt::CtrlC;
use std::path::PathBuf;

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
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
            TrainError::Config(e) => e.is_bad_input(),
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

/// The command that resumes `run`: `mnist-mlp train --resume NAME`, with `--artifact-dir` when
/// the run is not under `default_artifact_dir` (where a plain `train --resume` would look).
pub fn resume_command(run: &RunDir, default_artifact_dir: Option<&std::path::Path>) -> String {
    let name = run.name();
    let artifact_dir = run.path().parent().and_then(std::path::Path::parent);
    let mut command = format!("mnist-mlp train --resume {}", shell_word(&name));
    match artifact_dir {
        Some(dir) if Some(dir) != default_artifact_dir => {
            let dir = if dir.as_os_str().is_empty() {
                ".".to_string()
            } else {
                dir.display().to_string()
            };
            command.push_str(&format!(" --artifact-dir {}", shell_word(&dir)));
        }
        _ => {}
    }
    command
}

/// `word` as a shell reads it back: as it is when plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Loads MNIST as `config` says, then trains. The data is loaded before the run directory is
/// created, so a data fault leaves nothing behind.
pub fn train(config: &TrainConfig, dashboard: Dashboard) -> Result<TrainOutcome, TrainError> {
    train_until(config, dashboard, None)
}

/// [`train`], stopping after epoch `stop_after` when it is before the last: the run is then
/// left `interrupted` after that epoch's complete checkpoint, planned for all its epochs, so
/// that [`resume_until`] continues it exactly as if it had not stopped (a sweep's successive
/// halving trains its trials this way, rung by rung).
pub fn train_until(
    config: &TrainConfig,
    dashboard: Dashboard,
    stop_after: Option<usize>,
) -> Result<TrainOutcome, TrainError> {
    // Opened (and for wgpu, checked) before anything else, so that a missing adapter is
    // reported before the data is fetched.
    let device = config.run.backend.device(config.run.device)?;
    let mnist = Mnist::load(&config.sources(true))?;
    train_on_until(config, mnist, &device, dashboard, stop_after)
}

/// Trains a new run on already loaded data, on `device`, which is device `config.run.device`
/// of `config.run.backend` (its name is recorded with the run).
pub fn train_on(
    config: &TrainConfig,
    mnist: Mnist,
    device: &Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    train_on_until(config, mnist, device, dashboard, None)
}

/// [`train_on`] with an epoch budget (see [`train_until`]).
fn train_on_until(
    config: &TrainConfig,
    mnist: Mnist,
    device: &Device,
    dashboard: Dashboard,
    stop_after: Option<usize>,
) -> Result<TrainOutcome, TrainError> {
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = config.splits(mnist);

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
        kernels: Some(config.kernels()),
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
            stop_after,
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
    resume_until(run, data_dir, dashboard, None)
}

/// [`resume`], stopping after epoch `stop_after` when it is before the last (see
/// [`train_until`]).
pub fn resume_until(
    run: &RunDir,
    data_dir: Option<PathBuf>,
    dashboard: Dashboard,
    stop_after: Option<usize>,
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
    let mnist = Mnist::load(&config.sources(true))?;
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = config.splits(mnist);
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
            stop_after,
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
