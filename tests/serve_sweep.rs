//! `serve`'s sweeps over loopback: the list, one sweep's trials ranked as `sweep status` ranks
//! them with the numbers of their history.json, the trials' own run pages, and names that are
//! not a sweep's (unknown, `..`, a sweep outside the artifact directory, a FIFO for a claim);
//! on a tiny sweep trained here on real MNIST.

mod common;

use common::{Serving, mnist_mlp, run_ok, shared_temp_dir, stdout, tiny_sweep};
use mnist_mlp::inspection::{ComputeOn, predict};
use mnist_mlp::run_dir::{History, RunDir};
use mnist_mlp::saved::Weights;
use serde_json::{Value, json};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A home holding the sweep `tiny` (trials 0, 2 and 1 trained, 3 pending), trained once for all
/// tests here; beside it in `artifacts/sweeps/`, `linked`, a symlink to a sweep directory
/// outside the artifact directory (`elsewhere/`, in the server's working directory), and
/// `jammed`, a sweep whose claim of trial 0 is a FIFO.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        tiny_sweep(&home, "tiny", &[0, 2, 1]);
        let sweeps = home.join("artifacts/sweeps");
        let sweep_toml = std::fs::read(sweeps.join("tiny/sweep.toml")).unwrap();
        let elsewhere = home.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("sweep.toml"), &sweep_toml).unwrap();
        std::os::unix::fs::symlink(&elsewhere, sweeps.join("linked")).unwrap();
        let claims = sweeps.join("jammed/claims/r0");
        std::fs::create_dir_all(&claims).unwrap();
        std::fs::write(sweeps.join("jammed/sweep.toml"), &sweep_toml).unwrap();
        let fifo =
            std::ffi::CString::new(claims.join("trial-000").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        home
    })
}

fn serving() -> Serving {
    Serving::start(home(), "artifacts", &[])
}

fn trial(index: usize) -> RunDir {
    RunDir::open(home().join(format!("artifacts/sweeps/tiny/runs/trial-{index:03}")))
}

fn history(index: usize) -> History {
    trial(index).read_history().unwrap()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn error_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap();
    value["error"].as_str().unwrap().to_string()
}

/// The trials of the sweep in the order `sweep status tiny` prints them.
fn status_order() -> Vec<String> {
    let out = stdout(&run_ok(mnist_mlp(home()).args([
        "sweep",
        "status",
        "tiny",
        "--artifact-dir",
        "artifacts",
    ])));
    out.lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn a_sweeps_trials_are_ranked_as_sweep_status_ranks_them() {
    let server = serving();
    // The order: the trained trials by their last val_accuracy (history.json), best first
    // (ties in trial order), then the pending one.
    let mut trained = [0, 1, 2];
    trained.sort_by(|&a, &b| {
        let score = |i| history(i).last().unwrap().val_accuracy;
        score(b).total_cmp(&score(a))
    });
    let mut expected: Vec<String> = trained.iter().map(|i| format!("trial-{i:03}")).collect();
    expected.push("trial-003".into());
    assert_eq!(status_order(), expected);

    let detail = server.get_json("api/sweeps/tiny", 200);
    let trials = detail["trials"].as_array().unwrap();
    let names: Vec<&str> = trials.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, expected);
    assert_eq!(
        detail["varied"],
        json!(["model.hidden", "optimizer.learning_rate"])
    );
    assert_eq!(detail["rungs"], json!([{"trials": 4, "epochs": 2}]));
    // The grid's settings, in trial order: hidden × learning rate.
    let settings = [
        json!({"model.hidden": [16], "optimizer.learning_rate": 1e-3}),
        json!({"model.hidden": [16], "optimizer.learning_rate": 3e-4}),
        json!({"model.hidden": [32], "optimizer.learning_rate": 1e-3}),
        json!({"model.hidden": [32], "optimizer.learning_rate": 3e-4}),
    ];
    for t in trials {
        let name = t["name"].as_str().unwrap();
        let index: usize = name["trial-".len()..].parse().unwrap();
        assert_eq!(t["settings"], settings[index], "{name}");
        assert_eq!(t["epochs_planned"], 2, "{name}");
        if index == 3 {
            assert_eq!(t["state"], "pending");
            assert_eq!(t["epochs_done"], 0);
            assert_eq!(t["run"], false);
            for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
                assert_eq!(t[key], Value::Null, "{key}");
            }
            assert_eq!(t["history"]["val_accuracy"], json!([]));
            continue;
        }
        // The numbers of the trial's history.json, to the last bit.
        let recorded = history(index);
        let last = recorded.last().unwrap();
        assert_eq!(t["state"], "finished", "{name}");
        assert_eq!(t["epochs_done"], 2, "{name}");
        assert_eq!(t["run"], true, "{name}");
        assert_eq!(t["loss"].as_f64(), Some(last.loss), "{name}");
        assert_eq!(t["accuracy"].as_f64(), Some(last.accuracy), "{name}");
        assert_eq!(t["val_loss"].as_f64(), Some(last.val_loss), "{name}");
        assert_eq!(
            t["val_accuracy"].as_f64(),
            Some(last.val_accuracy),
            "{name}"
        );
        assert_eq!(floats(&t["history"]["val_accuracy"]), recorded.val_accuracy);
        assert_eq!(floats(&t["history"]["val_loss"]), recorded.val_loss);
    }

    // The list: every sweep by name; those that cannot be read say why.
    let list = server.get_json("api/sweeps", 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["jammed", "linked", "tiny"]);
    let tiny = &list[2];
    assert_eq!(tiny["trials"], 4);
    assert_eq!(tiny["method"], "grid");
    assert_eq!(tiny["epochs"], 2);
    assert_eq!(tiny["states"], json!({"finished": 3, "pending": 1}));
    assert_eq!(tiny["best_trial"], expected[0]);
    assert_eq!(tiny["best_val_accuracy"], trials[0]["val_accuracy"]);
    assert_eq!(detail["sweep"], *tiny);
    assert_eq!(list[0]["status"], "unreadable");
    assert_eq!(
        list[0]["error"],
        "sweeps/jammed/claims/r0/trial-000: a FIFO, not a regular file; not served"
    );
    assert_eq!(list[1]["status"], "unreadable");
    assert_eq!(
        list[1]["error"],
        "sweeps/linked/sweep.toml: through a symlink or outside the artifact directory; not served"
    );
}

#[test]
fn each_trial_is_a_run_with_its_own_page() {
    let server = serving();
    let detail = server.get_json("api/sweeps/tiny/runs/trial-002", 200);
    assert_eq!(detail["row"]["name"], "trial-002");
    assert_eq!(detail["row"]["status"], "finished");
    assert_eq!(detail["history"], serde_json::to_value(history(2)).unwrap());
    assert_eq!(detail["checkpoints"]["epochs"], json!([1, 2]));
    let config = std::fs::read_to_string(trial(2).config_path()).unwrap();
    assert_eq!(detail["config"], config.as_str());
    let (status, body) = server.get("api/sweeps/tiny/runs/trial-002/files/config.toml");
    assert_eq!((status, body), (200, config.into_bytes()));

    // Predicting with a trial: what `predict` gives for that run directory.
    let picture = home().join("digit.png");
    let digit = *common::real_mnist().valid.image(0);
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([255 - digit[y as usize * 28 + x as usize]])
    })
    .save(&picture)
    .unwrap();
    let (status, answer) = server.post(
        "api/sweeps/tiny/runs/trial-002/predict?checkpoint=final",
        "image/png",
        &std::fs::read(&picture).unwrap(),
    );
    assert_eq!(status, 200, "{answer}");
    let expected = predict::predict(
        &trial(2),
        Some(Weights::Final),
        std::slice::from_ref(&picture),
        ComputeOn::default(),
    )
    .unwrap()
    .remove(0);
    let served: Vec<f32> = floats(&answer["probabilities"])
        .iter()
        .map(|&p| p as f32)
        .collect();
    assert_eq!(served, expected.probabilities.to_vec());
    assert_eq!(answer["digit"], expected.digit);

    // The pages: the page itself, which routes by its address.
    for page in ["sweeps/tiny", "sweeps/tiny/runs/trial-002"] {
        let (status, body) = server.get(page);
        assert_eq!(status, 200, "{page}");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("id=\"sweep-table\"")
        );
    }
    // A pending trial has no run yet; trials are not runs of runs/.
    let (status, body) = server.get("api/sweeps/tiny/runs/trial-003");
    assert_eq!(status, 404);
    assert_eq!(
        error_of(&body),
        "trial-003: no such run in sweeps/tiny/runs/"
    );
    let (status, _) = server.get("api/runs/trial-002");
    assert_eq!(status, 404);
}

#[test]
fn names_that_are_not_a_sweeps_get_a_json_error() {
    let server = serving();
    let bound = Duration::from_secs(2);
    for (path, status, says) in [
        ("api/sweeps/nope", 404, "nope: no such sweep in sweeps/"),
        // A sweep directory in the server's working directory is not one of DIR's sweeps.
        (
            "api/sweeps/elsewhere",
            404,
            "elsewhere: no such sweep in sweeps/",
        ),
        ("api/sweeps/..", 400, "\"..\" is not a sweep name"),
        ("api/sweeps/%2e%2e", 400, "\"..\" is not a sweep name"),
        (
            "api/sweeps/..%2F..%2Felsewhere",
            400,
            "\"../../elsewhere\" is not a sweep name",
        ),
        ("api/sweeps/.tmp-x", 400, "\".tmp-x\" is not a sweep name"),
        ("api/sweeps/a%5Cb", 400, "\"a\\\\b\" is not a sweep name"),
        (
            "api/sweeps/nope/runs/trial-000",
            404,
            "nope: no such sweep in sweeps/",
        ),
        (
            "api/sweeps/tiny/runs/..%2F..%2F..%2Fsweeps%2Ftiny",
            400,
            "\"../../../sweeps/tiny\" is not a run name",
        ),
        (
            "api/sweeps/..%2Fsweeps%2Ftiny/runs/trial-000",
            400,
            "\"../sweeps/tiny\" is not a sweep name",
        ),
        (
            "api/sweeps/tiny/runs/trial-000/files/run.json",
            404,
            "\"run.json\" is not a file the page shows",
        ),
        // A symlink out of the artifact directory, and a FIFO where a claim should be: refused
        // before anything is read from them, at once.
        (
            "api/sweeps/linked",
            403,
            "sweeps/linked/sweep.toml: through a symlink or outside the artifact directory; not served",
        ),
        (
            "api/sweeps/jammed",
            403,
            "sweeps/jammed/claims/r0/trial-000: a FIFO, not a regular file; not served",
        ),
    ] {
        let start = Instant::now();
        let (got, body) = server.get(path);
        assert!(start.elapsed() < bound, "{path}: {:?}", start.elapsed());
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(error_of(&body), says, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(home().to_str().unwrap()), "{path}: {text}");
    }
    // Still serving.
    server.get_json("api/sweeps/tiny", 200);
}
