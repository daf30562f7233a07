//! Exit codes: what a failure means for the user, decided here so that `main.rs` stays thin.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | runtime failure: no source of MNIST reachable, a disk that cannot be written, training that diverged |
//! | 2 | usage or bad input: flags, config, data files, a run name already taken |
//! | 130 | interrupted (Ctrl-C): the run is kept, marked `interrupted` |

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::data::dataset::DataError;
use crate::data::idx::IdxError;
use crate::data::source::SourceError;
use crate::inspection::InspectError;
use crate::run_dir::RunDirError;
use crate::saved::LoadError;
use crate::sweep::SweepError;
use crate::training::TrainError;
use crate::training::tracking::TrackingError;
use std::error::Error;

pub const SUCCESS: u8 = 0;
pub const RUNTIME_FAILURE: u8 = 1;
pub const BAD_INPUT: u8 = 2;
/// 128 + SIGINT, as shells report a process stopped by Ctrl-C (defined where Ctrl-C is
/// handled, which exits with it when no training is running).
pub use crate::training::INTERRUPTED;

/// For a command that writes nothing, `serve`: Ctrl-C (and SIGTERM, SIGHUP) ends the process
/// with [`INTERRUPTED`], as `train` does when no training is running.
pub fn exit_on_ctrl_c() {
    if let Err(e) = ctrlc::set_handler(|| std::process::exit(i32::from(INTERRUPTED))) {
        log::warn!("Ctrl-C will kill the process without exit code {INTERRUPTED}: {e}");
    }
}

/// The exit code for `error`: the first error of this crate in its chain decides; anything
/// else is a runtime failure.
pub fn exit_code(error: &(dyn Error + 'static)) -> u8 {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(bad_input) = is_bad_input(error) {
            return if bad_input {
                BAD_INPUT
            } else {
                RUNTIME_FAILURE
            };
        }
        next = error.source();
    }
    RUNTIME_FAILURE
}

fn is_bad_input(error: &(dyn Error + 'static)) -> Option<bool> {
    if let Some(e) = error.downcast_ref::<ConfigError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<SweepError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<TrainError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<TrackingError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<DataError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<SourceError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<IdxError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<RunDirError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<InspectError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<LoadError>() {
        return Some(e.is_bad_input());
    }
    if let Some(e) = error.downcast_ref::<BackendError>() {
        return Some(e.is_bad_input());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn bad_input_is_2_and_the_machine_failing_is_1() {
        let config = ConfigError::Invalid {
            key: "train.epochs",
            value: "0".into(),
            reason: "must be at least 1",
        };
        assert_eq!(exit_code(&config), BAD_INPUT);
        let idx = IdxError::Empty {
            path: PathBuf::from("x"),
        };
        assert_eq!(exit_code(&TrainError::Data(DataError::Idx(idx))), BAD_INPUT);
        let unreachable = SourceError::NoSource {
            attempts: vec!["mirror: refused".into()],
        };
        assert_eq!(
            exit_code(&TrainError::Data(DataError::Source(unreachable))),
            RUNTIME_FAILURE
        );
        let taken = RunDirError::Exists {
            path: PathBuf::from("runs/a"),
        };
        assert_eq!(exit_code(&TrainError::RunDir(taken)), BAD_INPUT);
        let diverged = TrainError::Failed {
            run: PathBuf::from("runs/a"),
            message: "the training loss became NaN".into(),
        };
        assert_eq!(exit_code(&diverged), RUNTIME_FAILURE);
        let disk = IdxError::Read {
            path: PathBuf::from("x"),
            source: std::io::Error::other("I/O error"),
        };
        assert_eq!(exit_code(&disk), RUNTIME_FAILURE);
        assert_eq!(
            exit_code(&std::io::Error::other("anything")),
            RUNTIME_FAILURE
        );
    }
}
