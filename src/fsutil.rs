//! Writing files so that a crash at any instant leaves either the old file or the new one.
//!
//! On Linux the content goes into an unnamed file (`O_TMPFILE`) in the target's directory: if
//! the process is killed while writing, the kernel frees it and nothing is left behind. Once
//! written and synced it gets a name: the target's own when there was no file (one atomic
//! `linkat`), else a `.tmp-*` name that is at once renamed over the target. Elsewhere, or on a
//! filesystem without `O_TMPFILE`, a named `.tmp-*` file is written and renamed.
//!
//! Reading is here too: [`Reader`] opens a file someone else may have put in a directory (what
//! `serve` reads) once, beneath that directory, and checks the file it opened
//! (`fsutil/beneath.rs`).

mod beneath;

pub use beneath::{Opened, Reader, Refused, Why};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of the temporary names; nothing else in a run or cache directory starts with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A failed write, naming the file it was for.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` atomically: readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `fill` into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let error = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    #[cfg(target_os = "linux")]
    if let Some(mut file) = unnamed::create(dir).map_err(error)? {
        fill(&mut file).map_err(error)?;
        file.sync_all().map_err(error)?;
        return unnamed::persist(&file, dir, path).map_err(error);
    }
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(error)?;
    fill(temp.as_file_mut()).map_err(error)?;
    temp.as_file().sync_all().map_err(error)?;
    temp.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}

#[cfg(target_os = "linux")]
mod unnamed {
    use super::TEMP_PREFIX;
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    /// An unnamed file in `dir`; `None` when the filesystem cannot make one.
    pub(super) fn create(dir: &Path) -> io::Result<Option<File>> {
        match std::fs::OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
        {
            Ok(file) => Ok(Some(file)),
            // Filesystems without O_TMPFILE answer one of these; the named way still works.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives `file` the name `path`, replacing what was there.
    pub(super) fn persist(file: &File, dir: &Path, path: &Path) -> io::Result<()> {
        let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(io::Error::other)?;
        match link(&source, path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // The target exists: link under a temporary name, then rename over it (atomic).
        for _ in 0..16 {
            let temp = dir.join(format!("{TEMP_PREFIX}{}", unique_suffix()));
            match link(&source, &temp) {
                Ok(()) => {
                    return std::fs::rename(&temp, path).inspect_err(|_| {
                        let _ = std::fs::remove_file(&temp);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free temporary name"))
    }

    /// Unique within this process and, through the pid and clock, across processes.
    fn unique_suffix() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn link(source: &CString, target: &Path) -> io::Result<()> {
        let target = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both are valid NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                source.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_new_files_and_replaces_old_ones_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |file| {
            file.write_all(b"half")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot write: disk on fire", path.display())
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.bin"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/x");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot write: ", path.display())),
            "{err}"
        );
    }
}
