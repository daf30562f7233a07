//! Reading files that someone else may have put there: each file opened once, relative to a
//! root directory's descriptor, never through a symlink, and checked on the open descriptor.
//!
//! `serve` reads what training wrote, but anything can be put in a run directory, and swapped
//! while it reads: a `history.json` that becomes a FIFO would block the reading thread for ever,
//! a run directory that becomes a symlink would lead outside, a hard link or a huge file would
//! serve or fill memory with what it should not. Checking a path and then opening it leaves a
//! gap for the swap, so here the open is the check: `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` where Linux has it, else one `openat(O_NOFOLLOW)` per component, each
//! with `O_NONBLOCK` (a FIFO opens at once, and is refused); the type, the size and the link
//! count are then read from the descriptor (`fstat`), and the bytes from that descriptor.
//!
//! The commands read a path the user gave them as any program does ([`Reader::Plain`]).

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why a file beneath the root is not read: the error inside the [`io::Error`] that
/// [`Reader::open`] gives, naming the file (absolute; `serve` shows it relative).
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}; not served", path.display())]
pub struct Refused {
    pub path: PathBuf,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Why {
    #[error("through a symlink or outside the artifact directory")]
    Outside,
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    #[error("{size} bytes, over the {cap} bytes read")]
    TooLarge { size: u64, cap: u64 },
    #[error("{0} hard links to it: one may lead outside the artifact directory")]
    Linked(u64),
}

impl Refused {
    fn error(path: &Path, why: Why) -> io::Error {
        let kind = match why {
            Why::Outside | Why::Linked(_) => io::ErrorKind::PermissionDenied,
            Why::NotRegular(_) | Why::TooLarge { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(
            kind,
            Refused {
                path: path.to_path_buf(),
                why,
            },
        )
    }

    /// The refusal inside `error`, if it is one.
    pub fn of(error: &io::Error) -> Option<&Refused> {
        error.get_ref()?.downcast_ref()
    }
}

/// How a run's files are opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reader {
    /// As any program opens a path: the commands, reading what the user pointed them at.
    #[default]
    Plain,
    /// Only regular files beneath this directory, reached without a symlink, each with one
    /// link and at most the size asked; a FIFO never blocks the open (`serve`).
    Beneath(Arc<PathBuf>),
}

/// A file opened by [`Reader::open`], and what `fstat` said of that descriptor.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
    path: PathBuf,
    cap: u64,
}

impl Opened {
    /// The file's bytes, read from the descriptor opened: never more than the cap.
    pub fn bytes(self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(self.meta.len().min(self.cap) as usize);
        self.file.take(self.cap + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > self.cap {
            let why = Why::TooLarge {
                size: bytes.len() as u64,
                cap: self.cap,
            };
            return Err(Refused::error(&self.path, why));
        }
        Ok(bytes)
    }
}

impl Reader {
    /// Files beneath `root` only (made absolute, so that paths given below it can be matched).
    pub fn beneath(root: &Path) -> Self {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Reader::Beneath(Arc::new(root))
    }

    /// Opens `path` for reading. Beneath a root: only a regular file of at most `cap` bytes
    /// with a single link, reached from the root's descriptor without following a symlink;
    /// anything else is an [`io::Error`] holding a [`Refused`]. Plain: `File::open`, no checks.
    pub fn open(&self, path: &Path, cap: u64) -> io::Result<Opened> {
        let Reader::Beneath(root) = self else {
            let file = File::open(path)?;
            let meta = file.metadata()?;
            return Ok(Opened {
                file,
                meta,
                path: path.to_path_buf(),
                cap: u64::MAX - 1,
            });
        };
        let file = open_beneath(root, path, false)?;
        let meta = file.metadata()?;
        if let Some(why) = fault(&meta, cap) {
            return Err(Refused::error(path, why));
        }
        Ok(Opened {
            file,
            meta,
            path: path.to_path_buf(),
            cap,
        })
    }

    /// `path`'s bytes (see [`Reader::open`]) and its metadata, from one descriptor.
    pub fn read(&self, path: &Path, cap: u64) -> io::Result<(Vec<u8>, Metadata)> {
        let opened = self.open(path, cap)?;
        let meta = opened.meta.clone();
        Ok((opened.bytes()?, meta))
    }

    /// `path`'s text (see [`Reader::open`]).
    pub fn read_to_string(&self, path: &Path, cap: u64) -> io::Result<String> {
        if *self == Reader::Plain {
            return std::fs::read_to_string(path);
        }
        let (bytes, _) = self.read(path, cap)?;
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Whether [`Reader::open`] would open `path` (a regular file, plain or beneath).
    pub fn is_file(&self, path: &Path, cap: u64) -> bool {
        match self {
            Reader::Plain => path.is_file(),
            Reader::Beneath(_) => self.open(path, cap).is_ok(),
        }
    }

    /// The names in directory `dir`, not sorted. Beneath a root: the directory opened as files
    /// are, and listed from that descriptor.
    pub fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        match self {
            Reader::Plain => std::fs::read_dir(dir)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect(),
            Reader::Beneath(root) => {
                let names = below(root, dir)?;
                sys::list(root, &names).map_err(|e| refusal(dir, e))
            }
        }
    }
}

/// Why the open file `meta` describes is not read, if it is not.
fn fault(meta: &Metadata, cap: u64) -> Option<Why> {
    let kind = meta.file_type();
    if let Some(special) = special(&kind) {
        return Some(Why::NotRegular(special));
    }
    if kind.is_dir() {
        return Some(Why::NotRegular("a directory"));
    }
    if !kind.is_file() {
        return Some(Why::NotRegular("a special file"));
    }
    if meta.len() > cap {
        return Some(Why::TooLarge {
            size: meta.len(),
            cap,
        });
    }
    links(meta).filter(|&n| n != 1).map(Why::Linked)
}

/// What Unix names a special file of `kind`, if it is one.
#[cfg(unix)]
fn special(kind: &std::fs::FileType) -> Option<&'static str> {
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
fn special(_kind: &std::fs::FileType) -> Option<&'static str> {
    None
}

#[cfg(unix)]
fn links(meta: &Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.nlink())
}

/// Windows' link count is not in std's stable `Metadata`.
#[cfg(not(unix))]
fn links(_meta: &Metadata) -> Option<u64> {
    None
}

/// `path`'s components below `root`, each a plain name: a path elsewhere, or one with `..`,
/// is refused before anything is opened.
fn below(root: &Path, path: &Path) -> io::Result<Vec<OsString>> {
    let outside = || Refused::error(path, Why::Outside);
    let rest = path.strip_prefix(root).map_err(|_| outside())?;
    let mut names = Vec::new();
    for component in rest.components() {
        match component {
            Component::Normal(name) => names.push(name.to_os_string()),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    Ok(names)
}

/// Opens `path` beneath `root`, a directory when `directory`, never through a symlink.
fn open_beneath(root: &Path, path: &Path, directory: bool) -> io::Result<File> {
    let names = below(root, path)?;
    sys::open(root, &names, directory).map_err(|e| refusal(path, e))
}

/// `error` as a [`Refused`] when it says a symlink was on the way.
fn refusal(path: &Path, error: io::Error) -> io::Error {
    match sys::is_symlink_refusal(&error) {
        true => Refused::error(path, Why::Outside),
        false => error,
    }
}

#[cfg(unix)]
mod sys {
    use std::ffi::{CString, OsString};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// Flags of every open: read only, never blocking on a FIFO, never a controlling tty.
    fn flags(directory: bool) -> libc::c_int {
        let base = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        if directory {
            base | libc::O_DIRECTORY
        } else {
            base
        }
    }

    /// The symlink refusals of `openat2` (`ELOOP`: a symlink on the way; `EXDEV`: escaping the
    /// root) and of `O_NOFOLLOW` (`ELOOP`; `EMLINK` on the BSDs).
    pub(super) fn is_symlink_refusal(error: &io::Error) -> bool {
        matches!(
            error.raw_os_error(),
            Some(libc::ELOOP | libc::EXDEV | libc::EMLINK)
        )
    }

    pub(super) fn open(root: &Path, names: &[OsString], directory: bool) -> io::Result<File> {
        // The root itself is the user's choice (it may be a symlink); below it, nothing is.
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root)?;
        let flags = flags(directory);
        #[cfg(target_os = "linux")]
        if !WALK_ONLY.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(opened) = openat2(&root, names, flags)
        {
            return opened;
        }
        walk(root.into(), names, flags)
    }

    /// Set by the tests, to try the walk `openat2`'s absence falls back to.
    #[cfg(target_os = "linux")]
    pub(super) static WALK_ONLY: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    fn c_name(name: &[u8]) -> io::Result<CString> {
        CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`; `None` where the kernel has no
    /// `openat2` (before 5.6: `ENOSYS`) or a seccomp filter refuses it (`EPERM`, containers).
    #[cfg(target_os = "linux")]
    fn openat2(root: &File, names: &[OsString], flags: libc::c_int) -> Option<io::Result<File>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return None;
        }
        let joined: Vec<u8> = match names {
            [] => b".".to_vec(),
            _ => names
                .iter()
                .map(|n| n.as_bytes())
                .collect::<Vec<_>>()
                .join(&b'/'),
        };
        let path = match c_name(&joined) {
            Ok(path) => path,
            Err(e) => return Some(Err(e)),
        };
        // SAFETY: open_how is plain integers; zero is "no mode, no flags".
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: a valid descriptor, a NUL-terminated path and an open_how of the size given.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a descriptor the kernel just gave this process, owned from here on.
            return Some(Ok(unsafe { File::from_raw_fd(fd as libc::c_int) }));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM) => {
                UNAVAILABLE.store(true, Ordering::Relaxed);
                None
            }
            _ => Some(Err(error)),
        }
    }

    /// One `openat` per component: directories with `O_DIRECTORY | O_NOFOLLOW`, the last with
    /// `O_NOFOLLOW`, so a symlink anywhere fails the open (`ELOOP`) instead of being followed.
    fn walk(mut dir: OwnedFd, names: &[OsString], flags: libc::c_int) -> io::Result<File> {
        let Some((last, parents)) = names.split_last() else {
            return Ok(File::from(dir));
        };
        let at = |dir: &OwnedFd, name: &OsString, flags: libc::c_int| -> io::Result<OwnedFd> {
            let name = c_name(name.as_bytes())?;
            // SAFETY: a valid descriptor and a NUL-terminated name.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
            if fd < 0 {
                let error = io::Error::last_os_error();
                // Linux answers O_DIRECTORY | O_NOFOLLOW on a symlink with ENOTDIR: say ELOOP.
                if error.raw_os_error() == Some(libc::ENOTDIR) && is_symlink(dir, &name) {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                return Err(error);
            }
            // SAFETY: a descriptor the kernel just gave this process, owned from here on.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        for name in parents {
            dir = at(&dir, name, self::flags(true) | libc::O_NOFOLLOW)?;
        }
        at(&dir, last, flags | libc::O_NOFOLLOW).map(File::from)
    }

    /// Whether `name` in `dir` is a symlink (`fstatat`, not following it).
    fn is_symlink(dir: &OwnedFd, name: &CString) -> bool {
        // SAFETY: stat is plain data, filled in by fstatat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor, a NUL-terminated name and a stat to fill.
        let done = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        done == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFLNK
    }

    /// The names in directory `names` below `root`, but `.` and `..`: listed from the
    /// descriptor opened as files are.
    pub(super) fn list(root: &Path, names: &[OsString]) -> io::Result<Vec<OsString>> {
        use std::os::fd::IntoRawFd;
        let fd = open(root, names, true)?.into_raw_fd();
        // SAFETY: fdopendir takes over the descriptor; closedir below closes both.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let error = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the descriptor is still this function's.
            unsafe { libc::close(fd) };
            return Err(error);
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: a stream fdopendir gave, not closed until after the loop.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir's entry holds a NUL-terminated name, valid until the next call.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            let name = name.to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
        }
        // SAFETY: the stream is open and not used again.
        unsafe { libc::closedir(stream) };
        Ok(names)
    }
}

/// Elsewhere (Windows): each component checked not to be a symlink, then the file opened;
/// not free of races as the Unix way is, but the checks on the open file still hold.
#[cfg(not(unix))]
mod sys {
    use std::ffi::OsString;
    use std::fs::File;
    use std::io;
    use std::path::{Path, PathBuf};

    pub(super) fn is_symlink_refusal(error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::NotADirectory
    }

    /// `names` below `root`, none of them a symlink.
    fn checked(root: &Path, names: &[OsString]) -> io::Result<PathBuf> {
        let mut path = root.to_path_buf();
        for name in names {
            path.push(name);
            if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
        }
        Ok(path)
    }

    pub(super) fn open(root: &Path, names: &[OsString], _directory: bool) -> io::Result<File> {
        File::open(checked(root, names)?)
    }

    pub(super) fn list(root: &Path, names: &[OsString]) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(checked(root, names)?)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// An artifact directory holding `runs/a/history.json` (one link), a FIFO, a symlink to a
    /// file outside, a symlink to a directory outside, a hard link to a file outside, and a
    /// file over the cap; the outside files hold `MARKER`.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let home = tempfile::tempdir().unwrap();
        let outside = home.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("history.json"), "MARKER").unwrap();
        let root = home.path().join("artifacts");
        let run = root.join("runs/a");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("history.json"), "{}").unwrap();
        std::fs::write(run.join("big"), vec![b' '; 101]).unwrap();
        let fifo = std::ffi::CString::new(run.join("fifo").into_os_string().into_encoded_bytes());
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.unwrap().as_ptr(), 0o644) }, 0);
        symlink(outside.join("history.json"), run.join("link")).unwrap();
        symlink(&outside, root.join("runs/b")).unwrap();
        std::fs::hard_link(outside.join("history.json"), run.join("hard")).unwrap();
        (home, root)
    }

    fn why(reader: &Reader, path: &Path) -> Why {
        let error = reader.read(path, 100).unwrap_err();
        Refused::of(&error)
            .unwrap_or_else(|| panic!("{}: {error}", path.display()))
            .why
            .clone()
    }

    fn check(walk_only: bool) {
        #[cfg(target_os = "linux")]
        sys::WALK_ONLY.store(walk_only, std::sync::atomic::Ordering::Relaxed);
        let (_home, root) = tree();
        let reader = Reader::beneath(&root);
        let run = root.join("runs/a");
        let (bytes, meta) = reader.read(&run.join("history.json"), 100).unwrap();
        assert_eq!((bytes.as_slice(), meta.len()), (&b"{}"[..], 2));
        // A FIFO opens at once (O_NONBLOCK) and is refused on its descriptor.
        assert_eq!(why(&reader, &run.join("fifo")), Why::NotRegular("a FIFO"));
        assert_eq!(why(&reader, &run.join("link")), Why::Outside);
        assert_eq!(
            why(&reader, &root.join("runs/b/history.json")),
            Why::Outside
        );
        assert_eq!(why(&reader, &run.join("hard")), Why::Linked(2));
        assert_eq!(
            why(&reader, &run.join("big")),
            Why::TooLarge {
                size: 101,
                cap: 100
            }
        );
        assert_eq!(why(&reader, &run.join("../b/history.json")), Why::Outside);
        assert_eq!(why(&reader, Path::new("/etc/passwd")), Why::Outside);
        assert_eq!(
            reader.read(&run.join("gone"), 100).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let mut names = reader.read_dir(&root.join("runs")).unwrap();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        let error = reader.read_dir(&root.join("runs/b")).unwrap_err();
        assert_eq!(Refused::of(&error).unwrap().why, Why::Outside);
        // The commands read as any program does.
        let (bytes, _) = Reader::Plain
            .read(&root.join("runs/b/history.json"), 0)
            .unwrap();
        assert_eq!(bytes, b"MARKER");
    }

    /// Both ways, one after the other (the switch is process-wide).
    #[test]
    fn only_regular_files_with_one_link_reached_without_a_symlink_are_read() {
        check(false);
        check(true);
        #[cfg(target_os = "linux")]
        sys::WALK_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
