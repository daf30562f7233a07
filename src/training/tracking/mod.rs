//! Where else a run is logged as it trains: TensorBoard event files (`tensorboard`) and an
//! MLflow tracking server (`mlflow`). Trackers only read what the run records; none of them can
//! stop or change the training: a tracker says its first fault once on stderr and goes on.
//!
//! The training calls [`Trackers`] from its record (`history::Recorder`): `start` before the
//! first step (new and resumed runs), `step` every `tracking.log_every_steps` steps, `epoch` as
//! each epoch is written to `history.json`, and `finish` however the run ends. `log RUN` replays
//! a recorded run through the same calls ([`log_recorded`]).

pub(crate) mod event_file;
mod mlflow;
mod summary_proto;
mod tensorboard;

pub use mlflow::{Mlflow, MlflowError};
pub use tensorboard::TensorBoard;

use crate::config::{TrackingSection, TrainConfig};
use crate::optim::Schedule;
use crate::run_dir::{EpochMetrics, History, RunDir, RunDirError, RunInfo, RunStatus};
use std::path::PathBuf;

/// What a tracker is told when a training starts (new or resumed) or a recorded run is replayed.
pub struct TrackedRun<'a> {
    /// The run directory (its name, its files).
    pub run: &'a RunDir,
    /// Backend, kernels, simd, threads, owner/host, ...
    pub info: &'a RunInfo,
    /// Every setting: the params / HParams.
    pub config: &'a TrainConfig,
    /// Epochs already recorded (non-empty when resumed).
    pub history: &'a History,
}

/// A place a run is also logged to. Never fails the training: an implementation reports its
/// first fault once on stderr (one line, naming the target) and goes on quietly; methods must
/// return quickly (network I/O goes on a background thread of the implementation).
pub trait Tracker: Send {
    fn start(&mut self, run: &TrackedRun<'_>);
    /// The training loss after global step `step` (1-based, counted across epochs), every
    /// `tracking.log_every_steps` steps.
    fn step(&mut self, _step: u64, _loss: f64) {}
    /// Epoch `epoch` (1-based) was recorded in history.json, trained at `learning_rate`.
    fn epoch(&mut self, epoch: usize, metrics: &EpochMetrics, learning_rate: f64);
    /// The run ended with `status` (Finished → MLflow FINISHED, Failed → FAILED,
    /// Interrupted (Ctrl-C/SIGINT/kill key) → KILLED); its files in `run` are final.
    /// Blocks at most a bounded time (e.g. 10 s) to flush what is queued.
    fn finish(&mut self, status: RunStatus, run: &RunDir);
    /// The first fault this tracker met, if any (already said on stderr): `log RUN` fails with
    /// it, where a training goes on.
    fn fault(&self) -> Option<String> {
        None
    }
}

/// Where a run is logged: `[tracking]` of a run's config, or `log RUN`'s flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTargets {
    pub tensorboard: Option<PathBuf>,
    pub mlflow: Option<String>,
    pub mlflow_experiment: String,
}

impl From<&TrackingSection> for LogTargets {
    fn from(section: &TrackingSection) -> Self {
        Self {
            tensorboard: section.tensorboard.clone(),
            mlflow: section.mlflow.clone(),
            mlflow_experiment: section.mlflow_experiment.clone(),
        }
    }
}

/// Why `log RUN` could not log a run.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("log: nothing to log to; give --tensorboard DIR or --mlflow URI")]
    NoTarget,
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error("{0}")]
    Failed(String),
}

impl TrackingError {
    pub fn is_bad_input(&self) -> bool {
        match self {
            TrackingError::RunDir(e) => e.is_bad_input(),
            TrackingError::NoTarget | TrackingError::Mlflow(_) => true,
            TrackingError::Failed(_) => false,
        }
    }
}

/// The trackers a run logs to (none unless `[tracking]` names one), and what they need of the
/// run to be told each epoch's learning rate. The training hands them its loss every
/// `tracking.log_every_steps` steps (`history::HistoryLogger`).
pub struct Trackers {
    trackers: Vec<Box<dyn Tracker>>,
    rates: EpochRates,
}

impl Trackers {
    /// The trackers `config.tracking` names, for a run of `train_images` training images.
    pub fn from_config(config: &TrainConfig, train_images: usize) -> Self {
        // The config was validated: its MLflow URI is one the tracker takes.
        let trackers = build(&LogTargets::from(&config.tracking), false).unwrap_or_else(|e| {
            eprintln!("warning: {e}; the run is not logged there");
            Vec::new()
        });
        Self {
            trackers,
            rates: EpochRates::new(config, train_images),
        }
    }

    /// No tracker: nothing is logged.
    pub fn none() -> Self {
        Self {
            trackers: Vec::new(),
            rates: EpochRates::new(&TrainConfig::default(), 1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    pub fn start(&mut self, run: &TrackedRun<'_>) {
        for tracker in &mut self.trackers {
            tracker.start(run);
        }
    }

    pub fn step(&mut self, step: u64, loss: f64) {
        for tracker in &mut self.trackers {
            tracker.step(step, loss);
        }
    }

    /// Epoch `epoch` (1-based) of `history` was recorded.
    pub fn epoch(&mut self, epoch: usize, history: &History) {
        let Some(metrics) = epoch.checked_sub(1).and_then(|i| history.get(i)) else {
            return;
        };
        let rate = self.rates.after(epoch, history);
        for tracker in &mut self.trackers {
            tracker.epoch(epoch, &metrics, rate);
        }
    }

    pub fn finish(&mut self, status: RunStatus, run: &RunDir) {
        for tracker in &mut self.trackers {
            tracker.finish(status, run);
        }
    }

    /// The first fault of any tracker.
    pub fn fault(&self) -> Option<String> {
        self.trackers.iter().find_map(|t| t.fault())
    }
}

/// The trackers `targets` names. `replay`: for `log RUN`, which fails with a tracker's fault
/// rather than going on (and names its MLflow URI `--mlflow` in an error, not the config key).
fn build(targets: &LogTargets, replay: bool) -> Result<Vec<Box<dyn Tracker>>, MlflowError> {
    let mut trackers: Vec<Box<dyn Tracker>> = Vec::new();
    if let Some(dir) = &targets.tensorboard {
        let tensorboard = TensorBoard::new(dir.clone());
        trackers.push(Box::new(if replay {
            tensorboard.quiet()
        } else {
            tensorboard
        }));
    }
    if let Some(uri) = &targets.mlflow {
        let experiment = &targets.mlflow_experiment;
        let key = if replay {
            "--mlflow"
        } else {
            "tracking.mlflow"
        };
        trackers.push(Box::new(Mlflow::new(key, uri, experiment)?));
    }
    Ok(trackers)
}

/// The learning rate each epoch is logged with, as Keras's TensorBoard callback logs
/// `epoch_learning_rate`: the optimizer's rate as the epoch ends. Constant: the rate; cosine:
/// Keras's `CosineDecay` at the step count the epoch ends on; ReduceLROnPlateau: the rate the
/// epoch trained at, as its rule gives it after the epochs before.
struct EpochRates {
    initial: f64,
    schedule: Schedule,
    plateau: Option<crate::callbacks::ReduceLrOnPlateau>,
    steps_per_epoch: usize,
    epochs: usize,
}

impl EpochRates {
    fn new(config: &TrainConfig, train_images: usize) -> Self {
        let plateau = &config.reduce_lr_on_plateau;
        Self {
            initial: config.optimizer.learning_rate,
            schedule: config.optimizer.schedule,
            plateau: plateau.enabled.then(|| plateau.clone()),
            steps_per_epoch: train_images.div_ceil(config.train.batch_size.max(1)),
            epochs: config.train.epochs,
        }
    }

    fn after(&self, epoch: usize, history: &History) -> f64 {
        if let Some(plateau) = &self.plateau {
            let values = super::retention::series(history, plateau.monitor);
            let before = &values[..(epoch - 1).min(values.len())];
            return plateau
                .rates(self.initial, before)
                .last()
                .copied()
                .unwrap_or(self.initial);
        }
        match self.schedule {
            Schedule::Constant => self.initial,
            Schedule::Cosine => {
                let decay_steps = (self.epochs * self.steps_per_epoch).max(1) as f64;
                let step = ((epoch * self.steps_per_epoch) as f64).min(decay_steps);
                self.initial * 0.5 * (1.0 + (std::f64::consts::PI * step / decay_steps).cos())
            }
        }
    }
}

/// `log RUN`: replays a recorded run (its run.json, config.toml and history.json) to
/// `targets`, epoch by epoch, and ends it with the status it recorded. The step losses are not
/// recorded, so only epochs are logged.
pub fn log_recorded(run: &RunDir, targets: &LogTargets) -> Result<(), TrackingError> {
    if targets.tensorboard.is_none() && targets.mlflow.is_none() {
        return Err(TrackingError::NoTarget);
    }
    let trackers = build(targets, true)?;
    let info = run.read_info()?;
    let config = run.read_config()?;
    let history = crate::saved::read_history_or_empty(run)?;
    let mut trackers = Trackers {
        trackers,
        rates: EpochRates::new(&config, info.train_images),
    };
    trackers.start(&TrackedRun {
        run,
        info: &info,
        config: &config,
        history: &History::default(),
    });
    for epoch in 1..=history.epochs() {
        trackers.epoch(epoch, &history);
    }
    trackers.finish(info.status, run);
    match trackers.fault() {
        Some(fault) => Err(TrackingError::Failed(fault)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(val_loss: &[f64]) -> History {
        let mut history = History::default();
        for &v in val_loss {
            history.push(EpochMetrics {
                loss: v,
                accuracy: 0.5,
                val_loss: v,
                val_accuracy: 0.5,
            });
        }
        history
    }

    #[test]
    fn epoch_rates_follow_the_schedule() {
        let mut config = TrainConfig::default();
        config.train.epochs = 4;
        let constant = EpochRates::new(&config, 320);
        assert_eq!(constant.after(3, &history(&[1.0; 3])), 0.001);
        config.optimizer.schedule = Schedule::Cosine;
        let cosine = EpochRates::new(&config, 320);
        // 10 steps an epoch, 40 in all: half way the rate is half, at the end 0.
        assert!((cosine.after(2, &history(&[1.0; 2])) - 0.0005).abs() < 1e-15);
        assert!(cosine.after(4, &history(&[1.0; 4])).abs() < 1e-15);
        config.optimizer.schedule = Schedule::Constant;
        config.reduce_lr_on_plateau.enabled = true;
        config.reduce_lr_on_plateau.patience = 1;
        let plateau = EpochRates::new(&config, 320);
        let h = history(&[1.0, 1.0, 1.0]);
        assert_eq!(plateau.after(1, &h), 0.001);
        assert_eq!(plateau.after(2, &h), 0.001);
        // Epoch 2 did not improve on epoch 1: epoch 3 trains at a tenth.
        assert_eq!(plateau.after(3, &h), f64::from((0.001f64 * 0.1) as f32));
    }
}
