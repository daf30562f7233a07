//! Using what training recorded: list runs ([`runs`]), look into one ([`inspect`], [`summary`]),
//! score it on the test set ([`eval`]), classify a user's own pictures ([`predict`]), look at
//! MNIST itself ([`show`]) and hand the model to PyTorch or any ONNX runtime ([`export`],
//! [`onnx`]).
//!
//! Each function returns text or values for `main.rs` to print; nothing here parses arguments.

pub mod digit_prep;
pub mod eval;
pub mod export;
pub mod onnx;
pub mod predict;
pub mod prune;
pub mod report;
pub mod show;

pub use report::{
    RunSummary, inspect, inspect_json, runs, runs_json, summaries, summaries_of, summary,
    summary_json,
};

use crate::backend::{Backend, BackendError};
use crate::config::{ConfigError, TrainConfig};
use crate::data::dataset::DataError;
use crate::fsutil::WriteError;
use crate::plots::PlotError;
use crate::run_dir::RunDirError;
use crate::saved::LoadError;
use std::path::PathBuf;

/// Where `eval` and `predict` compute: `--backend`/`--device` when given, else where the run
/// trained when this build has that backend, else the CPU. Models move between backends (the
/// weights are plain f32 tensors), so a run trained on wgpu scores in a CPU-only build too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComputeOn {
    pub backend: Option<Backend>,
    pub device: Option<usize>,
}

impl ComputeOn {
    /// The device for a run trained with `config`.
    pub fn device(self, config: &TrainConfig) -> Result<burn::tensor::Device, BackendError> {
        let trained_on = config.run.backend;
        let backend = self.backend.unwrap_or(if trained_on.is_compiled() {
            trained_on
        } else {
            Backend::Ndarray
        });
        let index = match self.device {
            Some(index) => index,
            None if backend == trained_on => config.run.device,
            None => 0,
        };
        backend.device(index)
    }
}

/// Why a command on a run, a picture or MNIST could not be done. Each names the file or value.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The file named by `--out` cannot be written (a missing or read-only directory is the
    /// user's to fix; a full disk is not).
    #[error(transparent)]
    Out(WriteError),
    /// A picture for `predict` that is not one, or holds no digit.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// A picture file that cannot be opened (missing, unreadable).
    #[error("{}: cannot read: {source}", path.display())]
    ImageRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index {index} is out of range: the {split} split has {len} images (0 to {})", len.saturating_sub(1))]
    IndexOutOfRange {
        split: &'static str,
        index: usize,
        len: usize,
    },
    #[error("{}: {message}", path.display())]
    Export { path: PathBuf, message: String },
    /// What the user asked of a file is refused: `export`'s format against the file's
    /// extension, or a file in the way without `--force`.
    #[error("{}: {message}", path.display())]
    Refused { path: PathBuf, message: String },
    /// A tensor the model computed could not be read back.
    #[error("cannot read the model's output: {0}")]
    Compute(String),
}

impl InspectError {
    /// Whether the user can fix it by changing what they passed (a run, a checkpoint, a picture,
    /// an index).
    pub fn is_bad_input(&self) -> bool {
        match self {
            InspectError::RunDir(e) => e.is_bad_input(),
            InspectError::Load(e) => e.is_bad_input(),
            InspectError::Data(e) => e.is_bad_input(),
            InspectError::Backend(e) => e.is_bad_input(),
            InspectError::Config(e) => e.is_bad_input(),
            InspectError::Image { .. }
            | InspectError::IndexOutOfRange { .. }
            | InspectError::Refused { .. } => true,
            InspectError::ImageRead { source, .. } => crate::data::idx::is_about_the_file(source),
            InspectError::Out(e) => crate::data::idx::is_about_the_file(&e.source),
            InspectError::Plot(_)
            | InspectError::Write(_)
            | InspectError::Export { .. }
            | InspectError::Compute(_) => false,
        }
    }
}
