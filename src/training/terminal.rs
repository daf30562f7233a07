//! The terminal under Burn's dashboard.
//!
//! Burn's TUI puts the terminal in raw mode, where Ctrl-C is no signal but a key press, and the
//! TUI ignores that key (it only knows `q`, which opens a quit popup). So that Ctrl-C stops
//! training in the TUI as it does everywhere else, signals from the keyboard are switched back
//! on once the TUI is up, for Ctrl-C only (Ctrl-\ and Ctrl-Z would kill or suspend the process
//! with the terminal still raw). And whatever way training ends, the terminal is put back as it
//! was before the TUI started.

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, NumericEntry};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The controlling terminal and its settings from before the TUI.
pub(crate) struct Terminal {
    tty: File,
    saved: libc::termios,
    ctrl_c_on: AtomicBool,
}

impl Terminal {
    /// The controlling terminal, if there is one, with its current settings.
    pub(crate) fn open() -> Option<Arc<Self>> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let saved = get_attr(&tty)?;
        Some(Arc::new(Self {
            tty,
            saved,
            ctrl_c_on: AtomicBool::new(false),
        }))
    }

    /// Once the TUI has made the terminal raw, lets Ctrl-C raise SIGINT again; true once done.
    pub(crate) fn keep_ctrl_c(&self) -> bool {
        if self.ctrl_c_on.load(Ordering::Relaxed) {
            return true;
        }
        let Some(mut attr) = get_attr(&self.tty) else {
            return false;
        };
        if attr.c_lflag & libc::ISIG != 0 {
            // Not raw yet: Ctrl-C still raises SIGINT.
            return false;
        }
        attr.c_lflag |= libc::ISIG;
        attr.c_cc[libc::VINTR] = self.saved.c_cc[libc::VINTR];
        attr.c_cc[libc::VQUIT] = libc::_POSIX_VDISABLE;
        attr.c_cc[libc::VSUSP] = libc::_POSIX_VDISABLE;
        let done = set_attr(&self.tty, &attr);
        if done {
            log::info!("Ctrl-C stops training in the dashboard too");
        }
        self.ctrl_c_on.store(done, Ordering::Relaxed);
        done
    }

    /// Puts the terminal back as it was before the TUI: settings, main screen, no mouse
    /// capture, cursor shown. Harmless when the TUI already did it.
    pub(crate) fn restore(&self) {
        set_attr(&self.tty, &self.saved);
        let mut stdout = std::io::stdout();
        if stdout.is_terminal() {
            // What crossterm's DisableMouseCapture, LeaveAlternateScreen and Show write.
            let _ = stdout.write_all(
                b"\x1b[?1006l\x1b[?1015l\x1b[?1003l\x1b[?1002l\x1b[?1000l\x1b[?1049l\x1b[?25h",
            );
            let _ = stdout.flush();
        }
    }
}

fn get_attr(tty: &File) -> Option<libc::termios> {
    // SAFETY: termios is plain data, filled in by tcgetattr on success.
    let mut attr: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid open descriptor and a valid pointer.
    (unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut attr) } == 0).then_some(attr)
}

fn set_attr(tty: &File, attr: &libc::termios) -> bool {
    // SAFETY: a valid open descriptor and a valid pointer.
    unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, attr) == 0 }
}

/// Runs [`Terminal::keep_ctrl_c`] as training reports its batches, until it took effect: the
/// TUI makes the terminal raw on its own thread, shortly after it starts.
pub(crate) struct CtrlCInDashboard {
    terminal: Arc<Terminal>,
}

impl CtrlCInDashboard {
    pub(crate) fn new(terminal: Arc<Terminal>) -> Self {
        Self { terminal }
    }
}

impl MetricLogger for CtrlCInDashboard {
    fn log(&mut self, _update: MetricsUpdate, _epoch: usize, _split: &Split) {
        self.terminal.keep_ctrl_c();
    }

    fn read_numeric(
        &mut self,
        _name: &str,
        _epoch: usize,
        _split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Err("keeps no metrics".to_string())
    }

    fn log_metric_definition(&mut self, _definition: MetricDefinition) {}

    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}
