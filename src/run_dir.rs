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
use crate::fsutil::{Reader, WriteError, write_atomic};
use crate::kernels::Kernels;
use crate::model::MlpConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

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
    /// Threads of the pool the training ran on (`run.threads`; absent in runs recorded before
    /// the setting existed). The last start's, for a resumed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The fused kernels' SIMD level, `avx512`, `avx2` or `none` (`MNIST_MLP_SIMD`); absent
    /// with Burn's kernels and in runs recorded before the setting existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simd: Option<crate::kernels::Simd>,
    pub device: String,
    /// Where MNIST came from.
    pub data: String,
    pub train_images: usize,
    pub valid_images: usize,
    /// What `val_*` was measured on (absent in runs recorded before the choice existed: the
    /// test images).
    #[serde(default)]
    pub validated_on: ValidatedOn,
    /// The epoch early stopping ended the run after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<usize>,
    /// The epoch whose weights `model.bpk` holds when not the last (restore_best_weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_epoch: Option<usize>,
    pub mnist_mlp_version: String,
    /// The process that trains (or last trained) the run, to tell a live run from a killed one:
    /// `pid`, and (since runs recorded it) `host`, `pid_ns`, `uts_ns`, `boot_id`.
    #[serde(flatten)]
    pub owner: Owner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The owner's heartbeat: `run.json`'s modification time, renewed every [`HEARTBEAT`]
    /// while it trains. Read from the file, never written into it.
    #[serde(skip)]
    pub heartbeat: Option<SystemTime>,
}

/// The images a run's `val_*` numbers, its best epoch and the rankings built on them come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidatedOn {
    /// MNIST's 10,000 test images, as the tutorial's `validation_data`.
    #[default]
    Test,
    /// The last part of the training images (`validation_split`).
    Split,
}

impl ValidatedOn {
    /// A few words for tables: `test` or `split`.
    pub fn short(self) -> &'static str {
        match self {
            ValidatedOn::Test => "test",
            ValidatedOn::Split => "split",
        }
    }
}

impl std::fmt::Display for ValidatedOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValidatedOn::Test => "the test images",
            ValidatedOn::Split => "the validation split of the training images",
        })
    }
}

/// A run of this process that has just started, for the unit tests of what reads a run.
#[cfg(test)]
impl RunInfo {
    pub(crate) fn sample(name: &str) -> Self {
        RunInfo {
            name: name.into(),
            started: "2026-01-01T00:00:00Z".into(),
            ended: None,
            status: RunStatus::Running,
            epochs_planned: 3,
            epochs_done: 0,
            epoch_seconds: Vec::new(),
            backend: "ndarray".into(),
            kernels: None,
            threads: None,
            simd: None,
            device: "CPU".into(),
            data: "cache".into(),
            train_images: 100,
            valid_images: 100,
            validated_on: ValidatedOn::Test,
            stopped_early: None,
            restored_epoch: None,
            mnist_mlp_version: "0".into(),
            owner: Owner::me(),
            error: None,
            heartbeat: None,
        }
    }
}

impl RunInfo {
    /// The status to show: a run that says `running` but whose owner is gone was killed, so
    /// it is shown as interrupted.
    pub fn effective_status(&self) -> RunStatus {
        match self.status {
            RunStatus::Running if !self.is_live() => RunStatus::Interrupted,
            status => status,
        }
    }

    /// Whether its owner is still training it, a heartbeat counting as fresh for
    /// [`DEFAULT_STALE_AFTER`] (see [`Owner::is_live`]).
    pub fn is_live(&self) -> bool {
        self.is_live_within(DEFAULT_STALE_AFTER)
    }

    /// Whether its owner is still training it, a heartbeat counting as fresh for `stale_after`.
    pub fn is_live_within(&self, stale_after: Duration) -> bool {
        self.status == RunStatus::Running && self.owner.is_live(self.heartbeat, stale_after)
    }
}

/// How long the heartbeat of an owner this process cannot see (on another host, or in a PID
/// namespace it cannot look into) counts as fresh, unless told otherwise (`--stale-after`).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(120);

/// How often an owner renews its heartbeats (its run's `run.json`, a sweep worker's claim).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Who trains a run or holds a sweep's claim: the process, and where it runs. A process is
/// named by its PID only within its PID namespace, and a namespace's identity (the inode of
/// `/proc/<pid>/ns/pid`) only within one boot of one machine, so all of them are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// The host name (absent in runs recorded before owners were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The inode of the owner's PID namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// The inode of the owner's UTS namespace (which holds its host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts_ns: Option<u64>,
    /// The kernel's `boot_id`: one machine in one boot (containers see their host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// What this process can tell of an owner from where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Alive,
    Gone,
    /// Out of sight (another host, a PID namespace this process cannot look into): its
    /// heartbeat tells.
    Unsure,
}

/// The inodes Linux gives the initial PID and UTS namespaces (`PROC_PID_INIT_INO`,
/// `PROC_UTS_INIT_INO` in include/linux/proc_ns.h, fixed since 3.8).
const PID_INIT_NS: u64 = 0xEFFF_FFFC;
const UTS_INIT_NS: u64 = 0xEFFF_FFFE;

impl Owner {
    /// This process.
    pub fn me() -> Self {
        static ME: std::sync::OnceLock<Owner> = std::sync::OnceLock::new();
        ME.get_or_init(|| Owner {
            pid: std::process::id(),
            host: Some(hostname()),
            pid_ns: namespace("self", "pid"),
            uts_ns: namespace("self", "uts"),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty()),
        })
        .clone()
    }

    /// Whether the owner is alive as this process sees it, else by its heartbeat (`None`:
    /// none known) being younger than `stale_after`.
    pub fn is_live(&self, heartbeat: Option<SystemTime>, stale_after: Duration) -> bool {
        match self.seen() {
            Seen::Alive => true,
            Seen::Gone => false,
            Seen::Unsure => heartbeat.is_some_and(|beat| {
                // A heartbeat ahead of this clock is fresh.
                beat.elapsed().map_or(true, |age| age <= stale_after)
            }),
        }
    }

    /// What this process can tell of the owner:
    ///
    /// - recorded before owners were (no host): its PID on this machine, as before;
    /// - this machine in this boot (the same `boot_id`), same PID namespace: whether the process
    ///   is alive (this very process is not: a record of its own is a predecessor's, or one it
    ///   left);
    /// - this machine, another PID namespace: exact where this process can see into it (a
    ///   namespace below its own); gone if this process is in the initial namespace and could
    ///   read every process's, none of them in that one;
    /// - this host name, from another PID namespace or machine, set in a UTS namespace of its
    ///   own (a container's, a pod's): gone. A host name given to a container names one live
    ///   container at a time, so its holder out of sight is a predecessor of this one: a
    ///   retried pod keeps `<job>-<index>` and is PID 1 again (docs/sweeps.md);
    /// - else (another host; this host's name shared by namespaces out of sight): out of
    ///   sight, for the heartbeat to tell.
    pub fn seen(&self) -> Seen {
        let me = Owner::me();
        let Some(host) = &self.host else {
            return alive(process_alive(self.pid));
        };
        let same_host = me.host.as_ref() == Some(host);
        if self.pid_ns.is_none() {
            // Claims recorded before namespaces were: this host's PIDs, as then.
            return match same_host {
                true => alive(self.pid != me.pid && process_alive(self.pid)),
                false => Seen::Unsure,
            };
        }
        let same_boot = self.boot_id.is_some() && self.boot_id == me.boot_id;
        if same_boot && self.pid_ns == me.pid_ns {
            return alive(self.pid != me.pid && process_alive(self.pid));
        }
        if same_boot && let Some(ns) = self.pid_ns {
            match find_in_namespace(ns, self.pid) {
                Found::Process(pid) => return alive(process_alive(pid)),
                Found::NotThere => return Seen::Gone,
                Found::OutOfSight { everything_seen } => {
                    if everything_seen && me.pid_ns == Some(PID_INIT_NS) {
                        return Seen::Gone;
                    }
                }
            }
        }
        if same_host && self.uts_ns.is_some_and(|uts| uts != UTS_INIT_NS) {
            return Seen::Gone;
        }
        Seen::Unsure
    }

    /// The owner for messages: `process 12 on host-a`.
    pub fn describe(&self) -> String {
        match &self.host {
            Some(host) => format!("process {} on {host}", self.pid),
            None => format!("process {}", self.pid),
        }
    }
}

fn alive(yes: bool) -> Seen {
    if yes { Seen::Alive } else { Seen::Gone }
}

/// The inode of namespace `kind` of process `pid` (`self` for this one).
fn namespace(pid: &str, kind: &str) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(Path::new("/proc").join(pid).join("ns").join(kind))
            .ok()
            .map(|m| m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (pid, kind);
        None
    }
}

enum Found {
    /// The owner's process, by its PID here.
    Process(u32),
    /// Processes of its namespace are in sight, the owner not among them.
    NotThere,
    /// No process of its namespace in sight; `everything_seen`: every process's namespace
    /// could be read.
    OutOfSight { everything_seen: bool },
}

/// Looks through `/proc` for the process that is `pid` in PID namespace `ns`: a process of a
/// namespace below this one shows there, with its PID in each namespace (`NSpid`).
fn find_in_namespace(ns: u64, pid: u32) -> Found {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Found::OutOfSight {
            everything_seen: false,
        };
    };
    let (mut in_sight, mut everything_seen) = (false, true);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(here) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        match namespace(&here.to_string(), "pid") {
            Some(inode) if inode == ns => in_sight = true,
            Some(_) => continue,
            None => {
                // Gone meanwhile, or not ours to look at.
                everything_seen &= !Path::new("/proc").join(here.to_string()).exists();
                continue;
            }
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let inner = status
            .lines()
            .find_map(|line| line.strip_prefix("NSpid:"))
            .and_then(|pids| pids.split_whitespace().last())
            .and_then(|p| p.parse::<u32>().ok());
        if inner == Some(pid) {
            return Found::Process(here);
        }
    }
    if in_sight {
        Found::NotThere
    } else {
        Found::OutOfSight { everything_seen }
    }
}

/// This machine's host name (empty if the system will not say).
#[cfg(windows)]
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// This machine's host name (empty if the system will not say).
#[cfg(not(windows))]
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if done != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// While alive, renews the modification time of a file every [`HEARTBEAT`]: the heartbeat of
/// its owner. The file is opened anew each time, so a file replaced by an atomic write (as
/// `run.json` is after each epoch) keeps beating.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let tick = Duration::from_millis(100);
                let mut since = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    since += tick;
                    if since >= HEARTBEAT {
                        since = Duration::ZERO;
                        // A missed beat only makes the owner look older to others.
                        let _ = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .and_then(|file| file.set_modified(SystemTime::now()));
                    }
                }
            })
        };
        Heartbeat {
            stop,
            beat: Some(beat),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
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

/// The largest record a [`Reader::Beneath`] reads (run.json, history.json, model.json,
/// config.toml, sweep.toml, a claim): a run of thousands of epochs writes well under 1 MiB.
pub const MAX_RECORD: u64 = 16 << 20;
/// The largest weights file a [`Reader::Beneath`] reads (the tutorial's model is 2.7 MB; a
/// model of [`crate::model::MAX_PARAMS`] parameters is exactly this).
pub const MAX_WEIGHTS: u64 = 1 << 30;

/// A run directory on disk, and how its files are read (by [`Reader::Plain`] unless
/// [`RunDir::read_by`] says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
    reader: Reader,
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
        let run = Self::open(path);
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
        Self {
            path: path.into(),
            reader: Reader::Plain,
        }
    }

    /// The run, with its files read by `reader` (`serve`: only beneath the artifact directory).
    pub fn read_by(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// How the run's files are read.
    pub fn reader(&self) -> &Reader {
        &self.reader
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
        Self::list_by(artifact_dir, &Reader::Plain)
    }

    /// [`RunDir::list`], the directory listed and `run.json` checked by `reader`, and every
    /// run read by it.
    pub fn list_by(artifact_dir: &Path, reader: &Reader) -> Result<Vec<Self>, RunDirError> {
        let runs = Self::runs_dir(artifact_dir);
        let names = match reader.read_dir(&runs) {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunDirError::Read { path: runs, source }),
        };
        let mut found = Vec::new();
        for name in names {
            let run = Self::open(runs.join(name)).read_by(reader.clone());
            if reader.is_file(&run.info_path(), MAX_RECORD) {
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
        let names = match self.reader.read_dir(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunDirError::Read { path: dir, source }),
        };
        let mut by_epoch = std::collections::BTreeMap::<usize, [Option<u64>; 3]>::new();
        for name in names {
            let Some((part, epoch)) = parse_checkpoint_name(&name.to_string_lossy()) else {
                continue;
            };
            let path = dir.join(&name);
            let size = match &self.reader {
                // As the directory entry says (a symlink's own size, as before #34).
                Reader::Plain => std::fs::symlink_metadata(&path)
                    .map_err(|source| RunDirError::Read { path, source })?
                    .len(),
                // A part that would be refused (a symlink, a FIFO, …) is not there to load.
                Reader::Beneath(_) => match self.reader.open(&path, MAX_WEIGHTS) {
                    Ok(opened) => opened.meta.len(),
                    Err(_) => continue,
                },
            };
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
        let text = self.read_text(&path)?;
        TrainConfig::from_toml(&text).map_err(|error| RunDirError::Malformed {
            message: crate::config::ConfigError::Parse {
                path: path.clone(),
                error,
            }
            .to_string(),
            path,
        })
    }

    /// A record of the run as text, read by the run's reader.
    fn read_text(&self, path: &Path) -> Result<String, RunDirError> {
        self.reader
            .read_to_string(path, MAX_RECORD)
            .map_err(|source| RunDirError::Read {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Whether the run has the file `path` to read (a regular one; beneath the artifact
    /// directory's descriptor when the reader says so).
    pub fn has_file(&self, path: &Path) -> bool {
        self.reader.is_file(path, MAX_WEIGHTS)
    }

    /// The model's shape: `model.json`, else the `[model]` section of `config.toml` (a run
    /// recorded before `model.json` was written at its start).
    pub fn read_model_config(&self) -> Result<MlpConfig, RunDirError> {
        let mut path = self.model_config_path();
        let config = match self.reader.read_to_string(&path, MAX_RECORD) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| RunDirError::Malformed {
                path: path.clone(),
                message: one_line(&e.to_string()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                path = self.config_path();
                self.read_config()?.model()
            }
            Err(source) => return Err(RunDirError::Read { path, source }),
        };
        // Checked before anything is built from it: a shape that cannot be allocated would
        // abort the process (issue #34).
        match config.fault() {
            Some(message) => Err(RunDirError::Malformed { path, message }),
            None => Ok(config),
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

    /// `run.json`, with its modification time as the owner's heartbeat.
    pub fn read_info(&self) -> Result<RunInfo, RunDirError> {
        let path = self.info_path();
        let (bytes, meta) =
            self.reader
                .read(&path, MAX_RECORD)
                .map_err(|source| RunDirError::Read {
                    path: path.clone(),
                    source,
                })?;
        let text = String::from_utf8(bytes).map_err(|e| RunDirError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let mut info: RunInfo = parse_json(&path, &text)?;
        // The time of the file read, from its descriptor.
        info.heartbeat = meta.modified().ok();
        Ok(info)
    }

    /// Renews `run.json`'s heartbeat while the result lives: while this process trains the run.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat::start(self.info_path())
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
        let history: History = parse_json(&path, &self.read_text(&path)?)?;
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

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, RunDirError> {
    serde_json::from_str(text).map_err(|e| RunDirError::Malformed {
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

    fn running(owner: Owner) -> RunInfo {
        RunInfo {
            epochs_planned: 5,
            epochs_done: 1,
            epoch_seconds: vec![1.0],
            train_images: 10,
            valid_images: 10,
            owner,
            ..RunInfo::sample("r")
        }
    }

    #[test]
    fn a_running_run_of_a_dead_process_shows_as_interrupted() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut info = running(Owner {
            pid: child.id(),
            ..Owner::me()
        });
        assert!(info.is_live());
        assert_eq!(info.effective_status(), RunStatus::Running);
        // As recorded before owners were: the PID alone.
        let old = running(Owner {
            pid: child.id(),
            host: None,
            pid_ns: None,
            uts_ns: None,
            boot_id: None,
        });
        assert!(old.is_live());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!info.is_live());
        assert!(!old.is_live());
        assert_eq!(info.effective_status(), RunStatus::Interrupted);
        info.status = RunStatus::Finished;
        assert_eq!(info.effective_status(), RunStatus::Finished);
        // A record naming this very process is a predecessor's (or one it left).
        assert!(!running(Owner::me()).is_live());
    }

    #[test]
    fn an_owner_out_of_sight_is_live_while_its_heartbeat_is_fresh() {
        let stale = Duration::from_secs(60);
        let far = Owner {
            pid: 1,
            host: Some(format!("{}-elsewhere", hostname())),
            pid_ns: Some(1),
            uts_ns: Some(2),
            boot_id: Some("another machine".into()),
        };
        assert_eq!(far.seen(), Seen::Unsure);
        let now = SystemTime::now();
        assert!(far.is_live(Some(now), stale));
        assert!(far.is_live(Some(now + Duration::from_secs(5)), stale));
        assert!(!far.is_live(Some(now - Duration::from_secs(61)), stale));
        assert!(!far.is_live(None, stale));
        // This host's name, from a PID namespace that is not this one and that no process in
        // sight is in, set in a UTS namespace of its own: a retried pod's predecessor.
        let predecessor = Owner {
            pid: 1,
            pid_ns: Some(1),
            uts_ns: Some(2),
            ..Owner::me()
        };
        assert_eq!(predecessor.seen(), Seen::Gone);
        assert!(!predecessor.is_live(Some(now), stale));
        // The same, but sharing the initial UTS namespace (a container with the host's name),
        // is judged by its heartbeat unless this process sees every process.
        let shared = Owner {
            uts_ns: Some(UTS_INIT_NS),
            ..predecessor.clone()
        };
        if Owner::me().pid_ns == Some(PID_INIT_NS) {
            assert_ne!(shared.seen(), Seen::Alive);
        } else {
            assert_eq!(shared.seen(), Seen::Unsure);
        }
        // A retried pod on another machine: the same.
        let moved = |owner: &Owner| Owner {
            boot_id: Some("another machine".into()),
            ..owner.clone()
        };
        assert_eq!(moved(&predecessor).seen(), Seen::Gone);
        assert_eq!(moved(&shared).seen(), Seen::Unsure);
    }

    #[test]
    fn run_json_reads_with_and_without_an_owner_and_beats() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "r").unwrap();
        let info = running(Owner::me());
        run.write_info(&info).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.info_path()).unwrap()).unwrap();
        assert_eq!(json["pid"], std::process::id());
        assert_eq!(json["host"], hostname());
        let back = run.read_info().unwrap();
        assert_eq!(back.owner, Owner::me());
        let written = back.heartbeat.unwrap();
        // A run.json recorded before owners were.
        let mut old = json.clone();
        for key in ["host", "pid_ns", "uts_ns", "boot_id"] {
            old.as_object_mut().unwrap().remove(key);
        }
        std::fs::write(run.info_path(), old.to_string()).unwrap();
        let back = run.read_info().unwrap();
        assert_eq!(back.owner.pid, std::process::id());
        assert_eq!(back.owner.host, None);
        // The heartbeat renews the file's time.
        let set = written - Duration::from_secs(100);
        std::fs::File::options()
            .write(true)
            .open(run.info_path())
            .unwrap()
            .set_modified(set)
            .unwrap();
        let beat = run.heartbeat();
        std::thread::sleep(HEARTBEAT * 2);
        drop(beat);
        assert!(run.read_info().unwrap().heartbeat.unwrap() > set + Duration::from_secs(50));
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
