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
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The controlling terminal and its settings from before the TUI.
pub(crate) struct Terminal {
    saved: console::Saved,
    ctrl_c_on: AtomicBool,
}

impl Terminal {
    /// The controlling terminal, if there is one, with its current settings.
    pub(crate) fn open() -> Option<Arc<Self>> {
        Some(Arc::new(Self {
            saved: console::save()?,
            ctrl_c_on: AtomicBool::new(false),
        }))
    }

    /// Once the TUI has made the terminal raw, lets Ctrl-C raise SIGINT again; true once done.
    pub(crate) fn keep_ctrl_c(&self) -> bool {
        if self.ctrl_c_on.load(Ordering::Relaxed) {
            return true;
        }
        let done = console::keep_ctrl_c(&self.saved);
        if done {
            log::info!("Ctrl-C stops training in the dashboard too");
        }
        self.ctrl_c_on.store(done, Ordering::Relaxed);
        done
    }

    /// Puts the terminal back as it was before the TUI: settings, main screen, no mouse
    /// capture, cursor shown. Harmless when the TUI already did it.
    pub(crate) fn restore(&self) {
        console::restore(&self.saved);
        let mut stdout = std::io::stdout();
        if stdout.is_terminal() {
            use crossterm::cursor::Show;
            use crossterm::event::DisableMouseCapture;
            use crossterm::terminal::LeaveAlternateScreen;
            let _ = crossterm::execute!(stdout, DisableMouseCapture, LeaveAlternateScreen, Show);
        }
    }
}

/// Unix: the terminal's termios settings, through `/dev/tty`.
#[cfg(unix)]
mod console {
    use std::fs::File;
    use std::os::unix::io::AsRawFd;

    pub(super) struct Saved {
        tty: File,
        attr: libc::termios,
    }

    pub(super) fn save() -> Option<Saved> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let attr = get_attr(&tty)?;
        Some(Saved { tty, attr })
    }

    /// Signals from the keyboard back on, for Ctrl-C only (Ctrl-\ and Ctrl-Z would kill or
    /// suspend the process with the terminal still raw); false while the TUI has not made the
    /// terminal raw yet.
    pub(super) fn keep_ctrl_c(saved: &Saved) -> bool {
        let Some(mut attr) = get_attr(&saved.tty) else {
            return false;
        };
        if attr.c_lflag & libc::ISIG != 0 {
            // Not raw yet: Ctrl-C still raises SIGINT.
            return false;
        }
        attr.c_lflag |= libc::ISIG;
        attr.c_cc[libc::VINTR] = saved.attr.c_cc[libc::VINTR];
        attr.c_cc[libc::VQUIT] = libc::_POSIX_VDISABLE;
        attr.c_cc[libc::VSUSP] = libc::_POSIX_VDISABLE;
        set_attr(&saved.tty, &attr)
    }

    pub(super) fn restore(saved: &Saved) {
        set_attr(&saved.tty, &saved.attr);
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
}

/// Windows: the console's input mode, through crossterm's WinAPI wrapper. Raw mode there
/// clears `ENABLE_PROCESSED_INPUT`, which is what makes Ctrl-C a signal.
#[cfg(windows)]
mod console {
    use crossterm_winapi::{ConsoleMode, Handle};

    /// `ENABLE_PROCESSED_INPUT` of the Console API (wincon.h).
    const PROCESSED_INPUT: u32 = 0x0001;

    pub(super) struct Saved {
        mode: u32,
    }

    fn input() -> Option<ConsoleMode> {
        Some(ConsoleMode::from(Handle::current_in_handle().ok()?))
    }

    pub(super) fn save() -> Option<Saved> {
        Some(Saved {
            mode: input()?.mode().ok()?,
        })
    }

    pub(super) fn keep_ctrl_c(_saved: &Saved) -> bool {
        let Some(console) = input() else {
            return false;
        };
        match console.mode() {
            // Not raw yet: Ctrl-C still raises the console's control event.
            Ok(mode) if mode & PROCESSED_INPUT != 0 => false,
            Ok(mode) => console.set_mode(mode | PROCESSED_INPUT).is_ok(),
            Err(_) => false,
        }
    }

    pub(super) fn restore(saved: &Saved) {
        if let Some(console) = input() {
            let _ = console.set_mode(saved.mode);
        }
    }
}

/// Elsewhere: no terminal handling; the TUI restores the terminal itself.
#[cfg(not(any(unix, windows)))]
mod console {
    pub(super) struct Saved;

    pub(super) fn save() -> Option<Saved> {
        None
    }

    pub(super) fn keep_ctrl_c(_saved: &Saved) -> bool {
        false
    }

    pub(super) fn restore(_saved: &Saved) {}
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
