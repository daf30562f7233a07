//! Keras's `fit(verbose=1)`: an `Epoch 1/5` line, then a bar that moves through the epoch's
//! steps with the step count, the time left, the time per step and the running loss and
//! accuracy, left behind when the epoch ends with the validation metrics added:
//!
//! ```text
//! Epoch 1/5
//! 1875/1875 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step - accuracy: 0.9431 - loss: 0.1898 - val_accuracy: 0.9690 - val_loss: 0.1035
//! ```
//!
//! On a terminal the bar redraws in place (indicatif); elsewhere only the finished lines are
//! printed, as Keras does in a log file.

use crate::run_dir::EpochMetrics;
use burn::train::metric::NumericEntry;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::time::{Duration, Instant};

/// The bar of the epoch under way, and the running means it shows.
pub(crate) struct KerasBar {
    batch_size: usize,
    next_epoch: usize,
    /// Whether Burn is in the training split: the bar follows training steps only.
    training: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    /// Sum and count of the training loss and accuracy (in percent, as Burn gives it) so far
    /// this epoch.
    loss: (f64, usize),
    accuracy: (f64, usize),
}

impl KerasBar {
    pub(crate) fn new(batch_size: usize) -> Self {
        Self {
            batch_size: batch_size.max(1),
            next_epoch: 1,
            training: false,
            bar: None,
            started: Instant::now(),
            loss: (0.0, 0),
            accuracy: (0.0, 0),
        }
    }

    pub(crate) fn start(&mut self, starting_epoch: usize) {
        self.next_epoch = starting_epoch.max(1);
    }

    /// A new split; for training, the epoch's header line and a fresh bar.
    pub(crate) fn start_split(&mut self, training: bool, total_items: usize, total_epochs: usize) {
        self.training = training;
        if !training {
            return;
        }
        let steps = total_items.div_ceil(self.batch_size) as u64;
        print_line(&format!("Epoch {}/{total_epochs}", self.next_epoch));
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{pos}/{len} {bar:20} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("━━─"),
        );
        self.bar = Some(bar);
        self.started = Instant::now();
        self.loss = (0.0, 0);
        self.accuracy = (0.0, 0);
    }

    /// A training step's metric, by its name in Burn's metric set.
    pub(crate) fn observe(&mut self, name: Option<&str>, entry: &NumericEntry) {
        let (value, count) = match entry {
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => (*aggregated_value, *count),
            NumericEntry::Value(value) => (*value, 1),
            NumericEntry::Final(_) => return,
        };
        let sum = match name {
            Some("Loss") => &mut self.loss,
            Some("Accuracy") => &mut self.accuracy,
            _ => return,
        };
        sum.0 += value * count as f64;
        sum.1 += count;
    }

    /// Training has processed `items` images of the epoch.
    pub(crate) fn progress(&mut self, items: usize) {
        let (Some(bar), true) = (&self.bar, self.training) else {
            return;
        };
        let step = items.div_ceil(self.batch_size) as u64;
        bar.set_position(step);
        let elapsed = self.started.elapsed();
        let left = bar.length().unwrap_or(step).saturating_sub(step);
        let eta = per_step(elapsed, step).mul_f64(left as f64);
        bar.set_message(format!(
            "{} {} - accuracy: {:.4} - loss: {:.4}",
            seconds(eta),
            step_time(elapsed, step),
            mean(self.accuracy) / 100.0,
            mean(self.loss)
        ));
    }

    /// The epoch is over (validation included): the bar's last state stays, with the
    /// epoch's metrics.
    pub(crate) fn end_epoch(&mut self, epoch: usize, m: Option<&EpochMetrics>) {
        self.next_epoch = epoch + 1;
        let Some(bar) = self.bar.take() else { return };
        let steps = bar.length().unwrap_or(0);
        let elapsed = self.started.elapsed();
        let metrics = m.map_or_else(String::new, |m| {
            format!(
                " - accuracy: {:.4} - loss: {:.4} - val_accuracy: {:.4} - val_loss: {:.4}",
                m.accuracy, m.loss, m.val_accuracy, m.val_loss
            )
        });
        let tail = format!(
            "{} {}{metrics}",
            seconds(elapsed),
            step_time(elapsed, steps)
        );
        if bar.is_hidden() {
            // Not a terminal: no bar to leave behind, so the line Keras would leave.
            print_line(&format!("{steps}/{steps} - {tail}"));
        } else {
            bar.set_position(steps);
            bar.finish_with_message(tail);
            // indicatif leaves the cursor at the end of the finished bar.
            print_line("");
        }
    }
}

fn mean((sum, count): (f64, usize)) -> f64 {
    if count == 0 { 0.0 } else { sum / count as f64 }
}

fn per_step(elapsed: Duration, steps: u64) -> Duration {
    if steps == 0 {
        Duration::ZERO
    } else {
        elapsed.div_f64(steps as f64)
    }
}

/// "2ms/step", or "350us/step" below a millisecond, as Keras writes it.
fn step_time(elapsed: Duration, steps: u64) -> String {
    let step = per_step(elapsed, steps);
    if step >= Duration::from_millis(1) {
        format!("{}ms/step", step.as_millis())
    } else {
        format!("{}us/step", step.as_micros())
    }
}

/// Whole seconds, as Keras shows elapsed time and ETA.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64().round() as u64)
}

/// Prints a line and flushes it. A closed stdout must not stop training: the run directory
/// keeps the record.
pub(super) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
