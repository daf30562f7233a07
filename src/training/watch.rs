//! Keras's `EarlyStopping` and `ReduceLROnPlateau` in Burn's `Learner`: after each epoch, the
//! pure decisions of [`crate::callbacks`] over the run's recorded history say whether to stop
//! and what rate the next epoch trains at.
//!
//! Both are replayed from the history, so a resumed run decides what the uninterrupted one did
//! without any state of their own in the checkpoint.

use super::history::{BARRIER, Recorder, lock};
pub use super::retention::{early_stop, series};
use crate::callbacks::{EarlyStopping, ReduceLrOnPlateau};
use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The learning rate, shared between the scheduler Burn steps and the [`Watch`] that sets it
/// between epochs. Stored as f64 bits.
#[derive(Clone)]
pub struct PlateauLr {
    rate: Arc<AtomicU64>,
}

impl PlateauLr {
    pub fn new(rate: f64) -> Self {
        Self {
            rate: Arc::new(AtomicU64::new(rate.to_bits())),
        }
    }

    fn set(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Ordering::SeqCst);
    }
}

impl LrScheduler for PlateauLr {
    fn step(&mut self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::SeqCst))
    }

    // The rate is a function of the history, replayed on resume: nothing to save.
    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

/// Burn's early-stopping hook, run after each epoch's checkpoint: sets the next epoch's rate
/// (ReduceLROnPlateau) and stops training (EarlyStopping).
#[derive(Clone)]
pub struct Watch {
    recorder: Arc<Mutex<Recorder>>,
    stopping: EarlyStopping,
    plateau: Option<(ReduceLrOnPlateau, f64, PlateauLr)>,
    /// The epoch early stopping stopped after.
    stopped: Arc<Mutex<Option<usize>>>,
}

impl Watch {
    pub(crate) fn new(
        recorder: Arc<Mutex<Recorder>>,
        stopping: EarlyStopping,
        plateau: Option<(ReduceLrOnPlateau, f64, PlateauLr)>,
    ) -> Self {
        Self {
            recorder,
            stopping,
            plateau,
            stopped: Arc::new(Mutex::new(None)),
        }
    }

    /// The epoch early stopping ended training after, if it did.
    pub fn stopped(&self) -> Option<usize> {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EarlyStoppingStrategy for Watch {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        // Answered once the store has handed the epoch's events to the history logger.
        let _ = store.find_metric(BARRIER, epoch, Aggregate::Mean, &Split::Valid);
        let history = lock(&self.recorder).history.clone();
        if history.epochs() != epoch {
            // The epoch was not recorded (a stop came during it): nothing to decide on.
            return false;
        }
        if let Some((plateau, initial, rate)) = &self.plateau {
            let rates = plateau.rates(*initial, series(&history, plateau.monitor));
            if let [.., before, next] = rates[..]
                && next != before
            {
                log::info!("epoch {epoch}: ReduceLROnPlateau reduced the learning rate to {next}");
            }
            rate.set(rates[epoch]);
        }
        if self.stopping.enabled
            && early_stop(&self.stopping, &history).stopped_after == Some(epoch)
        {
            log::info!(
                "epoch {epoch}: early stopping ({} did not improve)",
                self.stopping.monitor.key()
            );
            *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
            return true;
        }
        false
    }
}
