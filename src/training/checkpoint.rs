//! Burn checkpoints, written into the run directory atomically, one per epoch, none deleted.
//!
//! Burn saves the three parts of a checkpoint (model, optimizer, scheduler) on three background
//! threads and joins them when training returns. The [`SaveTracker`] tells when all three parts
//! of an epoch are on disk: only then is the epoch complete, and `run.json` says so.

use crate::fsutil::write_atomic;
use crate::run_dir::{CheckpointPart, RunDir};
use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use std::sync::{Arc, Mutex, PoisonError};

type OnComplete = Box<dyn Fn(usize) + Send + Sync>;

/// Which epoch each checkpoint part was last saved for, and the first save that failed.
pub struct SaveTracker {
    state: Mutex<SaveState>,
    on_complete: OnComplete,
}

#[derive(Default)]
struct SaveState {
    saved: [usize; 3],
    complete: usize,
    failure: Option<String>,
}

impl SaveTracker {
    /// Calls `on_complete(epoch)` each time all three parts of an epoch after `after` are
    /// saved (`after`: the epoch a resumed run continues from, whose checkpoint is on disk).
    pub fn new(after: usize, on_complete: impl Fn(usize) + Send + Sync + 'static) -> Self {
        Self {
            state: Mutex::new(SaveState {
                saved: [after; 3],
                complete: after,
                failure: None,
            }),
            on_complete: Box::new(on_complete),
        }
    }

    fn record(&self, part: CheckpointPart, epoch: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.saved[part as usize] = state.saved[part as usize].max(epoch);
        let complete = state.saved.iter().copied().min().unwrap_or(0);
        if complete > state.complete {
            state.complete = complete;
            // Called with the lock held so that completions are reported in order.
            (self.on_complete)(complete);
        }
    }

    fn fail(&self, message: String) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failure.get_or_insert(message);
    }

    /// The last epoch whose checkpoint is complete (0 for none).
    pub fn complete(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .complete
    }

    /// The first save that failed.
    pub fn failure(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure
            .clone()
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
        // Failures are also kept here: Burn's dashboard forgets them when training ends.
        let saved = record
            .checkpoint_into_bytes()
            .map_err(|e| {
                format!(
                    "{}: {e}",
                    self.run.checkpoint_path(self.part, epoch).display()
                )
            })
            .and_then(|bytes| {
                write_atomic(&self.run.checkpoint_path(self.part, epoch), &bytes)
                    .map_err(|e| e.to_string())
            });
        match saved {
            Ok(()) => {
                self.tracker.record(self.part, epoch);
                Ok(())
            }
            Err(message) => {
                self.tracker.fail(message.clone());
                Err(CheckpointerError::Unknown(message))
            }
        }
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
