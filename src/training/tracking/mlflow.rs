//! `--mlflow URI`: the run logged to an MLflow tracking server through its REST API 2.0
//! (<https://mlflow.org/docs/latest/api_reference/rest-api.html>): an experiment found or
//! created by name, an MLflow run with the config as params (`section.key`), every epoch's
//! metrics with the epoch as their step, the training loss every N steps (`batch_loss` at its
//! global step), tags (host, backend, kernels, ...), the run directory's files as artifacts
//! through the server's artifact proxy, and the end: FINISHED, FAILED or KILLED.
//!
//! Every request goes from one background thread fed by a channel, each with a short timeout,
//! so the training never waits on the server; `finish` waits a bounded time for the queue to
//! drain. The first fault is said once on stderr and nothing more is sent: `mnist-mlp log RUN
//! --mlflow URI` uploads the recorded run afterwards.
//!
//! A sweep's trial (a run in `<sweep>/runs/`, next to the sweep's `sweep.toml`) goes to an
//! experiment named after the sweep (unless `tracking.mlflow_experiment` was changed from its
//! default), under a parent run found or created by its tag `mnist-mlp.sweep`.

use super::{TrackedRun, Tracker};
use crate::run_dir::{EpochMetrics, History, RunDir, RunStatus};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `tracking.mlflow_experiment`'s default: a sweep's trials go to the sweep's experiment instead.
pub const DEFAULT_EXPERIMENT: &str = "mnist-mlp";
/// Connecting, and a JSON call's whole exchange.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// One artifact's upload (a checkpoint is a few MB).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `finish` waits for what is queued to be sent.
pub const FINISH_WAIT: Duration = Duration::from_secs(10);
/// MLflow's limits on one `runs/log-batch`.
const BATCH_METRICS: usize = 1000;
const BATCH_PARAMS: usize = 100;

/// An MLflow setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("{key}: {}", crate::config::MLFLOW_URI.replacen("must be", &format!("{uri:?} is not"), 1))]
    Scheme { key: &'static str, uri: String },
}

/// Checks that `uri` (the value of setting `key`) is one this client speaks to.
pub fn check_uri(key: &'static str, uri: &str) -> Result<(), MlflowError> {
    if crate::config::is_mlflow_uri(uri) {
        Ok(())
    } else {
        Err(MlflowError::Scheme {
            key,
            uri: uri.to_string(),
        })
    }
}

/// The MLflow tracker of one run (see the module's documentation).
pub struct Mlflow {
    uri: String,
    experiment: String,
    queue: Option<Sender<Msg>>,
    done: Option<Receiver<()>>,
    /// The first fault, once said.
    said: Said,
    /// `log RUN`: a recorded run uploaded whole (see [`Start::replay`]).
    replay: bool,
    /// Epochs whose four metrics are queued already (those recorded before a resume or replay).
    logged_epochs: usize,
}

impl Mlflow {
    /// A tracker for the server at `uri` (setting `key`), logging to `experiment`.
    pub fn new(key: &'static str, uri: &str, experiment: &str) -> Result<Self, MlflowError> {
        check_uri(key, uri)?;
        Ok(Self {
            uri: uri.trim_end_matches('/').to_string(),
            experiment: experiment.to_string(),
            queue: None,
            done: None,
            said: Said::default(),
            replay: false,
            logged_epochs: 0,
        })
    }

    fn send(&self, msg: Msg) {
        if let Some(queue) = &self.queue {
            // A closed queue means the worker gave up after saying why.
            let _ = queue.send(msg);
        }
    }
}

impl Tracker for Mlflow {
    fn start(&mut self, tracked: &TrackedRun<'_>) {
        let sweep = sweep_of(tracked.run.path());
        let experiment = match &sweep {
            Some(sweep) if self.experiment == DEFAULT_EXPERIMENT => sweep.clone(),
            _ => self.experiment.clone(),
        };
        let run_dir = std::path::absolute(tracked.run.path())
            .unwrap_or_else(|_| tracked.run.path().to_path_buf());
        // A training of this process (new or resumed), else `log` replaying a recorded run,
        // whatever it recorded (a run whose process died still says `running`).
        let live = tracked.info.status == RunStatus::Running
            && tracked.info.owner.pid == std::process::id();
        let mut tags = tags(tracked, &run_dir);
        // Which logged it: the training itself, or `log` afterwards (a new MLflow run each time).
        let source = if live { "train" } else { "log" };
        tags.push(("mnist-mlp.source".into(), source.into()));
        let start = Start {
            experiment,
            sweep,
            run_name: tracked.info.name.clone(),
            start_ms: rfc3339_ms(&tracked.info.started).unwrap_or_else(now_ms),
            params: params(tracked.config),
            tags,
            run_dir: run_dir.display().to_string(),
            resume: live && tracked.history.epochs() > 0,
            replay: !live,
            history: history_metrics(tracked.history),
        };
        self.logged_epochs = tracked.history.epochs();
        self.replay = !live;
        let (queue, inbox) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let worker = Worker {
            client: Client::new(&self.uri),
            said: self.said.clone(),
            run: None,
            label: tracked.run.path().display().to_string(),
            replay: !live,
            sent: Sent::default(),
        };
        let spawned = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || worker.serve(inbox, done_tx));
        if let Err(e) = spawned {
            let run = tracked.run.path().display().to_string();
            let fault = format!("cannot start its thread: {e}");
            worker_fault(&self.said, &self.uri, &fault, live.then_some(run.as_str()));
            return;
        }
        self.queue = Some(queue);
        self.done = Some(done);
        self.send(Msg::Start(Box::new(start)));
    }

    fn step(&mut self, step: u64, loss: f64) {
        self.send(Msg::Metrics(vec![Metric::new("batch_loss", loss, step)]));
    }

    fn epoch(&mut self, epoch: usize, metrics: &EpochMetrics, learning_rate: f64) {
        let step = epoch as u64;
        let mut batch = vec![Metric::new("learning_rate", learning_rate, step)];
        // A replay or a resume may tell epochs whose metrics went with the start already.
        if epoch > self.logged_epochs {
            batch.extend(epoch_metrics(metrics, step));
            self.logged_epochs = epoch;
        }
        self.send(Msg::Metrics(batch));
    }

    fn finish(&mut self, status: RunStatus, run: &RunDir) {
        let end_ms = run
            .read_info()
            .ok()
            .and_then(|info| info.ended)
            .and_then(|ended| rfc3339_ms(&ended))
            .unwrap_or_else(now_ms);
        let files = artifact_files(run.path());
        self.send(Msg::Finish(Finish {
            status: mlflow_status(status),
            end_ms,
            files,
        }));
        // Closing the queue lets the worker end once it has sent the rest.
        self.queue = None;
        let Some(done) = self.done.take() else { return };
        // `log` waits for the whole upload (each request has its own timeout); a training
        // only a bounded time, and `log` uploads the rest later.
        if self.replay {
            let _ = done.recv();
        } else if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(FINISH_WAIT) {
            let run = run.path().display().to_string();
            let waited = FINISH_WAIT.as_secs();
            let fault = format!("still sending after {waited} s; stopped waiting");
            worker_fault(&self.said, &self.uri, &fault, Some(&run));
        }
    }

    fn fault(&self) -> Option<String> {
        self.said.lock().ok().and_then(|said| said.clone())
    }
}

/// MLflow's name for how a run ended.
fn mlflow_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
        // Ctrl-C, SIGINT or SIGTERM, or the kill key; a sweep's trial paused at its rung too.
        RunStatus::Interrupted | RunStatus::Running => "KILLED",
    }
}

/// The sweep whose trial the run at `run` is: its directory is `<sweep>/runs/<trial>` and
/// `<sweep>/sweep.toml` exists (docs/sweeps.md, "Where a sweep goes"). The sweep's name is
/// its directory's.
pub fn sweep_of(run: &Path) -> Option<String> {
    let run = std::path::absolute(run).ok()?;
    let runs = run.parent()?;
    let sweep = runs.parent()?;
    if runs.file_name()? != "runs" || !sweep.join("sweep.toml").is_file() {
        return None;
    }
    Some(sweep.file_name()?.to_string_lossy().into_owned())
}

/// Every setting of `config` as `section.key` = its TOML value (strings bare).
fn params(config: &crate::config::TrainConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(table) = toml::Table::try_from(config) {
        flatten("", &table, &mut out);
    }
    out
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let key = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => flatten(&format!("{key}."), inner, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

/// The tags of a run: where and how it trained.
fn tags(tracked: &TrackedRun<'_>, run_dir: &Path) -> Vec<(String, String)> {
    let info = tracked.info;
    let host = info
        .owner
        .host
        .clone()
        .unwrap_or_else(crate::run_dir::hostname);
    let mut tags = vec![
        ("mlflow.runName", info.name.clone()),
        ("mlflow.source.name", "mnist-mlp".to_string()),
        ("mlflow.source.type", "LOCAL".to_string()),
        // No commit is built into the binary: the version run.json records stands for it.
        ("mnist-mlp.version", info.mnist_mlp_version.clone()),
        ("mnist-mlp.run_dir", run_dir.display().to_string()),
        ("host", host),
        ("backend", info.backend.clone()),
        ("device", info.device.clone()),
        ("validated_on", info.validated_on.to_string()),
    ];
    if let Some(kernels) = info.kernels {
        tags.push(("kernels", kernels.to_string()));
    }
    if let Some(simd) = info.simd {
        tags.push(("simd", simd.to_string()));
    }
    if let Some(threads) = info.threads {
        tags.push(("threads", threads.to_string()));
    }
    tags.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn epoch_metrics(m: &EpochMetrics, step: u64) -> [Metric; 4] {
    [
        Metric::new("loss", m.loss, step),
        Metric::new("accuracy", m.accuracy, step),
        Metric::new("val_loss", m.val_loss, step),
        Metric::new("val_accuracy", m.val_accuracy, step),
    ]
}

fn history_metrics(history: &History) -> Vec<Metric> {
    (0..history.epochs())
        .filter_map(|i| history.get(i).map(|m| epoch_metrics(&m, i as u64 + 1)))
        .flatten()
        .collect()
}

/// The run directory's files, `(path relative to it with '/', path)`, sorted.
fn artifact_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = path.strip_prefix(dir) {
                        let parts: Vec<String> = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect();
                        out.push((parts.join("/"), path));
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A tracker's first fault, shared with its worker.
type Said = Arc<Mutex<Option<String>>>;

/// Keeps the tracker's first fault and says it, once per tracker: one line naming the server,
/// with how to upload the run at `run` later. `log` (no `run`) fails with it instead.
fn worker_fault(said: &Said, uri: &str, fault: &str, run: Option<&str>) {
    let Ok(mut first) = said.lock() else { return };
    if first.is_some() {
        return;
    }
    *first = Some(format!("mlflow: {uri}: {fault}"));
    if let Some(run) = run {
        eprintln!(
            "mlflow: {uri}: {fault}; nothing more is sent there, the training goes on; \
             `mnist-mlp log {run} --mlflow {uri}` uploads the run whole later"
        );
    }
}

/// A metric value at a step, timestamped when it was measured.
#[derive(Debug, Clone)]
struct Metric {
    key: &'static str,
    value: f64,
    step: u64,
    timestamp: i64,
}

impl Metric {
    fn new(key: &'static str, value: f64, step: u64) -> Self {
        Self {
            key,
            value,
            step,
            timestamp: now_ms(),
        }
    }

    fn to_json(&self) -> Value {
        // JSON has no NaN or infinities; protobuf's JSON mapping (which MLflow parses) spells
        // them as strings.
        let value = if self.value.is_finite() {
            json!(self.value)
        } else if self.value.is_nan() {
            json!("NaN")
        } else if self.value > 0.0 {
            json!("Infinity")
        } else {
            json!("-Infinity")
        };
        json!({"key": self.key, "value": value, "timestamp": self.timestamp, "step": self.step})
    }
}

/// What the worker thread is asked to send.
enum Msg {
    Start(Box<Start>),
    Metrics(Vec<Metric>),
    Finish(Finish),
}

struct Start {
    experiment: String,
    sweep: Option<String>,
    run_name: String,
    start_ms: i64,
    params: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    /// The run directory's absolute path (tag `mnist-mlp.run_dir`): a resumed run finds its
    /// MLflow run by it.
    run_dir: String,
    resume: bool,
    /// `mnist-mlp log`: a recorded run uploaded whole, as a new MLflow run.
    replay: bool,
    /// The epochs recorded before this start, for a new MLflow run.
    history: Vec<Metric>,
}

struct Finish {
    status: &'static str,
    end_ms: i64,
    files: Vec<(String, PathBuf)>,
}

/// A request that did not work: the server's answer or the transport's fault.
#[derive(Debug)]
enum Fault {
    Status {
        code: u16,
        error_code: String,
        message: String,
    },
    Transport(String),
    Answer(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Status {
                code,
                error_code,
                message,
            } => {
                write!(f, "HTTP {code}")?;
                if !error_code.is_empty() {
                    write!(f, " {error_code}")?;
                }
                if !message.is_empty() {
                    let first = message.lines().next().unwrap_or_default();
                    write!(f, ": {first}")?;
                }
                Ok(())
            }
            Fault::Transport(e) => f.write_str(e),
            Fault::Answer(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl Fault {
    fn is(&self, code: &str) -> bool {
        matches!(self, Fault::Status { error_code, .. } if error_code == code)
    }
}

/// The REST API of one tracking server.
struct Client {
    base: String,
    agent: ureq::Agent,
    uploads: ureq::Agent,
}

impl Client {
    fn new(base: &str) -> Self {
        let agent = |timeout| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_connect(Some(CALL_TIMEOUT))
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build()
                .into()
        };
        Self {
            base: base.to_string(),
            agent: agent(CALL_TIMEOUT),
            uploads: agent(UPLOAD_TIMEOUT),
        }
    }

    /// `POST /api/2.0/mlflow/<endpoint>` with a JSON body; the JSON answer.
    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, Fault> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let response = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        answer(response)
    }

    /// `GET /api/2.0/mlflow/<endpoint>?<query>`; the JSON answer.
    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, Fault> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let mut request = self.agent.get(&url);
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        answer(request.call())
    }

    /// `PUT /api/2.0/mlflow-artifacts/artifacts/<path>`: one file through the artifact proxy.
    fn put_artifact(&self, path: &str, bytes: &[u8]) -> Result<(), Fault> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            url_path(path)
        );
        let response = self
            .uploads
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        answer(response).map(|_| ())
    }
}

/// The JSON of a 2xx answer, or the fault.
fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, Fault> {
    let mut response = response.map_err(|e| Fault::Transport(e.to_string()))?;
    let code = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if !(200..300).contains(&code) {
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        return Err(Fault::Status {
            code,
            error_code: field("error_code"),
            message: field("message"),
        });
    }
    Ok(parsed.unwrap_or(Value::Null))
}

/// `path` with each segment percent-encoded (RFC 3986's unreserved characters kept).
fn url_path(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn string_at<'v>(value: &'v Value, path: &[&str]) -> Result<&'v str, Fault> {
    let mut at = value;
    for key in path {
        at = at
            .get(key)
            .ok_or_else(|| Fault::Answer(format!("no {}", path.join("."))))?;
    }
    at.as_str()
        .ok_or_else(|| Fault::Answer(format!("{} is not a string", path.join("."))))
}

fn pairs(items: &[(String, String)]) -> Vec<Value> {
    items
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

/// The MLflow run the worker logs to.
struct Run {
    id: String,
    experiment: String,
    experiment_id: String,
    /// Where its artifacts go under the proxy's root (`<experiment_id>/<run_id>/artifacts`).
    artifacts: Result<String, String>,
    replay: bool,
}

/// What went to the server, for `log`'s account of it.
#[derive(Default)]
struct Sent {
    params: usize,
    metrics: usize,
    artifacts: usize,
}

/// The background thread: sends what it is given, in order, until the first fault.
struct Worker {
    client: Client,
    said: Said,
    run: Option<Run>,
    /// The run directory, for the hint after a fault.
    label: String,
    /// `log RUN`: faults are returned, not said (see [`worker_fault`]).
    replay: bool,
    sent: Sent,
}

impl Worker {
    fn serve(mut self, inbox: Receiver<Msg>, done: Sender<()>) {
        while let Ok(first) = inbox.recv() {
            // What queued up meanwhile goes together: the step losses in one request.
            let mut queued = vec![first];
            queued.extend(inbox.try_iter());
            for msg in coalesce(queued) {
                if let Err(fault) = self.handle(msg) {
                    let run = (!self.replay).then_some(self.label.as_str());
                    worker_fault(&self.said, &self.client.base, &fault.to_string(), run);
                    // Dropping `done` unblocks `finish`.
                    return;
                }
            }
        }
        let _ = done.send(());
    }

    fn handle(&mut self, msg: Msg) -> Result<(), Fault> {
        match msg {
            Msg::Start(start) => self.start(*start),
            Msg::Metrics(metrics) => self.log_metrics(&metrics),
            Msg::Finish(finish) => self.finish(finish),
        }
    }

    fn run(&self) -> Result<&Run, Fault> {
        self.run
            .as_ref()
            .ok_or_else(|| Fault::Answer("no MLflow run was created".into()))
    }

    fn start(&mut self, start: Start) -> Result<(), Fault> {
        let experiment_id = self.experiment_id(&start.experiment)?;
        let parent = match &start.sweep {
            Some(sweep) => Some(self.sweep_parent(&experiment_id, sweep)?),
            None => None,
        };
        if start.resume
            && let Some(found) = self.find_run(&experiment_id, &start.run_dir)?
        {
            self.client.post(
                "runs/update",
                &json!({"run_id": string_at(&found, &["info", "run_id"])?, "status": "RUNNING"}),
            )?;
            self.run = Some(self.adopt(&found, &start, experiment_id)?);
            return Ok(());
        }
        let mut tags = start.tags.clone();
        if let Some(parent) = parent {
            tags.push(("mlflow.parentRunId".into(), parent));
        }
        let created = self.client.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": start.run_name,
                "start_time": start.start_ms,
                "tags": pairs(&tags),
            }),
        )?;
        self.run = Some(self.adopt(&created["run"], &start, experiment_id)?);
        for chunk in start.params.chunks(BATCH_PARAMS) {
            let run_id = &self.run()?.id;
            self.client.post(
                "runs/log-batch",
                &json!({"run_id": run_id, "params": pairs(chunk)}),
            )?;
            self.sent.params += chunk.len();
        }
        self.log_metrics(&start.history)
    }

    fn adopt(&self, run: &Value, start: &Start, experiment_id: String) -> Result<Run, Fault> {
        let id = string_at(run, &["info", "run_id"])?.to_string();
        let uri = string_at(run, &["info", "artifact_uri"])?;
        Ok(Run {
            id,
            experiment: start.experiment.clone(),
            experiment_id,
            artifacts: proxied_path(uri),
            replay: start.replay,
        })
    }

    /// The experiment named `name`, created when there is none.
    fn experiment_id(&self, name: &str) -> Result<String, Fault> {
        match self
            .client
            .get("experiments/get-by-name", &[("experiment_name", name)])
        {
            Ok(found) => return Ok(string_at(&found, &["experiment", "experiment_id"])?.into()),
            Err(fault) if fault.is("RESOURCE_DOES_NOT_EXIST") => {}
            Err(fault) => return Err(fault),
        }
        match self
            .client
            .post("experiments/create", &json!({"name": name}))
        {
            Ok(created) => Ok(string_at(&created, &["experiment_id"])?.into()),
            // Another trial of the sweep created it meanwhile.
            Err(fault) if fault.is("RESOURCE_ALREADY_EXISTS") => {
                let found = self
                    .client
                    .get("experiments/get-by-name", &[("experiment_name", name)])?;
                Ok(string_at(&found, &["experiment", "experiment_id"])?.into())
            }
            Err(fault) => Err(fault),
        }
    }

    /// The runs of `experiment_id` that match `filter`, oldest first.
    fn search(&self, experiment_id: &str, filter: &str) -> Result<Vec<Value>, Fault> {
        let found = self.client.post(
            "runs/search",
            &json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "max_results": 10,
                "order_by": ["attributes.start_time ASC"],
            }),
        )?;
        Ok(found["runs"].as_array().cloned().unwrap_or_default())
    }

    /// The MLflow run an earlier start of this run directory logged to, if any.
    fn find_run(&self, experiment_id: &str, run_dir: &str) -> Result<Option<Value>, Fault> {
        if run_dir.contains('\'') {
            return Ok(None);
        }
        let filter = format!("tags.`mnist-mlp.run_dir` = '{run_dir}'");
        Ok(self.search(experiment_id, &filter)?.pop())
    }

    /// The sweep's parent run: the oldest with tag `mnist-mlp.sweep` = `sweep`, created when
    /// there is none. Two trials starting at once may both create one: the younger is deleted.
    fn sweep_parent(&self, experiment_id: &str, sweep: &str) -> Result<String, Fault> {
        // Sweep names are plain file names (docs/sweeps.md): no quote to escape.
        let filter = format!("tags.`mnist-mlp.sweep` = '{sweep}'");
        if let Some(found) = self.search(experiment_id, &filter)?.first() {
            return Ok(string_at(found, &["info", "run_id"])?.into());
        }
        let created = self.client.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": sweep,
                "start_time": now_ms(),
                "tags": [
                    {"key": "mnist-mlp.sweep", "value": sweep},
                    {"key": "mlflow.runName", "value": sweep},
                    {"key": "mlflow.source.name", "value": "mnist-mlp sweep"},
                ],
            }),
        )?;
        let mine = string_at(&created, &["run", "info", "run_id"])?.to_string();
        // The parent only groups the trials: it holds no training of its own.
        self.client.post(
            "runs/update",
            &json!({"run_id": mine, "status": "FINISHED", "end_time": now_ms()}),
        )?;
        let oldest = match self.search(experiment_id, &filter)?.first() {
            Some(found) => string_at(found, &["info", "run_id"])?.to_string(),
            None => mine.clone(),
        };
        if oldest != mine {
            self.client.post("runs/delete", &json!({"run_id": mine}))?;
        }
        Ok(oldest)
    }

    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), Fault> {
        for chunk in metrics.chunks(BATCH_METRICS) {
            let body: Vec<Value> = chunk.iter().map(Metric::to_json).collect();
            let run_id = &self.run()?.id;
            self.client.post(
                "runs/log-batch",
                &json!({"run_id": run_id, "metrics": body}),
            )?;
            self.sent.metrics += chunk.len();
        }
        Ok(())
    }

    fn finish(&mut self, finish: Finish) -> Result<(), Fault> {
        let run = self.run()?;
        let root = run.artifacts.clone().map_err(Fault::Answer)?;
        let mut uploaded = 0;
        for (name, path) in &finish.files {
            // A file that went between listing and reading (a checkpoint pruned) is skipped.
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            self.client
                .put_artifact(&format!("{root}/{name}"), &bytes)?;
            uploaded += 1;
        }
        self.sent.artifacts = uploaded;
        let run = self.run()?;
        self.client.post(
            "runs/update",
            &json!({"run_id": run.id, "status": finish.status, "end_time": finish.end_ms}),
        )?;
        if run.replay {
            println!(
                "mlflow: {} -> {}: new MLflow run {} in experiment {} ({}): {} params, {} \
                 metric values, {} artifacts, status {}",
                self.label,
                self.client.base,
                run.id,
                run.experiment,
                run.experiment_id,
                self.sent.params,
                self.sent.metrics,
                self.sent.artifacts,
                finish.status
            );
        }
        Ok(())
    }
}

/// Consecutive metric batches merged into one.
fn coalesce(queued: Vec<Msg>) -> Vec<Msg> {
    let mut out: Vec<Msg> = Vec::new();
    for msg in queued {
        match (out.last_mut(), msg) {
            (Some(Msg::Metrics(batch)), Msg::Metrics(more)) => batch.extend(more),
            (_, msg) => out.push(msg),
        }
    }
    out
}

/// The path under the artifact proxy's root of an MLflow run's `artifact_uri`, which the
/// server gives as `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts` (optionally with
/// `//host:port` after the scheme) when it serves artifacts itself (`mlflow server`'s default,
/// `--serve-artifacts`). Any other store (a local path, s3://) the server cannot take uploads
/// for: the reason, said when the artifacts are due.
fn proxied_path(artifact_uri: &str) -> Result<String, String> {
    let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
        return Err(format!(
            "its artifact store {artifact_uri} is not served through the tracking server \
             (start it with --serve-artifacts, the default of `mlflow server`)"
        ));
    };
    let path = match rest.strip_prefix("//") {
        Some(after_host) => after_host.find('/').map_or("", |i| &after_host[i..]),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn only_http_and_https_uris_are_taken() {
        for good in [
            "http://127.0.0.1:5000",
            "https://mlflow.example.com/",
            "HTTP://h",
        ] {
            assert!(check_uri("tracking.mlflow", good).is_ok(), "{good}");
        }
        for bad in [
            "file:///tmp/mlruns",
            "databricks",
            "mlruns",
            "http://",
            "ftp://h",
        ] {
            let error = check_uri("tracking.mlflow", bad).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("tracking.mlflow: {bad:?} is not the http://")),
                "{error}"
            );
        }
    }

    #[test]
    fn the_proxied_path_is_the_artifact_uri_after_its_scheme_and_host() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/3/abc/artifacts"),
            Ok("3/abc/artifacts".to_string())
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://127.0.0.1:5000/3/abc/artifacts"),
            Ok("3/abc/artifacts".to_string())
        );
        let local = proxied_path("/srv/mlruns/3/abc/artifacts").unwrap_err();
        assert!(local.contains("--serve-artifacts"), "{local}");
    }

    #[test]
    fn url_paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(
            url_path("1/r/artifacts/checkpoint/model-1.bpk"),
            "1/r/artifacts/checkpoint/model-1.bpk"
        );
        assert_eq!(url_path("a b/c#d"), "a%20b/c%23d");
    }

    #[test]
    fn non_finite_values_are_spelled_as_protobuf_json_does() {
        let value = |v: f64| Metric::new("loss", v, 1).to_json()["value"].clone();
        assert_eq!(value(0.25), json!(0.25));
        assert_eq!(value(f64::NAN), json!("NaN"));
        assert_eq!(value(f64::INFINITY), json!("Infinity"));
        assert_eq!(value(f64::NEG_INFINITY), json!("-Infinity"));
    }

    /// A real HTTP server on loopback that answers MLflow's REST calls as a tracking server with
    /// nothing in it would (or with `fault` for every call), recording every request.
    struct Server {
        uri: String,
        requests: Arc<std::sync::Mutex<Vec<Request>>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    #[derive(Debug, Clone)]
    struct Request {
        method: String,
        url: String,
        body: Vec<u8>,
    }

    impl Request {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or(Value::Null)
        }
        fn body_text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        fn is(&self, method: &str, endpoint: &str) -> bool {
            self.method == method && self.url.split('?').next() == Some(endpoint)
        }
    }

    impl Server {
        fn start(fault: Option<u16>) -> Self {
            let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
            let port = server.server_addr().to_ip().unwrap().port();
            let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (log, halt) = (requests.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                let mut runs = 0;
                while !halt.load(Ordering::SeqCst) {
                    let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50))
                    else {
                        continue;
                    };
                    let mut body = Vec::new();
                    std::io::Read::read_to_end(request.as_reader(), &mut body).unwrap();
                    let seen = Request {
                        method: request.method().to_string(),
                        url: request.url().to_string(),
                        body,
                    };
                    let (code, answer) = match fault {
                        Some(code) => (
                            code,
                            json!({"error_code": "INTERNAL_ERROR", "message": "boom\nmore"}),
                        ),
                        None => mlflow_answer(&seen, &mut runs),
                    };
                    log.lock().unwrap().push(seen);
                    let response =
                        tiny_http::Response::from_string(answer.to_string()).with_status_code(code);
                    let _ = request.respond(response);
                }
            });
            Self {
                uri: format!("http://127.0.0.1:{port}"),
                requests,
                stop,
                thread: Some(thread),
            }
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// What an empty MLflow server answers: no experiment yet, no runs to find.
    fn mlflow_answer(request: &Request, runs: &mut usize) -> (u16, Value) {
        let endpoint = request.url.split('?').next().unwrap_or_default();
        match endpoint {
            "/api/2.0/mlflow/experiments/get-by-name" => (
                404,
                json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment"}),
            ),
            "/api/2.0/mlflow/experiments/create" => (200, json!({"experiment_id": "7"})),
            "/api/2.0/mlflow/runs/create" => {
                *runs += 1;
                let id = format!("run{runs}");
                let info = json!({"run_id": id, "artifact_uri": format!("mlflow-artifacts:/7/{id}/artifacts")});
                (200, json!({"run": {"info": info}}))
            }
            // An earlier start of a run directory logged to run "old" (a resume finds it).
            "/api/2.0/mlflow/runs/search" if request.body_text().contains("mnist-mlp.run_dir") => {
                let info =
                    json!({"run_id": "old", "artifact_uri": "mlflow-artifacts:/7/old/artifacts"});
                (200, json!({"runs": [{"info": info}]}))
            }
            "/api/2.0/mlflow/runs/search" => (200, json!({})),
            _ => (200, json!({})),
        }
    }

    /// A recorded run: `epochs` epochs of made-up but distinct numbers, its files on disk.
    fn recorded(
        dir: &Path,
        epochs: usize,
        status: RunStatus,
    ) -> (
        RunDir,
        crate::run_dir::RunInfo,
        crate::config::TrainConfig,
        History,
    ) {
        let run = RunDir::create(dir, "tracked").unwrap();
        let mut config = crate::config::TrainConfig::default();
        config.optimizer.learning_rate = 0.00123;
        config.model.hidden = vec![64, 32];
        run.write_config_on(&config, "CPU").unwrap();
        let mut history = History::default();
        for e in 0..epochs {
            let x = e as f64;
            history.push(EpochMetrics {
                loss: 0.5 / (x + 1.0),
                accuracy: 0.8 + x / 100.0,
                val_loss: 0.4 / (x + 1.0),
                val_accuracy: 0.85 + x / 100.0,
            });
        }
        run.write_history(&history).unwrap();
        let info = crate::run_dir::RunInfo {
            started: "2026-12-07T10:00:00Z".into(),
            ended: (status != RunStatus::Running).then(|| "2026-12-07T10:05:00Z".into()),
            status,
            epochs_done: epochs,
            epoch_seconds: vec![1.0; epochs],
            kernels: Some(crate::kernels::Kernels::Fused),
            threads: Some(2),
            mnist_mlp_version: "0.1.0".into(),
            ..crate::run_dir::RunInfo::sample("tracked")
        };
        run.write_info(&info).unwrap();
        (run, info, config, history)
    }

    fn metric_points(requests: &[Request], key: &str) -> Vec<(u64, Value)> {
        let mut points: Vec<(u64, Value)> = requests
            .iter()
            .filter(|r| r.is("POST", "/api/2.0/mlflow/runs/log-batch"))
            .flat_map(|r| r.json()["metrics"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["key"] == key)
            .map(|m| (m["step"].as_u64().unwrap(), m["value"].clone()))
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    #[test]
    fn a_training_is_logged_as_the_rest_api_asks() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, _) = recorded(dir.path(), 0, RunStatus::Running);
        let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        let empty = History::default();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &empty,
        });
        tracker.step(100, 0.75);
        let (_, _, _, history) = recorded(&dir.path().join("b"), 3, RunStatus::Finished);
        for epoch in 1..=3 {
            let m = history.get(epoch - 1).unwrap();
            tracker.epoch(epoch, &m, 0.001 / epoch as f64);
        }
        std::fs::write(run.path().join("model.bpk"), b"weights\x00\xff").unwrap();
        tracker.finish(RunStatus::Finished, &run);
        assert_eq!(tracker.fault(), None);

        let requests = server.requests();
        let first = &requests[0];
        assert!(
            first.is("GET", "/api/2.0/mlflow/experiments/get-by-name"),
            "{first:?}"
        );
        assert!(
            first.url.ends_with("?experiment_name=mnist-mlp"),
            "{}",
            first.url
        );
        assert_eq!(requests[1].json(), json!({"name": "mnist-mlp"}));
        let create = &requests[2];
        assert!(create.is("POST", "/api/2.0/mlflow/runs/create"));
        let body = create.json();
        assert_eq!(body["experiment_id"], "7");
        assert_eq!(body["run_name"], "tracked");
        assert_eq!(
            body["start_time"],
            rfc3339_ms("2026-12-07T10:00:00Z").unwrap()
        );
        let tag = |key: &str| {
            body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == key)
                .map(|t| t["value"].clone())
        };
        assert_eq!(tag("mlflow.runName"), Some(json!("tracked")));
        assert_eq!(tag("backend"), Some(json!("ndarray")));
        assert_eq!(tag("kernels"), Some(json!("fused")));
        assert_eq!(tag("threads"), Some(json!("2")));
        assert_eq!(
            tag("host"),
            Some(json!(
                info.owner
                    .host
                    .clone()
                    .unwrap_or_else(crate::run_dir::hostname)
            ))
        );
        assert_eq!(tag("mlflow.parentRunId"), None);

        let params: Vec<(String, String)> = requests
            .iter()
            .filter(|r| r.is("POST", "/api/2.0/mlflow/runs/log-batch"))
            .flat_map(|r| r.json()["params"].as_array().cloned().unwrap_or_default())
            .map(|p| {
                (
                    p["key"].as_str().unwrap().into(),
                    p["value"].as_str().unwrap().into(),
                )
            })
            .collect();
        let param = |key: &str| params.iter().find(|p| p.0 == key).map(|p| p.1.clone());
        assert_eq!(param("optimizer.learning_rate").as_deref(), Some("0.00123"));
        assert_eq!(param("model.hidden").as_deref(), Some("[64, 32]"));
        assert_eq!(param("train.epochs"), Some(config.train.epochs.to_string()));
        assert_eq!(params.len(), super::params(&config).len());

        for (key, values) in [
            ("loss", &history.loss),
            ("accuracy", &history.accuracy),
            ("val_loss", &history.val_loss),
            ("val_accuracy", &history.val_accuracy),
        ] {
            let expected: Vec<(u64, Value)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64 + 1, json!(v)))
                .collect();
            assert_eq!(metric_points(&requests, key), expected, "{key}");
        }
        let rates: Vec<(u64, Value)> = (1..=3).map(|e| (e, json!(0.001 / e as f64))).collect();
        assert_eq!(metric_points(&requests, "learning_rate"), rates);
        assert_eq!(
            metric_points(&requests, "batch_loss"),
            vec![(100, json!(0.75))]
        );

        let puts: Vec<&Request> = requests.iter().filter(|r| r.method == "PUT").collect();
        let prefix = "/api/2.0/mlflow-artifacts/artifacts/7/run1/artifacts/";
        let names: Vec<&str> = puts
            .iter()
            .map(|r| r.url.strip_prefix(prefix).unwrap())
            .collect();
        let expected: Vec<String> = artifact_files(run.path())
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(names, expected);
        assert!(
            names.contains(&"model.bpk") && names.contains(&"history.json"),
            "{names:?}"
        );
        let model = puts.iter().find(|r| r.url.ends_with("/model.bpk")).unwrap();
        assert_eq!(model.body, b"weights\x00\xff");

        let last = requests.last().unwrap();
        assert!(last.is("POST", "/api/2.0/mlflow/runs/update"), "{last:?}");
        assert_eq!(last.json()["run_id"], "run1");
        assert_eq!(last.json()["status"], "FINISHED");
        assert!(last.json()["end_time"].as_i64().unwrap() >= body["start_time"].as_i64().unwrap());
    }

    #[test]
    fn each_end_has_its_status() {
        for (status, expected) in [
            (RunStatus::Finished, "FINISHED"),
            (RunStatus::Failed, "FAILED"),
            (RunStatus::Interrupted, "KILLED"),
        ] {
            let server = Server::start(None);
            let dir = tempfile::tempdir().unwrap();
            let (run, info, config, history) = recorded(dir.path(), 0, RunStatus::Running);
            let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, "mine").unwrap();
            tracker.start(&TrackedRun {
                run: &run,
                info: &info,
                config: &config,
                history: &history,
            });
            tracker.finish(status, &run);
            let requests = server.requests();
            assert!(
                requests[0].url.ends_with("?experiment_name=mine"),
                "{:?}",
                requests[0]
            );
            assert_eq!(requests.last().unwrap().json()["status"], expected);
        }
    }

    #[test]
    fn a_server_answering_errors_gets_one_request_and_the_fault_is_said() {
        let server = Server::start(Some(500));
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, history) = recorded(dir.path(), 0, RunStatus::Running);
        let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &history,
        });
        let m = EpochMetrics {
            loss: 1.0,
            accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
        };
        for epoch in 1..=3 {
            tracker.step(epoch as u64 * 10, 1.0);
            tracker.epoch(epoch, &m, 0.001);
        }
        tracker.finish(RunStatus::Finished, &run);
        assert_eq!(
            tracker.fault(),
            Some(format!(
                "mlflow: {}: HTTP 500 INTERNAL_ERROR: boom",
                server.uri
            ))
        );
        assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    }

    #[test]
    fn a_server_that_never_answers_holds_finish_a_bounded_time() {
        // Connections are queued by the kernel and never accepted: no answer ever comes.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", silent.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, history) = recorded(dir.path(), 0, RunStatus::Running);
        let mut tracker = Mlflow::new("tracking.mlflow", &uri, DEFAULT_EXPERIMENT).unwrap();
        let started = std::time::Instant::now();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &history,
        });
        let m = EpochMetrics {
            loss: 1.0,
            accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
        };
        tracker.epoch(1, &m, 0.001);
        assert!(
            started.elapsed() < CALL_TIMEOUT,
            "start and epoch waited on the server"
        );
        tracker.finish(RunStatus::Finished, &run);
        assert!(
            started.elapsed() < FINISH_WAIT + CALL_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        assert!(tracker.fault().is_some());
    }

    #[test]
    fn a_sweeps_trial_goes_to_the_sweeps_experiment_under_its_parent() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("sweeps").join("widths");
        std::fs::create_dir_all(&sweep).unwrap();
        std::fs::write(sweep.join("sweep.toml"), "").unwrap();
        let (run, info, config, history) = recorded(&sweep, 0, RunStatus::Running);
        assert_eq!(sweep_of(run.path()).as_deref(), Some("widths"));
        let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &history,
        });
        tracker.finish(RunStatus::Finished, &run);
        let requests = server.requests();
        assert!(
            requests[0].url.ends_with("?experiment_name=widths"),
            "{:?}",
            requests[0]
        );
        let search = requests
            .iter()
            .find(|r| r.url.ends_with("/runs/search"))
            .unwrap()
            .json();
        assert_eq!(search["filter"], "tags.`mnist-mlp.sweep` = 'widths'");
        let creates: Vec<Value> = requests
            .iter()
            .filter(|r| r.is("POST", "/api/2.0/mlflow/runs/create"))
            .map(Request::json)
            .collect();
        assert_eq!(creates.len(), 2);
        assert_eq!(creates[0]["run_name"], "widths");
        assert!(
            creates[0]["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "mnist-mlp.sweep", "value": "widths"}))
        );
        assert!(
            creates[1]["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "mlflow.parentRunId", "value": "run1"}))
        );
        // Not a sweep: a run whose directory only looks like a trial's.
        std::fs::remove_file(sweep.join("sweep.toml")).unwrap();
        assert_eq!(sweep_of(run.path()), None);
    }

    #[test]
    fn a_resumed_run_goes_on_in_the_mlflow_run_it_started_in() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, history) = recorded(dir.path(), 2, RunStatus::Running);
        let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &history,
        });
        let third = EpochMetrics {
            loss: 0.1,
            accuracy: 0.9,
            val_loss: 0.2,
            val_accuracy: 0.95,
        };
        tracker.epoch(3, &third, 0.001);
        tracker.finish(RunStatus::Finished, &run);
        let requests = server.requests();
        let search = requests
            .iter()
            .find(|r| r.url.ends_with("/runs/search"))
            .unwrap()
            .json();
        let path = std::path::absolute(run.path()).unwrap();
        assert_eq!(
            search["filter"],
            format!("tags.`mnist-mlp.run_dir` = '{}'", path.display())
        );
        assert!(
            !requests.iter().any(|r| r.url.ends_with("/runs/create")),
            "{requests:?}"
        );
        let updates: Vec<Value> = requests
            .iter()
            .filter(|r| r.url.ends_with("/runs/update"))
            .map(Request::json)
            .collect();
        assert_eq!(updates[0], json!({"run_id": "old", "status": "RUNNING"}));
        assert_eq!(updates[1]["status"], "FINISHED");
        // The two epochs before the resume went with the first start.
        assert_eq!(metric_points(&requests, "loss"), vec![(3, json!(0.1))]);
        assert!(
            requests
                .iter()
                .all(|r| !r.url.contains("/artifacts/") || r.url.contains("/7/old/"))
        );
    }

    #[test]
    fn a_resumed_run_not_found_there_is_logged_whole() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, history) = recorded(dir.path(), 2, RunStatus::Running);
        // A path with a quote cannot be searched for: a new MLflow run, with the history.
        let quoted = RunDir::open(dir.path().join("it's"));
        std::fs::rename(run.path(), quoted.path()).unwrap();
        let mut tracker = Mlflow::new("tracking.mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &quoted,
            info: &info,
            config: &config,
            history: &history,
        });
        tracker.finish(RunStatus::Finished, &quoted);
        let requests = server.requests();
        assert!(requests.iter().any(|r| r.url.ends_with("/runs/create")));
        let expected: Vec<(u64, Value)> = history
            .accuracy
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, json!(v)))
            .collect();
        assert_eq!(metric_points(&requests, "accuracy"), expected);
    }

    #[test]
    fn a_run_whose_process_died_running_is_replayed_not_resumed() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let (run, mut info, config, history) = recorded(dir.path(), 2, RunStatus::Running);
        // Recorded as running by a process that is not this one.
        info.owner.pid = std::process::id().wrapping_add(1);
        let mut tracker = Mlflow::new("--mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &History::default(),
        });
        for epoch in 1..=2 {
            tracker.epoch(epoch, &history.get(epoch - 1).unwrap(), 0.01);
        }
        tracker.finish(RunStatus::Running, &run);
        let requests = server.requests();
        assert!(!requests.iter().any(|r| r.url.ends_with("/runs/search")));
        let create = requests
            .iter()
            .find(|r| r.url.ends_with("/runs/create"))
            .unwrap()
            .json();
        assert!(
            create["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "mnist-mlp.source", "value": "log"}))
        );
        let expected: Vec<(u64, Value)> = history
            .loss
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, json!(v)))
            .collect();
        assert_eq!(metric_points(&requests, "loss"), expected);
        assert_eq!(requests.last().unwrap().json()["status"], "KILLED");
    }

    #[test]
    fn a_replayed_run_is_uploaded_whole_once() {
        let server = Server::start(None);
        let dir = tempfile::tempdir().unwrap();
        let (run, info, config, history) = recorded(dir.path(), 3, RunStatus::Interrupted);
        let mut tracker = Mlflow::new("--mlflow", &server.uri, DEFAULT_EXPERIMENT).unwrap();
        tracker.start(&TrackedRun {
            run: &run,
            info: &info,
            config: &config,
            history: &history,
        });
        for epoch in 1..=3 {
            tracker.epoch(epoch, &history.get(epoch - 1).unwrap(), 0.01);
        }
        tracker.finish(RunStatus::Interrupted, &run);
        let requests = server.requests();
        let expected: Vec<(u64, Value)> = history
            .val_loss
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, json!(v)))
            .collect();
        assert_eq!(metric_points(&requests, "val_loss"), expected);
        assert_eq!(metric_points(&requests, "learning_rate").len(), 3);
        let last = requests.last().unwrap().json();
        assert_eq!(last["status"], "KILLED");
        assert_eq!(
            last["end_time"],
            rfc3339_ms("2026-12-07T10:05:00Z").unwrap()
        );
    }
}
