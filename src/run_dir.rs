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
//! Every file but `experiment.log` (a log, appended to) is written atomically
//! ([`crate::fsutil`]). What holds at any instant, even after
//! `kill -9`: `run.json`'s `epochs_done` epochs all have complete checkpoints;
//! `history.json` and `history.csv` hold `epochs_done` epochs or more (each is written as
//! its epoch ends, the checkpoints on background threads); a run that ended in-process has
//! them equal. So a reader
//! takes the first `epochs_done` epochs of the history.

use crate::config::TrainConfig;
use crate::fsutil::{WriteError, write_atomic};
use crate::kernels::Kernels;
use crate::model::MlpConfig;
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
    #[error("{}: cannot remove: {error}", path.display())]
    Remove {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    /// `hint` says which runs there are, the nearest to `run` first ([`suggest`]).
    #[error("{run}: no such run: neither {} nor {run} is a run directory{hint}", under.display())]
    Unknown {
        run: String,
        under: PathBuf,
        hint: String,
    },
    #[error("{}: not a run directory (it has no run.json)", path.display())]
    NotARun { path: PathBuf },
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl RunDirError {
    /// A run name already taken, a run that does not exist or a malformed run file is the
    /// user's to change; the rest is the disk's doing.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RunDirError::Exists { .. }
                | RunDirError::Unknown { .. }
                | RunDirError::NotARun { .. }
                | RunDirError::Malformed { .. }
        )
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

    /// The epoch (1-based) with the highest `val_accuracy`, and that value; the first of equals,
    /// as Keras's `ModelCheckpoint(save_best_only=True)` keeps it.
    pub fn best_epoch(&self) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for (index, &value) in self.val_accuracy.iter().enumerate() {
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((index + 1, value));
            }
        }
        best
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
    /// `fused` or `burn` (absent in runs recorded before the choice existed: fused on ndarray).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
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

impl RunInfo {
    /// The status to show: a run that says `running` but whose process is gone was killed, so
    /// it is shown as interrupted.
    pub fn effective_status(&self) -> RunStatus {
        match self.status {
            RunStatus::Running if !process_alive(self.pid) => RunStatus::Interrupted,
            status => status,
        }
    }

    /// Whether the process that wrote this run is still training it.
    pub fn is_live(&self) -> bool {
        self.status == RunStatus::Running && process_alive(self.pid)
    }
}

/// Whether process `pid` is alive. Linux shows it in `/proc` (a zombie, killed but not yet
/// reaped, is not alive); elsewhere a run that says `running` is taken at its word.
pub fn process_alive(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        // `pid (name) S …`: the state follows the last parenthesis.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
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

/// The checkpoint files of one epoch that are on disk, with their sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochCheckpoint {
    /// 1-based, as Burn numbers epochs.
    pub epoch: usize,
    /// Size of each part, in the order of [`CheckpointPart::ALL`]; `None` when missing.
    pub sizes: [Option<u64>; 3],
}

impl EpochCheckpoint {
    pub fn size(&self, part: CheckpointPart) -> Option<u64> {
        self.sizes[part as usize]
    }

    /// Model, optimizer and scheduler are all there: training can resume from it.
    pub fn is_complete(&self) -> bool {
        self.sizes.iter().all(Option::is_some)
    }
}

/// How many names a "did you mean" offers, and how many runs it lists besides.
const SUGGESTED: usize = 3;
const LISTED: usize = 8;

/// What to add to "no such run" for `typed`, given the runs `names` there are in `runs`: the
/// nearest names (a few edits away, Damerau's count, or starting with what was typed), then
/// the runs there are; or that there are none, which points at a wrong artifact directory.
pub fn suggest(typed: &str, names: &[String], runs: &Path) -> String {
    if names.is_empty() {
        return format!("; there are no runs in {}", runs.display());
    }
    // Two edits from four letters on ("tyni" for "tiny"), one below.
    let reach = typed.chars().count().div_ceil(3);
    let mut near: Vec<(usize, &String)> = names
        .iter()
        .map(|name| (strsim::osa_distance(typed, name), name))
        .filter(|(distance, name)| {
            (*distance <= reach && *distance < typed.chars().count())
                || (!typed.is_empty() && name.starts_with(typed))
        })
        .collect();
    near.sort();
    let near: Vec<&str> = near
        .iter()
        .take(SUGGESTED)
        .map(|(_, n)| n.as_str())
        .collect();
    let mut listed = names
        .iter()
        .take(LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        listed.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    match near.as_slice() {
        [] => format!("; runs there: {listed}"),
        _ => format!(
            "; did you mean {}? (runs there: {listed})",
            near.join(" or ")
        ),
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

    /// The run directory at `path`, taken as it is: nothing is read, so it may not hold a run
    /// yet (one just starting, say). [`RunDir::resolve`] is the checked way from what a user
    /// typed.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The run a user means by `run`: a name under `<artifact_dir>/runs/`, else a path to a run
    /// directory.
    pub fn resolve(artifact_dir: &Path, run: &str) -> Result<Self, RunDirError> {
        let runs = Self::runs_dir(artifact_dir);
        let named = runs.join(run);
        let path = if !run.is_empty() && named.is_dir() {
            named
        } else if Path::new(run).is_dir() {
            PathBuf::from(run)
        } else {
            let names: Vec<String> = Self::list(artifact_dir)
                .unwrap_or_default()
                .iter()
                .map(Self::name)
                .collect();
            return Err(RunDirError::Unknown {
                run: run.to_string(),
                under: named,
                hint: suggest(run, &names, &runs),
            });
        };
        let found = Self::open(path);
        if !found.info_path().is_file() {
            return Err(RunDirError::NotARun { path: found.path });
        }
        Ok(found)
    }

    /// Every run directory (one holding `run.json`) under `<artifact_dir>/runs/`, by name. No
    /// runs directory yet means no runs.
    pub fn list(artifact_dir: &Path) -> Result<Vec<Self>, RunDirError> {
        let runs = Self::runs_dir(artifact_dir);
        let entries = match std::fs::read_dir(&runs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunDirError::Read { path: runs, source }),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RunDirError::Read {
                path: runs.clone(),
                source,
            })?;
            let run = Self::open(entry.path());
            if run.info_path().is_file() {
                found.push(run);
            }
        }
        found.sort_by_key(Self::name);
        Ok(found)
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

    /// The epochs whose model weights are on disk (whatever the other parts): what `eval` and
    /// `predict` can load, in order.
    pub fn model_checkpoint_epochs(&self) -> Result<Vec<usize>, RunDirError> {
        Ok(self
            .checkpoints()?
            .iter()
            .filter(|c| c.size(CheckpointPart::Model).is_some())
            .map(|c| c.epoch)
            .collect())
    }

    /// The checkpoints on disk, by epoch. Files that are not Burn checkpoint parts (temporary
    /// files of a save in progress, say) are skipped; no `checkpoint/` means none.
    pub fn checkpoints(&self) -> Result<Vec<EpochCheckpoint>, RunDirError> {
        let dir = self.checkpoint_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunDirError::Read { path: dir, source }),
        };
        let mut by_epoch = std::collections::BTreeMap::<usize, [Option<u64>; 3]>::new();
        for entry in entries {
            let entry = entry.map_err(|source| RunDirError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some((part, epoch)) = parse_checkpoint_name(&name.to_string_lossy()) else {
                continue;
            };
            let size = entry
                .metadata()
                .map_err(|source| RunDirError::Read {
                    path: entry.path(),
                    source,
                })?
                .len();
            by_epoch.entry(epoch).or_default()[part as usize] = Some(size);
        }
        Ok(by_epoch
            .into_iter()
            .map(|(epoch, sizes)| EpochCheckpoint { epoch, sizes })
            .collect())
    }

    /// The last epoch training can resume from: every part of its checkpoint is on disk and
    /// `history.json` records it (`recorded` epochs).
    pub fn last_complete_checkpoint(&self, recorded: usize) -> Result<Option<usize>, RunDirError> {
        Ok(self
            .checkpoints()?
            .iter()
            .filter(|c| c.is_complete() && c.epoch <= recorded)
            .map(|c| c.epoch)
            .max())
    }

    /// Removes the checkpoints of epochs after `epoch` and the final model: what a resumed run
    /// will write again.
    pub fn remove_after(&self, epoch: usize) -> Result<(), RunDirError> {
        let mut stale: Vec<PathBuf> = self
            .checkpoints()?
            .iter()
            .filter(|c| c.epoch > epoch)
            .flat_map(|c| {
                CheckpointPart::ALL
                    .into_iter()
                    .filter(|&part| c.size(part).is_some())
                    .map(|part| self.checkpoint_path(part, c.epoch))
            })
            .collect();
        stale.push(self.model_path());
        for path in stale {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RunDirError::Remove { path, error: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The run's `config.toml`.
    pub fn read_config(&self) -> Result<TrainConfig, RunDirError> {
        let path = self.config_path();
        TrainConfig::from_file(&path).map_err(|e| match e {
            crate::config::ConfigError::Read { path, source } => RunDirError::Read { path, source },
            other => RunDirError::Malformed {
                path,
                message: other.to_string(),
            },
        })
    }

    /// The model's shape: `model.json`, else the `[model]` section of `config.toml` (a run
    /// recorded before `model.json` was written at its start).
    pub fn read_model_config(&self) -> Result<MlpConfig, RunDirError> {
        let path = self.model_config_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| RunDirError::Malformed {
                path,
                message: one_line(&e.to_string()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self.read_config()?.model()),
            Err(source) => Err(RunDirError::Read { path, source }),
        }
    }

    pub fn write_model_config(&self, config: &MlpConfig) -> Result<(), RunDirError> {
        Ok(write_atomic(
            &self.model_config_path(),
            burn::config::config_to_json(config).as_bytes(),
        )?)
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

    /// Writes the config with a first comment line naming the device the run trains on (the
    /// wgpu adapter), which `run.device`, a number, does not say. A comment, so that the file
    /// still reads as a config on another machine.
    pub fn write_config_on(&self, config: &TrainConfig, device: &str) -> Result<(), RunDirError> {
        let header = format!(
            "# Trained on {} device {}: {}\n",
            config.run.backend,
            config.run.device,
            device.replace(['\n', '\r'], " ")
        );
        Ok(write_atomic(
            &self.config_path(),
            (header + &config.to_toml()).as_bytes(),
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

/// `model-3.bpk` → (Model, 3).
fn parse_checkpoint_name(name: &str) -> Option<(CheckpointPart, usize)> {
    let stem = name.strip_suffix(".bpk")?;
    let (prefix, epoch) = stem.rsplit_once('-')?;
    let part = CheckpointPart::ALL
        .into_iter()
        .find(|p| p.prefix() == prefix)?;
    let epoch = epoch.parse().ok().filter(|&e| e > 0)?;
    Some((part, epoch))
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn an_unknown_run_name_gets_the_nearest_names_and_the_runs_there() {
        let names: Vec<String> = ["full-npm", "small", "tiny", "tiny-2"]
            .map(String::from)
            .to_vec();
        let runs = Path::new("a/runs");
        let there = "(runs there: full-npm, small, tiny, tiny-2)";
        // A swap, two letters apart, a missing letter, a prefix.
        assert_eq!(
            suggest("tyni", &names, runs),
            format!("; did you mean tiny? {there}")
        );
        assert_eq!(
            suggest("tiyn", &names, runs),
            format!("; did you mean tiny? {there}")
        );
        assert_eq!(
            suggest("smal", &names, runs),
            format!("; did you mean small? {there}")
        );
        assert_eq!(
            suggest("tiny-", &names, runs),
            format!("; did you mean tiny or tiny-2? {there}")
        );
        assert_eq!(
            suggest("full", &names, runs),
            format!("; did you mean full-npm? {there}")
        );
        // Nothing near: only the list; a one-letter name is not "near" everything.
        assert_eq!(
            suggest("zzzzzz", &names, runs),
            "; runs there: full-npm, small, tiny, tiny-2"
        );
        assert_eq!(
            suggest("x", &names, runs),
            "; runs there: full-npm, small, tiny, tiny-2"
        );
        assert_eq!(suggest("x", &[], runs), "; there are no runs in a/runs");
        let many: Vec<String> = (0..11).map(|i| format!("r{i:02}")).collect();
        assert_eq!(
            suggest("r3", &many, runs),
            "; did you mean r03? (runs there: r00, r01, r02, r03, r04, r05, r06, r07 and 3 more)"
        );
    }

    #[test]
    fn a_running_run_of_a_dead_process_shows_as_interrupted() {
        let mut info = RunInfo {
            name: "r".into(),
            started: "2026-01-01T00:00:00Z".into(),
            ended: None,
            status: RunStatus::Running,
            epochs_planned: 5,
            epochs_done: 1,
            epoch_seconds: vec![1.0],
            backend: "ndarray".into(),
            kernels: None,
            device: "CPU".into(),
            data: "cache".into(),
            train_images: 10,
            valid_images: 10,
            mnist_mlp_version: "0".into(),
            pid: std::process::id(),
            error: None,
        };
        assert!(info.is_live());
        assert_eq!(info.effective_status(), RunStatus::Running);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        info.pid = child.id();
        child.wait().unwrap();
        assert!(!info.is_live());
        assert_eq!(info.effective_status(), RunStatus::Interrupted);
        info.status = RunStatus::Finished;
        assert_eq!(info.effective_status(), RunStatus::Finished);
    }

    #[test]
    fn checkpoints_are_listed_by_epoch_with_their_parts() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "r").unwrap();
        for (part, epoch, size) in [
            (CheckpointPart::Model, 1, 10),
            (CheckpointPart::Optimizer, 1, 20),
            (CheckpointPart::Scheduler, 1, 3),
            (CheckpointPart::Model, 2, 10),
            (CheckpointPart::Scheduler, 2, 3),
            (CheckpointPart::Model, 10, 10),
            (CheckpointPart::Optimizer, 10, 20),
            (CheckpointPart::Scheduler, 10, 3),
        ] {
            std::fs::write(run.checkpoint_path(part, epoch), vec![0; size]).unwrap();
        }
        // Not checkpoint parts.
        std::fs::write(run.checkpoint_dir().join(".tmp-abc"), b"x").unwrap();
        std::fs::write(run.checkpoint_dir().join("model-0.bpk"), b"x").unwrap();
        std::fs::write(run.checkpoint_dir().join("notes-1.bpk"), b"x").unwrap();
        let found = run.checkpoints().unwrap();
        assert_eq!(
            found,
            [
                EpochCheckpoint {
                    epoch: 1,
                    sizes: [Some(10), Some(20), Some(3)]
                },
                EpochCheckpoint {
                    epoch: 2,
                    sizes: [Some(10), None, Some(3)]
                },
                EpochCheckpoint {
                    epoch: 10,
                    sizes: [Some(10), Some(20), Some(3)]
                },
            ]
        );
        // Epoch 2 is incomplete; epoch 10 is not in a 2-epoch history.
        assert_eq!(run.last_complete_checkpoint(2).unwrap(), Some(1));
        assert_eq!(run.last_complete_checkpoint(10).unwrap(), Some(10));
        assert_eq!(run.last_complete_checkpoint(0).unwrap(), None);
        std::fs::write(run.model_path(), b"x").unwrap();
        run.remove_after(1).unwrap();
        assert_eq!(run.checkpoints().unwrap().len(), 1);
        assert!(!run.model_path().exists());
    }

    #[test]
    fn runs_resolve_by_name_or_path_and_list_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunDir::list(dir.path()).unwrap().is_empty());
        let b = RunDir::create(dir.path(), "b").unwrap();
        let a = RunDir::create(dir.path(), "a").unwrap();
        RunDir::create(dir.path(), "not-yet").unwrap();
        for run in [&a, &b] {
            std::fs::write(run.info_path(), "{}").unwrap();
        }
        assert_eq!(RunDir::list(dir.path()).unwrap(), [a.clone(), b.clone()]);
        assert_eq!(RunDir::resolve(dir.path(), "a").unwrap(), a);
        let by_path = a.path().to_str().unwrap();
        assert_eq!(RunDir::resolve(Path::new("/nowhere"), by_path).unwrap(), a);
        assert!(matches!(
            RunDir::resolve(dir.path(), "not-yet"),
            Err(RunDirError::NotARun { .. })
        ));
        let err = RunDir::resolve(dir.path(), "c").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "c: no such run: neither {} nor c is a run directory; runs there: a, b",
                dir.path().join("runs/c").display()
            )
        );
    }

    #[test]
    fn the_best_epoch_is_the_first_highest_val_accuracy() {
        let mut history = History::default();
        assert_eq!(history.best_epoch(), None);
        for v in [0.9, 0.95, 0.95, 0.94] {
            history.push(EpochMetrics {
                loss: 0.0,
                accuracy: 0.0,
                val_loss: 0.0,
                val_accuracy: v,
            });
        }
        assert_eq!(history.best_epoch(), Some((2, 0.95)));
    }

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
