//! Burn checkpoints, written into the run directory atomically, one per epoch, none deleted.
//!
//! Burn's checkpointers save on a background thread that nobody waits for; the
//! [`SaveTracker`] lets training wait until the last epoch's files are on disk before it
//! reports the run finished.

use crate::fsutil::write_atomic;
use crate::run_dir::{CheckpointPart, RunDir};
use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which epoch each checkpoint part was last saved for.
#[derive(Default)]
pub struct SaveTracker {
    saved: Mutex<[usize; 3]>,
    changed: Condvar,
}

impl SaveTracker {
    fn record(&self, part: CheckpointPart, epoch: usize) {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved[part as usize] = saved[part as usize].max(epoch);
        self.changed.notify_all();
    }

    /// Waits until every part of the checkpoint of `epoch` is saved; false on timeout.
    pub fn wait_for(&self, epoch: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        while saved.iter().any(|&e| e < epoch) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            saved = self
                .changed
                .wait_timeout(saved, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// Saves one part of each checkpoint as `checkpoint/<part>-<epoch>.bpk`.
pub struct AtomicCheckpointer {
    run: RunDir,
    part: CheckpointPart,
    tracker: Arc<SaveTracker>,
}

impl AtomicCheckpointer {
    pub fn new(run: RunDir, part: CheckpointPart, tracker: Arc<SaveTracker>) -> Self {
        Self { run, part, tracker }
    }
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        write_atomic(&self.run.checkpoint_path(self.part, epoch), &bytes)
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))?;
        self.tracker.record(self.part, epoch);
        Ok(())
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.run.checkpoint_path(self.part, epoch)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        R::load(self.run.checkpoint_path(self.part, epoch))
    }
}

/// Keep a checkpoint of every epoch (Burn's default keeps the last two and the best).
pub struct EveryEpoch;

impl CheckpointingStrategy for EveryEpoch {
    fn checkpointing(&mut self, _epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}
