//! The malformed-input corpus: every way a user's data directory, cache or config can be wrong,
//! generated here, each run through the real binary. Each must end in its one-line error, exit
//! 2 (bad input) or 1 (nothing reachable), no panic, and the home directory (cache, data,
//! artifacts) exactly as it was.

mod common;

use common::{
    Mirror, assert_fails, mnist_dir, mnist_mlp, png_claiming, png_header, run_ok, snapshot, stderr,
    stdout,
};
use mnist_mlp::data::idx::{PIXELS, encode};
use mnist_mlp::data::source::{FILES, sha256_of_file};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const X_TRAIN: &str = "train-images-idx3-ubyte";
const Y_TRAIN: &str = "train-labels-idx1-ubyte";
const X_VALID: &str = "t10k-images-idx3-ubyte";
const Y_VALID: &str = "t10k-labels-idx1-ubyte";

fn pixels(images: usize) -> Vec<u8> {
    (0..images * PIXELS).map(|i| (i % 256) as u8).collect()
}

/// A valid MNIST-shaped set of 3 training and 2 validation images in `dir`.
fn write_valid_set(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(X_TRAIN), encode::images(&pixels(3))).unwrap();
    std::fs::write(dir.join(Y_TRAIN), encode::labels(&[1, 2, 3])).unwrap();
    std::fs::write(dir.join(X_VALID), encode::images(&pixels(2))).unwrap();
    std::fs::write(dir.join(Y_VALID), encode::labels(&[4, 5])).unwrap();
}

/// `mnist-mlp data` and `mnist-mlp train` on `data`, from `home`.
fn both_commands(home: &Path, data: &Path) -> [Command; 2] {
    let mut describe = mnist_mlp(home);
    describe.arg("data").arg("--data-dir").arg(data);
    let mut train = mnist_mlp(home);
    train
        .arg("train")
        .arg("--data-dir")
        .arg(data)
        .args(["--dashboard", "plain", "--epochs", "1"]);
    [describe, train]
}

/// Runs `data` and `train` on a valid set broken by `breaks`, which returns the expected message
/// (after `error: `); both must fail with it, exit 2, and leave everything as it was.
fn check(name: &str, breaks: impl FnOnce(&Path) -> String) {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    let expected = format!("error: {}\n", breaks(&data));
    let before = snapshot(home.path());
    for mut command in both_commands(home.path(), &data) {
        let output = command.output().unwrap();
        assert_fails(&output, 2, &expected);
        assert_eq!(
            snapshot(home.path()),
            before,
            "case {name}: the tree changed"
        );
    }
    // Neither a cache nor a run directory was created.
    assert!(!home.path().join("cache").exists(), "case {name}");
    assert!(!home.path().join("artifacts").exists(), "case {name}");
}

fn path_of(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn the_valid_set_loads() {
    // The corpus below breaks this set one fault at a time; unbroken, it loads.
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    let output = run_ok(
        mnist_mlp(home.path())
            .arg("data")
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(
        stdout(&output).contains("x_train: (3, 28, 28) uint8, min 0, max 255"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn idx_headers() {
    check("wrong magic", |dir| {
        let mut bytes = encode::images(&pixels(3));
        bytes[3] = 0x04;
        std::fs::write(dir.join(X_TRAIN), bytes).unwrap();
        format!(
            "{}: not an IDX images file: magic number 0x00000804, expected 0x00000803",
            path_of(dir, X_TRAIN)
        )
    });
    check("labels where images belong", |dir| {
        std::fs::write(dir.join(X_VALID), encode::labels(&[1; 10])).unwrap();
        format!(
            "{}: not an IDX images file: magic number 0x00000801, expected 0x00000803 (that of IDX labels)",
            path_of(dir, X_VALID)
        )
    });
    check("truncated header", |dir| {
        std::fs::write(dir.join(X_TRAIN), &encode::images(&pixels(3))[..10]).unwrap();
        format!(
            "{}: truncated header: 10 bytes, an IDX images header has 16",
            path_of(dir, X_TRAIN)
        )
    });
    check("truncated labels header", |dir| {
        std::fs::write(dir.join(Y_VALID), [0, 0, 8]).unwrap();
        format!(
            "{}: truncated header: 3 bytes, an IDX labels header has 8",
            path_of(dir, Y_VALID)
        )
    });
    check("rows and cols other than 28", |dir| {
        let mut bytes = encode::images(&pixels(3));
        bytes[11] = 32;
        bytes[15] = 14;
        std::fs::write(dir.join(X_TRAIN), bytes).unwrap();
        format!(
            "{}: images are 32×14, MNIST images are 28×28",
            path_of(dir, X_TRAIN)
        )
    });
}

#[test]
fn idx_bodies() {
    check("truncated body", |dir| {
        let bytes = encode::images(&pixels(3));
        std::fs::write(dir.join(X_TRAIN), &bytes[..16 + 2 * PIXELS + 100]).unwrap();
        format!(
            "{}: header says 3 images, file holds 2",
            path_of(dir, X_TRAIN)
        )
    });
    check("bytes after the body", |dir| {
        let mut bytes = encode::labels(&[4, 5]);
        bytes.extend_from_slice(&[0; 5]);
        std::fs::write(dir.join(Y_VALID), bytes).unwrap();
        format!(
            "{}: file goes on past the 2 labels its header announces (5 bytes more)",
            path_of(dir, Y_VALID)
        )
    });
    check("image count differs from label count", |dir| {
        std::fs::write(dir.join(Y_TRAIN), encode::labels(&[1, 2])).unwrap();
        format!(
            "{}: 3 images, but {} holds 2 labels",
            path_of(dir, X_TRAIN),
            path_of(dir, Y_TRAIN)
        )
    });
    check("a label of 10", |dir| {
        std::fs::write(dir.join(Y_TRAIN), encode::labels(&[1, 10, 3])).unwrap();
        format!(
            "{}: label 10 at index 1 is not a digit 0-9",
            path_of(dir, Y_TRAIN)
        )
    });
    check("a label of 255", |dir| {
        std::fs::write(dir.join(Y_VALID), encode::labels(&[4, 255])).unwrap();
        format!(
            "{}: label 255 at index 1 is not a digit 0-9",
            path_of(dir, Y_VALID)
        )
    });
}

/// Replaces `name` in `dir` by its gzipped form, altered by `alter`.
fn gzip_in_place(dir: &Path, name: &str, alter: impl FnOnce(&mut Vec<u8>)) -> String {
    let raw = std::fs::read(dir.join(name)).unwrap();
    std::fs::remove_file(dir.join(name)).unwrap();
    let mut gz = encode::gzip(&raw);
    alter(&mut gz);
    let gz_name = format!("{name}.gz");
    std::fs::write(dir.join(&gz_name), gz).unwrap();
    path_of(dir, &gz_name)
}

#[test]
fn gzip_files() {
    check("corrupt gzip", |dir| {
        // A deflate block type that does not exist (0b11), in the first block's header.
        let path = gzip_in_place(dir, X_TRAIN, |gz| gz[10] |= 0b110);
        format!("{path}: not valid gzip data: corrupt deflate stream")
    });
    check("gzip with a wrong checksum", |dir| {
        let path = gzip_in_place(dir, Y_TRAIN, |gz| {
            let crc = gz.len() - 8;
            gz[crc] ^= 0xff;
        });
        format!(
            "{path}: not valid gzip data: corrupt gzip stream does not have a matching checksum"
        )
    });
    check("truncated gzip", |dir| {
        let path = gzip_in_place(dir, X_VALID, |gz| gz.truncate(gz.len() / 2));
        format!("{path}: gzip data ends early: the file is truncated")
    });
    check("gzip cut before its trailer", |dir| {
        let path = gzip_in_place(dir, Y_VALID, |gz| gz.truncate(gz.len() - 4));
        format!("{path}: gzip data ends early: the file is truncated")
    });
    check("gzip of a truncated IDX file", |dir| {
        let raw = encode::images(&pixels(3));
        std::fs::remove_file(dir.join(X_TRAIN)).unwrap();
        let gz_name = format!("{X_TRAIN}.gz");
        std::fs::write(dir.join(&gz_name), encode::gzip(&raw[..16 + PIXELS + 1])).unwrap();
        format!(
            "{}: header says 3 images, file holds 1",
            path_of(dir, &gz_name)
        )
    });
}

#[test]
fn files_that_are_not_files() {
    check("empty file", |dir| {
        std::fs::write(dir.join(Y_TRAIN), b"").unwrap();
        format!("{}: file is empty", path_of(dir, Y_TRAIN))
    });
    check("empty gzip name", |dir| {
        std::fs::remove_file(dir.join(Y_VALID)).unwrap();
        std::fs::write(dir.join(format!("{Y_VALID}.gz")), b"").unwrap();
        format!("{}: file is empty", path_of(dir, &format!("{Y_VALID}.gz")))
    });
    check("a directory where a file should be", |dir| {
        std::fs::remove_file(dir.join(X_VALID)).unwrap();
        std::fs::create_dir(dir.join(X_VALID)).unwrap();
        format!(
            "{}: is a directory, expected an IDX file",
            path_of(dir, X_VALID)
        )
    });
    check("a dangling symlink", |dir| {
        std::fs::remove_file(dir.join(X_TRAIN)).unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join(X_TRAIN)).unwrap();
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            path_of(dir, X_TRAIN)
        )
    });
    check("missing files", |dir| {
        std::fs::remove_file(dir.join(Y_TRAIN)).unwrap();
        std::fs::remove_file(dir.join(Y_VALID)).unwrap();
        format!(
            "{}: missing {Y_TRAIN}, {Y_VALID} (raw or .gz)",
            dir.display()
        )
    });
}

#[test]
fn data_dirs_that_are_not_directories() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let before = snapshot(home.path());
    for (dir, expected) in [
        (
            home.path().join("nowhere"),
            format!(
                "error: {}: data directory does not exist\n",
                home.path().join("nowhere").display()
            ),
        ),
        (
            file.clone(),
            format!(
                "error: {}: is not a directory; --data-dir names the directory holding the four IDX files\n",
                file.display()
            ),
        ),
    ] {
        for mut command in both_commands(home.path(), &dir) {
            assert_fails(&command.output().unwrap(), 2, &expected);
        }
    }
    assert_eq!(snapshot(home.path()), before);
}

/// Runs `command` and also returns its peak resident memory in KiB (`ru_maxrss` of this child
/// alone, from `wait4`).
// The child is reaped by `wait4`, which std's `wait` does not offer, to read its usage.
#[allow(clippy::zombie_processes)]
fn output_and_peak_rss(command: &mut Command) -> (Output, i64) {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    let mut status = 0;
    // SAFETY: plain data for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out,
        stderr: err,
    };
    (output, usage.ru_maxrss)
}

/// Caps the child's address space: an allocation the size a header claims would fail (and
/// abort the process) instead of passing unnoticed on a machine with memory to spare.
fn with_address_space_limit(command: &mut Command, bytes: u64) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn a_header_claiming_2_pow_31_images_allocates_nothing_of_that_size() {
    // 2^31 images of 784 bytes would be 1.7 TB; a bound of 1 GiB of address space for the
    // whole process shows nothing near that (nor near the 47 MB of real MNIST) is reserved.
    const LIMIT: u64 = 1 << 30;
    let home = tempfile::tempdir().unwrap();
    for gzipped in [false, true] {
        let data = home.path().join(format!("claims-{gzipped}"));
        write_valid_set(&data);
        let mut bytes = encode::images(&pixels(3));
        bytes[4..8].copy_from_slice(&(1u32 << 31).to_be_bytes());
        let name = if gzipped {
            std::fs::remove_file(data.join(X_TRAIN)).unwrap();
            bytes = encode::gzip(&bytes);
            format!("{X_TRAIN}.gz")
        } else {
            X_TRAIN.to_string()
        };
        std::fs::write(data.join(&name), bytes).unwrap();
        let mut command = mnist_mlp(home.path());
        command.arg("data").arg("--data-dir").arg(&data);
        let (output, peak_kib) = output_and_peak_rss(with_address_space_limit(&mut command, LIMIT));
        assert_fails(
            &output,
            2,
            &format!(
                "error: {}: header says 2147483648 images, file holds 3\n",
                path_of(&data, &name)
            ),
        );
        // And what it did touch stayed small: under 64 MiB resident at its peak.
        assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
        eprintln!("2^31-image header (gzipped: {gzipped}): peak RSS {peak_kib} KiB");
    }
}

/// Drops the capabilities that let root read any file, for the child only.
fn without_root_read_override(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (linux/capability.h).
            for cap in [1, 2] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

#[test]
fn an_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    let locked = data.join(Y_TRAIN);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let expected = format!(
        "error: {}: cannot read: Permission denied (os error 13)\n",
        locked.display()
    );
    let before = snapshot(home.path());
    let mut describe = mnist_mlp(home.path());
    describe.arg("data").arg("--data-dir").arg(&data);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_fails(&describe.output().unwrap(), 2, &expected);
    } else {
        // Root reads any file whatever its mode: the file is valid, so it loads.
        let output = run_ok(&mut describe);
        assert!(stdout(&output).contains("y_train: (3,) uint8"));
        // Without the capabilities that grant that, root is refused like anyone.
        // A test that cannot drop them fails rather than checks nothing.
        let output = without_root_read_override(
            mnist_mlp(home.path())
                .arg("data")
                .arg("--data-dir")
                .arg(&data),
        )
        .output()
        .unwrap_or_else(|e| panic!("root here cannot drop CAP_DAC_OVERRIDE: {e}"));
        assert_fails(&output, 2, &expected);
    }
    assert_eq!(snapshot(home.path()), before);

    // An unreadable data directory: its files cannot even be looked up.
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
    let expected = format!(
        "error: {}: cannot read: Permission denied (os error 13)\n",
        data.join(X_TRAIN).display()
    );
    let mut describe = mnist_mlp(home.path());
    describe.arg("data").arg("--data-dir").arg(&data);
    // SAFETY: geteuid has no preconditions.
    let output = if unsafe { libc::geteuid() } != 0 {
        describe.output()
    } else {
        without_root_read_override(&mut describe).output()
    };
    let output =
        output.unwrap_or_else(|e| panic!("cannot run mnist-mlp without root's read override: {e}"));
    assert_fails(&output, 2, &expected);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn real_file(name: &str) -> Vec<u8> {
    std::fs::read(mnist_dir().join(name)).unwrap()
}

/// A cache holding the four real files, and a config that turns npm off.
fn home_with_cache() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache/mnist-mlp/mnist");
    std::fs::create_dir_all(&cache).unwrap();
    for file in FILES {
        std::fs::copy(mnist_dir().join(file.name), cache.join(file.name)).unwrap();
    }
    std::fs::create_dir(home.path().join("config")).unwrap();
    std::fs::write(
        home.path().join("config/train.toml"),
        "[data]\nnpm_package = \"\"\n",
    )
    .unwrap();
    (home, cache)
}

#[test]
fn a_cached_file_whose_checksum_no_longer_matches_is_fetched_again() {
    let (home, cache) = home_with_cache();
    // Same length, one label changed: only the checksum tells.
    let mut tampered = real_file(Y_VALID);
    tampered[100] = (tampered[100] + 1) % 10;
    std::fs::write(cache.join(Y_VALID), &tampered).unwrap();

    let mirror = Mirror::serve(HashMap::from([(
        format!("{Y_VALID}.gz"),
        encode::gzip(&real_file(Y_VALID)),
    )]));
    let output = run_ok(
        mnist_mlp(home.path())
            .arg("data")
            .env("MNIST_MIRROR", &mirror.url),
    );
    assert!(
        stdout(&output).starts_with(&format!("MNIST from mirror {} (now cached)\n", mirror.url)),
        "{}",
        stdout(&output)
    );
    assert_eq!(mirror.requests(), vec![format!("{Y_VALID}.gz")]);
    assert_eq!(
        sha256_of_file(&cache.join(Y_VALID)).unwrap(),
        FILES[3].sha256
    );
    assert_eq!(common::temp_files(home.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_bad_cached_file_with_no_good_source_is_not_trusted() {
    let (home, cache) = home_with_cache();
    std::fs::write(cache.join(Y_TRAIN), b"garbage").unwrap();
    // The mirror only has a tampered copy.
    let mut tampered = real_file(Y_TRAIN);
    tampered[8] = (tampered[8] + 1) % 10;
    let mirror = Mirror::serve(HashMap::from([(
        format!("{Y_TRAIN}.gz"),
        encode::gzip(&tampered),
    )]));
    let output = mnist_mlp(home.path())
        .arg("data")
        .env("MNIST_MIRROR", &mirror.url)
        .output()
        .unwrap();
    assert_fails(
        &output,
        1,
        &format!(
            "error: no source of MNIST worked: cache {}: {Y_TRAIN} missing; mirror {}: {Y_TRAIN}: SHA-256 {} does not match the published {}; npm: disabled; put the four IDX files (raw or .gz) in a directory and pass --data-dir DIR (or set MNIST_DATA_DIR)\n",
            cache.display(),
            mirror.url,
            mnist_mlp::data::idx::hex(&<sha2::Sha256 as sha2::Digest>::digest(&tampered)),
            FILES[1].sha256,
        ),
    );
    // The bad file is gone, not kept; the good ones stay; nothing half-written.
    let mut left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [X_VALID, Y_VALID, X_TRAIN]);
}

/// `train --config <file>` with `text` in the file, from a fresh home.
fn train_with_config(text: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("bad.toml");
    std::fs::write(&config, text).unwrap();
    let before = snapshot(home.path());
    let output = mnist_mlp(home.path())
        .arg("train")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(snapshot(home.path()), before, "{}", stderr(&output));
    (home, config, output)
}

#[test]
fn configs() {
    let file_cases: [(&str, &str); 8] = [
        (
            "[train]\nepochs = 5\nbatchsize = 32\n",
            "train.batchsize: unknown key `batchsize`, expected one of `epochs`, `batch_size`, `seed`, `shuffle`, `limit_train`, `limit_valid`, `validation_split`, `init_from` (line 3)",
        ),
        (
            "[trian]\nepochs = 5\n",
            "trian: unknown key `trian`, expected one of `train`, `optimizer`, `model`, `data`, `run`, `augment`, `early_stopping`, `reduce_lr_on_plateau`, `checkpoints`, `tracking` (line 1)",
        ),
        (
            "[train]\nepochs = \"five\"\n",
            "train.epochs: invalid type: string \"five\", expected a whole number of 0 or more (line 2)",
        ),
        (
            "[train]\nepochs = -1\n",
            "train.epochs: invalid value: integer `-1`, expected a whole number of 0 or more (line 2)",
        ),
        (
            "[optimizer]\nlearning_rate = \"0.001\"\n",
            "optimizer.learning_rate: invalid type: string \"0.001\", expected a number (line 2)",
        ),
        (
            "[optimizer]\nschedule = \"step\"\n",
            "optimizer.schedule: unknown value `step`, expected `constant` or `cosine` (line 2)",
        ),
        (
            "[run]\nbackend = \"cuda\"\n",
            "run.backend: unknown value `cuda`, expected one of `ndarray`, `flex`, `wgpu` (line 2)",
        ),
        (
            "[train\nepochs = 5\n",
            "unclosed table, expected `]` (line 1)",
        ),
    ];
    for (text, expected) in file_cases {
        let (_home, config, output) = train_with_config(text);
        assert_fails(
            &output,
            2,
            &format!("error: {}: {expected}\n", config.display()),
        );
    }

    let value_cases: [(&str, &str); 10] = [
        (
            "[train]\nepochs = 0\n",
            "train.epochs: must be at least 1 (got 0)",
        ),
        (
            "[train]\nbatch_size = 0\n",
            "train.batch_size: must be at least 1 (got 0)",
        ),
        (
            "[optimizer]\nlearning_rate = -0.001\n",
            "optimizer.learning_rate: must be a finite number above 0 (got -0.001)",
        ),
        (
            "[optimizer]\nlearning_rate = 0.0\n",
            "optimizer.learning_rate: must be a finite number above 0 (got 0.0)",
        ),
        (
            "[optimizer]\nlearning_rate = nan\n",
            "optimizer.learning_rate: must be a finite number above 0 (got NaN)",
        ),
        (
            "[optimizer]\nlearning_rate = inf\n",
            "optimizer.learning_rate: must be a finite number above 0 (got inf)",
        ),
        (
            "[optimizer]\nlearning_rate = -inf\n",
            "optimizer.learning_rate: must be a finite number above 0 (got -inf)",
        ),
        (
            "[optimizer]\nrho = 1.0\n",
            "optimizer.rho: must be in [0, 1) (got 1.0)",
        ),
        (
            "[optimizer]\nlearning_rate = 2.0\nschedule = \"cosine\"\n",
            "optimizer.learning_rate: must be at most 1 with schedule = \"cosine\" (got 2.0)",
        ),
        (
            "[model]\nhidden = [512, 0]\n",
            "model.hidden: every layer needs at least 1 unit (got [512, 0])",
        ),
    ];
    for (text, expected) in value_cases {
        let (_home, _config, output) = train_with_config(text);
        assert_fails(&output, 2, &format!("error: {expected}\n"));
    }
}

#[test]
fn config_files_that_cannot_be_read() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("a-dir.toml")).unwrap();
    let before = snapshot(home.path());
    for (path, fault) in [
        ("missing.toml", "No such file or directory (os error 2)"),
        ("a-dir.toml", "Is a directory (os error 21)"),
    ] {
        let output = mnist_mlp(home.path())
            .args(["train", "--config", path])
            .output()
            .unwrap();
        assert_fails(
            &output,
            2,
            &format!("error: {path}: cannot read config: {fault}\n"),
        );
    }
    // A broken config/train.toml in the working directory is read, and rejected, by default.
    std::fs::create_dir(home.path().join("config")).unwrap();
    std::fs::write(home.path().join("config/train.toml"), "epochs = 5\n").unwrap();
    let output = mnist_mlp(home.path()).arg("data").output().unwrap();
    assert_fails(
        &output,
        2,
        "error: config/train.toml: epochs: unknown key `epochs`, expected one of `train`, `optimizer`, `model`, `data`, `run`, `augment`, `early_stopping`, `reduce_lr_on_plateau`, `checkpoints`, `tracking` (line 1)\n",
    );
    std::fs::remove_dir_all(home.path().join("config")).unwrap();
    assert_eq!(snapshot(home.path()), before);
}

#[test]
fn bad_flags_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["train", "--epochs", "five"][..],
        &["train", "--backend", "cuda"],
        &["train", "--no-such-flag"],
        &["no-such-command"],
    ] {
        let output = mnist_mlp(home.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let output = mnist_mlp(home.path())
        .args([
            "train",
            "--backend",
            "ndarray",
            "--device",
            "3",
            "--epochs",
            "1",
        ])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: backend ndarray has no device 3; it has only device 0 (the CPU)\n",
    );
    assert!(!home.path().join("artifacts").exists());
}

#[test]
fn a_run_name_already_taken_leaves_that_run_alone() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    let taken = home.path().join("artifacts/runs/taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("run.json"), "{}").unwrap();
    let before = snapshot(home.path());
    let output = mnist_mlp(home.path())
        .arg("train")
        .arg("--data-dir")
        .arg(&data)
        .args(["--run-name", "taken", "--epochs", "1"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        "error: artifacts/runs/taken: run directory already exists; pick another --run-name\n",
    );
    assert_eq!(snapshot(home.path()), before);
}

// ---------------------------------------------------------------------------------------------
// What training recorded, read back: runs, checkpoints, pictures for `predict`, `show`.

/// A home with a finished one-epoch run `r` trained on the valid set, and that set.
fn home_with_run() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    run_ok(
        mnist_mlp(home.path())
            .arg("train")
            .arg("--data-dir")
            .arg(&data)
            .args(["--run-name", "r", "--epochs", "1", "--dashboard", "none"]),
    );
    (home, data)
}

/// Runs `mnist-mlp args` in `home`; it must fail with `expected`, exit `code`, and leave
/// `home` as it was.
fn fails_cleanly(home: &Path, args: &[&str], code: i32, expected: &str) {
    let before = snapshot(home);
    let output = mnist_mlp(home).args(args).output().unwrap();
    assert_fails(&output, code, &format!("error: {expected}\n"));
    assert_eq!(snapshot(home), before, "{args:?} changed the tree");
}

#[test]
fn runs_that_are_not_there() {
    let (home, data) = home_with_run();
    let home = home.path();
    // The run works before it is broken.
    run_ok(mnist_mlp(home).args(["eval", "r", "--data-dir"]).arg(&data));

    for command in ["inspect", "eval", "summary", "export"] {
        let mut args = vec![command, "nope"];
        if command == "export" {
            args.extend(["--out", "w.safetensors"]);
        }
        fails_cleanly(
            home,
            &args,
            2,
            "nope: no such run: neither artifacts/runs/nope nor nope is a run directory; runs there: r",
        );
    }
    fails_cleanly(
        home,
        &["train", "--resume", "nope"],
        2,
        "nope: no such run: neither artifacts/runs/nope nor nope is a run directory; runs there: r",
    );
    // A near miss is named; a wrong artifact directory shows as one without runs.
    fails_cleanly(
        home,
        &["inspect", "r2"],
        2,
        "r2: no such run: neither artifacts/runs/r2 nor r2 is a run directory; did you mean r? (runs there: r)",
    );
    fails_cleanly(
        home,
        &["inspect", "r", "--artifact-dir", "elsewhere"],
        2,
        "r: no such run: neither elsewhere/runs/r nor r is a run directory; there are no runs in elsewhere/runs",
    );
    fails_cleanly(
        home,
        &["inspect", "data"],
        2,
        "data: not a run directory (it has no run.json)",
    );
    fails_cleanly(
        home,
        &["eval", "r", "--checkpoint", "9"],
        2,
        "artifacts/runs/r/checkpoint/model-9.bpk: missing (checkpoints on disk: epochs 1)",
    );
}

/// A copy of run `r` of [`home_with_run`] named `name`: its records and epoch 1's checkpoint.
fn copy_run(home: &Path, name: &str) -> PathBuf {
    let to = home.join("artifacts/runs").join(name);
    std::fs::create_dir_all(to.join("checkpoint")).unwrap();
    for entry in ["config.toml", "run.json", "history.json", "model.json"] {
        std::fs::copy(home.join("artifacts/runs/r").join(entry), to.join(entry)).unwrap();
    }
    for part in ["model", "optim", "scheduler"] {
        let file = format!("checkpoint/{part}-1.bpk");
        std::fs::copy(home.join("artifacts/runs/r").join(&file), to.join(&file)).unwrap();
    }
    to
}

/// A copy of run `r` called `cut` whose epoch-1 model checkpoint lost its second half.
fn cut_run(home: &Path) -> PathBuf {
    let cut = copy_run(home, "cut");
    let model = cut.join("checkpoint/model-1.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    cut
}

/// `output` failed with exit 2 and one line of error starting with `prefix`, and no panic.
fn assert_one_line_error(output: &Output, prefix: &str) {
    let err = stderr(output);
    assert!(err.starts_with(prefix), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn a_truncated_checkpoint_is_named_by_every_command_that_loads_it() {
    let (home, _) = home_with_run();
    let home = home.path();
    cut_run(home);
    let bar =
        image::GrayImage::from_fn(28, 28, |x, _| image::Luma([if x == 14 { 255 } else { 0 }]));
    bar.save(home.join("one.png")).unwrap();
    for args in [
        &["eval", "cut", "--checkpoint", "1"][..],
        &["predict", "cut", "one.png"],
        &["export", "cut", "--out", "w.safetensors"],
    ] {
        let output = mnist_mlp(home).args(args).output().unwrap();
        assert_one_line_error(
            &output,
            "error: artifacts/runs/cut/checkpoint/model-1.bpk: cannot read the model: ",
        );
    }
}

#[test]
fn resuming_from_a_truncated_checkpoint_is_refused_before_anything_is_touched() {
    let (home, _) = home_with_run();
    let home = home.path();
    let cut = cut_run(home);
    // Make it a run that could be resumed: interrupted after 1 of 2 epochs.
    std::fs::write(
        cut.join("run.json"),
        std::fs::read_to_string(cut.join("run.json"))
            .unwrap()
            .replace("\"finished\"", "\"interrupted\"")
            .replace("\"epochs_planned\": 1", "\"epochs_planned\": 2"),
    )
    .unwrap();
    let config = std::fs::read_to_string(cut.join("config.toml")).unwrap();
    std::fs::write(
        cut.join("config.toml"),
        config.replace("epochs = 1", "epochs = 2"),
    )
    .unwrap();
    let before = snapshot(home);
    let output = mnist_mlp(home)
        .args(["train", "--resume", "cut", "--dashboard", "none"])
        .output()
        .unwrap();
    assert_one_line_error(
        &output,
        "error: artifacts/runs/cut/checkpoint/model-1.bpk: cannot read the model: ",
    );
    assert_eq!(snapshot(home), before);
}

#[test]
fn a_run_whose_process_is_alive_is_not_resumed_under_it() {
    let (home, _) = home_with_run();
    let home = home.path();
    // This test's own process stands for the training one.
    let live = copy_run(home, "live");
    let info = std::fs::read_to_string(live.join("run.json")).unwrap();
    let mut info: serde_json::Value = serde_json::from_str(&info).unwrap();
    info["status"] = "running".into();
    info["pid"] = std::process::id().into();
    std::fs::write(live.join("run.json"), info.to_string()).unwrap();
    fails_cleanly(
        home,
        &["train", "--resume", "live"],
        2,
        &format!(
            "artifacts/runs/live: still running (process {}); stop it before resuming",
            std::process::id()
        ),
    );
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused() {
    let (home, _) = home_with_run();
    let home = home.path();
    // The run says its model is 784-256-10; its checkpoint is 784-512-512-10.
    let other = copy_run(home, "other");
    std::fs::write(
        other.join("model.json"),
        r#"{"inputs": 784, "hidden": [256], "classes": 10}"#,
    )
    .unwrap();
    let output = mnist_mlp(home)
        .args(["eval", "other", "--checkpoint", "1"])
        .output()
        .unwrap();
    assert_one_line_error(
        &output,
        "error: artifacts/runs/other/checkpoint/model-1.bpk: not this run's model (784-256-10): ",
    );
}

#[test]
fn pictures_predict_cannot_read() {
    let (home, _) = home_with_run();
    let home = home.path();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(home.join(name), bytes).unwrap();
        name.to_string()
    };
    let cases = [
        (write("empty.png", b""), "empty.png: empty file, not a picture"),
        (
            write("notes.txt", b"not a picture\n"),
            "notes.txt: not a picture this tool reads (PNG, JPEG, PGM/PPM/PBM)",
        ),
        (
            write("cut.png", &png_header(28, 28)),
            "cut.png: truncated: the file ends before the picture does",
        ),
        (
            write("white.pgm", b"P5 8 8 255\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
            "white.pgm: no digit found: the picture is one flat colour",
        ),
        (
            "missing.png".to_string(),
            "missing.png: cannot read: No such file or directory (os error 2)",
        ),
        ("data".to_string(), "data: is a directory, not a picture"),
    ];
    for (file, expected) in cases {
        fails_cleanly(home, &["predict", "r", &file], 2, expected);
    }
}

#[test]
fn a_picture_claiming_to_be_huge_is_refused_before_it_is_decoded() {
    // 100,000² grey pixels would be 10 GB; 1 GiB of address space for the whole process shows
    // none of it is allocated.
    let (home, _) = home_with_run();
    std::fs::write(home.path().join("huge.png"), png_claiming(100_000, 100_000)).unwrap();
    let mut command = mnist_mlp(home.path());
    command.args(["predict", "r", "huge.png"]);
    let (output, peak_kib) = output_and_peak_rss(with_address_space_limit(&mut command, 1 << 30));
    assert_fails(
        &output,
        2,
        "error: huge.png: 100000×100000 pixels: too large (at most 16384×16384 are read)\n",
    );
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn show_an_index_out_of_range() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    write_valid_set(&data);
    let data = data.display().to_string();
    fails_cleanly(
        home.path(),
        &[
            "show",
            "--data-dir",
            &data,
            "--split",
            "test",
            "--index",
            "2",
        ],
        2,
        "index 2 is out of range: the test split has 2 images (0 to 1)",
    );
    fails_cleanly(
        home.path(),
        &[
            "show",
            "--data-dir",
            &data,
            "--index",
            "1",
            "--grid",
            "3",
            "--png",
            "g.png",
        ],
        2,
        "index 3 is out of range: the train split has 3 images (0 to 2)",
    );
}
