//! `--tensorboard DIR`: event files laid out as Keras 3's `keras.callbacks.TensorBoard` lays
//! them out, so that a run looks in TensorBoard as a Keras run does:
//!
//! - `DIR/<run>/train`: `epoch_loss`, `epoch_accuracy` and `epoch_learning_rate` at step
//!   `epoch - 1` (Keras numbers epochs from 0), and `batch_loss` every `log_every_steps` steps
//!   at the global step (Keras's `update_freq`; the epoch's running mean, as Keras logs it);
//! - `DIR/<run>/validation`: `epoch_loss` and `epoch_accuracy`, the same tags, so the two
//!   curves overlay under one tag;
//! - `DIR/<run>`: the HParams plugin's session start (the run's settings as hyper-parameters)
//!   and end (its status, once it finished or failed). No experiment summary is written: TensorBoard builds the experiment
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
    SESSION_END_TAG, SESSION_START_TAG, STATUS_FAILURE, STATUS_SUCCESS, SessionEndInfo,
    SessionStartInfo, Summary, SummaryMetadata, SummaryValue, null_tensor,
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
    /// Keeps the fault for the caller instead of saying it (`log RUN` fails with it).
    quiet: bool,
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
            quiet: false,
        }
    }

    /// Says nothing on stderr: the fault is only [`Tracker::fault`]'s.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Says the first fault once and stops writing; training goes on.
    fn failed(&mut self, error: String) {
        if self.fault.is_none() {
            if !self.quiet {
                eprintln!("warning: --tensorboard: {error}; the run goes on without it");
            }
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

    /// The run's files, each created when its first record is written.
    fn open(&self, run: &TrackedRun<'_>) -> Files {
        let root = self.dir.join(run.run.name());
        let host = crate::run_dir::Owner::me()
            .host
            .unwrap_or_else(|| "localhost".to_string());
        let open = |dir: PathBuf| EventFile::open(dir, &host);
        Files {
            train: open(root.join("train")),
            validation: open(root.join("validation")),
            root: open(root),
        }
    }
}

impl Tracker for TensorBoard {
    fn start(&mut self, run: &TrackedRun<'_>) {
        self.files = Some(self.open(run));
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
        // An interrupted run may be resumed: its session is not over. TensorBoard keeps the
        // first session end it reads of a run, so only a last one is written.
        let status = match status {
            RunStatus::Finished => Some(STATUS_SUCCESS),
            RunStatus::Failed => Some(STATUS_FAILURE),
            RunStatus::Interrupted | RunStatus::Running => None,
        };
        if let Some(status) = status {
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
            self.with_files(|files| files.root.write_once(0, end));
        }
        // Every record is already in the files; they close here.
        self.files = None;
    }

    fn fault(&self) -> Option<String> {
        self.fault.clone()
    }
}

/// One event file of this process, in a directory that may hold others' (a resumed run's).
/// Created with its first record, so that logging nothing new (`log RUN` of a run logged
/// already) leaves no file behind.
struct EventFile {
    dir: PathBuf,
    host: String,
    file: Option<(PathBuf, std::fs::File)>,
    /// The last step of each tag in the directory's files: what is logged already.
    logged: HashMap<String, i64>,
}

impl EventFile {
    fn open(dir: PathBuf, host: &str) -> Self {
        Self {
            logged: logged_steps(&dir),
            dir,
            host: host.to_string(),
            file: None,
        }
    }

    /// Creates the directory and a new event file in it, named as TensorFlow names its own
    /// (`events.out.tfevents.<secs>.<host>.<pid>.<n>.v2`), its first record the file version.
    fn create(&self) -> Result<(PathBuf, std::fs::File), String> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "events.out.tfevents.{secs}.{}.{}.{}.v2",
            self.host,
            std::process::id(),
            FILE_NUMBER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        let version = Event {
            wall_time: now(),
            step: 0,
            file_version: Some(FILE_VERSION.to_string()),
            summary: None,
        };
        file.write_all(&frame(&version.encode_to_vec()))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        Ok((path, file))
    }

    fn append(&mut self, event: &Event) -> Result<(), String> {
        if self.file.is_none() {
            self.file = Some(self.create()?);
        }
        let Some((path, file)) = &mut self.file else {
            return Ok(());
        };
        // One write per record, straight to the file: nothing waits in a buffer.
        file.write_all(&frame(&event.encode_to_vec()))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))
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
    // Saved only when not the tutorial's, but a sweep's trials compare on them either way.
    let always = [
        (
            "optimizer.name",
            toml::Value::try_from(config.optimizer.name),
        ),
        (
            "optimizer.schedule",
            toml::Value::try_from(config.optimizer.schedule),
        ),
        ("model.dropout", toml::Value::try_from(config.model.dropout)),
        (
            "train.validation_split",
            toml::Value::try_from(config.train.validation_split),
        ),
        (
            "augment.enabled",
            toml::Value::try_from(config.augment.enabled),
        ),
        (
            "early_stopping.enabled",
            toml::Value::try_from(config.early_stopping.enabled),
        ),
        (
            "reduce_lr_on_plateau.enabled",
            toml::Value::try_from(config.reduce_lr_on_plateau.enabled),
        ),
    ];
    for (key, value) in always {
        if let Some(value) = value.ok().as_ref().and_then(proto_value) {
            out.entry(key.to_string()).or_insert(value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{History, RunInfo};

    /// Written by TensorBoard's own `EventFileWriter` (scripts/make_tensorboard_fixture.py).
    const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/tensorboard/events.bin");

    fn fixture_events() -> Vec<Event> {
        let (records, fault) = records(FIXTURE);
        assert_eq!(fault, None);
        records.iter().map(|r| Event::decode(*r).unwrap()).collect()
    }

    #[test]
    fn our_scalar_event_is_byte_for_byte_tensorboards() {
        let events = fixture_events();
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        let ours = Event {
            wall_time: 1_700_000_000.5,
            step: 3,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: "epoch_loss".into(),
                    simple_value: Some(0.25),
                    ..Default::default()
                }],
            }),
        };
        assert_eq!(events[1], ours);
        let (records, _) = records(FIXTURE);
        assert_eq!(ours.encode_to_vec(), records[1]);
    }

    #[test]
    fn our_session_start_is_tensorboards() {
        let events = fixture_events();
        let theirs = &events[2].summary.as_ref().unwrap().value[0];
        let mut hparams = BTreeMap::new();
        let number = |x| ProtoValue {
            number_value: Some(x),
            ..Default::default()
        };
        hparams.insert("optimizer.learning_rate".to_string(), number(0.001));
        hparams.insert(
            "optimizer.name".to_string(),
            ProtoValue {
                string_value: Some("rmsprop".into()),
                ..Default::default()
            },
        );
        hparams.insert(
            "train.shuffle".to_string(),
            ProtoValue {
                bool_value: Some(true),
                ..Default::default()
            },
        );
        let data = HParamsPluginData {
            session_start_info: Some(SessionStartInfo {
                hparams,
                group_name: "run-1".into(),
                start_time_secs: 1_700_000_000.0,
            }),
            ..Default::default()
        };
        let ours = hparams_value(SESSION_START_TAG, data.clone());
        // The same tag, tensor and plugin; the content the same message (a map's entries may
        // come in any order, so the bytes are compared decoded).
        assert_eq!(theirs.tag, ours.tag);
        assert_eq!(theirs.tensor, ours.tensor);
        let plugin = |v: &SummaryValue| v.metadata.clone().unwrap().plugin_data.unwrap();
        assert_eq!(plugin(theirs).plugin_name, HPARAMS_PLUGIN);
        let content = HParamsPluginData::decode(&plugin(theirs).content[..]).unwrap();
        assert_eq!(content, data);
        assert_eq!(
            content.encode_to_vec().len(),
            plugin(theirs).content.len(),
            "nothing of theirs is left out of ours"
        );
    }

    const EPOCHS: [EpochMetrics; 3] = [
        EpochMetrics {
            loss: 0.5,
            accuracy: 0.8,
            val_loss: 0.4,
            val_accuracy: 0.85,
        },
        EpochMetrics {
            loss: 0.3,
            accuracy: 0.9,
            val_loss: 0.25,
            val_accuracy: 0.925,
        },
        EpochMetrics {
            loss: 0.123456789,
            accuracy: 0.987654321,
            val_loss: 0.1,
            val_accuracy: 0.97,
        },
    ];

    /// Every (tag, step, value) of the event files in `dir`, in the order written, and the
    /// file_version of each file.
    /// A scalar as read back: its tag, step and value.
    type Logged = (String, i64, Option<f32>);

    fn read_dir(dir: &Path) -> (Vec<Logged>, Vec<String>) {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        // In the order written: by the number this process gave each file (`.<n>.v2`).
        let number = |p: &PathBuf| -> u64 {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.rsplit('.').nth(1).unwrap().parse().unwrap()
        };
        paths.sort_by_key(number);
        let (mut values, mut versions) = (Vec::new(), Vec::new());
        for path in paths {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.starts_with("events.out.tfevents.") && name.ends_with(".v2"));
            let bytes = std::fs::read(&path).unwrap();
            let (records, fault) = records(&bytes);
            assert_eq!(fault, None);
            let first = Event::decode(records[0]).unwrap();
            versions.push(first.file_version.unwrap());
            for record in &records[1..] {
                let event = Event::decode(*record).unwrap();
                for v in event.summary.unwrap().value {
                    values.push((v.tag, event.step, v.simple_value));
                }
            }
        }
        (values, versions)
    }

    fn train(dir: &Path, run: &RunDir, epochs: std::ops::RangeInclusive<usize>) -> TensorBoard {
        let mut config = TrainConfig::default();
        config.model.hidden = vec![64, 32];
        let mut history = History::default();
        for m in &EPOCHS[..epochs.start() - 1] {
            history.push(*m);
        }
        let mut tb = TensorBoard::new(dir.to_path_buf());
        tb.start(&TrackedRun {
            run,
            info: &RunInfo::sample("r"),
            config: &config,
            history: &history,
        });
        for epoch in epochs {
            tb.step(epoch as u64 * 10, 1.0 / epoch as f64);
            tb.epoch(epoch, &EPOCHS[epoch - 1], 0.001);
        }
        tb
    }

    #[test]
    fn a_run_reads_back_as_keras_lays_it_out() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r").unwrap();
        let tb_dir = tmp.path().join("tb");
        let mut tb = train(&tb_dir, &run, 1..=3);
        tb.finish(RunStatus::Finished, &run);
        assert_eq!(tb.fault(), None);

        let (train, versions) = read_dir(&tb_dir.join("r/train"));
        assert_eq!(versions, [FILE_VERSION]);
        let at = |values: &[Logged], tag: &str| -> Vec<(i64, f32)> {
            values
                .iter()
                .filter(|(t, ..)| t == tag)
                .map(|(_, step, v)| (*step, v.unwrap()))
                .collect()
        };
        let epochs = |f: fn(&EpochMetrics) -> f64| -> Vec<(i64, f32)> {
            EPOCHS
                .iter()
                .enumerate()
                .map(|(i, m)| (i as i64, f(m) as f32))
                .collect()
        };
        assert_eq!(at(&train, "epoch_loss"), epochs(|m| m.loss));
        assert_eq!(at(&train, "epoch_accuracy"), epochs(|m| m.accuracy));
        assert_eq!(
            at(&train, "epoch_learning_rate"),
            vec![(0, 0.001), (1, 0.001), (2, 0.001)]
        );
        assert_eq!(
            at(&train, "batch_loss"),
            vec![(10, 1.0), (20, 0.5), (30, (1.0f64 / 3.0) as f32)]
        );
        let (valid, _) = read_dir(&tb_dir.join("r/validation"));
        assert_eq!(at(&valid, "epoch_loss"), epochs(|m| m.val_loss));
        assert_eq!(at(&valid, "epoch_accuracy"), epochs(|m| m.val_accuracy));
        assert_eq!(valid.len(), 6, "{valid:?}");

        let (root, _) = read_dir(&tb_dir.join("r"));
        let tags: Vec<_> = root.iter().map(|(t, ..)| t.as_str()).collect();
        assert_eq!(tags, [SESSION_START_TAG, SESSION_END_TAG]);
        let session = session_data(&tb_dir.join("r"));
        let start = session[0].session_start_info.clone().unwrap();
        assert_eq!(start.group_name, "r");
        assert_eq!(
            start.hparams["model.hidden"].string_value.as_deref(),
            Some("64,32")
        );
        assert_eq!(start.hparams["train.epochs"].number_value, Some(5.0));
        assert_eq!(start.hparams["train.shuffle"].bool_value, Some(true));
        assert_eq!(
            start.hparams["optimizer.name"].string_value.as_deref(),
            Some("rmsprop")
        );
        assert!(!start.hparams.contains_key("run.artifact_dir"));
        assert_eq!(
            session[1].session_end_info.clone().unwrap().status,
            STATUS_SUCCESS
        );
    }

    fn session_data(dir: &Path) -> Vec<HParamsPluginData> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(path).unwrap();
            for record in records(&bytes).0 {
                let event = Event::decode(record).unwrap();
                for v in event.summary.into_iter().flat_map(|s| s.value) {
                    let plugin = v.metadata.unwrap().plugin_data.unwrap();
                    out.push(HParamsPluginData::decode(&plugin.content[..]).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn a_resumed_run_adds_files_without_logging_a_step_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r").unwrap();
        let tb_dir = tmp.path().join("tb");
        // Killed after epoch 2 was logged (no finish), resumed after epoch 1: epoch 2 is
        // trained again and must not be logged again.
        drop(train(&tb_dir, &run, 1..=2));
        let mut tb = train(&tb_dir, &run, 2..=3);
        tb.finish(RunStatus::Finished, &run);
        let (train, versions) = read_dir(&tb_dir.join("r/train"));
        assert_eq!(versions.len(), 2, "a new file beside the first");
        let steps: Vec<_> = train
            .iter()
            .filter(|(t, ..)| t == "epoch_loss")
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(steps, [0, 1, 2]);
        let batches: Vec<_> = train
            .iter()
            .filter(|(t, ..)| t == "batch_loss")
            .map(|(_, s, _)| *s)
            .collect();
        assert_eq!(batches, [10, 20, 30]);
        let (valid, _) = read_dir(&tb_dir.join("r/validation"));
        assert_eq!(valid.len(), 6);
        let (root, _) = read_dir(&tb_dir.join("r"));
        let tags: Vec<_> = root.iter().map(|(t, ..)| t.as_str()).collect();
        assert_eq!(
            tags,
            [SESSION_START_TAG, SESSION_END_TAG],
            "one session start"
        );
    }

    #[test]
    fn a_write_that_fails_is_a_fault_and_nothing_more() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r").unwrap();
        // A file where the directory goes: nothing can be created under it.
        let blocked = tmp.path().join("tb");
        std::fs::write(&blocked, b"not a directory").unwrap();
        let mut tb = train(&blocked, &run, 1..=2);
        tb.finish(RunStatus::Finished, &run);
        let fault = tb.fault().expect("the fault is kept");
        assert!(fault.contains("tb/r"), "{fault}");
        assert_eq!(std::fs::read(&blocked).unwrap(), b"not a directory");
    }

    #[test]
    fn a_record_cut_by_a_kill_leaves_the_rest_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), "r").unwrap();
        let tb_dir = tmp.path().join("tb");
        drop(train(&tb_dir, &run, 1..=2));
        let dir = tb_dir.join("r/train");
        let path = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        // What was whole is read, and a resumed run logs the epoch whose record was cut.
        let mut tb = train(&tb_dir, &run, 2..=2);
        tb.finish(RunStatus::Interrupted, &run);
        let logged = logged_steps(&dir);
        assert_eq!(logged["epoch_loss"], 1);
        assert_eq!(logged["epoch_learning_rate"], 1);
    }
}
