//! `train --mlflow` and `log RUN --mlflow` from the outside (issue #35), against a real HTTP
//! server on loopback that answers MLflow's REST calls as an empty tracking server would (or
//! with errors, or never): the requests the binary sends, and that a server at fault never
//! changes or stops a training. scripts/test-tracking.sh checks the same against a real
//! `mlflow server`, read back with MLflow's own client.

mod common;

use common::{assert_fails, mnist_mlp, stderr, stdout, train_args, train_small};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

/// How the server answers.
#[derive(Clone, Copy)]
enum Answers {
    /// As an empty MLflow tracking server.
    Mlflow,
    /// HTTP 500 with MLflow's error JSON, to every call.
    Error,
}

struct Server {
    uri: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(answers: Answers) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut runs = 0;
            while !halt.load(Ordering::SeqCst) {
                let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = Vec::new();
                std::io::Read::read_to_end(request.as_reader(), &mut body).unwrap();
                let seen = Request {
                    method: request.method().to_string(),
                    url: request.url().to_string(),
                    body,
                };
                let (code, answer) = match answers {
                    Answers::Mlflow => answer(&seen, &mut runs),
                    Answers::Error => (
                        500,
                        json!({"error_code": "INTERNAL_ERROR", "message": "database is locked"}),
                    ),
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

/// What an MLflow server with nothing in it answers.
fn answer(request: &Request, runs: &mut usize) -> (u16, Value) {
    match request.url.split('?').next().unwrap_or_default() {
        "/api/2.0/mlflow/experiments/get-by-name" => (
            404,
            json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}),
        ),
        "/api/2.0/mlflow/experiments/create" => (200, json!({"experiment_id": "4"})),
        "/api/2.0/mlflow/runs/create" => {
            *runs += 1;
            let id = format!("r{runs}");
            let uri = format!("mlflow-artifacts:/4/{id}/artifacts");
            (
                200,
                json!({"run": {"info": {"run_id": id, "artifact_uri": uri}}}),
            )
        }
        _ => (200, json!({})),
    }
}

/// The values of metric `key` the requests logged, by step.
fn metric(requests: &[Request], key: &str) -> Vec<(u64, f64)> {
    let mut points: Vec<(u64, f64)> = requests
        .iter()
        .filter(|r| r.url == "/api/2.0/mlflow/runs/log-batch")
        .flat_map(|r| r.json()["metrics"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["key"] == key)
        .map(|m| (m["step"].as_u64().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

fn history(home: &Path, run: &str) -> Value {
    let path = home.join("artifacts/runs").join(run).join("history.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The history's `key` by epoch, as MLflow's steps.
fn by_epoch(history: &Value, key: &str) -> Vec<(u64, f64)> {
    history[key]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64 + 1, v.as_f64().unwrap()))
        .collect()
}

/// The files under `dir`, at any depth.
fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| if path.is_dir() { walk(&path) } else { 1 })
        .sum()
}

#[test]
fn a_training_sends_its_history_steps_files_and_end() {
    let server = Server::start(Answers::Mlflow);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let output = train_small(
        home,
        "ml",
        &["--mlflow", &server.uri, "--log-every-steps", "4"],
    );
    assert_eq!(stderr(&output), "");
    let requests = server.requests();
    let history = history(home, "ml");
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert_eq!(metric(&requests, key), by_epoch(&history, key), "{key}");
    }
    assert_eq!(
        metric(&requests, "learning_rate"),
        vec![(1, 0.001), (2, 0.001)]
    );
    // 320 images at batch 32: 10 steps an epoch, every 4th logged.
    let steps: Vec<u64> = metric(&requests, "batch_loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(steps, [4, 8, 12, 16, 20]);

    let create = requests
        .iter()
        .find(|r| r.url == "/api/2.0/mlflow/runs/create")
        .unwrap()
        .json();
    assert_eq!(create["run_name"], "ml");
    let run = home.join("artifacts/runs/ml");
    let put = |name: &str| {
        let url = format!("/api/2.0/mlflow-artifacts/artifacts/4/r1/artifacts/{name}");
        requests
            .iter()
            .find(|r| r.method == "PUT" && r.url == url)
            .unwrap_or_else(|| panic!("{name} not uploaded"))
            .body
            .clone()
    };
    for name in ["history.json", "run.json", "config.toml", "model.bpk"] {
        assert_eq!(put(name), std::fs::read(run.join(name)).unwrap(), "{name}");
    }
    let last = requests.last().unwrap().json();
    assert_eq!(last["run_id"], "r1");
    assert_eq!(last["status"], "FINISHED");
    // The URI is kept with the run, so `train --resume` logs there too.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("mlflow = \"{}\"", server.uri)),
        "{config}"
    );
}

#[test]
fn a_server_at_fault_is_said_once_and_the_training_is_the_same() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    train_small(home, "plain", &[]);

    let erring = Server::start(Answers::Error);
    let erred = train_small(home, "erring", &["--mlflow", &erring.uri]);
    assert_eq!(
        stderr(&erred),
        format!(
            "mlflow: {uri}: HTTP 500 INTERNAL_ERROR: database is locked; nothing more is sent \
             there, the training goes on; `mnist-mlp log artifacts/runs/erring --mlflow {uri}` \
             uploads the run whole later\n",
            uri = erring.uri
        )
    );
    // The first call failed: nothing more was sent.
    assert_eq!(erring.requests().len(), 1);

    // Connections the kernel queues and nobody accepts: no answer ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", silent.local_addr().unwrap());
    let output = train_small(
        home,
        "silent",
        &["--mlflow", &uri, "--log-every-steps", "1"],
    );
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("mlflow: {uri}: ")), "{err}");

    for (run, output) in [("erring", &erred), ("silent", &output)] {
        assert_eq!(history(home, run), history(home, "plain"), "{run}");
        assert!(stdout(output).starts_with("Trained 2/2 epochs"), "{run}");
    }
}

#[test]
fn log_uploads_a_recorded_run_whole_or_fails_with_the_fault() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    train_small(home, "r", &[]);
    let server = Server::start(Answers::Mlflow);
    let log = |uri: &str| {
        mnist_mlp(home)
            .args(["log", "r", "--artifact-dir", "artifacts", "--mlflow", uri])
            .output()
            .unwrap()
    };
    let output = log(&server.uri);
    assert!(output.status.success(), "{}", stderr(&output));
    let run = home.join("artifacts/runs/r");
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let settings: usize = config
        .values()
        .map(|section| section.as_table().map_or(1, toml::Table::len))
        .sum();
    let files = walk(&run);
    // Two epochs of the four metrics and the learning rate.
    assert_eq!(
        stdout(&output),
        format!(
            "mlflow: artifacts/runs/r -> {}: new MLflow run r1 in experiment mnist-mlp (4): \
             {settings} params, 10 metric values, {files} artifacts, status FINISHED\n\
             artifacts/runs/r\n",
            server.uri
        )
    );
    let requests = server.requests();
    let params: Vec<String> = requests
        .iter()
        .flat_map(|r| r.json()["params"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            format!(
                "{} = {}",
                p["key"].as_str().unwrap(),
                p["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(params.len(), settings);
    assert!(
        params.contains(&"train.limit_train = 320".to_string()),
        "{params:?}"
    );
    assert!(
        params.contains(&"model.hidden = [512, 512]".to_string()),
        "{params:?}"
    );
    let history = history(home, "r");
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert_eq!(metric(&requests, key), by_epoch(&history, key), "{key}");
    }
    let create = requests
        .iter()
        .find(|r| r.url == "/api/2.0/mlflow/runs/create")
        .unwrap()
        .json();
    let info: Value =
        serde_json::from_slice(&std::fs::read(home.join("artifacts/runs/r/run.json")).unwrap())
            .unwrap();
    let started = chrono::DateTime::parse_from_rfc3339(info["started"].as_str().unwrap()).unwrap();
    assert_eq!(create["start_time"], started.timestamp_millis());
    assert!(
        create["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "mnist-mlp.source", "value": "log"}))
    );
    assert_eq!(requests.last().unwrap().json()["status"], "FINISHED");

    let erring = Server::start(Answers::Error);
    let output = log(&erring.uri);
    assert_fails(
        &output,
        1,
        &format!(
            "error: mlflow: {}: HTTP 500 INTERNAL_ERROR: database is locked\n",
            erring.uri
        ),
    );
}

#[test]
fn an_mlflow_uri_other_than_http_is_one_line_naming_the_key() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let mut command = mnist_mlp(home);
    let output = train_args(&mut command, "x")
        .args(["--mlflow", "file:///tmp/mlruns"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: tracking.mlflow: must be the http:// or https:// address of an MLflow tracking \
         server, e.g. http://127.0.0.1:5000 (file: stores and databricks are not supported) \
         (got \"file:///tmp/mlruns\")\n",
    );
    assert!(!home.join("artifacts/runs/x").exists());
    // From the environment, as MLflow's own clients take it.
    let mut command = mnist_mlp(home);
    let output = train_args(&mut command, "x")
        .env("MLFLOW_TRACKING_URI", "databricks")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: tracking.mlflow: must be the http://"),
        "{}",
        stderr(&output)
    );
}
