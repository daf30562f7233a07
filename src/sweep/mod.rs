//! Sweeps: many trials of one training, compared. A spec ([`spec`]) expands into numbered
//! trials; `init` records them in a sweep directory; workers ([`work`]) claim and train them,
//! several at once, on one machine or many sharing the directory (a Slurm job array, a
//! Kubernetes Indexed Job); [`status`] compares them.
//!
//! ```text
//! <artifact_dir>/sweeps/<name>/
//!   sweep.toml            the spec as resolved: method, epochs, halving, each trial's values
//!   trials/trial-000.toml each trial's whole training config
//!   claims/r0/trial-000   who trains trial 0 in rung 0 (trial-000.1, … after takeovers)
//!   runs/trial-000/       the trial's run, an ordinary run directory
//! ```
//!
//! So `runs --artifact-dir <artifact_dir>/sweeps/<name>`, `inspect`, `eval`, `predict` and
//! `export` work on a trial as on any run.

mod claims;
pub mod spec;
mod work;

pub use crate::run_dir::{Owner, hostname};
pub use claims::ClaimFile;
pub use spec::{Expanded, Halving, Method, Resolved, Rung, Trial, rungs, trial_name};
pub use work::{Line, WorkOptions, WorkReport, index_from_env, work};

use crate::config::{ConfigError, TrainConfig};
use crate::fsutil::{Reader, WriteError, write_atomic};
use crate::run_dir::{DEFAULT_STALE_AFTER, MAX_RECORD, RunDir, RunDirError, RunInfo, RunStatus};
use crate::table::{Align, Table};
use crate::training::TrainError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a sweep could not be set up, worked on or shown.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: {message}", path.display())]
    Spec { path: PathBuf, message: String },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: sweep already exists; pick another sweep.name", path.display())]
    Exists { path: PathBuf },
    #[error("{name}: no such sweep: neither {} nor {name} holds a sweep.toml", under.display())]
    Unknown { name: String, under: PathBuf },
    #[error("{var}: {value:?} is not a trial number")]
    IndexEnv { var: &'static str, value: String },
    #[error("{given} {index}: the sweep has {trials} trials (0 to {})", trials.saturating_sub(1))]
    Index {
        given: &'static str,
        index: usize,
        trials: usize,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl SweepError {
    /// Whether the user can fix it by changing the spec, a flag or a name.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SweepError::Spec { .. }
            | SweepError::Exists { .. }
            | SweepError::Unknown { .. }
            | SweepError::IndexEnv { .. }
            | SweepError::Index { .. } => true,
            SweepError::Read { source, .. } => crate::data::idx::is_about_the_file(source),
            SweepError::Config(e) => e.is_bad_input(),
            SweepError::Train(e) => e.is_bad_input(),
            SweepError::RunDir(e) => e.is_bad_input(),
            SweepError::Io { .. } | SweepError::Write(_) => false,
        }
    }
}

/// Where sweeps live inside an artifact directory.
pub fn sweeps_dir(artifact_dir: &Path) -> PathBuf {
    artifact_dir.join("sweeps")
}

/// A sweep directory on disk, with what its `sweep.toml` says.
#[derive(Debug, Clone)]
pub struct Sweep {
    path: PathBuf,
    pub resolved: Resolved,
    /// How long the heartbeat of a trial's owner out of sight counts as fresh.
    stale_after: Duration,
    /// How its files and its trials' are read.
    reader: Reader,
}

impl Sweep {
    /// The sweep a user means by `name`: a name under `<artifact_dir>/sweeps/`, else a path to
    /// a sweep directory.
    pub fn resolve(artifact_dir: &Path, name: &str) -> Result<Self, SweepError> {
        let named = sweeps_dir(artifact_dir).join(name);
        let path = if !name.is_empty() && named.join("sweep.toml").is_file() {
            named
        } else if Path::new(name).join("sweep.toml").is_file() {
            PathBuf::from(name)
        } else {
            return Err(SweepError::Unknown {
                name: name.to_string(),
                under: named,
            });
        };
        Self::open(path, Reader::Plain)
    }

    /// The sweep `<artifact_dir>/sweeps/<name>/` only, never a path elsewhere (what `serve`
    /// opens: a name from a request must not reach outside the artifact directory), its files
    /// and its trials' read by `reader`.
    pub fn named(artifact_dir: &Path, name: &str, reader: &Reader) -> Result<Self, SweepError> {
        let path = sweeps_dir(artifact_dir).join(name);
        // Only whether it is there: whatever it is, `open` reads it through `reader`.
        if name.is_empty() || std::fs::symlink_metadata(Self::file_of(&path)).is_err() {
            return Err(SweepError::Unknown {
                name: name.to_string(),
                under: path,
            });
        }
        Self::open(path, reader.clone())
    }

    /// The names of the sweeps under `<artifact_dir>/sweeps/` (those holding a `sweep.toml`;
    /// not `init`'s directories still being built), sorted.
    pub fn list(artifact_dir: &Path) -> Result<Vec<String>, SweepError> {
        let dir = sweeps_dir(artifact_dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(SweepError::Io { path: dir, source }),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .filter(|name| Self::file_of(&dir.join(name)).is_file())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The `sweep.toml` of the sweep directory at `path`.
    pub fn file_of(path: &Path) -> PathBuf {
        path.join("sweep.toml")
    }

    fn open(path: PathBuf, reader: Reader) -> Result<Self, SweepError> {
        let file = Self::file_of(&path);
        let text = reader
            .read_to_string(&file, MAX_RECORD)
            .map_err(|source| SweepError::Read {
                path: file.clone(),
                source,
            })?;
        let resolved: Resolved = crate::config::read_toml(&text)
            .map_err(|e| e.to_string())
            .and_then(|resolved: Resolved| resolved.check().map(|()| resolved))
            .map_err(|message| SweepError::Spec {
                path: file,
                message,
            })?;
        Ok(Sweep {
            path,
            resolved,
            stale_after: DEFAULT_STALE_AFTER,
            reader,
        })
    }

    /// How the sweep's files are read.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sweep, judging owners out of sight by heartbeats younger than `stale_after`
    /// [default: [`DEFAULT_STALE_AFTER`]].
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The artifact directory of the trials' runs: `<sweep>/runs/<trial>/`.
    pub fn runs_artifact_dir(&self) -> &Path {
        &self.path
    }

    pub fn trial_config_path(&self, trial: &str) -> PathBuf {
        self.path.join("trials").join(format!("{trial}.toml"))
    }

    pub fn run(&self, trial: &str) -> RunDir {
        RunDir::open(RunDir::runs_dir(&self.path).join(trial)).read_by(self.reader.clone())
    }

    pub fn rungs(&self) -> Vec<Rung> {
        let r = &self.resolved;
        rungs(r.trials.len(), r.epochs, r.halving)
    }

    /// A trial's config as `init` wrote it, with its run under this sweep directory (wherever
    /// the directory is mounted now).
    pub fn trial_config(&self, trial: &str) -> Result<TrainConfig, SweepError> {
        let mut config = TrainConfig::from_file(&self.trial_config_path(trial))?;
        config.run.artifact_dir = self.path.clone();
        Ok(config)
    }
}

/// Expands the spec at `spec` and records the sweep in `<artifact_dir>/sweeps/<name>/`
/// (`artifact_dir`: the flag, else the base config's). Every trial's config is validated first:
/// a bad spec writes nothing. The directory appears whole (built aside, then renamed).
pub fn init(spec: &Path, artifact_dir: Option<&Path>) -> Result<Sweep, SweepError> {
    let Expanded { resolved, configs } = spec::expand(spec, artifact_dir)?;
    let artifact_dir = configs
        .first()
        .map(|c| c.run.artifact_dir.clone())
        .unwrap_or_default();
    let sweeps = sweeps_dir(&artifact_dir);
    let path = sweeps.join(&resolved.name);
    if path.exists() {
        return Err(SweepError::Exists { path });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SweepError::Io { path, source }
    };
    std::fs::create_dir_all(&sweeps).map_err(io(&sweeps))?;
    let building = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", resolved.name))
        .tempdir_in(&sweeps)
        .map_err(io(&sweeps))?;
    let trials = building.path().join("trials");
    std::fs::create_dir(&trials).map_err(io(&trials))?;
    for (trial, config) in resolved.trials.iter().zip(&configs) {
        write_atomic(
            &trials.join(format!("{}.toml", trial.name)),
            config.to_toml().as_bytes(),
        )?;
    }
    let text = toml::to_string(&resolved).map_err(|e| SweepError::Spec {
        path: spec.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(&building.path().join("sweep.toml"), text.as_bytes())?;
    if path.exists() {
        return Err(SweepError::Exists { path });
    }
    std::fs::rename(building.path(), &path).map_err(io(&path))?;
    // Renamed away: nothing left for the guard to remove.
    let _ = building.keep();
    Sweep::open(path, Reader::Plain)
}

/// Where one trial stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialState {
    pub name: String,
    pub info: Option<RunInfo>,
    /// The epochs of its history that count (those with a complete checkpoint).
    pub history: crate::run_dir::History,
    /// The last rung it was chosen for.
    pub rung: usize,
    pub state: String,
}

/// Where every trial stands, in trial order.
pub fn trials(sweep: &Sweep) -> Result<Vec<TrialState>, SweepError> {
    work::trial_states(sweep)
}

/// The trials and where they stand, sorted as `sweep status` shows them: by their last
/// val_accuracy, best first; trials with no epoch yet last, in trial order.
pub fn ranked(sweep: &Sweep) -> Result<Vec<(&Trial, TrialState)>, SweepError> {
    let states = trials(sweep)?;
    let mut rows: Vec<(&Trial, TrialState)> = sweep.resolved.trials.iter().zip(states).collect();
    let score = |s: &TrialState| s.history.last().map(|m| m.val_accuracy);
    // Stable: ties keep trial order.
    rows.sort_by(|a, b| {
        score(&b.1)
            .partial_cmp(&score(&a.1))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(rows)
}

impl TrialState {
    /// The epochs it is planned for: its run's, else the sweep's.
    pub fn epochs_planned(&self, sweep: &Sweep) -> usize {
        self.info
            .as_ref()
            .map_or(sweep.resolved.epochs, |i| i.epochs_planned)
    }
}

/// The table of `sweep status`: the trials sorted by their last val_accuracy, best first.
pub fn status(sweep: &Sweep) -> Result<String, SweepError> {
    let rows = ranked(sweep)?;
    let r = &sweep.resolved;
    let mut out = format!(
        "sweep {}: {} trials, {}, {} epochs",
        r.name,
        r.trials.len(),
        match r.method {
            Method::Grid => "grid",
            Method::Random => "random",
        },
        r.epochs
    );
    if let Some(h) = r.halving {
        let plan: Vec<String> = sweep
            .rungs()
            .iter()
            .map(|g| format!("{}×{}", g.trials, g.budget))
            .collect();
        out.push_str(&format!(
            ", halving (eta {}; trials×epochs per rung: {})",
            h.eta,
            plan.join(" → ")
        ));
    }
    out.push_str(&ranked_on(&rows));
    out.push('\n');
    let mut columns = vec![("trial", Align::Left)];
    let varied: Vec<&str> = r
        .varied
        .iter()
        .map(|k| k.rsplit('.').next().unwrap_or(k))
        .collect();
    columns.extend(varied.iter().map(|k| (*k, Align::Left)));
    columns.extend([
        ("epochs", Align::Right),
        ("loss", Align::Right),
        ("accuracy", Align::Right),
        ("val_loss", Align::Right),
        ("val_accuracy", Align::Right),
        ("state", Align::Left),
    ]);
    let mut table = Table::new(&columns);
    for (trial, state) in rows {
        let mut cells = vec![trial.name.clone()];
        cells.extend(
            r.varied
                .iter()
                .map(|k| trial.settings.get(k).map(show).unwrap_or_default()),
        );
        let planned = state.epochs_planned(sweep);
        cells.push(format!("{}/{planned}", state.history.epochs()));
        match state.history.last() {
            Some(m) => cells.extend(
                [m.loss, m.accuracy, m.val_loss, m.val_accuracy].map(|v| format!("{v:.4}")),
            ),
            None => cells.extend(std::iter::repeat_n(String::new(), 4)),
        }
        cells.push(state.state.clone());
        table.row(cells);
    }
    out.push_str(&table.render(0));
    Ok(out)
}

/// What the ranking (and halving) compared: the images the trials' val_accuracy was measured
/// on (`train.validation_split`), as far as their runs say.
fn ranked_on(rows: &[(&Trial, TrialState)]) -> String {
    let on: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|(_, state)| state.info.as_ref())
        .map(|info| info.validated_on.to_string())
        .collect();
    match on.len() {
        0 => String::new(),
        _ => format!(
            "; ranked by val_accuracy on {}",
            on.into_iter().collect::<Vec<_>>().join(" and ")
        ),
    }
}

/// `sweep status --json`: the sweep's name, method and epochs, and its trials best first as
/// the table ranks them, each with its settings, epochs done / planned, state and last
/// epoch's metrics (null before the first), unrounded.
pub fn status_json(sweep: &Sweep) -> Result<String, SweepError> {
    let r = &sweep.resolved;
    let trials: Vec<serde_json::Value> = ranked(sweep)?
        .into_iter()
        .map(|(trial, state)| {
            let last = state.history.last().map(|m| {
                serde_json::json!({
                    "loss": m.loss,
                    "accuracy": m.accuracy,
                    "val_loss": m.val_loss,
                    "val_accuracy": m.val_accuracy,
                })
            });
            serde_json::json!({
                "name": trial.name,
                "settings": trial.settings,
                "epochs_done": state.history.epochs(),
                "epochs_planned": state.epochs_planned(sweep),
                "state": state.state,
                "last": last,
            })
        })
        .collect();
    let value = serde_json::json!({
        "name": r.name,
        "path": sweep.path(),
        "method": match r.method {
            Method::Grid => "grid",
            Method::Random => "random",
        },
        "epochs": r.epochs,
        "varied": r.varied,
        "trials": trials,
    });
    Ok(format!("{value:#}\n"))
}

/// A setting's value as the table shows it: `[128, 128]` as `128,128`, a float to four
/// significant digits (a random search's `0.9440000000000001` as `0.944`).
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(","),
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(x) => crate::table::human(*x),
        other => other.to_string(),
    }
}

/// A trial's state in words, for the table.
fn describe(
    info: Option<&RunInfo>,
    claimed: bool,
    pruned_after: Option<usize>,
    stale_after: Duration,
) -> String {
    match (info, pruned_after) {
        (Some(i), _) if i.status == RunStatus::Failed => "failed".into(),
        (Some(i), _) if i.status == RunStatus::Finished => "finished".into(),
        (Some(i), _) if i.is_live_within(stale_after) => "running".into(),
        (Some(_), Some(rung)) => format!("stopped at rung {rung}"),
        (Some(i), None) if i.status == RunStatus::Running => "interrupted (owner gone)".into(),
        (Some(_), None) => "paused".into(),
        (None, _) if claimed => "starting".into(),
        (None, _) => "pending".into(),
    }
}
