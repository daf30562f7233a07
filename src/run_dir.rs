//! The run directory: the contract between training, which writes it, and everything that reads
//! what training recorded. No other module builds these paths.
//!
//! ```text
//! <artifact_dir>/runs/<name>/
//!   config.toml     the effective training config
//!   run.json        status, epochs done/planned, epoch times, backend, data source
//!   history.json    Keras's History.history: {"loss": [...], "accuracy": [...], ...}
//!   history.csv     epoch,loss,accuracy,val_loss,val_accuracy (Keras's CSVLogger)
//!   checkpoint/     Burn's per-epoch checkpoints: model-<e>.bpk, optim-<e>.bpk, scheduler-<e>.bpk
//!   model.json      the MlpConfig, written first, so any checkpoint loads into what was trained
//!   model.bpk       the final model (burnpack), written only once every epoch is done
//!   experiment.log  Burn's log of the run
//!   curves.png/svg  loss and accuracy per epoch, redrawn after every epoch
//!   confusion.png   the confusion matrix on the validation set (written by `eval`)
//!   mistakes.png    up to 64 misclassified validation digits (written by `eval`)
//! ```
//!
//! Every file is written atomically ([`crate::fsutil`]). What holds at any instant, even after
//! `kill -9`: `run.json`'s `epochs_done` epochs all have complete checkpoints;
//! `history.json` and `history.csv` hold `epochs_done` epochs or one more (each is written
//! before its epoch's checkpoint); a run that ended in-process has them equal. So a reader
//! takes the first `epochs_done` epochs of the history.

use crate::config::TrainConfig;
use crate::fsutil::{WriteError, write_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A fault reading or writing a run directory; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{}: run directory already exists; pick another --run-name", path.display())]
    Exists { path: PathBuf },
    #[error("{}: cannot create run directory: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl RunDirError {
    /// A run name already taken is the user's to change; the rest is the disk's doing.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, RunDirError::Exists { .. })
    }
}

/// Keras's `History.history`: one value per epoch and key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub loss: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub val_accuracy: Vec<f64>,
}

/// One epoch's four numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
}

impl History {
    /// Epochs recorded.
    pub fn epochs(&self) -> usize {
        self.loss.len()
    }

    pub fn push(&mut self, m: EpochMetrics) {
        self.loss.push(m.loss);
        self.accuracy.push(m.accuracy);
        self.val_loss.push(m.val_loss);
        self.val_accuracy.push(m.val_accuracy);
    }

    /// Epoch `index` (0-based).
    pub fn get(&self, index: usize) -> Option<EpochMetrics> {
        Some(EpochMetrics {
            loss: *self.loss.get(index)?,
            accuracy: *self.accuracy.get(index)?,
            val_loss: *self.val_loss.get(index)?,
            val_accuracy: *self.val_accuracy.get(index)?,
        })
    }

    pub fn last(&self) -> Option<EpochMetrics> {
        self.get(self.epochs().checked_sub(1)?)
    }

    /// Keeps the first `epochs` epochs.
    pub fn truncate(&mut self, epochs: usize) {
        self.loss.truncate(epochs);
        self.accuracy.truncate(epochs);
        self.val_loss.truncate(epochs);
        self.val_accuracy.truncate(epochs);
    }

    /// As Keras's `CSVLogger` writes it.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("epoch,loss,accuracy,val_loss,val_accuracy\n");
        for epoch in 0..self.epochs() {
            if let Some(m) = self.get(epoch) {
                csv.push_str(&format!(
                    "{epoch},{},{},{},{}\n",
                    m.loss, m.accuracy, m.val_loss, m.val_accuracy
                ));
            }
        }
        csv
    }

    fn is_consistent(&self) -> bool {
        let n = self.loss.len();
        self.accuracy.len() == n && self.val_loss.len() == n && self.val_accuracy.len() == n
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Interrupted,
    Failed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        })
    }
}

/// `run.json`: what a run is and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    /// UTC start, RFC 3339.
    pub started: String,
    /// UTC end, RFC 3339, once the run stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    pub status: RunStatus,
    pub epochs_planned: usize,
    /// Epochs whose checkpoint is complete.
    pub epochs_done: usize,
    /// Wall time of each epoch, training and validation, in seconds.
    pub epoch_seconds: Vec<f64>,
    pub backend: String,
    pub device: String,
    /// Where MNIST came from.
    pub data: String,
    pub train_images: usize,
    pub valid_images: usize,
    pub mnist_mlp_version: String,
    /// The process that wrote the run, to tell a live run from a killed one.
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which part of a Burn checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointPart {
    Model,
    Optimizer,
    Scheduler,
}

impl CheckpointPart {
    pub const ALL: [CheckpointPart; 3] = [
        CheckpointPart::Model,
        CheckpointPart::Optimizer,
        CheckpointPart::Scheduler,
    ];

    /// The file name prefix, as Burn's `with_default_checkpointers` names them.
    pub fn prefix(self) -> &'static str {
        match self {
            CheckpointPart::Model => "model",
            CheckpointPart::Optimizer => "optim",
            CheckpointPart::Scheduler => "scheduler",
        }
    }
}

/// A run directory on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Where runs live inside an artifact directory.
    pub fn runs_dir(artifact_dir: &Path) -> PathBuf {
        artifact_dir.join("runs")
    }

    /// Creates `<artifact_dir>/runs/<name>/` (and `checkpoint/` in it); fails if it exists.
    pub fn create(artifact_dir: &Path, name: &str) -> Result<Self, RunDirError> {
        let runs = Self::runs_dir(artifact_dir);
        std::fs::create_dir_all(&runs).map_err(|source| RunDirError::Create {
            path: runs.clone(),
            source,
        })?;
        let path = runs.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RunDirError::Exists { path });
            }
            Err(source) => return Err(RunDirError::Create { path, source }),
        }
        let run = Self { path };
        let checkpoints = run.checkpoint_dir();
        std::fs::create_dir(&checkpoints).map_err(|source| RunDirError::Create {
            path: checkpoints,
            source,
        })?;
        Ok(run)
    }

    /// An existing run directory.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn info_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn history_json_path(&self) -> PathBuf {
        self.path.join("history.json")
    }

    pub fn history_csv_path(&self) -> PathBuf {
        self.path.join("history.csv")
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// The file of one part of the checkpoint of `epoch` (1-based).
    pub fn checkpoint_path(&self, part: CheckpointPart, epoch: usize) -> PathBuf {
        self.checkpoint_dir()
            .join(format!("{}-{epoch}.bpk", part.prefix()))
    }

    pub fn model_path(&self) -> PathBuf {
        self.path.join("model.bpk")
    }

    pub fn model_config_path(&self) -> PathBuf {
        self.path.join("model.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join("experiment.log")
    }

    /// The training curves, redrawn after every epoch.
    pub fn curves_png_path(&self) -> PathBuf {
        self.path.join("curves.png")
    }

    pub fn curves_svg_path(&self) -> PathBuf {
        self.path.join("curves.svg")
    }

    /// The confusion matrix heatmap of an evaluation.
    pub fn confusion_png_path(&self) -> PathBuf {
        self.path.join("confusion.png")
    }

    /// The misclassified digits of an evaluation.
    pub fn mistakes_png_path(&self) -> PathBuf {
        self.path.join("mistakes.png")
    }

    pub fn write_config(&self, config: &TrainConfig) -> Result<(), RunDirError> {
        Ok(write_atomic(
            &self.config_path(),
            config.to_toml().as_bytes(),
        )?)
    }

    pub fn write_info(&self, info: &RunInfo) -> Result<(), RunDirError> {
        write_json(&self.info_path(), info)
    }

    pub fn read_info(&self) -> Result<RunInfo, RunDirError> {
        read_json(&self.info_path())
    }

    /// Writes `history.json` and `history.csv`.
    pub fn write_history(&self, history: &History) -> Result<(), RunDirError> {
        write_json(&self.history_json_path(), history)?;
        Ok(write_atomic(
            &self.history_csv_path(),
            history.to_csv().as_bytes(),
        )?)
    }

    pub fn read_history(&self) -> Result<History, RunDirError> {
        let path = self.history_json_path();
        let history: History = read_json(&path)?;
        if !history.is_consistent() {
            return Err(RunDirError::Malformed {
                path,
                message: "the four keys hold different numbers of epochs".into(),
            });
        }
        Ok(history)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunDirError> {
    // Plain structs of numbers and strings always serialize.
    let mut text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| unreachable!("JSON of a plain struct: {e}"));
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunDirError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| RunDirError::Malformed {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_in_keras_shape() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "r").unwrap();
        assert!(matches!(
            RunDir::create(dir.path(), "r"),
            Err(RunDirError::Exists { .. })
        ));
        let mut history = History::default();
        history.push(EpochMetrics {
            loss: 0.25,
            accuracy: 0.9,
            val_loss: 0.125,
            val_accuracy: 0.95,
        });
        run.write_history(&history).unwrap();
        assert_eq!(run.read_history().unwrap(), history);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.history_json_path()).unwrap())
                .unwrap();
        assert_eq!(json["val_accuracy"][0], 0.95);
        assert_eq!(
            std::fs::read_to_string(run.history_csv_path()).unwrap(),
            "epoch,loss,accuracy,val_loss,val_accuracy\n0,0.25,0.9,0.125,0.95\n"
        );
    }
}
