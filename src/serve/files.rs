//! The only way `serve` touches a run's files: a regular file that resolves inside the artifact
//! directory, under a size cap, named in errors by its path relative to that directory.
//!
//! A run directory is written by training, but anything can be put there: a `config.toml` that
//! is a symlink to `/etc/passwd` would be served to any page that asks, a FIFO would block the
//! thread reading it for ever, a device or a huge file would fill memory. So each file is
//! resolved (`canonicalize`), checked to be inside the artifact directory and a regular file of
//! at most its cap before it is opened, and opened without blocking (`O_NONBLOCK`), checked
//! again on the open file, then read no further than its cap.

use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a run's file is not read; shown with the file's path relative to the artifact directory.
#[derive(Debug, thiserror::Error)]
pub enum FileFault {
    #[error("{0}: not written (yet)")]
    Missing(String),
    #[error("{0}: resolves outside the artifact directory; not served")]
    Outside(String),
    #[error("{name}: {kind}, not a regular file; not served")]
    NotRegular { name: String, kind: &'static str },
    #[error("{name}: {size} bytes, over the {cap} bytes served")]
    TooLarge { name: String, size: u64, cap: u64 },
    #[error("{name}: cannot read: {error}")]
    Io { name: String, error: std::io::Error },
}

/// The artifact directory, as absolute, from which run files are read.
#[derive(Debug, Clone)]
pub struct Inside {
    root: PathBuf,
}

impl Inside {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `path` relative to the artifact directory, for messages (as given when elsewhere).
    pub fn name(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The checks before opening: `path` resolves inside the artifact directory to a regular
    /// file of at most `cap` bytes. Gives the resolved path.
    pub fn check(&self, path: &Path, cap: u64) -> Result<PathBuf, FileFault> {
        let name = self.name(path);
        let io = |error: std::io::Error| FileFault::Io {
            name: name.clone(),
            error,
        };
        let resolved = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            // A dangling symlink too: there is nothing to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FileFault::Missing(name));
            }
            Err(e) => return Err(io(e)),
        };
        // The root is resolved each time: it may not have existed when the server started.
        let root = std::fs::canonicalize(&self.root).map_err(io)?;
        if !resolved.starts_with(&root) {
            return Err(FileFault::Outside(name));
        }
        let meta = std::fs::metadata(&resolved).map_err(io)?;
        regular(&name, &meta, cap)?;
        Ok(resolved)
    }

    /// Whether `path` would be read: [`Inside::check`] passes.
    pub fn readable(&self, path: &Path, cap: u64) -> bool {
        self.check(path, cap).is_ok()
    }

    /// `path`'s bytes, after [`Inside::check`]: opened without blocking and checked again on
    /// the open file (it may have been swapped since), never more than `cap` bytes read.
    pub fn read(&self, path: &Path, cap: u64) -> Result<Vec<u8>, FileFault> {
        let resolved = self.check(path, cap)?;
        let name = self.name(path);
        let io = |error: std::io::Error| FileFault::Io {
            name: name.clone(),
            error,
        };
        let file = open_without_blocking(&resolved).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        regular(&name, &meta, cap)?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > cap {
            return Err(FileFault::TooLarge {
                name,
                size: bytes.len() as u64,
                cap,
            });
        }
        Ok(bytes)
    }
}

/// Opens `path` for reading such that a FIFO cannot block the read's thread, and a symlink
/// swapped in since the check is not followed.
#[cfg(unix)]
fn open_without_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Elsewhere (Windows) no FIFO opens as a file; the type is checked on the open file.
#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// What Unix names a special file of `kind`, if it is one.
#[cfg(unix)]
fn unix_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn unix_kind(_kind: &std::fs::FileType) -> Option<&'static str> {
    None
}

/// `meta` is a regular file's, of at most `cap` bytes.
fn regular(name: &str, meta: &Metadata, cap: u64) -> Result<(), FileFault> {
    let kind = meta.file_type();
    let not = |kind| {
        Err(FileFault::NotRegular {
            name: name.to_string(),
            kind,
        })
    };
    if let Some(special) = unix_kind(&kind) {
        return not(special);
    }
    if kind.is_dir() {
        return not("a directory");
    }
    if !kind.is_file() {
        return not("a special file");
    }
    if meta.len() > cap {
        return Err(FileFault::TooLarge {
            name: name.to_string(),
            size: meta.len(),
            cap,
        });
    }
    Ok(())
}
