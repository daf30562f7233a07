//! Ctrl-C (SIGINT; also SIGTERM and SIGHUP) while training: the first stops training at the
//! next batch through Burn's [`Interrupter`], so that the run ends at a clean point with its
//! last complete checkpoint; later ones are ignored while it winds down (milliseconds). Outside
//! training the process exits at once with 130: nothing is half-written, since every file is
//! written atomically.

use burn::train::Interrupter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The exit code of a process stopped by Ctrl-C: 128 + SIGINT, as shells report it.
pub const INTERRUPTED: u8 = 130;

/// Why training was stopped, as recorded when Ctrl-C arrives.
pub(crate) const REASON: &str = "interrupted (Ctrl-C)";

/// The training Ctrl-C stops, if one is running, and whether it was signalled.
static ACTIVE: Mutex<Option<(Interrupter, Arc<AtomicBool>)>> = Mutex::new(None);
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn on_signal() {
    let active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    match active.as_ref() {
        Some((interrupter, signalled)) => {
            if !signalled.swap(true, Ordering::SeqCst) {
                log::warn!("Ctrl-C: stopping training after the current batch");
                interrupter.stop(Some(REASON));
            }
        }
        None => std::process::exit(i32::from(INTERRUPTED)),
    }
}

/// While alive, Ctrl-C stops the training of `interrupter` instead of killing the process.
pub(crate) struct CtrlC {
    signalled: Arc<AtomicBool>,
}

impl CtrlC {
    pub(crate) fn watch(interrupter: Interrupter) -> Self {
        let installed = *INSTALLED.get_or_init(|| match ctrlc::set_handler(on_signal) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("Ctrl-C will kill training instead of stopping it: {e}");
                false
            }
        });
        let signalled = Arc::new(AtomicBool::new(false));
        if installed {
            *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((interrupter, signalled.clone()));
        }
        Self { signalled }
    }

    /// Whether Ctrl-C stopped this training.
    pub(crate) fn signalled(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
    }
}

impl Drop for CtrlC {
    fn drop(&mut self) {
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The TUI's "kill" key (`q`, then `k`) panics every training thread on purpose with this
/// message.
const USER_KILL: &str = "Killing training from user input";

/// Whether a panic is the TUI's "kill" key.
pub(crate) fn is_user_kill(panic: &(dyn std::any::Any + Send)) -> bool {
    panic_message(panic).contains(USER_KILL)
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}
