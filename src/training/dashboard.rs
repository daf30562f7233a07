//! What the user sees while training: Burn's terminal dashboard, Keras's progress bar
//! (`fit(verbose=1)`), one Keras-style line per epoch (`verbose=2`:
//! `Epoch 1/5 - 9.1s - loss: 0.1850 - accuracy: 0.9440 - val_loss: …`), or nothing (`verbose=0`).

use super::history::EpochCollector;
use super::keras_bar::{KerasBar, print_line};
use crate::run_dir::{EpochMetrics, History};
use burn::train::Interrupter;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::metric::store::Split;
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use std::io::IsTerminal;
use std::time::Instant;

/// `--dashboard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dashboard {
    /// The TUI when stdout is a terminal, else plain lines.
    #[default]
    Auto,
    /// Burn's terminal dashboard.
    Tui,
    /// Keras's progress bar, one per epoch (`verbose=1`).
    Bar,
    /// One Keras-style line per epoch.
    Plain,
    /// Only the final summary.
    None,
}

impl Dashboard {
    /// What `Auto` means here and now.
    pub fn resolve(self) -> Dashboard {
        match self {
            Dashboard::Auto if std::io::stdout().is_terminal() => Dashboard::Tui,
            Dashboard::Auto => Dashboard::Plain,
            other => other,
        }
    }

    /// The Burn renderer for this dashboard. `resumed_after` is the epoch a resumed run
    /// continues from; `batch_size` turns images into the bar's steps.
    pub(crate) fn renderer(
        self,
        interrupter: Interrupter,
        resumed_after: Option<usize>,
        batch_size: usize,
    ) -> Box<dyn MetricsRenderer> {
        match self.resolve() {
            Dashboard::Tui => Box::new(burn::train::renderer::tui::TuiMetricsRendererWrapper::new(
                interrupter,
                resumed_after,
            )),
            Dashboard::Bar => Box::new(EpochLines::with_bar(batch_size).watching(interrupter)),
            Dashboard::None => Box::new(EpochLines::new(false).watching(interrupter)),
            _ => Box::new(EpochLines::new(true).watching(interrupter)),
        }
    }
}

/// The line of a finished epoch, as Keras's `fit(verbose=2)` prints it.
pub(crate) fn epoch_line(epoch: usize, total: usize, seconds: f64, m: &EpochMetrics) -> String {
    format!(
        "Epoch {epoch}/{total} - {seconds:.1}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
        m.loss, m.accuracy, m.val_loss, m.val_accuracy
    )
}

/// After the terminal dashboard closed (taking its screen with it): the line of every epoch
/// it trained, `after` the one it resumed from, so that they stay in the terminal's scrollback
/// as `--dashboard plain`'s would.
pub(crate) fn print_epoch_lines(history: &History, seconds: &[f64], after: usize, total: usize) {
    for epoch in after + 1..=history.epochs() {
        if let Some(m) = history.get(epoch - 1) {
            let seconds = seconds.get(epoch - 1).copied().unwrap_or(0.0);
            print_line(&epoch_line(epoch, total, seconds, &m));
        }
    }
}

/// Prints one line per finished epoch, or Keras's progress bar, or nothing. An epoch whose
/// validation was cut short (Ctrl-C) gets no metrics: they would be those of part of the
/// validation set, looking like the epoch's.
pub struct EpochLines {
    print: bool,
    bar: Option<KerasBar>,
    collector: EpochCollector,
    total_epochs: usize,
    epoch_started: Instant,
    /// Images validated so far in this epoch, of how many; `None` before validation starts.
    validated: Option<(usize, usize)>,
    /// The epoch being trained (1-based).
    next_epoch: usize,
    /// Training's interrupter, for [`TEST_HOLD`].
    interrupter: Option<Interrupter>,
    /// The epoch whose validation [`TEST_HOLD`] holds, and the file it announces it in.
    hold: Option<(usize, std::path::PathBuf)>,
}

/// Tests only: `EPOCH:FILE` makes the validation of epoch EPOCH write FILE after its first
/// batch, then wait (up to a minute) for training to be stopped, so that a test can send
/// Ctrl-C while an epoch validates, deterministically.
pub const TEST_HOLD: &str = "MNIST_MLP_TEST_HOLD_VALIDATION";

impl EpochLines {
    pub fn new(print: bool) -> Self {
        Self {
            print,
            bar: None,
            collector: EpochCollector::default(),
            total_epochs: 0,
            epoch_started: Instant::now(),
            validated: None,
            next_epoch: 1,
            interrupter: None,
            hold: std::env::var(TEST_HOLD).ok().and_then(|hold| {
                let (epoch, file) = hold.split_once(':')?;
                Some((epoch.parse().ok()?, file.into()))
            }),
        }
    }

    /// Knows training's interrupter (for [`TEST_HOLD`]).
    pub fn watching(mut self, interrupter: Interrupter) -> Self {
        self.interrupter = Some(interrupter);
        self
    }

    /// [`TEST_HOLD`]: announces the validation of the held epoch, then waits for the stop.
    fn hold_validation(&mut self, epoch: usize) {
        let Some((held, file)) = &self.hold else {
            return;
        };
        let Some(interrupter) = &self.interrupter else {
            return;
        };
        if *held != epoch {
            return;
        }
        let _ = std::fs::write(file, epoch.to_string());
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while !interrupter.should_stop() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.hold = None;
    }

    /// Keras's progress bar instead of the lines.
    pub fn with_bar(batch_size: usize) -> Self {
        Self {
            bar: Some(KerasBar::new(batch_size)),
            ..Self::new(false)
        }
    }

    fn observe(&mut self, split: Split, state: MetricState) {
        if let MetricState::Numeric(entry, numeric) = state {
            if let (Some(bar), Split::Train, Some(numeric)) = (&mut self.bar, &split, &numeric) {
                bar.observe(self.collector.name(&entry.metric_id), numeric);
            }
            self.collector
                .observe(&split, &entry.metric_id, numeric.as_ref());
        }
    }
}

impl MetricsRendererTraining for EpochLines {
    fn update_train(&mut self, state: MetricState) {
        self.observe(Split::Train, state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.observe(Split::Valid, state);
    }
}

impl TrainingProgressLogger for EpochLines {
    fn start(&mut self, total_epochs: usize, start: usize, _items: Option<usize>, _: Option<&str>) {
        self.total_epochs = total_epochs;
        self.next_epoch = start.max(1);
        self.epoch_started = Instant::now();
        if let Some(bar) = &mut self.bar {
            bar.start(start);
        }
    }

    fn update_epoch(&mut self, epoch: usize) {
        let seconds = self.epoch_started.elapsed().as_secs_f64();
        self.epoch_started = Instant::now();
        self.next_epoch = epoch + 1;
        let m = self.collector.take();
        // Burn ends an epoch whose validation a stop cut short like any other.
        let cut = self.validated.take().filter(|&(done, total)| done < total);
        let m = if cut.is_some() { None } else { m };
        if let Some(bar) = &mut self.bar {
            bar.end_epoch(epoch, m.as_ref());
        }
        if let Some((done, total)) = cut
            && (self.print || self.bar.is_some())
        {
            print_line(&format!(
                "Epoch {epoch}/{} - interrupted while validating ({done} of {total} images): \
                 not finished, not recorded",
                self.total_epochs
            ));
        }
        let Some(m) = m else {
            return;
        };
        if self.print {
            print_line(&epoch_line(epoch, self.total_epochs, seconds, &m));
        }
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        let training = split == <&str>::from(Split::Train);
        self.validated = (!training).then_some((0, total_items));
        if let Some(bar) = &mut self.bar {
            bar.start_split(training, total_items, self.total_epochs);
        }
    }

    fn update_split(&mut self, items_processed: usize) {
        if let Some(bar) = &mut self.bar {
            bar.progress(items_processed);
        }
        if let Some((done, _)) = &mut self.validated {
            let first = *done == 0;
            *done = items_processed;
            if first {
                self.hold_validation(self.next_epoch);
            }
        }
    }

    fn end_split(&mut self) {}
    fn end(&mut self) {}
    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for EpochLines {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRendererEvaluation for EpochLines {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl MetricsRenderer for EpochLines {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.collector.define(&definition);
    }
}
