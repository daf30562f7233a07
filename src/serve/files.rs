//! The only way `serve` touches a run's files: [`Reader::Beneath`] the artifact directory, so
//! each file is opened once from the artifact directory's descriptor without following a
//! symlink, checked on that descriptor (a regular file, one link, under a size cap) and read
//! from it ([`crate::fsutil::Reader`] says why). The run and sweep records are read by the
//! same reader inside the run-directory and sweep code ([`crate::run_dir::RunDir::read_by`]);
//! this names files relative to the artifact directory in errors.

use crate::fsutil::{Reader, Refused, Why};
use std::path::{Path, PathBuf};

/// Why a run's file is not read; shown with the file's path relative to the artifact directory.
#[derive(Debug, thiserror::Error)]
pub enum FileFault {
    #[error("{0}: not written (yet)")]
    Missing(String),
    #[error("{name}: {why}; not served")]
    Refused { name: String, why: Why },
    #[error("{name}: cannot read: {error}")]
    Io { name: String, error: std::io::Error },
}

/// The artifact directory, as absolute, from which run files are read.
#[derive(Debug, Clone)]
pub struct Inside {
    root: PathBuf,
    reader: Reader,
}

impl Inside {
    pub fn new(root: PathBuf) -> Self {
        Self {
            reader: Reader::beneath(&root),
            root,
        }
    }

    /// The reader of every file `serve` reads: beneath the artifact directory only.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// `path` relative to the artifact directory, for messages (as given when elsewhere).
    pub fn name(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The fault of `error`, met opening or reading `path`.
    pub fn fault(&self, path: &Path, error: std::io::Error) -> FileFault {
        let name = self.name(path);
        if let Some(refused) = Refused::of(&error) {
            return FileFault::Refused {
                name,
                why: refused.why.clone(),
            };
        }
        match error.kind() {
            std::io::ErrorKind::NotFound => FileFault::Missing(name),
            _ => FileFault::Io { name, error },
        }
    }

    /// Whether `path` would be read: a regular file of at most `cap` bytes with one link,
    /// reached from the artifact directory without a symlink.
    pub fn readable(&self, path: &Path, cap: u64) -> bool {
        self.reader.is_file(path, cap)
    }

    /// `path`'s bytes, opened once and read from that descriptor, never more than `cap`.
    pub fn read(&self, path: &Path, cap: u64) -> Result<Vec<u8>, FileFault> {
        self.reader
            .read(path, cap)
            .map(|(bytes, _)| bytes)
            .map_err(|e| self.fault(path, e))
    }
}
