//! Loading what training saved: the final model or one epoch's checkpoint, rebuilt from the
//! run's [`MlpConfig`]. The one place that reads weights back, for `eval`, `predict`, `export`
//! and `train --resume`.
//!
//! Every fault is an error naming the file: missing, unreadable (truncated, not burnpack) or
//! holding another architecture. Burn's own restore panics on those, so `--resume` checks a
//! checkpoint here before Burn reads it.

use crate::fsutil::{Opened, Reader};
use crate::model::{Mlp, MlpConfig};
use crate::run_dir::{CheckpointPart, History, RunDir, RunDirError};
use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// Which weights of a run (`--checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// `model.bpk`, written when the run finished.
    Final,
    /// The checkpoint of the last epoch on disk.
    Last,
    /// The checkpoint of the epoch with the highest `val_accuracy`.
    Best,
    /// The checkpoint of this epoch (1-based).
    Epoch(usize),
}

impl std::str::FromStr for Weights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "final" => Ok(Weights::Final),
            "last" => Ok(Weights::Last),
            "best" => Ok(Weights::Best),
            _ => match s.parse::<usize>() {
                Ok(epoch) if epoch > 0 => Ok(Weights::Epoch(epoch)),
                _ => Err(format!(
                    "`{s}` is not an epoch (1, 2, …), `best`, `last` or `final`"
                )),
            },
        }
    }
}

/// Why weights could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{}: missing ({why})", path.display())]
    Missing { path: PathBuf, why: String },
    #[error("{}: no checkpoint on disk (the run saved none)", run.display())]
    NoCheckpoint { run: PathBuf },
    #[error("{}: cannot read the {what}: {message}", path.display())]
    Unreadable {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("{}: not this run's model ({arch}): {message}", path.display())]
    Architecture {
        path: PathBuf,
        arch: String,
        message: String,
    },
}

impl LoadError {
    /// A missing, truncated or foreign weights file is the user's pick to change (another
    /// run or `--checkpoint`); reading the run directory can also fail on the disk.
    pub fn is_bad_input(&self) -> bool {
        match self {
            LoadError::RunDir(e) => e.is_bad_input(),
            LoadError::Missing { .. }
            | LoadError::NoCheckpoint { .. }
            | LoadError::Unreadable { .. }
            | LoadError::Architecture { .. } => true,
        }
    }
}

/// A model loaded from a run.
#[derive(Debug)]
pub struct SavedModel {
    pub model: Mlp,
    pub config: MlpConfig,
    /// The file the weights came from.
    pub path: PathBuf,
    /// The epoch whose end the weights are from (1-based).
    pub epoch: usize,
}

/// Loads `which` weights of `run` onto `device`; `None` means the final model when the run
/// finished, else its last checkpoint.
pub fn load(
    run: &RunDir,
    which: Option<Weights>,
    device: &Device,
) -> Result<SavedModel, LoadError> {
    let config = run.read_model_config()?;
    let (path, epoch) = locate(run, which)?;
    let model = load_file(&path, &config, device)?;
    Ok(SavedModel {
        model,
        config,
        path,
        epoch,
    })
}

/// The file of `which` weights and the epoch they are from.
pub fn locate(run: &RunDir, which: Option<Weights>) -> Result<(PathBuf, usize), LoadError> {
    let history = read_history_or_empty(run)?;
    let which = which.unwrap_or(if run.has_file(&run.model_path()) {
        Weights::Final
    } else {
        Weights::Last
    });
    let with_model = run.model_checkpoint_epochs()?;
    let epoch = match which {
        Weights::Final => {
            let path = run.model_path();
            if !run.has_file(&path) {
                return Err(LoadError::Missing {
                    path,
                    why: "the run did not finish; use --checkpoint last or an epoch".into(),
                });
            }
            // restore_best_weights saves an earlier epoch's weights as the final model.
            let restored = run.read_info().ok().and_then(|info| info.restored_epoch);
            return Ok((path, restored.unwrap_or(history.epochs())));
        }
        Weights::Last => *with_model.last().ok_or_else(|| LoadError::NoCheckpoint {
            run: run.path().to_path_buf(),
        })?,
        Weights::Best => {
            let (epoch, _) = history.best_epoch().ok_or_else(|| LoadError::Missing {
                path: run.history_json_path(),
                why: "no epoch recorded, so no best one".into(),
            })?;
            epoch
        }
        Weights::Epoch(epoch) => epoch,
    };
    let path = run.checkpoint_path(CheckpointPart::Model, epoch);
    if !with_model.contains(&epoch) {
        return Err(LoadError::Missing {
            path,
            why: match with_model.as_slice() {
                [] => "the run saved no checkpoint".to_string(),
                epochs => format!("checkpoints on disk: epochs {}", list(epochs)),
            },
        });
    }
    Ok((path, epoch))
}

/// Loads a model file (burnpack) into a model of shape `config`.
pub fn load_file(path: &Path, config: &MlpConfig, device: &Device) -> Result<Mlp, LoadError> {
    if !path.is_file() {
        return Err(LoadError::Missing {
            path: path.to_path_buf(),
            why: "no such file".into(),
        });
    }
    let record = ModuleRecord::load(path).map_err(|e| LoadError::Unreadable {
        path: path.to_path_buf(),
        what: "model",
        message: one_line(&e.to_string()),
    })?;
    into_model(record, path, config, device)
}

/// Loads the model file `path` from its descriptor `opened` ([`Reader::open`]: `serve` reads
/// weights only so) into a model of shape `config`.
pub fn load_opened(
    opened: Opened,
    path: &Path,
    config: &MlpConfig,
    device: &Device,
) -> Result<Mlp, LoadError> {
    let unreadable = |message: String| LoadError::Unreadable {
        path: path.to_path_buf(),
        what: "model",
        message: one_line(&message),
    };
    let bytes = opened.bytes().map_err(|e| unreadable(e.to_string()))?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| unreadable(e.to_string()))?;
    into_model(record, path, config, device)
}

/// `record` loaded into a model of shape `config`, or why it does not fit.
fn into_model(
    record: ModuleRecord,
    path: &Path,
    config: &MlpConfig,
    device: &Device,
) -> Result<Mlp, LoadError> {
    config
        .init(device)
        .try_load_record(record)
        .map_err(|e| LoadError::Architecture {
            path: path.to_path_buf(),
            arch: config.describe(),
            message: one_line(&e.to_string()),
        })
}

/// Checks that training can restore the checkpoint of `epoch`: the model loads into `config`'s
/// shape and the optimizer and scheduler files read. Burn's restore would panic otherwise.
pub fn check_checkpoint(
    run: &RunDir,
    epoch: usize,
    config: &MlpConfig,
    device: &Device,
) -> Result<(), LoadError> {
    load_file(
        &run.checkpoint_path(CheckpointPart::Model, epoch),
        config,
        device,
    )?;
    let unreadable = |path: PathBuf, what| {
        move |e: burn::store::RecordError| LoadError::Unreadable {
            path,
            what,
            message: one_line(&e.to_string()),
        }
    };
    let optim = run.checkpoint_path(CheckpointPart::Optimizer, epoch);
    OptimizerRecord::load(&optim).map_err(unreadable(optim.clone(), "optimizer state"))?;
    let scheduler = run.checkpoint_path(CheckpointPart::Scheduler, epoch);
    LrSchedulerRecord::load(&scheduler).map_err(unreadable(
        scheduler.clone(),
        "learning-rate scheduler state",
    ))?;
    Ok(())
}

/// `history.json`, or no epochs when the run has not finished one.
pub fn read_history_or_empty(run: &RunDir) -> Result<History, RunDirError> {
    match run.reader() {
        Reader::Plain if !run.history_json_path().is_file() => Ok(History::default()),
        Reader::Plain => run.read_history(),
        // Opened once: a file that is not there is no epochs, one refused is an error.
        Reader::Beneath(_) => match run.read_history() {
            Err(RunDirError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(History::default())
            }
            read => read,
        },
    }
}

/// `1, 2, 3` or `1–5` for a contiguous range.
fn list(epochs: &[usize]) -> String {
    match epochs {
        [first, .., last] if last - first + 1 == epochs.len() => format!("{first}–{last}"),
        _ => epochs
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_choices_parse() {
        assert_eq!("best".parse(), Ok(Weights::Best));
        assert_eq!("last".parse(), Ok(Weights::Last));
        assert_eq!("final".parse(), Ok(Weights::Final));
        assert_eq!("3".parse(), Ok(Weights::Epoch(3)));
        assert!("0".parse::<Weights>().is_err());
        assert!("worst".parse::<Weights>().is_err());
    }

    #[test]
    fn epoch_lists_read_well() {
        assert_eq!(list(&[1, 2, 3]), "1–3");
        assert_eq!(list(&[1, 3]), "1, 3");
        assert_eq!(list(&[4]), "4");
    }
}
