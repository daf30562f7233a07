//! `eval RUN`: a run's model scored on the images it was validated on (the 10,000 MNIST test
//! images, or the first `limit_valid` of them for a limited run), as Keras's `model.evaluate`
//! does, with the confusion matrix and per-class precision, recall and F1. Its accuracy is the
//! `val_accuracy` training recorded for the same epoch: the same model on the same images.
//!
//! It also draws `confusion.png` and `mistakes.png` into the run directory.

use super::{ComputeOn, InspectError};
use crate::batcher::MnistBatcher;
use crate::data::idx::CLASSES;
use crate::data::{Mnist, MnistSplit};
use crate::model::{Mlp, thousands};
use crate::plots::{self, ConfusionMatrix, DigitCell, MAX_GRID_DIGITS};
use crate::run_dir::RunDir;
use crate::saved::{self, Weights};
use crate::table::{Align, Table};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use burn::tensor::activation::{log_softmax, softmax};
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;

/// Images per forward pass: bounded memory whatever the split's size.
const CHUNK: usize = 1000;

/// Precision, recall and F1 of one digit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub digit: u8,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Test images of this digit.
    pub support: u64,
}

/// A misclassified image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mistake {
    /// Index in the test split.
    pub index: usize,
    pub truth: u8,
    pub predicted: u8,
    /// The probability the model gave its prediction.
    pub probability: f64,
}

/// What `eval` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub run: String,
    /// The weights file scored.
    pub weights: PathBuf,
    /// The epoch whose end the weights are from.
    pub epoch: usize,
    pub images: usize,
    /// Mean categorical cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    pub correct: u64,
    /// What training recorded as `val_accuracy` for `epoch`, when it did.
    pub recorded_val_accuracy: Option<f64>,
    pub recorded_val_loss: Option<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: ConfusionMatrix,
    pub per_class: Vec<ClassScores>,
    /// Every misclassified image, in test-set order.
    pub mistakes: Vec<Mistake>,
    /// The model's softmax output for each image, in test-set order (not in the JSON: see
    /// [`write_probabilities`]).
    #[serde(skip)]
    pub probabilities: Vec<[f32; CLASSES]>,
    /// The pictures written into the run directory.
    pub pictures: Vec<PathBuf>,
    /// Wall time of scoring (batching, forward passes, tallies), without loading or drawing.
    pub score_seconds: f64,
}

/// Scores `which` weights of `run` (the final model, else the last checkpoint, when `None`) on
/// the run's validation images, on `on`, and writes the pictures. `data_dir` overrides where
/// MNIST is read from.
pub fn evaluate(
    run: &RunDir,
    which: Option<Weights>,
    data_dir: Option<PathBuf>,
    on: ComputeOn,
) -> Result<Evaluation, InspectError> {
    let info = run.read_info()?;
    let mut config = run.read_config()?;
    if data_dir.is_some() {
        config.data.dir = data_dir;
    }
    let device = on.device(&config)?;
    let saved = saved::load(run, which, &device)?;
    let mnist = Mnist::load(&config.sources(false))?;
    // The test images, whatever the run validated on.
    let valid = config.test_images(mnist);
    let history = super::report::recorded_history(run, &info)?;
    // The recorded val_* numbers are the test images' only when the run validated on them.
    let recorded = saved
        .epoch
        .checked_sub(1)
        .and_then(|i| history.get(i))
        .filter(|_| config.validates_on_test());

    let started = std::time::Instant::now();
    let scored = score(&saved.model, &valid, &device)?;
    let score_seconds = started.elapsed().as_secs_f64();
    let mut evaluation = Evaluation {
        run: run.name(),
        weights: saved.path,
        epoch: saved.epoch,
        images: valid.len(),
        loss: scored.loss,
        accuracy: scored.correct as f64 / valid.len().max(1) as f64,
        correct: scored.correct,
        recorded_val_accuracy: recorded.map(|m| m.val_accuracy),
        recorded_val_loss: recorded.map(|m| m.val_loss),
        per_class: per_class(&scored.confusion),
        confusion: scored.confusion,
        mistakes: scored.mistakes,
        probabilities: scored.probabilities,
        pictures: Vec::new(),
        score_seconds,
    };
    evaluation.pictures = draw(run, &evaluation, &valid)?;
    Ok(evaluation)
}

struct Scored {
    loss: f64,
    correct: u64,
    confusion: ConfusionMatrix,
    mistakes: Vec<Mistake>,
    probabilities: Vec<[f32; CLASSES]>,
}

/// The model's verdict on every image of `split`, `CHUNK` images at a time. The chunks are
/// scored in parallel: the kernels split each layer's product over the threads, but batching
/// the pixels, finding their non-zeros and the softmax are one thread's work per chunk, so whole
/// chunks run side by side too. The tally goes through them in order.
fn score(model: &Mlp, split: &MnistSplit, device: &Device) -> Result<Scored, InspectError> {
    let mut scored = Scored {
        loss: 0.0,
        correct: 0,
        confusion: [[0; CLASSES]; CLASSES],
        mistakes: Vec::new(),
        probabilities: Vec::with_capacity(split.len()),
    };
    let chunks: Vec<usize> = (0..split.len()).step_by(CHUNK).collect();
    let to_vec = |t: burn::tensor::Tensor<2>| {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| InspectError::Compute(format!("{e:?}")))
    };
    // The log-probabilities give the loss without log(0); the softmax is the model's output as
    // `predict` and the exports give it.
    let outputs: Vec<(Vec<f32>, Vec<f32>)> = chunks
        .par_iter()
        .map_init(
            || model.clone(),
            |model, &start| {
                let chunk = (start..(start + CHUNK).min(split.len())).map(|i| split.image(i));
                let images = MnistBatcher.batch(chunk.collect(), device);
                let logits = model.forward(images);
                Ok((
                    to_vec(log_softmax(logits.clone(), 1))?,
                    to_vec(softmax(logits, 1))?,
                ))
            },
        )
        .collect::<Result<_, InspectError>>()?;
    for (start, (log_probs, probabilities)) in chunks.into_iter().zip(outputs) {
        scored
            .probabilities
            .extend(probabilities.chunks_exact(CLASSES).map(|row| {
                let mut p = [0.0; CLASSES];
                p.copy_from_slice(row);
                p
            }));
        for (offset, row) in log_probs.chunks_exact(CLASSES).enumerate() {
            let truth = split.label(start + offset);
            let predicted = argmax(row);
            scored.loss -= f64::from(row[usize::from(truth)]);
            scored.confusion[usize::from(truth)][usize::from(predicted)] += 1;
            if predicted == truth {
                scored.correct += 1;
            } else {
                scored.mistakes.push(Mistake {
                    index: start + offset,
                    truth,
                    predicted,
                    probability: f64::from(row[usize::from(predicted)]).exp(),
                });
            }
        }
    }
    scored.loss /= split.len().max(1) as f64;
    Ok(scored)
}

/// The first index of the largest value (the class Burn's accuracy metric picks too).
pub(crate) fn argmax(row: &[f32]) -> u8 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u8
}

/// Precision, recall and F1 of each digit; 0 where a ratio has nothing to divide by.
pub fn per_class(confusion: &ConfusionMatrix) -> Vec<ClassScores> {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (0..CLASSES)
        .map(|c| {
            let hits = confusion[c][c];
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
            let precision = ratio(hits, predicted);
            let recall = ratio(hits, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                digit: c as u8,
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

/// `confusion.png` and `mistakes.png` (the first [`MAX_GRID_DIGITS`] mistakes).
fn draw(
    run: &RunDir,
    evaluation: &Evaluation,
    split: &MnistSplit,
) -> Result<Vec<PathBuf>, InspectError> {
    let confusion = run.confusion_png_path();
    plots::write_confusion_png(
        &evaluation.confusion,
        &format!(
            "{}, epoch {}: accuracy {:.4} on {} images",
            evaluation.run,
            evaluation.epoch,
            evaluation.accuracy,
            thousands(evaluation.images)
        ),
        &confusion,
    )?;
    let shown = &evaluation.mistakes[..evaluation.mistakes.len().min(MAX_GRID_DIGITS)];
    let captions: Vec<String> = shown
        .iter()
        .map(|m| plots::mistake_caption(m.truth, m.predicted, m.probability))
        .collect();
    let cells: Vec<DigitCell<'_>> = shown
        .iter()
        .zip(&captions)
        .map(|(m, caption)| DigitCell {
            image: split.image(m.index),
            caption,
        })
        .collect();
    let mistakes = run.mistakes_png_path();
    plots::write_digit_grid_png(
        &cells,
        &format!(
            "{}, epoch {}: {} of {} mistakes (true → predicted (p))",
            evaluation.run,
            evaluation.epoch,
            shown.len(),
            thousands(evaluation.mistakes.len())
        ),
        &mistakes,
    )?;
    Ok(vec![confusion, mistakes])
}

/// Writes `evaluation`'s probabilities to `path` as CSV, atomically: a header, then one row per
/// image in test-set order: its index, then the ten probabilities (each f32 printed so that it
/// reads back to the same f32).
pub fn write_probabilities(
    evaluation: &Evaluation,
    path: &std::path::Path,
) -> Result<(), InspectError> {
    let mut csv = String::from("index");
    for c in 0..CLASSES {
        let _ = write!(csv, ",p{c}");
    }
    csv.push('\n');
    for (i, row) in evaluation.probabilities.iter().enumerate() {
        let _ = write!(csv, "{i}");
        for p in row {
            let _ = write!(csv, ",{p}");
        }
        csv.push('\n');
    }
    crate::fsutil::write_atomic(path, csv.as_bytes()).map_err(InspectError::Out)
}

impl Evaluation {
    /// As JSON, for a machine.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// As tables, for a person.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run {}, weights {} (epoch {}), on {} test images",
            self.run,
            self.weights.display(),
            self.epoch,
            thousands(self.images)
        );
        let _ = write!(
            out,
            "loss {:.4} - accuracy {:.4} ({} correct)",
            self.loss,
            self.accuracy,
            thousands(self.correct as usize)
        );
        match (self.recorded_val_loss, self.recorded_val_accuracy) {
            (Some(loss), Some(accuracy)) => {
                let _ = writeln!(
                    out,
                    "; training recorded val_loss {loss:.4} - val_accuracy {accuracy:.4} for epoch {}",
                    self.epoch
                );
            }
            _ => out.push('\n'),
        }
        let _ = writeln!(
            out,
            "scored in {:.3} s: {} images/s",
            self.score_seconds,
            thousands((self.images as f64 / self.score_seconds.max(1e-9)).round() as usize)
        );

        let _ = writeln!(
            out,
            "\nConfusion matrix (rows: true digit, columns: predicted digit):"
        );
        let mut columns: Vec<(String, Align)> = vec![("".to_string(), Align::Right)];
        columns.extend((0..CLASSES).map(|c| (c.to_string(), Align::Right)));
        let columns: Vec<(&str, Align)> = columns.iter().map(|(t, a)| (t.as_str(), *a)).collect();
        let mut matrix = Table::new(&columns);
        for (truth, row) in self.confusion.iter().enumerate() {
            let mut cells = vec![truth.to_string()];
            cells.extend(row.iter().map(u64::to_string));
            matrix.row(cells);
        }
        out.push_str(&matrix.render(2));

        let _ = writeln!(out, "\nPer class:");
        let mut classes = Table::new(&[
            ("digit", Align::Right),
            ("precision", Align::Right),
            ("recall", Align::Right),
            ("f1", Align::Right),
            ("support", Align::Right),
        ]);
        for c in &self.per_class {
            classes.row(vec![
                c.digit.to_string(),
                format!("{:.4}", c.precision),
                format!("{:.4}", c.recall),
                format!("{:.4}", c.f1),
                c.support.to_string(),
            ]);
        }
        out.push_str(&classes.render(2));
        if !self.pictures.is_empty() {
            let _ = writeln!(out);
            for picture in &self.pictures {
                let _ = writeln!(out, "Wrote {}", picture.display());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_scores_follow_the_matrix() {
        let mut confusion = [[0; CLASSES]; CLASSES];
        confusion[0][0] = 8;
        confusion[0][1] = 2;
        confusion[1][1] = 6;
        confusion[1][0] = 4;
        let scores = per_class(&confusion);
        // digit 0: 8 of 12 predicted 0 are 0; 8 of 10 zeros found.
        assert!((scores[0].precision - 8.0 / 12.0).abs() < 1e-12);
        assert!((scores[0].recall - 0.8).abs() < 1e-12);
        let f1 = 2.0 * (8.0 / 12.0) * 0.8 / (8.0 / 12.0 + 0.8);
        assert!((scores[0].f1 - f1).abs() < 1e-12);
        assert_eq!(scores[1].support, 10);
        assert!((scores[1].recall - 0.6).abs() < 1e-12);
        assert_eq!(scores[5].f1, 0.0);
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.0]), 1);
        assert_eq!(argmax(&[-1.0, -3.0]), 0);
    }
}
