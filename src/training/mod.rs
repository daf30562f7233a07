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
pub mod retention;
mod step;
mod terminal;
pub mod tracking;
pub mod watch;

pub use checkpoint::{AtomicCheckpointer, EveryEpoch, SaveTracker};
pub use dashboard::{Dashboard, EpochLines, TEST_HOLD};
pub use history::HistoryLogger;
pub use interrupt::INTERRUPTED;
pub use loader::MnistLoader;

use crate::backend::BackendError;
use crate::config::TrainConfig;
use crate::data::Mnist;
use crate::data::dataset::DataError;
use crate::model::Mlp;
use crate::optim::Schedule;
use crate::run_dir::{History, Owner, RunDir, RunDirError, RunInfo, RunStatus, ValidatedOn};
use crate::saved::{self, LoadError, Weights};
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
    #[error(
        "{}: its cosine schedule's rate at every step depends on the run's length, so its {done} \
         epochs are not those of a {epochs}-epoch run; start a new run from its weights with \
         --init-from instead",
        run.display()
    )]
    CosineLength {
        run: PathBuf,
        done: usize,
        epochs: usize,
    },
    #[error("{}: has trained {done} epochs already; --epochs {epochs} would not add any", run.display())]
    FewerEpochs {
        run: PathBuf,
        done: usize,
        epochs: usize,
    },
    #[error(
        "{}: early stopping ended it after epoch {epoch}; start a new run from its weights with \
         --init-from instead",
        run.display()
    )]
    StoppedEarly { run: PathBuf, epoch: usize },
    #[error(
        "train.init_from: {from} is a {found} model, but this run's is {wanted}; the layer \
         widths (--hidden) must agree"
    )]
    InitShape {
        from: String,
        found: String,
        wanted: String,
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
            | TrainError::DataChanged { .. }
            | TrainError::CosineLength { .. }
            | TrainError::FewerEpochs { .. }
            | TrainError::StoppedEarly { .. }
            | TrainError::InitShape { .. } => true,
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
    let (train_split, valid_split) = config.splits(mnist)?;
    // Another run's weights are found and checked before this run's directory exists.
    let (config, init) = &init_from(config)?;
    let model = fit::initial_model(config, init.clone(), device)?;

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
        threads: Some(config.threads()),
        simd: crate::kernels::simd_on(config.kernels(), device),
        device: device_name,
        data: origin,
        train_images: train_split.len(),
        valid_images: valid_split.len(),
        validated_on: validated_on(config),
        stopped_early: None,
        restored_epoch: None,
        mnist_mlp_version: env!("CARGO_PKG_VERSION").to_string(),
        owner: Owner::me(),
        error: None,
        heartbeat: None,
    };
    run.write_info(&info)?;
    // Others on other hosts tell a live run by it (docs/sweeps.md).
    let _heartbeat = run.heartbeat();
    fit(
        Plan {
            config: config.clone(),
            model,
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
    resume_until(
        run,
        data_dir,
        dashboard,
        None,
        crate::run_dir::DEFAULT_STALE_AFTER,
    )
}

/// [`resume`], stopping after epoch `stop_after` when it is before the last (see
/// [`train_until`]); a run whose owner is out of sight counts as live while its heartbeat is
/// younger than `stale_after` (a sweep worker's `--stale-after`).
pub fn resume_until(
    run: &RunDir,
    data_dir: Option<PathBuf>,
    dashboard: Dashboard,
    stop_after: Option<usize>,
    stale_after: std::time::Duration,
) -> Result<TrainOutcome, TrainError> {
    resume_with(
        run,
        Resume {
            data_dir,
            epochs: None,
        },
        dashboard,
        stop_after,
        stale_after,
    )
}

/// What `train --resume` may change of a run.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Where MNIST is read from (the run's config names it otherwise).
    pub data_dir: Option<PathBuf>,
    /// Carry the run on to this many epochs (Keras's `fit(initial_epoch=...)`); a finished run
    /// goes on from its last epoch.
    pub epochs: Option<usize>,
}

/// [`resume_until`], with `--epochs`: the run's config and `run.json` plan that many epochs,
/// and training goes on to them from the last complete checkpoint. At the constant rate (and
/// with ReduceLROnPlateau, replayed from the history) that equals a run planned for that many
/// epochs from the start; a cosine schedule, whose every step depends on the length, is
/// refused.
pub fn resume_with(
    run: &RunDir,
    resume: Resume,
    dashboard: Dashboard,
    stop_after: Option<usize>,
    stale_after: std::time::Duration,
) -> Result<TrainOutcome, TrainError> {
    let (config, mut info, mut history) = resumable(run, &resume, stale_after)?;
    let device = config.run.backend.device(config.run.device)?;
    let after = run.last_complete_checkpoint(history.epochs())?.unwrap_or(0);
    if after > 0 {
        saved::check_checkpoint(run, after, &config.model(), &device)?;
    }
    // Everything that can fail before training is checked before the run is touched.
    let mnist = Mnist::load(&config.sources(true))?;
    let origin = mnist.origin.to_string();
    let (train_split, valid_split) = config.splits(mnist)?;
    // Starting over, a run started from another's weights starts from them again.
    let init = if after == 0 {
        init_from(&config)?.1
    } else {
        None
    };
    let model = fit::initial_model(&config, init, &device)?;
    check_same_data(run, &info, &train_split, &valid_split)?;

    history.truncate(after);
    info.epoch_seconds.truncate(after);
    info.epochs_done = after;
    info.status = RunStatus::Running;
    info.ended = None;
    info.error = None;
    info.owner = Owner::me();
    info.data = origin;
    info.restored_epoch = None;
    info.threads = Some(config.threads());
    info.simd = crate::kernels::simd_on(config.kernels(), &device);
    // Ctrl-C stops this training from here on (see `interrupt`).
    let interrupter = Interrupter::new();
    let ctrl_c = CtrlC::watch(interrupter.clone());
    run.remove_after(after)?;
    if resume.epochs.is_some() {
        let device_name = config.run.backend.describe_device(config.run.device);
        run.write_config_on(&config, &device_name)?;
    }
    run.write_model_config(&config.model())?;
    run.write_history(&history)?;
    run.write_info(&info)?;
    let _heartbeat = run.heartbeat();
    fit(
        Plan {
            config,
            model,
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

/// The run's config, `run.json` and history, once it is known to be resumable as `resume`
/// asks: not live, not stopped early, and with epochs left (after `--epochs`).
fn resumable(
    run: &RunDir,
    resume: &Resume,
    stale_after: std::time::Duration,
) -> Result<(TrainConfig, RunInfo, History), TrainError> {
    let mut info = run.read_info()?;
    if info.is_live_within(stale_after) {
        return Err(TrainError::StillRunning {
            run: run.path().to_path_buf(),
            pid: info.owner.pid,
        });
    }
    let mut config = run.read_config()?;
    if resume.data_dir.is_some() {
        config.data.dir.clone_from(&resume.data_dir);
    }
    let history = saved::read_history_or_empty(run)?;
    if let Some(epoch) = info.stopped_early {
        return Err(TrainError::StoppedEarly {
            run: run.path().to_path_buf(),
            epoch,
        });
    }
    if let Some(epochs) = resume.epochs {
        longer(run, &mut config, &mut info, history.epochs(), epochs)?;
    }
    if info.status == RunStatus::Finished && history.epochs() >= config.train.epochs {
        return Err(TrainError::AlreadyFinished {
            run: run.path().to_path_buf(),
            epochs: history.epochs(),
        });
    }
    Ok((config, info, history))
}

/// The data found now gives the split sizes the run was trained with.
fn check_same_data(
    run: &RunDir,
    info: &RunInfo,
    train: &crate::data::MnistSplit,
    valid: &crate::data::MnistSplit,
) -> Result<(), TrainError> {
    if (train.len(), valid.len()) != (info.train_images, info.valid_images) {
        return Err(TrainError::DataChanged {
            run: run.path().to_path_buf(),
            recorded: info.train_images,
            recorded_valid: info.valid_images,
            found: train.len(),
            found_valid: valid.len(),
        });
    }
    Ok(())
}

/// Plans `epochs` epochs for a run that has trained `done`: refused for a cosine schedule and
/// for no more epochs than it has.
fn longer(
    run: &RunDir,
    config: &mut TrainConfig,
    info: &mut RunInfo,
    done: usize,
    epochs: usize,
) -> Result<(), TrainError> {
    if epochs == config.train.epochs {
        return Ok(());
    }
    let path = run.path().to_path_buf();
    if config.optimizer.schedule != Schedule::Constant {
        return Err(TrainError::CosineLength {
            run: path,
            done,
            epochs,
        });
    }
    if epochs <= done {
        return Err(TrainError::FewerEpochs {
            run: path,
            done,
            epochs,
        });
    }
    config.train.epochs = epochs;
    config.validate()?;
    info.epochs_planned = epochs;
    Ok(())
}

fn validated_on(config: &TrainConfig) -> ValidatedOn {
    if config.validates_on_test() {
        ValidatedOn::Test
    } else {
        ValidatedOn::Split
    }
}

/// `train.init_from`'s weights, loaded on the CPU and checked against the config's model,
/// and the config with `init_from` naming the epoch they are from (`RUN:EPOCH` or
/// `RUN:final`), so that the run's record says exactly what it started from.
fn init_from(config: &TrainConfig) -> Result<(TrainConfig, Option<Mlp>), TrainError> {
    let Some(from) = &config.train.init_from else {
        return Ok((config.clone(), None));
    };
    let (name, which) = match from.rsplit_once(':') {
        Some((name, which)) => match which.parse::<Weights>() {
            Ok(which) => (name, Some(which)),
            Err(_) => {
                return Err(TrainError::Config(crate::config::ConfigError::Invalid {
                    key: "train.init_from",
                    value: format!("{from:?}"),
                    reason: "the part after the last ':' must be an epoch (1, 2, …), best, last \
                             or final",
                }));
            }
        },
        None => (from.as_str(), None),
    };
    let source = RunDir::resolve(&config.run.artifact_dir, name)?;
    let found = source.read_model_config()?;
    let wanted = config.model();
    if found.hidden != wanted.hidden {
        return Err(TrainError::InitShape {
            from: from.clone(),
            found: found.describe(),
            wanted: wanted.describe(),
        });
    }
    let cpu = crate::backend::Backend::Ndarray.device(0)?;
    let saved = saved::load(&source, which, &cpu)?;
    let final_model = saved.path == source.model_path();
    let mut config = config.clone();
    config.train.init_from = Some(if final_model {
        format!("{name}:final")
    } else {
        format!("{name}:{}", saved.epoch)
    });
    Ok((config, Some(saved.model)))
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
