//! `serve` over loopback: every route, every bad input, concurrent predicts, a run finishing while
//! the server runs, and Ctrl-C; on a tiny run trained here on real MNIST.

mod common;

use common::{
    Serving, mnist_dir, mnist_mlp, png_claiming, real_mnist, run_ok, shared_temp_dir, stdout,
    train_tiny, wait_exit,
};
use mnist_mlp::data::idx::{PIXELS, SIDE};
use mnist_mlp::inspection::{ComputeOn, predict};
use mnist_mlp::run_dir::RunDir;
use mnist_mlp::saved::Weights;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A home holding `artifacts/runs/tiny` (10,000 images, 2 epochs), trained once for all tests
/// here, a secret file beside the artifact directory, and a picture of a test digit.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        train_tiny(&home, "tiny", 10_000);
        std::fs::write(home.join("secret.txt"), "SECRET-OUTSIDE").unwrap();
        // A run directory outside the artifact directory must not be reachable either.
        let outside = home.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let tiny = RunDir::open(home.join("artifacts/runs/tiny"));
        std::fs::copy(tiny.info_path(), outside.join("run.json")).unwrap();
        // Test image 0 (a 7) as a user's photo: dark on white, 5 times larger.
        let digit = *real_mnist().valid.image(0);
        let photo = image::GrayImage::from_fn(140, 140, |x, y| {
            image::Luma([255 - digit[(y as usize / 5) * SIDE + x as usize / 5]])
        });
        photo.save(home.join("seven.png")).unwrap();
        home
    })
}

fn run() -> RunDir {
    RunDir::open(home().join("artifacts/runs/tiny"))
}

fn serving() -> Serving {
    Serving::start(home(), "artifacts", &[])
}

fn seven() -> Vec<u8> {
    std::fs::read(home().join("seven.png")).unwrap()
}

fn probabilities(answer: &Value) -> Vec<f32> {
    answer["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn the_page_and_the_runs_are_served() {
    let server = serving();
    for path in ["", "runs/tiny"] {
        let (status, body) = server.get(path);
        assert_eq!(status, 200);
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains(r#"<canvas id="pad" width="280" height="280""#),
            "{html}"
        );
        assert!(html.contains(r#"id="digit""#));
        // Nothing fetched from elsewhere: every reference is to this server.
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }
    for asset in ["assets/app.js", "assets/style.css"] {
        let (status, body) = server.get(asset);
        assert_eq!(status, 200);
        assert!(!String::from_utf8(body).unwrap().contains("https://"));
    }

    let history = run().read_history().unwrap();
    let (best_epoch, best) = history.best_epoch().unwrap();
    let runs = server.get_json("api/runs", 200);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let row = &runs[0];
    assert_eq!(row["name"], "tiny");
    assert_eq!(row["status"], "finished");
    assert_eq!(row["live"], false);
    assert_eq!(
        (row["epochs_done"].clone(), row["epochs_planned"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        row["val_accuracy"],
        json!(history.last().unwrap().val_accuracy)
    );
    assert_eq!(row["best_val_accuracy"], json!(best));
    assert_eq!(row["best_epoch"], json!(best_epoch));

    let detail = server.get_json("api/runs/tiny", 200);
    assert_eq!(detail["run"]["name"], "tiny");
    assert_eq!(detail["run"]["train_images"], 10_000);
    assert_eq!(detail["history"], serde_json::to_value(&history).unwrap());
    assert_eq!(
        detail["checkpoints"],
        json!({"epochs": [1, 2], "best": best_epoch, "last": 2, "final": true})
    );
    let config = std::fs::read_to_string(run().config_path()).unwrap();
    assert_eq!(detail["config"], json!(config));
    assert_eq!(
        detail["files"],
        json!(["curves.svg", "curves.png", "config.toml", "history.csv"])
    );

    // The run's files, by their fixed names; eval's pictures once eval has written them.
    let (status, svg) = server.get("api/runs/tiny/files/curves.svg");
    assert_eq!(status, 200);
    assert_eq!(svg, std::fs::read(run().curves_svg_path()).unwrap());
    assert_eq!(server.get("api/runs/tiny/files/confusion.png").0, 404);
    run_ok(
        mnist_mlp(home())
            .args(["eval", "tiny", "--artifact-dir", "artifacts"])
            .arg("--data-dir")
            .arg(mnist_dir()),
    );
    let (status, png) = server.get("api/runs/tiny/files/confusion.png");
    assert_eq!(status, 200);
    assert_eq!(png, std::fs::read(run().confusion_png_path()).unwrap());
    let files = server.get_json("api/runs/tiny", 200)["files"].clone();
    assert!(
        files.as_array().unwrap().contains(&json!("mistakes.png")),
        "{files}"
    );
}

#[test]
fn predict_gives_what_the_predict_command_gives() {
    let server = serving();
    let picture = home().join("seven.png");
    for (checkpoint, epoch, weights) in [
        ("final", 2, Weights::Final),
        (
            "best",
            run().read_history().unwrap().best_epoch().unwrap().0,
            Weights::Best,
        ),
        ("last", 2, Weights::Last),
        ("1", 1, Weights::Epoch(1)),
    ] {
        let (status, answer) = server.post(
            &format!("api/runs/tiny/predict?checkpoint={checkpoint}"),
            "image/png",
            &seven(),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["checkpoint"]["epoch"], epoch);
        // The library call `mnist-mlp predict` makes, to the last bit.
        let expected = predict::predict(
            &run(),
            Some(weights),
            std::slice::from_ref(&picture),
            ComputeOn::default(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            probabilities(&answer),
            expected.probabilities.to_vec(),
            "{checkpoint}"
        );
        assert_eq!(answer["digit"], expected.digit);
        assert_eq!(answer["input"].as_array().unwrap().len(), PIXELS);

        // The command itself prints the same numbers.
        let out = stdout(&run_ok(mnist_mlp(home()).args([
            "predict",
            "tiny",
            "seven.png",
            "--artifact-dir",
            "artifacts",
            "--checkpoint",
            checkpoint,
        ])));
        let printed: Vec<String> = out
            .lines()
            .nth(2)
            .unwrap()
            .split_whitespace()
            .skip(2)
            .map(String::from)
            .collect();
        let served: Vec<String> = probabilities(&answer)
            .iter()
            .map(|p| format!("{p:.4}"))
            .collect();
        assert_eq!(printed, served, "{out}");

        // The 28×28 levels the model saw, sent back as pixels in 0..1, give the same answer.
        let pixels: Vec<f64> = answer["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() / 255.0)
            .collect();
        let body = json!({ "pixels": pixels }).to_string();
        let (status, again) = server.post(
            &format!("api/runs/tiny/predict?checkpoint={checkpoint}"),
            "application/json",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["probabilities"], answer["probabilities"]);
        assert_eq!(again["input"], answer["input"]);
    }
    // A 7 from the test set, by a model at ~95%.
    let (_, answer) = server.post("api/runs/tiny/predict", "image/png", &seven());
    assert_eq!(answer["digit"], 7, "{answer}");
    assert_eq!(answer["checkpoint"]["file"], "model.bpk");
}

/// Sends `raw` on a fresh connection and returns the status line (empty when none came).
fn raw_exchange(server: &Serving, raw: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer (and stop reading) before all of it is written.
    let _ = stream.write_all(raw);
    // Nothing more comes: a request cut short is seen as such at once, not after a timeout.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_string()
}

fn assert_alive(server: &Serving) {
    assert_eq!(server.get_json("api/runs", 200)[0]["name"], "tiny");
}

#[test]
fn bad_requests_get_a_json_error_and_the_server_keeps_running() {
    let server = serving();
    let get = |path: &str, status: u16, says: &str| {
        let (got, body) = server.get(path);
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(got, status, "GET {path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "GET {path}: {body}"
        );
        assert!(!body.contains("SECRET"), "{body}");
        assert_alive(&server);
    };
    get("api/runs/nope", 404, "no such run");
    get("api/runs/..", 400, "not a run name");
    get("api/runs/..%2F..%2Fsecret.txt", 400, "not a run name");
    get("api/runs/..%2Foutside", 400, "not a run name");
    get("api/runs/%2E%2E", 400, "not a run name");
    get("api/runs/tiny%2F..%2F..", 400, "not a run name");
    get(
        "api/runs/tiny/files/run.json",
        404,
        "not a file the page shows",
    );
    get(
        "api/runs/tiny/files/..%2F..%2F..%2Fsecret.txt",
        404,
        "not a file the page shows",
    );
    get(
        "api/runs/..%2Foutside/files/config.toml",
        400,
        "not a run name",
    );
    get(
        "api/runs/..%2Foutside/files/curves.svg",
        400,
        "not a run name",
    );
    get("api/runs/tiny/files/mistakes.png", 404, "not written");
    get("nothing/here", 404, "no such page");
    get("api/runs/tiny/predict", 405, "method not allowed");
    let (status, _) = server.get("../../secret.txt");
    assert_eq!(status, 404);

    let post = |path: &str, media: &str, body: &[u8], status: u16, says: &str| {
        let (got, answer) = server.post(path, media, body);
        assert_eq!(got, status, "POST {path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "POST {path}: {answer}"
        );
        assert_alive(&server);
    };
    let png = seven();
    let predict = "api/runs/tiny/predict";
    post(
        "api/runs/nope/predict",
        "image/png",
        &png,
        404,
        "no such run",
    );
    post(
        &format!("{predict}?checkpoint=7"),
        "image/png",
        &png,
        404,
        "checkpoints on disk: epochs 1–2",
    );
    post(
        &format!("{predict}?checkpoint=banana"),
        "image/png",
        &png,
        404,
        "`banana` is not an epoch",
    );
    post(
        &format!("{predict}?checkpoint=0"),
        "image/png",
        &png,
        404,
        "is not an epoch",
    );
    post(
        "api/runs/..%2Foutside/predict",
        "image/png",
        &png,
        400,
        "not a run name",
    );
    post(predict, "text/plain", b"7", 415, "image/png");
    post(
        predict,
        "image/png",
        &vec![0u8; (1 << 20) + 1],
        413,
        "over 1 MiB",
    );
    post(
        predict,
        "image/png",
        b"not a picture",
        400,
        "not a picture this tool reads",
    );
    post(predict, "image/png", b"", 400, "empty");
    post(predict, "image/png", &png[..png.len() / 2], 400, "the PNG");
    post(
        predict,
        "image/png",
        &png_claiming(20_000, 20_000),
        400,
        "too large",
    );
    let mut blank = Vec::new();
    image::GrayImage::from_pixel(280, 280, image::Luma([255]))
        .write_to(
            &mut std::io::Cursor::new(&mut blank),
            image::ImageFormat::Png,
        )
        .unwrap();
    post(predict, "image/png", &blank, 400, "no digit found");

    let pixels = |values: &str| format!(r#"{{"pixels": {values}}}"#).into_bytes();
    let json = "application/json";
    post(
        predict,
        json,
        &pixels(&format!("{:?}", vec![0.5; 783])),
        400,
        "783 pixels: expected 784",
    );
    post(
        predict,
        json,
        &pixels(&format!("{:?}", vec![0.5; 785])),
        400,
        "785 pixels",
    );
    let mut out_of_range = vec![0.0; 784];
    out_of_range[100] = 1.5;
    post(
        predict,
        json,
        &pixels(&format!("{out_of_range:?}")),
        400,
        "pixel 100 is 1.5",
    );
    out_of_range[100] = -0.25;
    post(
        predict,
        json,
        &pixels(&format!("{out_of_range:?}")),
        400,
        "pixel 100 is -0.25",
    );
    let nan = format!("[NaN{}]", ", 0".repeat(783));
    post(predict, json, &pixels(&nan), 400, "not a {\"pixels\"");
    let huge = format!("[1e999{}]", ", 0".repeat(783));
    post(predict, json, &pixels(&huge), 400, "not a {\"pixels\"");
    post(
        predict,
        json,
        b"{\"pixels\": \"x\"}",
        400,
        "not a {\"pixels\"",
    );
    post(
        predict,
        json,
        b"{\"pixels\": [], \"more\": 1}",
        400,
        "not a {\"pixels\"",
    );
    post(predict, json, b"[", 400, "not a {\"pixels\"");

    // Malformed HTTP, over a raw connection.
    let raw = |bytes: &[u8], status: &str| {
        let line = raw_exchange(&server, bytes);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{line:?} for {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
        assert_alive(&server);
    };
    raw(b"GARBAGE\r\n\r\n", "400");
    raw(b"GET / HTTP/1.1\r\nHost x\r\n\r\n", "400");
    raw(b"\x00\x01\x02\xff\r\n\r\n", "400");
    raw(
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).as_bytes(),
        "431",
    );
    raw(b"POST /api/runs/tiny/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "411");
    raw(
        b"POST /api/runs/tiny/predict HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "400",
    );
    // A body declared far beyond the limit, and one actually sent beyond it.
    raw(
        b"POST /api/runs/tiny/predict HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\nxx",
        "413",
    );
    raw(
        b"POST /api/runs/tiny/predict HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "413",
    );
    let mut big = b"POST /api/runs/tiny/predict HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 2097152\r\n\r\n".to_vec();
    big.extend(vec![b'x'; 2 << 20]);
    raw(&big, "413");
    // A client that leaves mid-request, or sends nothing at all.
    assert_eq!(
        raw_exchange(
            &server,
            b"POST /api/runs/tiny/predict HTTP/1.1\r\nContent-Length: 100\r\n\r\nab"
        ),
        ""
    );
    drop(std::net::TcpStream::connect(server.addr()).unwrap());
    assert_alive(&server);
}

#[test]
fn sixteen_predicts_at_once_get_the_same_answer() {
    let server = serving();
    let png = seven();
    // `best` is not loaded yet: the first requests load it concurrently.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    server.post("api/runs/tiny/predict?checkpoint=best", "image/png", &png)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer, &answers[0].1);
    }
}

#[test]
fn a_run_that_finishes_while_serving_shows_up_finished() {
    let home = tempfile::tempdir().unwrap();
    let server = Serving::start(home.path(), "artifacts", &[]);
    assert_eq!(server.get_json("api/runs", 200), json!([]));
    let mut training = mnist_mlp(home.path())
        .arg("train")
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "artifacts", "--run-name", "live"])
        .args([
            "--limit-train",
            "20000",
            "--limit-valid",
            "1000",
            "--epochs",
            "3",
        ])
        .args(["--dashboard", "none"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen: Vec<(String, u64)> = Vec::new();
    loop {
        let runs = server.get_json("api/runs", 200);
        if let Some(row) = runs.as_array().unwrap().first() {
            let now = (
                row["status"].as_str().unwrap().to_string(),
                row["epochs_done"].as_u64().unwrap(),
            );
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            if now.0 == "finished" {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(wait_exit(&mut training).success());
    assert_eq!(seen.first().unwrap().0, "running", "{seen:?}");
    assert_eq!(
        seen.last().unwrap(),
        &("finished".to_string(), 3),
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
    let detail = server.get_json("api/runs/live", 200);
    assert_eq!(detail["checkpoints"]["final"], true);
    assert_eq!(
        detail["history"]["val_accuracy"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn ctrl_c_stops_the_server_with_130_and_a_taken_port_is_an_error() {
    let mut server = serving();
    assert_alive(&server);
    let port = server.addr().rsplit(':').next().unwrap().to_string();
    let taken = mnist_mlp(home())
        .args(["serve", "--artifact-dir", "artifacts", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(
        err.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}:")),
        "{err}"
    );

    // SAFETY: signals the child this test started.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGINT) },
        0
    );
    assert_eq!(wait_exit(&mut server.child).code(), Some(130));
}
