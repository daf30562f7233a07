//! Claims: which worker trains which trial in which rung, made by creating a file that must not
//! exist yet (`create_new`: atomic on local file systems and on NFS v3+), so that two workers
//! never both get one.
//!
//! `claims/r<rung>/trial-003` is the first claim of trial 3 in that rung. A worker killed
//! mid-trial leaves its claim; once its owner is gone (its heartbeat, the claim's modification
//! time, is older than the stale limit; or, on this host, its process is not alive), another
//! worker takes it over by creating the next claim, `trial-003.1`, again with
//! `create_new`, so that only one of several workers that saw it stale gets it.

use super::SweepError;
use crate::run_dir::process_alive;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Who holds a claim, as its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub host: String,
    /// UTC, RFC 3339.
    pub claimed: String,
}

impl Owner {
    /// This process.
    pub fn me() -> Self {
        Owner {
            pid: std::process::id(),
            host: hostname(),
            claimed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// This machine's host name (empty if the system will not say).
#[cfg(windows)]
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// This machine's host name (empty if the system will not say).
#[cfg(not(windows))]
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if done != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// The newest claim of one trial in one rung.
#[derive(Debug, Clone)]
pub struct Claim {
    /// 0 for the first claim, n for the n-th takeover.
    pub generation: usize,
    /// `None` while its owner is still writing it (or it is unreadable).
    pub owner: Option<Owner>,
    pub modified: Option<SystemTime>,
}

impl Claim {
    /// Whether the owner is gone: its heartbeat stopped more than `stale` ago, or sooner on
    /// this host, where its process is not alive. A claim naming this very process is a
    /// predecessor's in another PID namespace (a retried container, whose host name a
    /// Kubernetes Indexed Job keeps), or this worker's own, of a trial it already trained.
    pub fn is_stale(&self, stale: Duration) -> bool {
        let old = self
            .modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > stale);
        old || self.owner.as_ref().is_some_and(|owner| {
            owner.host == hostname()
                && (owner.pid == std::process::id() || !process_alive(owner.pid))
        })
    }
}

/// The claims directory of `rung` in the sweep at `sweep`.
pub fn rung_dir(sweep: &Path, rung: usize) -> PathBuf {
    sweep.join("claims").join(format!("r{rung}"))
}

/// The claim file's name: `trial-003`, then `trial-003.1`, … for takeovers.
pub fn file_name(trial: &str, generation: usize) -> String {
    match generation {
        0 => trial.to_string(),
        n => format!("{trial}.{n}"),
    }
}

/// Every claim file of `trial` in `dir`, by generation.
pub fn claims_of(dir: &Path, trial: &str) -> Result<Vec<usize>, SweepError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SweepError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == trial {
            found.push(0);
        } else if let Some(n) = name
            .strip_prefix(trial)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|n| n.parse().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The newest claim of `trial` in `dir`, if any.
pub fn newest(dir: &Path, trial: &str) -> Result<Option<Claim>, SweepError> {
    let Some(&generation) = claims_of(dir, trial)?.last() else {
        return Ok(None);
    };
    let path = dir.join(file_name(trial, generation));
    let owner = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    Ok(Some(Claim {
        generation,
        owner,
        modified,
    }))
}

/// Tries to create claim `generation` of `trial` in `dir` for this process: `None` when another
/// worker created it first.
pub fn try_claim(dir: &Path, trial: &str, generation: usize) -> Result<Option<Held>, SweepError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SweepError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(file_name(trial, generation));
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(source) => return Err(SweepError::Io { path, source }),
    };
    let owner = serde_json::to_string(&Owner::me()).unwrap_or_default();
    file.write_all(owner.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&path))?;
    Ok(Some(Held::new(file)))
}

/// A claim this process holds: while it lives, a thread renews its heartbeat (the file's
/// modification time) every [`HEARTBEAT`].
pub struct Held {
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

/// How often a held claim's modification time is renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

impl Held {
    fn new(file: std::fs::File) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let tick = Duration::from_millis(200);
                let mut since = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    since += tick;
                    if since >= HEARTBEAT {
                        since = Duration::ZERO;
                        // A missed beat only makes the claim look older to other hosts.
                        let _ = file.set_modified(SystemTime::now());
                    }
                }
            })
        };
        Held {
            stop,
            beat: Some(beat),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
    }
}
