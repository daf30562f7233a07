//! Faults while running: SIGKILL during a download and during training, Ctrl-C in plain mode
//! and in the TUI (under a real pseudo-terminal), and a loss that diverges. Each must leave
//! nothing half-written and the run's files consistent, and the next run must work.

mod common;

use burn::config::Config;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::store::ModuleRecord;
use burn::train::checkpoint::Checkpoint;
use common::{
    Mirror, PATIENCE, accuracy_of, mnist_dir, mnist_mlp, names_in, open_pty, read_info,
    read_screen, run_of, run_ok, stderr, stderr_and_exit, stdout, temp_files, train_args,
    wait_exit,
};
use mnist_mlp::backend::Backend;
use mnist_mlp::config::TrainConfig;
use mnist_mlp::data::idx::encode;
use mnist_mlp::data::source::{FILES, sha256_of_file};
use mnist_mlp::model::MlpConfig;
use mnist_mlp::run_dir::{CheckpointPart, History, RunDir, RunStatus};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any wait in these tests may take before it is a failure (not a timing assertion:
/// only a bound on a hang).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill(child: &Child, signal: i32) {
    // SAFETY: signals our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

// ---------------------------------------------------------------------------------------------
// SIGKILL during a download.

/// A loopback HTTP server that serves `full` files whole and, for `stall`, sends the headers
/// and the first half of the body, reports it, then stalls until the client goes away.
fn stalling_mirror(
    full: HashMap<String, Vec<u8>>,
    stall: (String, Vec<u8>),
) -> (String, mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mnist/", listener.local_addr().unwrap());
    let (sent, receive_sent) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the request headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches("/mnist/")
                .to_string();
            let (body, stalls) = match full.get(&path) {
                Some(body) => (body.clone(), false),
                None if path == stall.0 => (stall.1.clone(), true),
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if stalls {
                let half = body.len() / 2;
                let _ = stream.write_all(&body[..half]);
                let _ = stream.flush();
                let _ = sent.send(half);
                // Stall: wait until the client is gone (its end closes when it is killed).
                let mut sink = [0u8; 1];
                let _ = reader.read(&mut sink);
            } else {
                let _ = stream.write_all(&body);
            }
        }
    });
    (url, receive_sent)
}

fn gz(name: &str) -> Vec<u8> {
    encode::gzip(&std::fs::read(mnist_dir().join(name)).unwrap())
}

#[test]
fn sigkill_during_a_download_leaves_nothing_partial_and_the_next_run_completes() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("config")).unwrap();
    std::fs::write(
        home.path().join("config/train.toml"),
        "[data]\nnpm_package = \"\"\n",
    )
    .unwrap();
    let cache = home.path().join("cache/mnist-mlp/mnist");
    let [x_train, y_train, x_valid, y_valid] = FILES.map(|f| f.name);

    // The first file downloads whole; the second stalls half-way.
    let (url, sent) = stalling_mirror(
        HashMap::from([(format!("{x_train}.gz"), gz(x_train))]),
        (format!("{y_train}.gz"), gz(y_train)),
    );
    let mut child = mnist_mlp(home.path())
        .arg("data")
        .env("MNIST_MIRROR", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let half = sent.recv_timeout(PATIENCE).expect("the download started");
    assert!(half > 0);
    kill(&child, libc::SIGKILL);
    let status = wait_exit(&mut child);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    // The complete, verified file is cached; of the interrupted one, nothing.
    assert_eq!(names_in(&cache), [x_train]);
    assert_eq!(
        sha256_of_file(&cache.join(x_train)).unwrap(),
        FILES[0].sha256
    );
    assert_eq!(temp_files(home.path()), Vec::<PathBuf>::new());

    // The next run, with a mirror that answers, fetches only what is missing and completes.
    let mirror = Mirror::serve(
        [y_train, x_valid, y_valid]
            .into_iter()
            .map(|name| (format!("{name}.gz"), gz(name)))
            .collect(),
    );
    let output = run_ok(
        mnist_mlp(home.path())
            .arg("data")
            .env("MNIST_MIRROR", &mirror.url),
    );
    assert!(
        stdout(&output).contains("x_train: (60000, 28, 28) uint8, min 0, max 255"),
        "{}",
        stdout(&output)
    );
    let mut requested = mirror.requests();
    requested.sort();
    assert_eq!(
        requested,
        [
            format!("{x_valid}.gz"),
            format!("{y_valid}.gz"),
            format!("{y_train}.gz")
        ]
    );
    for file in FILES {
        assert_eq!(sha256_of_file(&cache.join(file.name)).unwrap(), file.sha256);
    }
    assert_eq!(temp_files(home.path()), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------
// Training runs.

const SMALL: [&str; 4] = ["--limit-train", "1500", "--limit-valid", "300"];

fn train(home: &Path, name: &str, extra: &[&str]) -> Command {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name)
        .args(SMALL)
        // The CPU backend, also in a wgpu build (where wgpu is the default; tests/wgpu.rs).
        .args(["--backend", "ndarray"])
        .args(extra);
    command
}

/// Loads every part of the checkpoint of `epoch` that is on disk; returns how many there were.
/// The model is loaded into the network and its weights read, so a file that only looks
/// complete would fail here.
fn load_checkpoint_parts(run: &RunDir, epoch: usize) -> usize {
    let mut present = 0;
    for part in CheckpointPart::ALL {
        let path = run.checkpoint_path(part, epoch);
        if !path.exists() {
            continue;
        }
        present += 1;
        match part {
            CheckpointPart::Model => {
                let record = <ModuleRecord as Checkpoint>::load(path.clone())
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                let device = Backend::Ndarray.device(0).unwrap();
                let model = MlpConfig::tutorial().init(&device).load_record(record);
                let first = model
                    .into_record()
                    .into_bytes()
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                assert!(first.len() > 669_706 * 4, "{}", path.display());
            }
            CheckpointPart::Optimizer => {
                let record = <OptimizerRecord as Checkpoint>::load(path.clone())
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                assert!(!record.is_empty(), "{}", path.display());
            }
            CheckpointPart::Scheduler => {
                <LrSchedulerRecord as Checkpoint>::load(path.clone())
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
        }
    }
    present
}

/// What must hold of a run directory whatever instant its process died at: every file
/// complete and readable, `run.json`'s epochs all checkpointed, the history at most one
/// epoch ahead of it (written just before the checkpoint), no temporary files. Returns
/// `epochs_done`.
fn assert_consistent_after_a_kill(run: &RunDir) -> usize {
    assert_eq!(temp_files(run.path()), Vec::<PathBuf>::new());
    TrainConfig::from_file(&run.config_path()).unwrap();
    assert_eq!(
        MlpConfig::load(run.model_config_path()).unwrap(),
        MlpConfig::tutorial()
    );
    let info = read_info(run).expect("run.json is complete");
    assert_eq!(info.status, RunStatus::Running, "killed, so never marked");
    let done = info.epochs_done;
    assert_eq!(info.epoch_seconds.len(), done);
    let history = if run.history_json_path().exists() {
        run.read_history().expect("history.json is complete")
    } else {
        History::default()
    };
    let csv = std::fs::read_to_string(run.history_csv_path()).unwrap_or_default();
    let csv_epochs = csv.lines().count().saturating_sub(1);
    // history.json and history.csv are written as each epoch ends, run.json's epochs_done
    // once that epoch's checkpoint is complete, which Burn saves on background threads: under
    // load the history can be epochs ahead of run.json, never behind, and on the epochs
    // run.json counts they agree.
    for (file, epochs) in [
        ("history.json", history.epochs()),
        ("history.csv", csv_epochs),
    ] {
        assert!(
            epochs >= done,
            "run.json says {done} epochs, {file} holds {epochs}"
        );
    }
    let mut rows = csv.lines().skip(1);
    for epoch in 0..done {
        let m = history.get(epoch).unwrap();
        assert_eq!(
            rows.next(),
            Some(
                format!(
                    "{epoch},{},{},{},{}",
                    m.loss, m.accuracy, m.val_loss, m.val_accuracy
                )
                .as_str()
            )
        );
    }
    for epoch in 1..=done {
        assert_eq!(load_checkpoint_parts(run, epoch), 3, "epoch {epoch}");
    }
    // Later checkpoints may have been under way: whatever part of them exists is whole.
    for epoch in done + 1..=info.epochs_planned {
        load_checkpoint_parts(run, epoch);
    }
    assert!(!run.model_path().exists());
    done
}

/// Trains, SIGKILLs the process when `when` says so (given the run directory and stdout lines
/// so far), and checks what is left.
fn kill_training_when(
    home: &Path,
    name: &str,
    mut when: impl FnMut(&RunDir, &[String]) -> bool,
) -> usize {
    let mut child = train(home, name, &["--epochs", "4", "--dashboard", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (line_sender, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = line_sender.send(line);
        }
    });
    let run = run_of(home, name);
    let mut seen = Vec::new();
    wait_until(&format!("the kill point of run {name}"), || {
        seen.extend(lines.try_iter());
        when(&run, &seen)
    });
    kill(&child, libc::SIGKILL);
    wait_exit(&mut child);
    assert_consistent_after_a_kill(&run)
}

#[test]
fn sigkill_at_any_point_of_training_leaves_complete_files() {
    let home = tempfile::tempdir().unwrap();
    // While the first epoch trains.
    // run.json is written before the first batch, and polled far more often than an epoch
    // lasts: the kill lands before any epoch is done.
    let done = kill_training_when(home.path(), "early", |run, _| run.info_path().exists());
    assert_eq!(done, 0);
    // Just as epoch 1 is reported, when its checkpoint is being written.
    kill_training_when(home.path(), "epoch1", |_, lines| {
        lines.iter().any(|l| l.starts_with("Epoch 1/4"))
    });
    // As soon as the first part of epoch 2's checkpoint exists; the others may be half-written.
    kill_training_when(home.path(), "parts", |run, _| {
        run.checkpoint_path(CheckpointPart::Model, 2).exists()
    });
    // Right after the history of epoch 3 is written, before its checkpoint.
    let done = kill_training_when(home.path(), "history3", |run, _| {
        run.read_history().is_ok_and(|h| h.epochs() == 3)
    });
    assert!(done >= 2, "{done}");

    // The artifact directory still works: the next run completes.
    let output = run_ok(&mut train(
        home.path(),
        "after",
        &["--epochs", "1", "--dashboard", "none"],
    ));
    assert_eq!(stdout(&output).lines().last(), Some("artifacts/runs/after"));
    let info = read_info(&run_of(home.path(), "after")).unwrap();
    assert_eq!(info.status, RunStatus::Finished);
}

/// What an interrupted run must hold: marked interrupted, `epochs_done` epochs in history and
/// run.json alike, exactly their checkpoints, the last one the model that scored the last
/// recorded val_accuracy, and no final model.
fn assert_interrupted(run: &RunDir, planned: usize) -> usize {
    let info = read_info(run).unwrap();
    assert_eq!(info.status, RunStatus::Interrupted);
    assert_eq!(info.error, None);
    assert!(info.ended.is_some());
    assert_eq!(info.epochs_planned, planned);
    let done = info.epochs_done;
    assert!(done >= 1 && done < planned, "{done}");
    assert_eq!(info.epoch_seconds.len(), done);
    let history = run.read_history().unwrap();
    assert_eq!(history.epochs(), done);
    let mut expected: Vec<String> = (1..=done)
        .flat_map(|e| CheckpointPart::ALL.map(|p| format!("{}-{e}.bpk", p.prefix())))
        .collect();
    expected.sort();
    assert_eq!(names_in(&run.checkpoint_dir()), expected);
    let last = run.checkpoint_path(CheckpointPart::Model, done);
    let accuracy = accuracy_of(&last, &MlpConfig::tutorial(), 300);
    assert!(
        (accuracy - history.val_accuracy[done - 1]).abs() < 1e-9,
        "{accuracy} vs {history:?}"
    );
    assert!(!run.model_path().exists());
    assert_eq!(temp_files(run.path()), Vec::<PathBuf>::new());
    done
}

#[test]
fn ctrl_c_stops_training_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let mut child = train(
        home.path(),
        "stopped",
        &["--epochs", "50", "--dashboard", "plain"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
        if lines.last().unwrap().starts_with("Epoch 2/50") {
            break;
        }
    }
    kill(&child, libc::SIGINT);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130), "{err}");

    let run = run_of(home.path(), "stopped");
    let done = assert_interrupted(&run, 50);
    assert_eq!(
        err,
        format!(
            "interrupted: {done} of 50 epochs done and checkpointed; the run is kept; resume it \
             with: mnist-mlp train --resume stopped\n"
        )
    );
    // The summary, then the run directory, last.
    let rest: Vec<&str> = rest.lines().collect();
    assert_eq!(rest.last(), Some(&"artifacts/runs/stopped"));
    assert!(
        rest.iter()
            .any(|l| l.starts_with(&format!("Trained {done}/50 epochs: "))),
        "{rest:?}"
    );
}

/// Ctrl-C while epoch 2 validates (held there by the test hook until the signal lands): no
/// epoch line with validation metrics for epoch 2, whose numbers would be those of part of the
/// validation set, but a line saying it was cut short; epoch 1's line as recorded; and stderr
/// ends with the command that resumes the run, here with its artifact directory.
#[test]
fn ctrl_c_while_validating_prints_no_metrics_for_the_unfinished_epoch() {
    let home = tempfile::tempdir().unwrap();
    let held = home.path().join("validating");
    let mut child = mnist_mlp(home.path())
        .arg("train")
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--artifact-dir", "elsewhere", "--run-name", "cut"])
        .args(SMALL)
        .args([
            "--backend",
            "ndarray",
            "--epochs",
            "3",
            "--dashboard",
            "plain",
        ])
        .env(
            mnist_mlp::training::TEST_HOLD,
            format!("2:{}", held.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("epoch 2's validation", || held.exists());
    kill(&child, libc::SIGINT);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130), "{err}");

    let run = RunDir::open(home.path().join("elsewhere/runs/cut"));
    let history = run.read_history().unwrap();
    assert_eq!(history.epochs(), 1, "{out}");
    assert_eq!(read_info(&run).unwrap().epochs_done, 1);
    let lines: Vec<&str> = out.lines().collect();
    let epoch_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epoch_lines.len(), 2, "{out}");
    let first = history.get(0).unwrap();
    assert!(epoch_lines[0].starts_with("Epoch 1/3 - "), "{out}");
    assert!(
        epoch_lines[0].ends_with(&format!(
            " - val_loss: {:.4} - val_accuracy: {:.4}",
            first.val_loss, first.val_accuracy
        )),
        "{out}"
    );
    // Epoch 2: cut short after the first batch of 300 images, and said so, without metrics.
    let prefix = "Epoch 2/3 - interrupted while validating (";
    assert!(epoch_lines[1].starts_with(prefix), "{out}");
    let (done, total) = epoch_lines[1][prefix.len()..]
        .split_once(" images)")
        .unwrap()
        .0
        .split_once(" of ")
        .unwrap();
    assert_eq!(total, "300", "{out}");
    let done: usize = done.parse().unwrap();
    assert!((1..300).contains(&done), "{out}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Epoch 2/3") && l.contains("val_accuracy")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Trained 1/3 epochs: ")),
        "{out}"
    );
    assert!(
        err.ends_with(
            "interrupted: 1 of 3 epochs done and checkpointed; the run is kept; resume it \
             with: mnist-mlp train --resume cut --artifact-dir elsewhere\n"
        ),
        "{err}"
    );
}

#[test]
fn a_diverging_loss_stops_training_and_saves_no_model() {
    let home = tempfile::tempdir().unwrap();
    let output = train(
        home.path(),
        "diverged",
        &[
            "--epochs",
            "2",
            "--learning-rate",
            "1e30",
            "--dashboard",
            "plain",
        ],
    )
    .output()
    .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let prefix = "error: artifacts/runs/diverged: the training loss became ";
    assert!(err.starts_with(prefix), "{err}");
    let (value, rest) = err[prefix.len()..].split_once(' ').unwrap();
    assert!(matches!(value, "NaN" | "inf" | "-inf"), "{err}");
    let batch: usize = rest
        .strip_prefix("at epoch 1, batch ")
        .and_then(|r| r.split_once(';'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    // 1500 images at 32: 47 batches in the epoch.
    assert!((1..=47).contains(&batch), "{err}");
    assert!(
        err.ends_with("; training stopped and no model was saved (try a lower --learning-rate)\n"),
        "{err}"
    );

    let run = run_of(home.path(), "diverged");
    let info = read_info(&run).unwrap();
    assert_eq!(info.status, RunStatus::Failed);
    assert_eq!(
        info.error.as_deref(),
        Some(
            err.trim_end()
                .trim_start_matches("error: artifacts/runs/diverged: ")
        )
    );
    assert_eq!(info.epochs_done, 0);
    assert!(!run.model_path().exists());
    assert_eq!(names_in(&run.checkpoint_dir()), Vec::<String>::new());
    // Nothing non-finite was recorded: no epoch ended, so the history is empty.
    assert_eq!(run.read_history().unwrap(), Default::default());
    assert_eq!(
        std::fs::read_to_string(run.history_csv_path()).unwrap(),
        "epoch,loss,accuracy,val_loss,val_accuracy\n"
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run() {
    // Files may grow to 2 MiB: the config, run.json and history fit, a checkpoint of the
    // model (2.7 MB) does not. The write fails with EFBIG, as on a full disk it would with
    // ENOSPC (SIGXFSZ, which would kill the process instead, is ignored as a shell can).
    let home = tempfile::tempdir().unwrap();
    let mut command = train(
        home.path(),
        "full",
        &["--epochs", "2", "--dashboard", "plain"],
    );
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2 << 20,
                rlim_max: 2 << 20,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let run = run_of(home.path(), "full");
    let part = ["model", "optim"]
        .into_iter()
        .find(|part| {
            err == format!(
                "error: artifacts/runs/full/checkpoint/{part}-1.bpk: cannot write: File too large (os error 27)\n"
            )
        })
        .unwrap_or_else(|| panic!("{err}"));
    let info = read_info(&run).unwrap();
    assert_eq!(info.status, RunStatus::Failed);
    assert_eq!(
        info.error.as_deref(),
        Some(
            format!(
                "artifacts/runs/full/checkpoint/{part}-1.bpk: cannot write: File too large (os error 27)"
            )
            .as_str()
        )
    );
    // No epoch counts without its checkpoint; nothing half-written is left.
    assert_eq!(info.epochs_done, 0);
    assert_eq!(run.read_history().unwrap().epochs(), 0);
    assert!(!run.model_path().exists());
    assert!(!run.checkpoint_path(CheckpointPart::Model, 1).exists());
    assert_eq!(temp_files(home.path()), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------
// The TUI, under a pseudo-terminal.

fn termios_of(fd: &OwnedFd) -> libc::termios {
    // SAFETY: plain data filled in by tcgetattr.
    let mut attr: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and pointer.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut attr) }, 0);
    attr
}

fn same_settings(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
}

/// Runs training with the TUI on a pseudo-terminal, presses `keys` once an epoch is done and
/// the TUI is up, and checks that the run ends interrupted, exit 130, with the terminal as it
/// was before and the run directory printed last.
fn tui_stops_on(keys: &[u8], name: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let pty = open_pty();
    let before = termios_of(&pty.slave);
    let mut command = train(home.path(), name, &["--epochs", "50", "--dashboard", "tui"]);
    command
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe. The child leads a new session whose
    // controlling terminal is the pty, as a shell would set it up.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // The command holds its copies of the terminal until dropped.
    drop(command);
    let mut master = std::fs::File::from(pty.master);
    let screen = read_screen(master.try_clone().unwrap());

    let run = run_of(home.path(), name);
    wait_until("an epoch done under the TUI, with Ctrl-C on", || {
        let attr = termios_of(&pty.slave);
        let raw = attr.c_lflag & libc::ICANON == 0;
        let ctrl_c = attr.c_lflag & libc::ISIG != 0;
        raw && ctrl_c && read_info(&run).is_some_and(|i| i.epochs_done >= 1)
    });
    master.write_all(keys).unwrap();
    let (status, err) = stderr_and_exit(&mut child);
    let after = termios_of(&pty.slave);
    drop(pty.slave);
    let screen = screen.join().unwrap();

    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        same_settings(&before, &after),
        "terminal settings not restored"
    );
    // The last thing on the alternate screen is leaving it; then the run directory.
    let entered = screen.rfind("\x1b[?1049h").expect("the TUI was drawn");
    let left = screen.rfind("\x1b[?1049l").expect("the TUI was closed");
    assert!(left > entered);
    assert!(screen[left..].contains("\x1b[?25h"), "cursor shown again");
    let tail: Vec<&str> = screen[left..]
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches(|c: char| c == '\x1b' || !c.is_ascii_graphic()))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        tail.last()
            .is_some_and(|l| l.ends_with(&format!("artifacts/runs/{name}"))),
        "{tail:?}"
    );
    let done = assert_interrupted(&run, 50);
    // The dashboard's screen is gone, but every epoch it trained stays as Keras's line, with
    // the recorded numbers, in order, before the run directory.
    let history = run.read_history().unwrap();
    // (The first may follow what put the terminal back, on the same line.)
    let epoch_lines: Vec<&str> = tail
        .iter()
        .filter_map(|l| l.find("Epoch ").map(|at| &l[at..]))
        .collect();
    assert_eq!(epoch_lines.len(), done, "{tail:?}");
    for (i, line) in epoch_lines.iter().enumerate() {
        let m = history.get(i).unwrap();
        assert!(
            line.starts_with(&format!("Epoch {}/50 - ", i + 1)),
            "{tail:?}"
        );
        assert!(
            line.ends_with(&format!(
                "s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
                m.loss, m.accuracy, m.val_loss, m.val_accuracy
            )),
            "{tail:?}"
        );
    }
    assert!(
        err.ends_with(&format!(
            "interrupted: {done} of 50 epochs done and checkpointed; the run is kept; resume \
             it with: mnist-mlp train --resume {name}\n"
        )),
        "{err}"
    );
    err
}

#[test]
fn ctrl_c_in_the_tui() {
    let err = tui_stops_on(b"\x03", "tui-ctrl-c");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_tuis_own_stop_key() {
    // `q` opens Burn's quit popup; `s` there stops training.
    let err = tui_stops_on(b"qs", "tui-q-s");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_tuis_kill_key() {
    // `k` in the popup makes Burn panic every training thread on purpose: the run ends as
    // with Ctrl-C, and nothing of the panics is printed but, depending on which panic hook
    // the TUI's thread installed first, Burn's own notice.
    let err = tui_stops_on(b"qk", "tui-q-k");
    let ours = err.trim_start_matches("\nTraining killed by user.\n");
    assert_eq!(ours.lines().count(), 1, "{err:?}");
}
