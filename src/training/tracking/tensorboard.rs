//! `--tensorboard DIR`: event files laid out as Keras 3's `keras.callbacks.TensorBoard` lays
//! them out, so that a run looks in TensorBoard as a Keras run does:
//!
//! - `DIR/<run>/train`: `epoch_loss`, `epoch_accuracy` and `epoch_learning_rate` at step
//!   `epoch - 1` (Keras numbers epochs from 0), and `batch_loss` every `log_every_steps` steps
//!   at the global step (Keras's `update_freq`; the epoch's running mean, as Keras logs it);
//! - `DIR/<run>/validation`: `epoch_loss` and `epoch_accuracy`, the same tags, so the two
//!   curves overlay under one tag;
//! - `DIR/<run>`: the HParams plugin's session start (the run's settings as hyper-parameters)
//!   and end (its status). No experiment summary is written: TensorBoard builds the experiment
//!   from the sessions of every run under DIR (so a sweep's trials compare with one another)
//!   and takes the metrics from their scalars.
//!
//! Scalars are `simple_value`s (f32): TensorBoard's `EventAccumulator` reads them as scalars,
//! and its UI as well (Keras, through `tf.summary`, writes tensors that only the UI's loader
//! turns into scalars). Each record is written with one `write` straight to the file, so a run
//! killed at any moment leaves files TensorBoard reads. A resumed run (or `log RUN` of a run
//! already logged) adds new files to the same directories and skips every (tag, step) the
//! files there already hold.

use super::event_file::{frame, records};
use super::summary_proto::{
    Event, FILE_VERSION, HPARAMS_PLUGIN, HParamsPluginData, PluginData, ProtoValue,
    SESSION_END_TAG, SESSION_START_TAG, STATUS_FAILURE, STATUS_RUNNING, STATUS_SUCCESS,
    STATUS_UNKNOWN, SessionEndInfo, SessionStartInfo, Summary, SummaryMetadata, SummaryValue,
    null_tensor,
};
use super::{TrackedRun, Tracker};
use crate::config::TrainConfig;
use crate::run_dir::{EpochMetrics, RunDir, RunStatus};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers this process's event files, as TensorFlow's writers number theirs.
static FILE_NUMBER: AtomicU64 = AtomicU64::new(0);

/// The TensorBoard tracker of one run.
pub struct TensorBoard {
    dir: PathBuf,
    files: Option<Files>,
    fault: Option<String>,
}

/// The run's three event files.
struct Files {
    root: EventFile,
    train: EventFile,
    validation: EventFile,
}

impl TensorBoard {
    /// Logs under `dir`, in `dir/<run name>/` once the run starts.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: None,
            fault: None,
        }
    }

    /// Says the first fault once and stops writing; training goes on.
    fn failed(&mut self, error: String) {
        if self.fault.is_none() {
            eprintln!(
                "warning: TensorBoard ({}): {error}; the run goes on without it",
                self.dir.display()
            );
            self.fault = Some(error);
        }
        self.files = None;
    }

    /// Runs `write` on the open files, if any; a fault ends the logging.
    fn with_files(&mut self, write: impl FnOnce(&mut Files) -> Result<(), String>) {
        if let Some(files) = &mut self.files
            && let Err(error) = write(files)
        {
            self.failed(error);
        }
    }

    fn open(&self, run: &TrackedRun<'_>) -> Result<Files, String> {
        let root = self.dir.join(run.run.name());
        let host = crate::run_dir::Owner::me()
            .host
            .unwrap_or_else(|| "localhost".to_string());
        let open = |dir: PathBuf| EventFile::open(dir, &host);
        Ok(Files {
            train: open(root.join("train"))?,
            validation: open(root.join("validation"))?,
            root: open(root)?,
        })
    }
}

impl Tracker for TensorBoard {
    fn start(&mut self, run: &TrackedRun<'_>) {
        match self.open(run) {
            Ok(files) => self.files = Some(files),
            Err(error) => return self.failed(error),
        }
        let start = session_start(run.config, &run.run.name());
        self.with_files(|files| files.root.write_once(0, start));
    }

    fn step(&mut self, step: u64, loss: f64) {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.with_files(|files| files.train.scalar(step, "batch_loss", loss));
    }

    fn epoch(&mut self, epoch: usize, metrics: &EpochMetrics, learning_rate: f64) {
        // Keras's callback writes epoch e (0-based) at step e.
        let step = epoch.saturating_sub(1) as i64;
        self.with_files(|files| {
            files.train.scalar(step, "epoch_loss", metrics.loss)?;
            files
                .train
                .scalar(step, "epoch_accuracy", metrics.accuracy)?;
            files
                .train
                .scalar(step, "epoch_learning_rate", learning_rate)?;
            files
                .validation
                .scalar(step, "epoch_loss", metrics.val_loss)?;
            files
                .validation
                .scalar(step, "epoch_accuracy", metrics.val_accuracy)
        });
    }

    fn finish(&mut self, status: RunStatus, _run: &RunDir) {
        let status = match status {
            RunStatus::Finished => STATUS_SUCCESS,
            RunStatus::Failed => STATUS_FAILURE,
            RunStatus::Running => STATUS_RUNNING,
            RunStatus::Interrupted => STATUS_UNKNOWN,
        };
        let end = hparams_value(
            SESSION_END_TAG,
            HParamsPluginData {
                session_end_info: Some(SessionEndInfo {
                    status,
                    end_time_secs: now(),
                }),
                ..Default::default()
            },
        );
        self.with_files(|files| files.root.write(0, vec![end]));
        // Every record is already in the files; they close here.
        self.files = None;
    }

    fn fault(&self) -> Option<String> {
        self.fault.clone()
    }
}

/// One event file of this process, in a directory that may hold others' (a resumed run's).
struct EventFile {
    path: PathBuf,
    file: std::fs::File,
    /// The last step of each tag in the directory's files: what is logged already.
    logged: HashMap<String, i64>,
}

impl EventFile {
    /// Creates `dir` and a new event file in it, named as TensorFlow names its own
    /// (`events.out.tfevents.<secs>.<host>.<pid>.<n>.v2`), its first record the file version.
    fn open(dir: PathBuf, host: &str) -> Result<Self, String> {
        let logged = logged_steps(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "events.out.tfevents.{secs}.{host}.{}.{}.v2",
            std::process::id(),
            FILE_NUMBER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        let mut file = Self { path, file, logged };
        file.append(&Event {
            wall_time: now(),
            step: 0,
            file_version: Some(FILE_VERSION.to_string()),
            summary: None,
        })?;
        Ok(file)
    }

    fn append(&mut self, event: &Event) -> Result<(), String> {
        // One write per record, straight to the file: nothing waits in a buffer.
        self.file
            .write_all(&frame(&event.encode_to_vec()))
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }

    /// `value` under `tag` at `step`, unless the directory holds that step of it already.
    fn scalar(&mut self, step: i64, tag: &str, value: f64) -> Result<(), String> {
        if self.logged.get(tag).is_some_and(|&last| step <= last) {
            return Ok(());
        }
        self.write(
            step,
            vec![SummaryValue {
                tag: tag.to_string(),
                // TensorBoard's scalars are f32: the nearest to the f64 recorded.
                simple_value: Some(value as f32),
                ..Default::default()
            }],
        )
    }

    /// `value` unless its tag is in the directory already (a resumed run's session start).
    fn write_once(&mut self, step: i64, value: SummaryValue) -> Result<(), String> {
        if self.logged.contains_key(&value.tag) {
            return Ok(());
        }
        self.write(step, vec![value])
    }

    fn write(&mut self, step: i64, value: Vec<SummaryValue>) -> Result<(), String> {
        for v in &value {
            let last = self.logged.entry(v.tag.clone()).or_insert(step);
            *last = (*last).max(step);
        }
        self.append(&Event {
            wall_time: now(),
            step,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }
}

/// The last step of each tag in the event files already in `dir` (none when there are none).
/// A file cut short by a kill is read up to its last whole record, as TensorBoard reads it.
fn logged_steps(dir: &Path) -> HashMap<String, i64> {
    let mut logged = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return logged;
    };
    for entry in entries.flatten() {
        let is_events = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("events.out.tfevents."));
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if !is_events {
            continue;
        }
        for record in records(&bytes).0 {
            let Ok(event) = Event::decode(record) else {
                continue;
            };
            for value in event.summary.iter().flat_map(|s| &s.value) {
                let last = logged.entry(value.tag.clone()).or_insert(event.step);
                *last = (*last).max(event.step);
            }
        }
    }
    logged
}

/// The HParams plugin's session start: the run's settings as hyper-parameters, one session
/// group per run.
fn session_start(config: &TrainConfig, run: &str) -> SummaryValue {
    hparams_value(
        SESSION_START_TAG,
        HParamsPluginData {
            session_start_info: Some(SessionStartInfo {
                hparams: hparams(config),
                group_name: run.to_string(),
                start_time_secs: now(),
            }),
            ..Default::default()
        },
    )
}

fn hparams_value(tag: &str, data: HParamsPluginData) -> SummaryValue {
    SummaryValue {
        tag: tag.to_string(),
        simple_value: None,
        tensor: Some(null_tensor()),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: HPARAMS_PLUGIN.to_string(),
                content: data.encode_to_vec(),
            }),
        }),
    }
}

/// The run's settings as its `config.toml` records them, by dotted key (`optimizer.
/// learning_rate`): numbers, strings and booleans as they are, lists (`model.hidden`) as
/// `512,512`. Where the run is kept and where MNIST came from are no hyper-parameters, nor is
/// where it is logged.
pub(crate) fn hparams(config: &TrainConfig) -> BTreeMap<String, ProtoValue> {
    let mut out = BTreeMap::new();
    let Ok(table) = toml::from_str::<toml::Table>(&config.to_toml()) else {
        return out;
    };
    for (section, keys) in &table {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        if matches!(section.as_str(), "data" | "tracking") {
            continue;
        }
        for (key, value) in keys {
            if section == "run" && matches!(key.as_str(), "artifact_dir" | "name") {
                continue;
            }
            if let Some(value) = proto_value(value) {
                out.insert(format!("{section}.{key}"), value);
            }
        }
    }
    out
}

fn proto_value(value: &toml::Value) -> Option<ProtoValue> {
    let mut out = ProtoValue::default();
    match value {
        toml::Value::Integer(n) => out.number_value = Some(*n as f64),
        toml::Value::Float(x) => out.number_value = Some(*x),
        toml::Value::Boolean(b) => out.bool_value = Some(*b),
        toml::Value::String(s) => out.string_value = Some(s.clone()),
        toml::Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.string_value = Some(items.join(","));
        }
        _ => return None,
    }
    Some(out)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
