//! `serve`'s page in a real browser: Debian's `chromium`, driven over WebDriver (W3C JSON over
//! HTTP, spoken here with `ureq`) by `chromedriver`. Draws a "1" and a "0" on the pad with
//! pointer events and checks the page's digit and bars against `POST /predict`; sorts a
//! sweep's table by clicking its headers and checks its chart's lines against the API.
//!
//! Without chromium and chromedriver the test fails, saying so (`.ci/run` installs them).

mod common;

use common::{Serving, shared_temp_dir, sweep_of, tiny_sweep, train_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The program `name` on PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// A headless chromium session behind chromedriver; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

impl Browser {
    fn start() -> Self {
        let missing = "is not installed: the browser test needs Debian's `chromium` and \
                       `chromium-driver` (apt-get install chromium chromium-driver; .ci/run \
                       installs them)";
        let chromium = find_program("chromium").unwrap_or_else(|| panic!("chromium {missing}"));
        let chromedriver =
            find_program("chromedriver").unwrap_or_else(|| panic!("chromedriver {missing}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver = common::dies_with_parent(&mut command).spawn().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build(),
            ),
        };
        wait_for("chromedriver to be ready", || {
            browser
                .agent
                .get(format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_vec().ok())
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        let session = browser.command(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"],
                },
            }}}),
        );
        let id = session["sessionId"].as_str().unwrap().to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test, naming it.
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let value: Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
        assert_eq!(status, 200, "{method} {path}: {value}");
        value["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url }));
    }

    fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Clicks the element `css` selects, as a user would.
    fn click(&self, css: &str) {
        let element = self.element(css);
        self.command("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Draws through `points` (offsets from the pad's centre) as one stroke of `pointer`.
    fn draw(&self, pointer: &str, points: &[(i64, i64)]) {
        let pad = self.element("#pad");
        let at = |(x, y): (i64, i64), duration: u64| json!({"type": "pointerMove", "duration": duration, "origin": {ELEMENT: pad}, "x": x, "y": y});
        let mut actions = vec![
            at(points[0], 0),
            json!({"type": "pointerDown", "button": 0}),
        ];
        actions.extend(points[1..].iter().map(|&p| at(p, 15)));
        actions.push(json!({"type": "pointerUp", "button": 0}));
        self.command(
            "POST",
            "/actions",
            json!({"actions": [{"type": "pointer", "id": pointer,
                   "parameters": {"pointerType": pointer}, "actions": actions}]}),
        );
        self.command("DELETE", "/actions", Value::Null);
    }

    /// Waits until the pad has drawn `strokes` strokes and answered every request it sent.
    fn settled(&self, strokes: u64) {
        wait_for("the pad to settle", || {
            let state = self.script(
                "const p = window.mnistPad; return [p.strokes, p.sent, p.answered, \
                 document.getElementById('pad').dataset.state];",
            );
            state[0] == strokes && state[1] == state[2] && state[3] == "idle"
        });
    }

    fn screenshot(&self) -> Vec<u8> {
        let base64 = self.command("GET", "/screenshot", Value::Null);
        decode_base64(base64.as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends chromium; chromedriver is killed whatever happened.
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, &d| n << 6 | u32::from(d)) << (6 * (4 - c.len()));
            n.to_be_bytes()[1..c.len()].to_vec()
        })
        .collect()
}

/// A vertical stroke, top to bottom.
fn one() -> Vec<(i64, i64)> {
    (0..=12).map(|i| (0, -90 + 15 * i)).collect()
}

/// An ellipse, 120 wide and 180 tall, drawn once round.
fn zero() -> Vec<(i64, i64)> {
    (0..=36)
        .map(|i| {
            let t = f64::from(i) * std::f64::consts::TAU / 36.0;
            (
                (60.0 * t.sin()).round() as i64,
                (-90.0 * t.cos()).round() as i64,
            )
        })
        .collect()
}

/// The page's digit and bars, and the same PNG posted to the API: equal.
fn check_drawing(browser: &Browser, server: &Serving, expected: u64) {
    let digit = browser.script("return document.getElementById('digit').textContent;");
    let bars = browser.script(
        "return [...Array(10).keys()].map(d => document.getElementById('bar-' + d).dataset.p);",
    );
    let checkpoint = browser.script("return document.getElementById('checkpoint').value;");
    let sent: Vec<u8> =
        serde_json::from_value(browser.script("return window.mnistPad.lastPng;")).unwrap();
    let (status, answer) = server.post(
        &format!(
            "api/runs/drawn/predict?checkpoint={}",
            checkpoint.as_str().unwrap()
        ),
        "image/png",
        &sent,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        digit,
        expected.to_string(),
        "the page shows {digit}; the API says {answer}"
    );
    assert_eq!(answer["digit"], expected);
    for (d, bar) in bars.as_array().unwrap().iter().enumerate() {
        let shown: f64 = bar.as_str().unwrap().parse().unwrap();
        let served = answer["probabilities"][d].as_f64().unwrap();
        assert!(
            (shown - served).abs() <= 1e-6,
            "p({d}): page {shown}, API {served}"
        );
    }
}

/// The page of run `drawn`, trained on `images` images for `epochs`.
fn page_with_a_run(images: usize, epochs: usize) -> (PathBuf, Serving, Browser) {
    let home = shared_temp_dir();
    train_for(&home, "drawn", images, epochs);
    let server = Serving::start(&home, "artifacts", &[]);
    let browser = Browser::start();
    browser.open(&format!("{}runs/drawn", server.url));
    wait_for("the checkpoints", || {
        browser.script("return document.getElementById('checkpoint').options.length;")
            == json!(3 + epochs)
    });
    (home, server, browser)
}

// Ignored by the README's `cargo test --release` (which needs no browser), run by
// scripts/test-browser.sh, and so by CI, where a missing browser fails it.
#[test]
#[ignore = "needs chromium and chromium-driver: scripts/test-browser.sh runs it"]
fn drawing_a_one_and_a_zero_on_the_pad() {
    let (_home, server, browser) = page_with_a_run(20_000, 2);
    assert_eq!(
        browser.script("return document.getElementById('checkpoint').value;"),
        "final"
    );
    // The charts under the page's Content-Security-Policy (no inline styles): drawn, and their
    // legend's colours set from the script.
    wait_for("the loss chart's legend", || {
        browser.script(
            "const i = document.querySelector('#run-loss .legend i'); \
             return i ? getComputedStyle(i).backgroundColor : null;",
        ) == json!("rgb(47, 111, 222)")
    });
    assert_eq!(
        browser.script("return document.querySelectorAll('#run-loss svg polyline').length;"),
        json!(2)
    );
    // The y axis's ticks at round values: a step of 1, 2, 2.5 or 5 times a power of ten.
    for chart in ["run-loss", "run-acc"] {
        let ticks = browser.script(&format!(
            "return [...document.querySelectorAll('#{chart} svg text.tick')].map(t => t.textContent);"
        ));
        let ticks: Vec<f64> = ticks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ticks.len() >= 2, "{chart}: {ticks:?}");
        let step = ticks[1] - ticks[0];
        let power = 10f64.powf(step.log10().floor());
        let mantissa = step / power;
        assert!(
            [1.0, 2.0, 2.5, 5.0]
                .iter()
                .any(|m| (mantissa - m).abs() < 1e-6),
            "{chart}: {ticks:?}"
        );
        for t in &ticks {
            let k = t / step;
            assert!((k - k.round()).abs() < 1e-6, "{chart}: {ticks:?}");
        }
    }
    browser.draw("mouse", &one());
    browser.settled(1);
    check_drawing(&browser, &server, 1);

    let clear = browser.element("#clear");
    browser.command("POST", &format!("/element/{clear}/click"), json!({}));
    assert_eq!(
        browser.script("return document.getElementById('digit').textContent;"),
        ""
    );
    browser.draw("pen", &zero());
    browser.settled(1);
    check_drawing(&browser, &server, 0);

    // Another checkpoint: the page asks again, and still agrees with the API.
    browser.script(
        "const s = document.getElementById('checkpoint'); s.value = '1'; \
         s.dispatchEvent(new Event('change'));",
    );
    browser.settled(1);
    assert_eq!(
        browser.script("return document.getElementById('checkpoint').value;"),
        "1"
    );
    check_drawing(&browser, &server, 0);

    // What is not there is a page saying so: no drawing pad, no empty charts, no raw JSON.
    for (address, title, says) in [
        ("runs/nope", "nope", "nope: no such run"),
        (
            "nothing/here",
            "no such page",
            "/nothing/here: no such page",
        ),
    ] {
        browser.open(&format!("{}{address}", server.url));
        wait_for("the error view", || {
            browser.script("return !document.getElementById('error-view').hidden;") == json!(true)
        });
        assert_eq!(
            browser.script("return document.getElementById('error-title').textContent;"),
            title
        );
        let text = browser.script("return document.getElementById('error-text').textContent;");
        assert!(text.as_str().unwrap().starts_with(says), "{text}");
        assert_eq!(
            browser.script(
                "return [...document.querySelectorAll('main > section')].filter(s => !s.hidden).length;"
            ),
            json!(1)
        );
        assert_eq!(
            browser.script("return document.getElementById('run-view').hidden;"),
            json!(true)
        );
    }
}

/// The trials of `api` (a sweep's detail) sorted by `key` (`name` or a metric), ascending or
/// not; those without the metric last, ties in the API's order.
fn sorted_by(api: &Value, key: &str, descending: bool) -> Vec<String> {
    let mut trials: Vec<&Value> = api["trials"].as_array().unwrap().iter().collect();
    trials.sort_by(|a, b| match (a[key].as_f64(), b[key].as_f64()) {
        (Some(x), Some(y)) if descending => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) if key == "name" && descending => b[key].as_str().cmp(&a[key].as_str()),
        (None, None) if key == "name" => a[key].as_str().cmp(&b[key].as_str()),
        (None, None) => std::cmp::Ordering::Equal,
    });
    trials
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs chromium and chromium-driver: scripts/test-browser.sh runs it"]
fn a_sweeps_table_sorts_by_its_headers_and_charts_the_chosen_trials() {
    let home = shared_temp_dir();
    // Trials 0 to 2 trained, 3 pending.
    tiny_sweep(&home, "widths", &[0, 1, 2]);
    let server = Serving::start(&home, "artifacts", &[]);
    let api = server.get_json("api/sweeps/widths", 200);
    let browser = Browser::start();

    // The front page lists the sweep, linking to its page.
    browser.open(&server.url);
    wait_for("the sweeps on the front page", || {
        browser.script(
            "return [...document.querySelectorAll('#sweeps-table a')].map(a => a.getAttribute('href'));",
        ) == json!(["/sweeps/widths"])
    });

    browser.open(&format!("{}sweeps/widths", server.url));
    let rows = || {
        browser.script(
            "return [...document.querySelectorAll('#sweep-table tbody tr')].map(r => r.dataset.trial);",
        )
    };
    wait_for("the sweep's table", || {
        rows().as_array().is_some_and(|r| r.len() == 4)
    });
    // At first as `sweep status` sorts: best val_accuracy first, the pending trial last.
    let ranked = sorted_by(&api, "val_accuracy", true);
    assert_eq!(rows(), json!(ranked));
    assert_eq!(ranked[3], "trial-003");
    let shown = browser.script(
        "return [...document.querySelectorAll('#sweep-table td[data-key=val_accuracy]')].map(td => td.textContent);",
    );
    let expected: Vec<String> = api["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["val_accuracy"]
                .as_f64()
                .map_or("–".into(), |v| format!("{v:.4}"))
        })
        .collect();
    assert_eq!(shown, json!(expected));

    // Clicking a header sorts by it, ascending; again, descending; missing values stay last.
    browser.click("#sweep-table th[data-key=val_loss]");
    assert_eq!(rows(), json!(sorted_by(&api, "val_loss", false)));
    browser.click("#sweep-table th[data-key=val_loss]");
    assert_eq!(rows(), json!(sorted_by(&api, "val_loss", true)));
    assert_eq!(
        browser.script("return document.querySelector('#sweep-table th[aria-sort]').dataset.key + ' ' + document.querySelector('#sweep-table th[aria-sort]').getAttribute('aria-sort');"),
        "val_loss descending"
    );
    browser.click("#sweep-table th[data-key=name]");
    assert_eq!(
        rows(),
        json!(["trial-000", "trial-001", "trial-002", "trial-003"])
    );
    browser.click("#sweep-table th[data-key=name]");
    assert_eq!(
        rows(),
        json!(["trial-003", "trial-002", "trial-001", "trial-000"])
    );

    // The best three are chosen at first: one line each on both charts, through the API's
    // numbers (each point's tooltip, to 4 significant digits), and one legend entry each.
    let points = |chart: &str| -> Vec<(String, Vec<f64>)> {
        let lines = browser.script(&format!(
            "return [...document.querySelectorAll('#{chart} svg polyline')].map(p =>              [...p.parentNode.querySelectorAll('circle[fill=\"' + p.getAttribute('stroke') + '\"] title')].map(t => t.textContent));"
        ));
        lines
            .as_array()
            .unwrap()
            .iter()
            .map(|titles| {
                let titles: Vec<&str> = titles
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect();
                let trial = titles[0].split(' ').next().unwrap().to_string();
                let values = titles
                    .iter()
                    .map(|t| t.rsplit(": ").next().unwrap().parse().unwrap())
                    .collect();
                (trial, values)
            })
            .collect()
    };
    let history = |trial: &str, key: &str| -> Vec<f64> {
        let t = api["trials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == trial)
            .unwrap();
        t["history"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let drawn = |chart: &str, key: &str, trials: &[String]| {
        let lines = points(chart);
        let names: Vec<&str> = lines.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, trials, "{chart}");
        // The tooltips show 4 significant digits, as the page shows every number.
        let four = |v: f64| format!("{v:.3e}").parse::<f64>().unwrap();
        for (trial, values) in &lines {
            let wanted: Vec<f64> = history(trial, key).into_iter().map(four).collect();
            assert_eq!(*values, wanted, "{chart}: {trial}");
        }
        let legend = browser.script(&format!(
            "return document.querySelectorAll('#{chart} .legend span').length;"
        ));
        assert_eq!(legend, json!(trials.len()), "{chart}");
    };
    drawn("sweep-acc", "val_accuracy", &ranked[..3]);
    drawn("sweep-loss", "val_loss", &ranked[..3]);
    // Unticking one takes its lines away; the pending trial cannot be ticked.
    browser.click(&format!("#sweep-table input[data-trial={}]", ranked[1]));
    let left = [ranked[0].clone(), ranked[2].clone()];
    drawn("sweep-acc", "val_accuracy", &left);
    drawn("sweep-loss", "val_loss", &left);
    assert_eq!(
        browser.script(
            "return document.querySelector('#sweep-table input[data-trial=trial-003]').disabled;"
        ),
        true
    );

    // A trial's name leads to its run's page: the pad with its checkpoints.
    browser.click(&format!("#sweep-table tr[data-trial={}] a", ranked[0]));
    wait_for("the trial's page", || {
        browser.script("return document.getElementById('checkpoint').options.length;")
            == json!(3 + 2)
    });
    assert_eq!(
        browser.script("return document.getElementById('run-title').textContent;"),
        json!(format!("widths / {}", ranked[0]))
    );
}

/// Writes docs/serve.png, the README's picture: `cargo test --release --test browser --
/// --ignored screenshot`.
#[test]
#[ignore = "writes docs/serve.png"]
fn screenshot() {
    // The tutorial's run: 5 epochs on all 60,000 images.
    let (_home, _server, browser) = page_with_a_run(60_000, 5);
    browser.draw("mouse", &[(-55, -80), (55, -80), (-10, 90)]);
    browser.settled(1);
    let png = browser.screenshot();
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/serve.png"),
        png,
    )
    .unwrap();
}

/// Writes docs/sweep.png, docs/sweeps.md's picture: `cargo test --release --test browser --
/// --ignored sweep_page_picture`. Widths 16, 32, 64 × learning rates 1e-3, 3e-4, 3 epochs on
/// 2,000 images (validated on 500); the last trial left pending.
#[test]
#[ignore = "writes docs/sweep.png"]
fn sweep_page_picture() {
    let home = shared_temp_dir();
    let spec = "[sweep]\nname = \"widths\"\nmethod = \"grid\"\n\
        [sweep.grid]\nhidden = [[16], [32], [64]]\nlearning_rate = [1e-3, 3e-4]\n\
        [base.train]\nepochs = 3\nlimit_train = 2000\nlimit_valid = 500\nseed = 5\n";
    sweep_of(&home, "widths", spec, &[0, 1, 2, 3, 4]);
    let server = Serving::start(&home, "artifacts", &[]);
    let browser = Browser::start();
    browser.open(&format!("{}sweeps/widths", server.url));
    wait_for("the chart", || {
        browser.script("return document.querySelectorAll('#sweep-loss svg polyline').length;")
            == json!(3)
    });
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sweep.png"),
        browser.screenshot(),
    )
    .unwrap();
}

#[test]
#[ignore = "needs chromium and chromium-driver: scripts/test-browser.sh runs it"]
fn markup_in_a_sweeps_settings_is_shown_as_text() {
    let home = shared_temp_dir();
    let bold = r#"<b class="injected">bold</b>"#;
    let meta = r#"<meta http-equiv="refresh" content="0;url=about:blank">"#;
    let spec = format!(
        "[sweep]\nname = \"marked\"\nmethod = \"grid\"\n\
         [sweep.grid]\n\"data.npm_package\" = [{bold:?}, {meta:?}]\n\
         [base.train]\nepochs = 1\n"
    );
    sweep_of(&home, "marked", &spec, &[]);
    let server = Serving::start(&home, "artifacts", &[]);
    let browser = Browser::start();
    browser.open(&format!("{}sweeps/marked", server.url));
    let cells = || {
        browser.script(
            "return [...document.querySelectorAll('#sweep-table td[data-key=\"setting:data.npm_package\"]')].map(td => td.textContent);",
        )
    };
    wait_for("the sweep's table", || {
        cells().as_array().is_some_and(|c| c.len() == 2)
    });
    // The settings read as the text they are, and none of their markup became an element.
    let mut shown: Vec<String> = serde_json::from_value(cells()).unwrap();
    shown.sort();
    let mut expected = vec![bold.to_string(), meta.to_string()];
    expected.sort();
    assert_eq!(shown, expected);
    assert_eq!(
        browser.script(
            "return document.querySelectorAll('b.injected, body meta, #sweep-table meta').length;"
        ),
        json!(0)
    );
    assert_eq!(
        browser.script("return location.pathname;"),
        json!("/sweeps/marked")
    );
}
