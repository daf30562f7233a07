//! The run's `experiment.log`: what Burn and this crate log while training, at INFO and above.
//!
//! Burn's own installer (`FileApplicationLoggerInstaller`) also writes an INFO line for every
//! training step (thousands of lines in a 5-epoch run), nothing a reader needs; this one keeps
//! everything else. Its panic hook logs a panic before the usual message, except the TUI's
//! kill key, a stop the user asked for, which is ended like Ctrl-C and only logged.

use super::interrupt::is_user_kill;
use burn::train::ApplicationLoggerInstaller;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::prelude::*;

/// Where Burn's training loop logs each step ("Iteration N") and each epoch's start.
const PER_STEP_TARGET: &str = "burn_train::learner::supervised::strategies";

pub(crate) struct ExperimentLog {
    path: PathBuf,
}

impl ExperimentLog {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl ApplicationLoggerInstaller for ExperimentLog {
    fn install(&self) -> Result<(), String> {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .with_filter(LevelFilter::INFO)
            .with_filter(filter_fn(|meta| {
                let chatty = meta.target().starts_with(PER_STEP_TARGET)
                    // wgpu logs a lot at INFO too (Burn's installer drops it as well).
                    || meta.target().starts_with("wgpu");
                !(chatty && LevelFilter::from_level(*meta.level()) >= LevelFilter::INFO)
            }));
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .map_err(|e| format!("the experiment log: {e}"))?;

        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if is_user_kill(info.payload()) {
                log::warn!("training killed from the dashboard");
            } else {
                log::error!("panic: {info}");
                previous(info);
            }
        }));
        Ok(())
    }
}
