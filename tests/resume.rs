//! `train --resume`: a run killed after some epochs and resumed ends exactly as the same run
//! trained without a stop: the same history.json and history.csv, byte for byte, and the same
//! weights. Under the plain dashboard and under Burn's TUI (on a real pseudo-terminal), since
//! Burn has had resume bugs in both epoch numbering and the TUI.

mod common;

use common::{
    PATIENCE, Pty, assert_fails, mnist_dir, mnist_mlp, open_pty, read_info, read_screen, run_of,
    run_ok, shared_temp_dir, stderr, stderr_and_exit, stdout, train_args, wait_exit,
};
use mnist_mlp::backend::Backend;
use mnist_mlp::run_dir::RunStatus;
use mnist_mlp::saved::{self, Weights};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const EPOCHS: usize = 3;
fn train(home: &Path, name: &str, dashboard: &str) -> Command {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name)
        .args(["--limit-train", "1500", "--limit-valid", "300"])
        .args(["--epochs", "3", "--seed", "11", "--dashboard", dashboard]);
    command
}

fn resume(home: &Path, name: &str, dashboard: &str) -> Command {
    let mut command = mnist_mlp(home);
    command
        .arg("train")
        .args(["--resume", name, "--artifact-dir", "artifacts"])
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--dashboard", dashboard]);
    command
}

/// The home holding the uninterrupted run `whole`, trained once for the tests here.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        run_ok(&mut train(&home, "whole", "none"));
        home
    })
}

/// Trains `name` and sends `signal` as soon as its first epoch's checkpoint is complete
/// (`run.json` says so); returns the epochs it had done when it stopped.
fn stop_after_first_epoch(name: &str, signal: i32, extra: &[&str]) -> usize {
    let mut child = train(home(), name, "none")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = run_of(home(), name);
    let start = Instant::now();
    while read_info(&run).is_none_or(|i| i.epochs_done < 1) {
        assert!(start.elapsed() < PATIENCE, "no epoch done");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: signals our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    wait_exit(&mut child);
    let info = read_info(&run).unwrap();
    let expected = if signal == libc::SIGKILL {
        RunStatus::Running // killed: it never got to say otherwise
    } else {
        RunStatus::Interrupted
    };
    assert_eq!(info.status, expected);
    assert!(
        (1..EPOCHS).contains(&info.epochs_done),
        "stopped after {} epochs: too late to test a resume",
        info.epochs_done
    );
    assert!(!run.model_path().exists());
    info.epochs_done
}

/// The resumed run ended exactly as the uninterrupted one, `whole`.
fn assert_same_as(whole: &str, name: &str, done_before: usize, seconds_before: &[f64]) {
    let whole = run_of(home(), whole);
    let resumed = run_of(home(), name);
    for file in ["history.json", "history.csv"] {
        let a = std::fs::read_to_string(whole.path().join(file)).unwrap();
        let b = std::fs::read_to_string(resumed.path().join(file)).unwrap();
        assert_eq!(a, b, "{file} differs");
    }
    assert_eq!(resumed.read_history().unwrap().epochs(), EPOCHS);
    let info = read_info(&resumed).unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.epochs_done, EPOCHS);
    assert_eq!(info.epoch_seconds.len(), EPOCHS);
    // The times of the epochs before the stop are kept.
    assert_eq!(&info.epoch_seconds[..done_before], seconds_before);
    for epoch in 1..=EPOCHS {
        for part in mnist_mlp::run_dir::CheckpointPart::ALL {
            assert!(resumed.checkpoint_path(part, epoch).is_file(), "{epoch}");
        }
    }

    // The same weights, tensor for tensor, in the final model and every checkpoint.
    let device = Backend::Ndarray.device(0).unwrap();
    for which in [Weights::Final, Weights::Epoch(1), Weights::Epoch(EPOCHS)] {
        let a = saved::load(&whole, Some(which), &device).unwrap().model;
        let b = saved::load(&resumed, Some(which), &device).unwrap().model;
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            let wa: Vec<f32> = la.weight.val().into_data().try_to_vec().unwrap();
            let wb: Vec<f32> = lb.weight.val().into_data().try_to_vec().unwrap();
            assert!(wa == wb, "{which:?}: weights differ");
        }
    }
}

#[test]
fn sigkill_then_resume_under_the_plain_dashboard_equals_the_uninterrupted_run() {
    let done = stop_after_first_epoch("killed", libc::SIGKILL, &[]);
    let seconds = read_info(&run_of(home(), "killed")).unwrap().epoch_seconds;
    let output = run_ok(&mut resume(home(), "killed", "plain"));
    let out = stdout(&output);
    // Burn numbers the epochs after the checkpoint (its bug #1312 numbered them from 1).
    let epochs: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Epoch "))
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    let expected: Vec<String> = (done + 1..=EPOCHS)
        .map(|e| format!("{e}/{EPOCHS}"))
        .collect();
    assert_eq!(epochs, expected, "{out}");
    assert!(
        out.contains(&format!("Resumed after epoch {done}\n")),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("artifacts/runs/killed"));
    assert_same_as("whole", "killed", done, &seconds);

    // Done is done: a second resume is refused, and changes nothing.
    let before = std::fs::read(run_of(home(), "killed").info_path()).unwrap();
    let output = resume(home(), "killed", "plain").output().unwrap();
    assert_fails(
        &output,
        2,
        "error: artifacts/runs/killed: already finished all 3 epochs; nothing to resume\n",
    );
    assert_eq!(
        std::fs::read(run_of(home(), "killed").info_path()).unwrap(),
        before
    );
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_over() {
    let mut child = train(home(), "early", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = run_of(home(), "early");
    let start = Instant::now();
    while read_info(&run).is_none() {
        assert!(start.elapsed() < PATIENCE, "no run.json");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signals our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    wait_exit(&mut child);
    assert_eq!(read_info(&run).unwrap().epochs_done, 0, "killed too late");

    let out = stdout(&run_ok(&mut resume(home(), "early", "plain")));
    assert!(
        out.contains("Resumed from the start: no epoch had a complete checkpoint\n"),
        "{out}"
    );
    assert_same_as("whole", "early", 0, &[]);
}

#[test]
fn ctrl_c_then_resume_under_the_tui_equals_the_uninterrupted_run() {
    let done = stop_after_first_epoch("stopped", libc::SIGINT, &[]);
    let seconds = read_info(&run_of(home(), "stopped")).unwrap().epoch_seconds;

    let Pty { master, slave } = open_pty();
    let mut command = resume(home(), "stopped", "tui");
    command
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe: the child leads a new session on the pty.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(command);
    let screen = read_screen(master);
    let (status, err) = stderr_and_exit(&mut child);
    drop(slave);
    let screen = screen.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(screen.contains("\x1b[?1049h"), "the TUI was drawn");
    assert!(
        screen.contains(&format!("Resumed after epoch {done}")),
        "{}",
        stderr_tail(&screen)
    );
    assert_same_as("whole", "stopped", done, &seconds);
}

fn stderr_tail(screen: &str) -> &str {
    &screen[screen.len().saturating_sub(2000)..]
}

/// README: "export MNIST_MIRROR=…" for every later command. An exported mirror is not a
/// `--mirror` flag, so it does not conflict with `--resume` (clap used to count it as one);
/// the flag itself still does.
#[test]
fn an_exported_mnist_mirror_does_not_block_resume() {
    let output = resume(home(), "whole", "none")
        .env("MNIST_MIRROR", "http://127.0.0.1:9/mnist/")
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        &format!(
            "error: artifacts/runs/whole: already finished all {EPOCHS} epochs; nothing to resume\n"
        ),
    );

    // The flag itself, and any setting of a new run but --epochs, still conflict.
    for flag in [
        ["--mirror", "http://127.0.0.1:9/mnist/"],
        ["--seed", "9"],
        ["--device", "0"],
        ["--validation-split", "0.1"],
    ] {
        let output = resume(home(), "whole", "none").args(flag).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let err = stderr(&output);
        assert!(err.contains("cannot be used with"), "{flag:?}: {err}");
        assert!(err.contains(flag[0]), "{flag:?}: {err}");
    }
}

/// A run trained with Burn's ops resumes with them (its config.toml says so), not with the
/// fused kernels of the default: it ends as the uninterrupted run with Burn's ops does, which
/// the fused kernels' rounding would not.
#[test]
fn a_run_with_burns_ops_resumes_with_them() {
    let burn = ["--kernels", "burn"];
    run_ok(train(home(), "whole-burn", "none").args(burn));
    let done = stop_after_first_epoch("cut-burn", libc::SIGKILL, &burn);
    let seconds = read_info(&run_of(home(), "cut-burn"))
        .unwrap()
        .epoch_seconds;
    run_ok(&mut resume(home(), "cut-burn", "none"));
    assert_same_as("whole-burn", "cut-burn", done, &seconds);
    let info = read_info(&run_of(home(), "cut-burn")).unwrap();
    assert_eq!(info.kernels, Some(mnist_mlp::kernels::Kernels::Burn));
    // And the two choices do give different numbers, so the comparison above can tell them
    // apart.
    let history = |name| std::fs::read_to_string(run_of(home(), name).history_json_path()).unwrap();
    assert_ne!(history("whole"), history("whole-burn"));
}

/// A run on the cosine schedule resumes where its learning rate was (Burn checkpoints the
/// scheduler's step with the optimizer): the resumed run ends as the uninterrupted one, which
/// a schedule restarted from the top, or a constant rate, would not.
#[test]
fn a_run_on_the_cosine_schedule_resumes_on_its_schedule() {
    let cosine = ["--schedule", "cosine"];
    run_ok(train(home(), "whole-cosine", "none").args(cosine));
    let done = stop_after_first_epoch("cut-cosine", libc::SIGKILL, &cosine);
    let seconds = read_info(&run_of(home(), "cut-cosine"))
        .unwrap()
        .epoch_seconds;
    run_ok(&mut resume(home(), "cut-cosine", "none"));
    assert_same_as("whole-cosine", "cut-cosine", done, &seconds);
    let saved =
        std::fs::read_to_string(run_of(home(), "cut-cosine").path().join("config.toml")).unwrap();
    assert!(saved.contains("schedule = \"cosine\""), "{saved}");
    // And the schedule changes the run, so the comparison above can tell a constant rate apart.
    let history = |name| run_of(home(), name).read_history().unwrap();
    let (constant, cosine) = (history("whole"), history("whole-cosine"));
    assert_ne!(constant.val_loss, cosine.val_loss);
}

/// A run with Adam and dropout resumes exactly: Adam's averages and step count come back from
/// the checkpoint (the bias correction depends on the step), and the dropout masks are drawn
/// from (seed, epoch, batch), not from a generator that a restart would reset. Adam also
/// trains: the loss falls every epoch.
#[test]
fn a_run_with_adam_and_dropout_resumes_as_the_uninterrupted_run() {
    let adam = ["--optimizer", "adam", "--dropout", "0.2"];
    run_ok(train(home(), "whole-adam", "none").args(adam));
    let done = stop_after_first_epoch("cut-adam", libc::SIGKILL, &adam);
    let seconds = read_info(&run_of(home(), "cut-adam"))
        .unwrap()
        .epoch_seconds;
    run_ok(&mut resume(home(), "cut-adam", "none"));
    assert_same_as("whole-adam", "cut-adam", done, &seconds);
    let history = run_of(home(), "whole-adam").read_history().unwrap();
    assert!(
        history.loss.windows(2).all(|w| w[1] < w[0]),
        "{:?}",
        history.loss
    );
    assert!(
        history.val_accuracy[EPOCHS - 1] > 0.8,
        "{:?}",
        history.val_accuracy
    );
    let rmsprop = run_of(home(), "whole").read_history().unwrap();
    assert_ne!(history.loss, rmsprop.loss);
}
