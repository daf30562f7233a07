//! What the user sees while training: Burn's terminal dashboard, Keras's progress bar
//! (`fit(verbose=1)`), one Keras-style line per epoch (`verbose=2`:
//! `Epoch 1/5 - 9.1s - loss: 0.1850 - accuracy: 0.9440 - val_loss: …`), or nothing (`verbose=0`).

use super::history::EpochCollector;
use super::keras_bar::{KerasBar, print_line};
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
            Dashboard::Bar => Box::new(EpochLines::with_bar(batch_size)),
            Dashboard::None => Box::new(EpochLines::new(false)),
            _ => Box::new(EpochLines::new(true)),
        }
    }
}

/// Prints one line per finished epoch, or Keras's progress bar, or nothing.
pub struct EpochLines {
    print: bool,
    bar: Option<KerasBar>,
    collector: EpochCollector,
    total_epochs: usize,
    epoch_started: Instant,
}

impl EpochLines {
    pub fn new(print: bool) -> Self {
        Self {
            print,
            bar: None,
            collector: EpochCollector::default(),
            total_epochs: 0,
            epoch_started: Instant::now(),
        }
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
        self.epoch_started = Instant::now();
        if let Some(bar) = &mut self.bar {
            bar.start(start);
        }
    }

    fn update_epoch(&mut self, epoch: usize) {
        let seconds = self.epoch_started.elapsed().as_secs_f64();
        self.epoch_started = Instant::now();
        let m = self.collector.take();
        if let Some(bar) = &mut self.bar {
            bar.end_epoch(epoch, m.as_ref());
        }
        let Some(m) = m else {
            return;
        };
        if self.print {
            print_line(&format!(
                "Epoch {epoch}/{} - {seconds:.1}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
                self.total_epochs, m.loss, m.accuracy, m.val_loss, m.val_accuracy
            ));
        }
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        if let Some(bar) = &mut self.bar {
            let training = split == <&str>::from(Split::Train);
            bar.start_split(training, total_items, self.total_epochs);
        }
    }

    fn update_split(&mut self, items_processed: usize) {
        if let Some(bar) = &mut self.bar {
            bar.progress(items_processed);
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
