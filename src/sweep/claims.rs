//! Claims: which worker trains which trial in which rung, made by creating a file that must not
//! exist yet (`create_new`: atomic on local file systems and on NFS v3+), so that two workers
//! never both get one.
//!
//! `claims/r<rung>/trial-003` is the first claim of trial 3 in that rung. A worker killed
//! mid-trial leaves its claim; once its owner is gone (judged as a run's owner is:
//! [`Owner::seen`], else its heartbeat, the claim's modification time, older than the stale
//! limit), another
//! worker takes it over by creating the next claim, `trial-003.1`, again with
//! `create_new`, so that only one of several workers that saw it stale gets it.

use super::SweepError;
use crate::fsutil::{Reader, Refused};
use crate::run_dir::{Heartbeat, MAX_RECORD, Owner};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a claim file holds: its owner (as a run records it: pid, host, namespaces, boot) and
/// when it claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimFile {
    #[serde(flatten)]
    pub owner: Owner,
    /// UTC, RFC 3339.
    pub claimed: String,
}

/// The newest claim of one trial in one rung.
#[derive(Debug, Clone)]
pub struct Claim {
    /// 0 for the first claim, n for the n-th takeover.
    pub generation: usize,
    /// `None` while its owner is still writing it (or it is unreadable).
    pub owner: Option<Owner>,
    /// The heartbeat: the file's modification time.
    pub modified: Option<SystemTime>,
}

impl Claim {
    /// Whether the owner is gone, judged as a run's owner is ([`Owner::is_live`]): by what
    /// this process can see of it, else by the heartbeat. A claim still being written is
    /// judged by its age alone.
    pub fn is_stale(&self, stale: Duration) -> bool {
        match &self.owner {
            Some(owner) => !owner.is_live(self.modified, stale),
            None => self
                .modified
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > stale),
        }
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

/// Every claim file of `trial` in `dir` (listed by `reader`), by generation.
fn claims_of(reader: &Reader, dir: &Path, trial: &str) -> Result<Vec<usize>, SweepError> {
    let entries = match reader.read_dir(dir) {
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
    for name in entries {
        let name = name.to_string_lossy().into_owned();
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
    newest_by(&Reader::Plain, dir, trial)
}

/// [`newest`], its files read by `reader`: a claim it refuses (a FIFO, a symlink) is an error,
/// one it cannot read has no owner, as with [`newest`].
pub fn newest_by(reader: &Reader, dir: &Path, trial: &str) -> Result<Option<Claim>, SweepError> {
    let Some(&generation) = claims_of(reader, dir, trial)?.last() else {
        return Ok(None);
    };
    let path = dir.join(file_name(trial, generation));
    let owner_of = |text: &[u8]| {
        serde_json::from_slice::<ClaimFile>(text)
            .ok()
            .map(|file| file.owner)
    };
    let (owner, modified) = match reader {
        Reader::Plain => (
            std::fs::read(&path).ok().and_then(|text| owner_of(&text)),
            std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        ),
        Reader::Beneath(_) => match reader.read(&path, MAX_RECORD) {
            Ok((text, meta)) => (owner_of(&text), meta.modified().ok()),
            Err(source) if Refused::of(&source).is_some() => {
                return Err(SweepError::Io { path, source });
            }
            Err(_) => (None, None),
        },
    };
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
    let owner = ClaimFile {
        owner: Owner::me(),
        claimed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let owner = serde_json::to_string(&owner).unwrap_or_default();
    file.write_all(owner.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&path))?;
    Ok(Some(Held {
        _beat: Heartbeat::start(path),
    }))
}

/// A claim this process holds: while it lives, its heartbeat (the file's modification time)
/// is renewed every [`crate::run_dir::HEARTBEAT`].
pub struct Held {
    _beat: Heartbeat,
}
