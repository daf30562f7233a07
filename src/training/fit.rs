//! `model.fit(...)`: one code path for new and resumed runs, in the order Keras's `fit` does
//! it — wire the data and the metrics, train, then settle what the run records.
//!
//! The invariant the run directory keeps (see `run_dir`): `run.json`'s `epochs_done` counts
//! only epochs whose checkpoint is complete on disk, and every other file agrees with it once
//! `fit` returns, however training ended.

use super::checkpoint::{AtomicCheckpointer, EveryEpoch, SaveTracker};
use super::dashboard::Dashboard;
use super::experiment_log::ExperimentLog;
use super::history::{HistoryLogger, Recorder, lock};
use super::interrupt::{self, CtrlC, is_user_kill, panic_message};
use super::loader::MnistLoader;
use super::terminal::{CtrlCInDashboard, Terminal};
use super::tracking::{TrackedRun, Trackers};
use super::watch::{self, PlateauLr, Watch};
use super::{TrainError, TrainOutcome, now_rfc3339};
use crate::backend::Backend;
use crate::config::TrainConfig;
use crate::data::{MnistDataset, MnistSplit};
use crate::fsutil::write_atomic;
use crate::model::Mlp;
use crate::run_dir::{CheckpointPart, History, RunDir, RunInfo, RunStatus};
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Interrupter, Learner, SupervisedTraining};
use std::sync::{Arc, Mutex};

/// A run about to train: new (`after` 0) or resumed after epoch `after`.
pub(super) struct Plan {
    pub config: TrainConfig,
    /// The model before training: drawn from the seed, or another run's weights.
    pub model: Mlp,
    pub run: RunDir,
    pub info: RunInfo,
    pub history: History,
    pub after: usize,
    /// The last epoch to train this time (see `train_until`); `None`: all of them.
    pub stop_after: Option<usize>,
    pub resumed: bool,
    pub interrupter: Interrupter,
    pub ctrl_c: CtrlC,
}

impl Plan {
    /// The epoch this training ends after. Burn is told only this many epochs; nothing it
    /// computes depends on the count (the learning rate's schedule spans the config's epochs,
    /// the data order is the loader's), so stopping here and resuming later trains what one
    /// call would.
    fn last_epoch(&self) -> usize {
        let epochs = self.config.train.epochs;
        self.stop_after.map_or(epochs, |stop| stop.min(epochs))
    }
}

/// How Burn's training returned: the trained model, unless it panicked or was killed from the
/// dashboard, and the failure to record, if any.
struct Launched {
    model: Option<Mlp>,
    failure: Option<String>,
}

/// Trains epochs `after + 1 ..= epochs` through Burn's `Learner` and records them.
pub(super) fn fit(
    plan: Plan,
    train_split: MnistSplit,
    valid_split: MnistSplit,
    device: &Device,
    dashboard: Dashboard,
) -> Result<TrainOutcome, TrainError> {
    let trackers = Trackers::from_config(&plan.config, train_split.len());
    let recorder = Recorder::new(plan.run.clone(), plan.info.clone(), plan.history.clone())
        .retaining(
            plan.config.checkpoints.clone(),
            plan.config.early_stopping.clone(),
        )
        .tracking(trackers)
        .shared();
    let model = plan.model.clone();
    let (lr_scheduler, watch) = scheduler_and_watch(&plan, &recorder, train_split.len())?;
    // From here on `settle` runs, and tells the trackers how the run ended.
    lock(&recorder).trackers.start(&TrackedRun {
        run: &plan.run,
        info: &plan.info,
        config: &plan.config,
        history: &plan.history,
    });
    let tracker = Arc::new(SaveTracker::new(plan.after, {
        let recorder = recorder.clone();
        move |epoch| lock(&recorder).checkpoint_complete(epoch)
    }));
    // The terminal's settings are taken before the TUI changes them.
    let terminal = match dashboard.resolve() {
        Dashboard::Tui => Terminal::open(),
        _ => None,
    };
    if let Some(note) = burn_ops_note(&plan.config, device) {
        eprintln!("{note}");
    }
    let learner = Learner::new(
        model,
        plan.config.optimizer().init(plan.config.kernels()),
        lr_scheduler,
    );
    // The training runs on a pool of the run's threads (Burn's training loop is built there: it
    // cannot move between threads); only the fused kernels keep its workers awake (Burn's ops run
    // mostly on one thread).
    let fused = plan.config.kernels().fused_on(device);
    let launched = crate::kernels::run_on_threads(plan.config.threads(), fused, || {
        let mut training = supervised_training(
            &plan,
            (train_split, valid_split),
            device,
            &tracker,
            &recorder,
            terminal.as_ref(),
            dashboard,
        );
        if let Some(watch) = &watch {
            training = training.early_stopping(watch.clone());
        }
        launch(training, learner)
    })
    .unwrap_or_else(|error| Launched {
        model: None,
        failure: Some(error.to_string()),
    });
    if let Some(terminal) = &terminal {
        terminal.restore();
    }
    let stopped = watch.as_ref().and_then(Watch::stopped);
    let outcome = settle(&plan, &recorder, &tracker, launched, stopped);
    // The dashboard's screen is gone with it: its epochs are printed as plain lines.
    if let (Dashboard::Tui, Ok(outcome)) = (dashboard.resolve(), &outcome) {
        super::dashboard::print_epoch_lines(
            &outcome.history,
            &outcome.info.epoch_seconds,
            plan.after,
            plan.config.train.epochs,
        );
    }
    outcome
}

/// The learning-rate scheduler, and the watch that runs Keras's EarlyStopping and
/// ReduceLROnPlateau after each epoch when either is on. With ReduceLROnPlateau the rate is
/// the one its rule gives after the epochs already recorded (a resumed run's).
fn scheduler_and_watch(
    plan: &Plan,
    recorder: &Arc<Mutex<Recorder>>,
    train_images: usize,
) -> Result<(ModuleLrScheduler, Option<Watch>), TrainError> {
    let config = &plan.config;
    let plateau = &config.reduce_lr_on_plateau;
    let (scheduler, plateau) = if plateau.enabled {
        let initial = config.optimizer.learning_rate;
        let rates = plateau.rates(initial, watch::series(&plan.history, plateau.monitor));
        let rate = PlateauLr::new(rates.last().copied().unwrap_or(initial));
        (
            ModuleLrScheduler::new(rate.clone()),
            Some((plateau.clone(), initial, rate)),
        )
    } else {
        (config.lr_scheduler(train_images)?, None)
    };
    let watching = config.early_stopping.enabled || plateau.is_some();
    let watch =
        watching.then(|| Watch::new(recorder.clone(), config.early_stopping.clone(), plateau));
    Ok((scheduler, watch))
}

/// The model before training, on the autodiff device of `device` so that its parameters are
/// tracked: `init` (another run's weights, loaded on the CPU) when given, else drawn from the
/// seed. A resumed run replaces them with the checkpoint's when Burn restores it.
///
/// The weights are drawn on the CPU whatever the backend: one seed then gives one initial
/// model on every backend (wgpu draws its random numbers its own way), so that runs on
/// different backends can be compared number for number.
pub(super) fn initial_model(
    config: &TrainConfig,
    init: Option<Mlp>,
    device: &Device,
) -> Result<Mlp, TrainError> {
    let cpu = Backend::Ndarray.device(0)?;
    cpu.seed(config.train.seed);
    device.seed(config.train.seed);
    let model = match init {
        Some(model) => model,
        None => config.model().init(&cpu),
    }
    .with_kernels(config.kernels())
    .with_dropout(config.model.dropout);
    // Burn draws a parameter's values when they are first read; moved before that, they
    // would be drawn on `device`.
    for layer in &model.layers {
        let _ = layer.weight.val();
    }
    Ok(model.to_device(&device.clone().autodiff()).train())
}

/// What of a fused run goes through Burn's tensor operations instead (the fused kernels are
/// the tutorial's model: dense layers, the loss and RMSprop's update), said on stderr at the
/// start; `None` when nothing does or the run is not fused.
fn burn_ops_note(config: &TrainConfig, device: &Device) -> Option<String> {
    if !config.kernels().fused_on(device) {
        return None;
    }
    let optimizer = config.optimizer();
    let mut parts = Vec::new();
    if !optimizer.fused_on(config.kernels(), device) {
        parts.push(format!("{}'s update", optimizer.name));
    } else if optimizer.weight_decay.is_some() {
        parts.push("the weight decay before RMSprop's fused update".to_string());
    }
    if config.model.dropout > 0.0 {
        parts.push("the dropout after each fused layer".to_string());
    }
    (!parts.is_empty()).then(|| {
        format!(
            "note: Burn's tensor operations compute {} (the fused kernels are the \
             tutorial's model: its layers, loss and RMSprop); the layers stay fused",
            parts.join(" and ")
        )
    })
}

/// Burn's `SupervisedTraining` for this plan: the loaders, the metrics, the run's checkpointers
/// and logs, and the dashboard.
fn supervised_training(
    plan: &Plan,
    (train_split, valid_split): (MnistSplit, MnistSplit),
    device: &Device,
    tracker: &Arc<SaveTracker>,
    recorder: &Arc<Mutex<Recorder>>,
    terminal: Option<&Arc<Terminal>>,
    dashboard: Dashboard,
) -> SupervisedTraining<Mlp> {
    let (config, run, after) = (&plan.config, &plan.run, plan.after);
    let batch_size = config.train.batch_size;
    let valid_batches = valid_split.len().div_ceil(batch_size);
    let train_batches = train_split.len().div_ceil(batch_size);
    let mut train_loader = MnistLoader::new(
        MnistDataset::new(Arc::new(train_split)),
        batch_size,
        device.clone(),
    )
    .starting_after(after)
    .augmented(&config.augment, config.train.seed);
    if config.train.shuffle {
        train_loader = train_loader.shuffled(config.train.seed);
    }
    if config.model.dropout > 0.0 {
        train_loader = train_loader.dropout_keyed(config.train.seed);
    }
    let valid_loader = MnistLoader::new(
        MnistDataset::new(Arc::new(valid_split)),
        batch_size,
        device.clone(),
    );
    let checkpointer = |part| AtomicCheckpointer::new(run.clone(), part, tracker.clone());
    let interrupter = &plan.interrupter;
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
            .num_epochs(plan.last_epoch())
            .with_metric_logger({
                let logger =
                    HistoryLogger::new(recorder.clone(), interrupter.clone(), valid_batches);
                if lock(recorder).trackers.is_empty() {
                    logger
                } else {
                    logger.with_step_losses(train_batches, config.tracking.log_every_steps as u64)
                }
            });
    if after > 0 {
        // Burn restores model, optimizer and scheduler through the checkpointers above and
        // numbers the next epoch after + 1.
        training = training.checkpoint(after);
    }
    if let Some(terminal) = terminal {
        training = training.with_metric_logger(CtrlCInDashboard::new(terminal.clone()));
    }
    training.renderer(dashboard.renderer(
        interrupter.clone(),
        (after > 0).then_some(after),
        batch_size,
    ))
}

/// Runs the training. A panic inside Burn (or the TUI's "kill" key, which panics on purpose)
/// must still leave the run marked as what it is, so it is caught here.
fn launch(training: SupervisedTraining<Mlp>, learner: Learner<Mlp>) -> Launched {
    let launched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let result = training.launch(learner);
        (result.model, result.error.map(|e| e.to_string()))
        // The rest of the result, the dashboard with it, is dropped here: the TUI closes.
    }));
    match launched {
        Ok((model, failure)) => Launched {
            model: Some(model),
            failure,
        },
        Err(panic) if is_user_kill(panic.as_ref()) => Launched {
            model: None,
            failure: None,
        },
        Err(panic) => Launched {
            model: None,
            failure: Some(format!(
                "training panicked: {}",
                panic_message(panic.as_ref())
            )),
        },
    }
}

/// Makes the run directory agree with its complete checkpoints, saves the final model when
/// every epoch is done, and records how the run ended.
fn settle(
    plan: &Plan,
    recorder: &Arc<Mutex<Recorder>>,
    tracker: &SaveTracker,
    launched: Launched,
    stopped_early: Option<usize>,
) -> Result<TrainOutcome, TrainError> {
    let (config, run) = (&plan.config, &plan.run);
    // Burn has joined its checkpoint threads: every save is done or failed.
    let mut recorder = lock(recorder);
    if let Some(message) = tracker.failure().or(launched.failure) {
        recorder.fail(message);
    }
    let complete = trim_to_complete_epochs(&mut recorder, tracker.complete());
    let stopped_early = stopped_early.filter(|&epoch| epoch == complete);
    let finished = complete == config.train.epochs || stopped_early.is_some();
    recorder.info.stopped_early = stopped_early;
    if recorder.error.is_none() && finished {
        save_final_model(&mut recorder, run, launched.model);
        restore_best_weights(&mut recorder, config);
    }
    recorder.retain(!finished);

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
            if plan.ctrl_c.signalled() {
                interrupt::REASON
            } else if complete == plan.last_epoch() {
                "its epoch budget; resumable"
            } else {
                "from the dashboard"
            }
        );
    }
    recorder.info.error = recorder.error.clone();
    let written = run.write_info(&recorder.info);
    // The run's files are final (or as final as they will be): the trackers end it too.
    let status = match written {
        Ok(()) => recorder.info.status,
        Err(_) => RunStatus::Failed,
    };
    recorder.trackers.finish(status, run);
    written?;
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
        resumed_after: plan.resumed.then_some(plan.after),
    })
}

/// An epoch counts once its metrics are recorded and its checkpoint is complete (`checkpoints`
/// of them); returns how many do. A stop can come between the two, either way round (Burn
/// reports an epoch's metrics from another thread, maybe after it checkpointed it), and resuming
/// starts from the last epoch that has both, so the history and the checkpoints end there too.
fn trim_to_complete_epochs(recorder: &mut Recorder, checkpoints: usize) -> usize {
    let complete = checkpoints.min(recorder.history.epochs());
    recorder.set_epochs_done(complete);
    if checkpoints > complete
        && let Err(e) = recorder.run.remove_after(complete)
    {
        recorder.fail(e.to_string());
    }
    // Written when it is ahead, and when no epoch wrote it: every run that returns has one.
    if recorder.history.epochs() > complete || !recorder.run.history_json_path().exists() {
        recorder.history.truncate(complete);
        let written = recorder.run.write_history(&recorder.history);
        if let Err(e) = written {
            recorder.fail(e.to_string());
        }
    }
    complete
}

/// Keras's `restore_best_weights`: `model.bpk` becomes the best epoch's weights (its
/// checkpoint, kept for this by the retention rule) when that is not the last epoch.
fn restore_best_weights(recorder: &mut Recorder, config: &TrainConfig) {
    let stopping = &config.early_stopping;
    if !(stopping.enabled && stopping.restore_best_weights) {
        return;
    }
    let Some(best) = watch::early_stop(stopping, &recorder.history).best else {
        return;
    };
    if best == recorder.history.epochs() {
        return;
    }
    let run = recorder.run.clone();
    let from = run.checkpoint_path(CheckpointPart::Model, best);
    let copied = std::fs::read(&from)
        .map_err(|e| format!("{}: cannot read: {e}", from.display()))
        .and_then(|bytes| write_atomic(&run.model_path(), &bytes).map_err(|e| e.to_string()));
    match copied {
        Ok(()) => {
            log::info!("restored the weights of the best epoch, {best}");
            recorder.info.restored_epoch = Some(best);
        }
        Err(e) => recorder.fail(e),
    }
}

/// `model.bpk`, written whole or not at all; a failure fails the run.
fn save_final_model(recorder: &mut Recorder, run: &RunDir, model: Option<Mlp>) {
    let saved = model
        .ok_or_else(|| "training returned no model".to_string())
        .and_then(|model| model.into_record().into_bytes().map_err(|e| e.to_string()))
        .and_then(|bytes| write_atomic(&run.model_path(), &bytes).map_err(|e| e.to_string()));
    if let Err(e) = saved {
        recorder.fail(e);
    }
}
