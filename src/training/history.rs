//! Recording each finished epoch: `history.json`/`history.csv` in Keras's shape and the training
//! curves (`curves.png`/`curves.svg`) as Burn's event store reports the epoch's final metrics,
//! and the progress in `run.json` once the epoch's checkpoint is complete.
//!
//! So `run.json`'s `epochs_done` is always an epoch whose checkpoint is on disk, whatever instant
//! the process is killed at; `history.json` is written as each epoch ends and may hold more
//! epochs after a kill, as many as Burn's background checkpoint writes lagged behind (a run
//! that ends in-process is trimmed to `epochs_done`).

use super::tracking::Trackers;
use crate::callbacks::{EarlyStopping, Retention};
use crate::plots;
use crate::run_dir::{EpochMetrics, History, RunDir, RunInfo};
use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, MetricName, NumericEntry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Collects the four epoch-level numbers from Burn's metric updates. Burn reports accuracy in
/// percent; Keras, and this history, as a fraction.
#[derive(Default)]
pub(crate) struct EpochCollector {
    names: HashMap<MetricId, MetricName>,
    /// loss, accuracy, val_loss, val_accuracy.
    values: [Option<f64>; 4],
}

impl EpochCollector {
    pub(crate) fn define(&mut self, definition: &MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.clone());
    }

    pub(crate) fn name(&self, id: &MetricId) -> Option<&str> {
        self.names.get(id).map(|name| name.as_str())
    }

    /// Keeps `entry` if it is an epoch's final value.
    pub(crate) fn observe(&mut self, split: &Split, id: &MetricId, entry: Option<&NumericEntry>) {
        let Some(NumericEntry::Final(value)) = entry else {
            return;
        };
        let valid = matches!(split, Split::Valid);
        let (slot, value) = match (self.name(id), valid) {
            (Some("Loss"), false) => (0, *value),
            (Some("Accuracy"), false) => (1, value / 100.0),
            (Some("Loss"), true) => (2, *value),
            (Some("Accuracy"), true) => (3, value / 100.0),
            _ => return,
        };
        self.values[slot] = Some(value);
    }

    /// The epoch's numbers once all four arrived; clears them for the next epoch.
    pub(crate) fn take(&mut self) -> Option<EpochMetrics> {
        let [
            Some(loss),
            Some(accuracy),
            Some(val_loss),
            Some(val_accuracy),
        ] = self.values
        else {
            return None;
        };
        self.values = [None; 4];
        Some(EpochMetrics {
            loss,
            accuracy,
            val_loss,
            val_accuracy,
        })
    }
}

/// The run's record while it trains, shared by the logger thread and the caller.
pub(crate) struct Recorder {
    pub run: RunDir,
    pub info: RunInfo,
    pub history: History,
    epoch_started: Instant,
    /// Wall time of every epoch trained, complete or not yet checkpointed.
    epoch_seconds: Vec<f64>,
    /// The first fault that must end the run (a write that failed, a loss that diverged).
    pub error: Option<String>,
    /// Which checkpoints to keep as epochs complete, and the early stopping whose best weights
    /// must stay while it may restore them.
    retention: Option<(Retention, EarlyStopping)>,
    /// Where else the run is logged (they only read the record).
    pub trackers: Trackers,
}

impl Recorder {
    pub(crate) fn new(run: RunDir, info: RunInfo, history: History) -> Self {
        Self {
            run,
            history,
            epoch_started: Instant::now(),
            // A resumed run carries the times of the epochs it resumes after.
            epoch_seconds: info.epoch_seconds.clone(),
            error: None,
            info,
            retention: None,
            trackers: Trackers::none(),
        }
    }

    /// Logs the run to `trackers` as well.
    pub(crate) fn tracking(mut self, trackers: Trackers) -> Self {
        self.trackers = trackers;
        self
    }

    /// Deletes, as each epoch completes, the checkpoints `rule` does not keep.
    pub(crate) fn retaining(mut self, rule: Retention, stopping: EarlyStopping) -> Self {
        self.retention = (!rule.keeps_all()).then_some((rule, stopping));
        self
    }

    /// Applies the retention rule to the epochs recorded and checkpointed so far. Epochs whose
    /// metrics have not arrived yet are not judged: their best may be yet to come.
    pub(crate) fn retain(&mut self, restoring: bool) {
        let Some((rule, stopping)) = &self.retention else {
            return;
        };
        let last = self.info.epochs_done.min(self.history.epochs());
        let stopping = restoring.then_some(stopping);
        if let Err(e) = super::retention::prune(&self.run, &self.history, last, rule, stopping) {
            self.fail(e.to_string());
        }
    }

    pub(crate) fn shared(self) -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(self))
    }

    pub(crate) fn fail(&mut self, message: String) {
        if self.error.is_none() {
            log::error!("{message}");
            self.error = Some(message);
        }
    }

    fn epoch_done(&mut self, metrics: EpochMetrics) {
        self.history.push(metrics);
        self.epoch_seconds
            .push(self.epoch_started.elapsed().as_secs_f64());
        self.epoch_started = Instant::now();
        if let Err(e) = self.run.write_history(&self.history) {
            self.fail(e.to_string());
        }
        self.trackers.epoch(self.history.epochs(), &self.history);
        self.draw_curves();
    }

    /// Redraws the curves, so that they are there after any epoch, even for a run that is
    /// interrupted later. The pictures only show what `history.json` already holds, so a
    /// failure to draw them is logged and training goes on.
    fn draw_curves(&self) {
        let name = &self.info.name;
        let drawn = plots::write_curves_png(&self.history, name, &self.run.curves_png_path())
            .and_then(|()| {
                plots::write_curves_svg(&self.history, name, &self.run.curves_svg_path())
            });
        if let Err(e) = drawn {
            log::warn!("{e}; training goes on");
        }
    }

    /// The checkpoint of `epoch` is complete: the epoch counts as done.
    pub(crate) fn checkpoint_complete(&mut self, epoch: usize) {
        self.set_epochs_done(epoch);
        if let Err(e) = self.run.write_info(&self.info) {
            self.fail(e.to_string());
        }
        self.retain(true);
    }

    /// Keeps the record to the first `epochs` epochs (those with a complete checkpoint).
    pub(crate) fn set_epochs_done(&mut self, epochs: usize) {
        self.info.epochs_done = epochs;
        self.info.epoch_seconds =
            self.epoch_seconds[..epochs.min(self.epoch_seconds.len())].to_vec();
    }
}

/// The name the early-stopping watch asks Burn's event store for: a question only the history
/// logger answers (with nothing), answered once the epoch's own events are logged.
pub(crate) const BARRIER: &str = "mnist-mlp: epoch recorded";

/// Locks the recorder even if a panicking thread held it: the record is still worth writing.
pub(crate) fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Burn [`MetricLogger`] that turns epoch summaries into the run's history, and stops training
/// at the first loss that is not a finite number.
pub struct HistoryLogger {
    recorder: Arc<Mutex<Recorder>>,
    collector: EpochCollector,
    interrupter: Interrupter,
    /// Batches seen in the current split.
    batches: usize,
    /// Batches in a whole validation split.
    valid_batches: usize,
    /// The step losses for the trackers: batches in a training epoch and the period, when any
    /// tracker is on; the epoch's training loss so far (sum weighted by batch size, images).
    tracking: Option<StepLosses>,
}

/// The training loss as Keras logs it after each batch: the mean over the epoch so far,
/// each batch weighted by its size.
struct StepLosses {
    train_batches: usize,
    every: u64,
    sum: f64,
    images: usize,
    batches: usize,
}

impl HistoryLogger {
    pub(crate) fn new(
        recorder: Arc<Mutex<Recorder>>,
        interrupter: Interrupter,
        valid_batches: usize,
    ) -> Self {
        Self {
            recorder,
            collector: EpochCollector::default(),
            interrupter,
            batches: 0,
            valid_batches,
            tracking: None,
        }
    }

    /// Also hands the training loss to the recorder's trackers every `every` steps, with
    /// `train_batches` steps an epoch.
    pub(crate) fn with_step_losses(mut self, train_batches: usize, every: u64) -> Self {
        self.tracking = Some(StepLosses {
            train_batches,
            every: every.max(1),
            sum: 0.0,
            images: 0,
            batches: 0,
        });
        self
    }

    /// A training batch's loss: the running mean goes to the trackers at every period's step.
    fn step_loss(&mut self, epoch: usize, loss: f64, images: usize) {
        let Some(steps) = &mut self.tracking else {
            return;
        };
        steps.sum += loss * images as f64;
        steps.images += images;
        steps.batches += 1;
        let step = (epoch.saturating_sub(1) * steps.train_batches + steps.batches) as u64;
        if step.is_multiple_of(steps.every) && steps.images > 0 {
            let mean = steps.sum / steps.images as f64;
            lock(&self.recorder).trackers.step(step, mean);
        }
    }
}

impl MetricLogger for HistoryLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let train = matches!(split, Split::Train);
        for numeric in &update.entries_numeric {
            let id = &numeric.entry.metric_id;
            // Burn reports each batch's loss as an `Aggregated` entry (the batch mean and its
            // size); `Final` is the epoch's.
            if let Some(
                NumericEntry::Value(loss)
                | NumericEntry::Aggregated {
                    aggregated_value: loss,
                    ..
                },
            ) = numeric.numeric_entry
                && self.collector.name(id) == Some("Loss")
            {
                self.batches += 1;
                if train {
                    let images = match numeric.numeric_entry {
                        Some(NumericEntry::Aggregated { count, .. }) => count,
                        _ => 1,
                    };
                    self.step_loss(epoch, loss, images);
                }
                if !loss.is_finite() {
                    let which = if train { "training" } else { "validation" };
                    lock(&self.recorder).fail(format!(
                        "the {which} loss became {loss} at epoch {epoch}, batch {}; training \
                         stopped and no model was saved (try a lower --learning-rate)",
                        self.batches
                    ));
                    self.interrupter.stop(Some("non-finite loss"));
                }
            }
            self.collector
                .observe(split, id, numeric.numeric_entry.as_ref());
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        _epoch: usize,
        _split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        // Burn's store panics when no logger answers, so the watch's barrier gets an answer.
        if name == BARRIER {
            return Ok(Vec::new());
        }
        Err("the history logger keeps epoch summaries only".to_string())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.collector.define(&definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let batches = std::mem::take(&mut self.batches);
        if !matches!(summary.split, Split::Valid) {
            if let Some(steps) = &mut self.tracking {
                (steps.sum, steps.images, steps.batches) = (0.0, 0, 0);
            }
            return;
        }
        let metrics = self.collector.take();
        // A stop during validation leaves a partial epoch: not one to record. Counted, not
        // asked of the interrupter: Burn can report a whole epoch after a stop that came once
        // its validation had ended (and checkpoint it too).
        if let Some(metrics) = metrics
            && batches == self.valid_batches
        {
            let mut recorder = lock(&self.recorder);
            let values = [
                metrics.loss,
                metrics.accuracy,
                metrics.val_loss,
                metrics.val_accuracy,
            ];
            if values.iter().all(|v| v.is_finite()) {
                recorder.epoch_done(metrics);
            } else {
                // Caught per batch above; this keeps non-finite numbers out of the record even
                // if a batch slipped through.
                recorder.fail(format!(
                    "epoch {} ended with non-finite metrics {values:?}; training stopped and no \
                     model was saved (try a lower --learning-rate)",
                    summary.epoch_number
                ));
                self.interrupter.stop(Some("non-finite metrics"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(dir: &std::path::Path) -> Recorder {
        let run = RunDir::create(dir, "r").unwrap();
        let info = RunInfo::sample("r");
        Recorder::new(run, info, History::default())
    }

    const EPOCH: EpochMetrics = EpochMetrics {
        loss: 0.3,
        accuracy: 0.91,
        val_loss: 0.2,
        val_accuracy: 0.94,
    };

    #[test]
    fn each_epoch_redraws_the_curves() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = recorder(dir.path());
        recorder.epoch_done(EPOCH);
        let png = recorder.run.curves_png_path();
        let first = std::fs::read(&png).unwrap();
        let image = image::load_from_memory(&first).unwrap();
        assert_eq!((image.width(), image.height()), crate::plots::CURVES_SIZE);
        assert!(recorder.run.curves_svg_path().is_file());

        recorder.epoch_done(EpochMetrics {
            loss: 0.1,
            accuracy: 0.97,
            val_loss: 0.09,
            val_accuracy: 0.975,
        });
        assert_ne!(std::fs::read(&png).unwrap(), first, "redrawn with epoch 2");
        assert!(recorder.error.is_none());
    }

    #[test]
    fn a_picture_that_cannot_be_written_does_not_stop_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = recorder(dir.path());
        // A directory where the picture goes: renaming the finished file onto it fails.
        std::fs::create_dir(recorder.run.curves_png_path()).unwrap();
        std::fs::write(recorder.run.curves_png_path().join("keep"), b"x").unwrap();
        recorder.epoch_done(EPOCH);
        recorder.checkpoint_complete(1);
        assert!(recorder.error.is_none(), "{:?}", recorder.error);
        assert_eq!(recorder.run.read_history().unwrap().epochs(), 1);
        assert_eq!(recorder.run.read_info().unwrap().epochs_done, 1);
    }
}
