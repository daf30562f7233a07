//! `--tensorboard` and `log RUN` from the outside (issue #35): what a user sees when logging
//! cannot be done, and that logging never changes or stops a training. The event files' content
//! is checked by the unit tests of `training::tracking` (against bytes TensorBoard wrote) and by
//! scripts/test-tracking.sh (with TensorBoard's own reader).

mod common;

use common::{assert_fails, mnist_mlp, run_ok, snapshot, stderr, stdout, train_args, train_small};
use std::path::Path;

fn files_under(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = snapshot(dir)
        .into_iter()
        .filter(|(_, content)| content != "dir")
        .map(|(path, _)| path.display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn a_tensorboard_dir_that_cannot_be_written_is_said_once_and_the_run_trains_on() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let plain = train_small(home, "plain", &[]);
    // A file where the directory should be: no event file can be made under it.
    std::fs::write(home.join("tb"), b"in the way").unwrap();
    let blocked = train_small(
        home,
        "blocked",
        &["--tensorboard", "tb", "--log-every-steps", "1"],
    );
    let err = stderr(&blocked);
    assert_eq!(
        err,
        "warning: --tensorboard: tb/blocked: cannot create: Not a directory (os error 20); the \
         run goes on without it\n"
    );
    assert_eq!(std::fs::read(home.join("tb")).unwrap(), b"in the way");
    // The training is the same as without the flag.
    let runs = home.join("artifacts/runs");
    assert_eq!(
        std::fs::read(runs.join("plain/history.json")).unwrap(),
        std::fs::read(runs.join("blocked/history.json")).unwrap()
    );
    assert!(stdout(&plain).starts_with("Trained 2/2 epochs"));
    assert!(stdout(&blocked).starts_with("Trained 2/2 epochs"));
}

#[test]
fn log_writes_a_recorded_run_once_and_a_logged_one_not_again() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    train_small(
        home,
        "r",
        &["--tensorboard", "tb", "--log-every-steps", "3"],
    );
    let trained = snapshot(&home.join("tb"));
    assert_eq!(
        files_under(&home.join("tb"))
            .iter()
            .map(|f| f.rsplit_once('/').map_or("", |(dir, _)| dir))
            .collect::<Vec<_>>(),
        ["r", "r/train", "r/validation"]
    );
    let config = std::fs::read_to_string(home.join("artifacts/runs/r/config.toml")).unwrap();
    assert!(
        config.contains("[tracking]\ntensorboard = \"tb\"\nlog_every_steps = 3\n"),
        "{config}"
    );

    // Logged again to the same place: nothing is added.
    let log = |dir: &str| {
        run_ok(mnist_mlp(home).args([
            "log",
            "r",
            "--artifact-dir",
            "artifacts",
            "--tensorboard",
            dir,
        ]))
    };
    let output = log("tb");
    assert_eq!(stdout(&output), "artifacts/runs/r\n");
    assert_eq!(snapshot(&home.join("tb")), trained);
    // Elsewhere: the same three directories, one file each.
    log("tb2");
    assert_eq!(files_under(&home.join("tb2")).len(), 3);
    for part in ["train", "validation"] {
        let dir = home.join("tb2/r").join(part);
        let name = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
        let name = name.file_name().into_string().unwrap();
        assert!(
            name.starts_with("events.out.tfevents.") && name.ends_with(".v2"),
            "{name}"
        );
    }
}

#[test]
fn bad_tracking_input_is_one_line_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let mut command = mnist_mlp(home);
    let output = train_args(&mut command, "x")
        .args(["--log-every-steps", "0"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: tracking.log_every_steps: must be at least 1 (got 0)\n",
    );
    assert!(!home.join("artifacts/runs/x").exists());

    train_small(home, "r", &[]);
    let output = mnist_mlp(home)
        .args(["log", "r", "--artifact-dir", "artifacts"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: log: nothing to log to; give --tensorboard DIR or --mlflow URI\n",
    );
    let output = mnist_mlp(home)
        .args([
            "log",
            "nope",
            "--artifact-dir",
            "artifacts",
            "--tensorboard",
            "tb",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(!home.join("tb").exists());
    // A place that cannot be written: the fault, once, and a failure.
    std::fs::write(home.join("tb"), b"in the way").unwrap();
    let output = mnist_mlp(home)
        .args([
            "log",
            "r",
            "--artifact-dir",
            "artifacts",
            "--tensorboard",
            "tb",
        ])
        .output()
        .unwrap();
    assert_fails(
        &output,
        1,
        "error: tb/r: cannot create: Not a directory (os error 20)\n",
    );
}
