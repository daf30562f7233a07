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
use super::{TrainError, TrainOutcome, now_rfc3339};
use crate::backend::Backend;
use crate::config::TrainConfig;
use crate::data::{MnistDataset, MnistSplit};
use crate::fsutil::write_atomic;
use crate::model::Mlp;
use crate::run_dir::{CheckpointPart, History, RunDir, RunInfo, RunStatus};
use burn::module::Module;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Interrupter, Learner, SupervisedTraining};
use std::sync::{Arc, Mutex};

/// A run about to train: new (`after` 0) or resumed after epoch `after`.
pub(super) struct Plan {
    pub config: TrainConfig,
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
    /// computes depends on the count (the learning rate is constant, the data order is the
    /// loader's), so stopping here and resuming later trains what one call would.
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
    let recorder =
        Recorder::new(plan.run.clone(), plan.info.clone(), plan.history.clone()).shared();
    let model = initial_model(&plan.config, device)?;
    let lr_scheduler = plan.config.lr_scheduler(train_split.len())?;
    let tracker = Arc::new(SaveTracker::new(plan.after, {
        let recorder = recorder.clone();
        move |epoch| lock(&recorder).checkpoint_complete(epoch)
    }));
    // The terminal's settings are taken before the TUI changes them.
    let terminal = match dashboard.resolve() {
        Dashboard::Tui => Terminal::open(),
        _ => None,
    };
    let training = supervised_training(
        &plan,
        (train_split, valid_split),
        device,
        &tracker,
        &recorder,
        terminal.as_ref(),
        dashboard,
    );
    let learner = Learner::new(
        model,
        plan.config.optimizer().init(plan.config.kernels()),
        lr_scheduler,
    );
    // Only the fused kernels run on rayon's threads.
    let awake = plan
        .config
        .kernels()
        .fused_on(device)
        .then(crate::kernels::keep_awake)
        .flatten();
    let launched = launch(training, learner);
    drop(awake);
    if let Some(terminal) = &terminal {
        terminal.restore();
    }
    let outcome = settle(&plan, &recorder, &tracker, launched);
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

/// The model before training, on the autodiff device of `device` so that its parameters are
/// tracked. A resumed run replaces them with the checkpoint's when Burn restores it.
///
/// The weights are drawn on the CPU whatever the backend: one seed then gives one initial
/// model on every backend (wgpu draws its random numbers its own way), so that runs on
/// different backends can be compared number for number.
fn initial_model(config: &TrainConfig, device: &Device) -> Result<Mlp, TrainError> {
    let cpu = Backend::Ndarray.device(0)?;
    cpu.seed(config.train.seed);
    device.seed(config.train.seed);
    let model = config.model().init(&cpu).with_kernels(config.kernels());
    // Burn draws a parameter's values when they are first read; moved before that, they
    // would be drawn on `device`.
    for layer in &model.layers {
        let _ = layer.weight.val();
    }
    Ok(model.to_device(&device.clone().autodiff()).train())
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
            .with_metric_logger(HistoryLogger::new(
                recorder.clone(),
                interrupter.clone(),
                valid_batches,
            ));
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
) -> Result<TrainOutcome, TrainError> {
    let (config, run) = (&plan.config, &plan.run);
    // Burn has joined its checkpoint threads: every save is done or failed.
    let mut recorder = lock(recorder);
    if let Some(message) = tracker.failure().or(launched.failure) {
        recorder.fail(message);
    }
    let complete = trim_to_complete_epochs(&mut recorder, tracker.complete());
    let finished = complete == config.train.epochs;
    if recorder.error.is_none() && finished {
        save_final_model(&mut recorder, run, launched.model);
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
