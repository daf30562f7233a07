//! The training curves everyone plots from Keras's `history.history` after `fit`: loss and
//! val_loss in one panel, accuracy and val_accuracy in the other, one point per epoch.

use super::font::FAMILY;
use super::{DrawResult, PlotError, render_png, render_svg};
use crate::run_dir::History;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Width and height of the curves picture, in pixels (PNG) or user units (SVG).
pub const CURVES_SIZE: (u32, u32) = (1200, 500);

/// Training (blue) and validation (orange) series, as matplotlib's first two colours.
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VALID_COLOR: RGBColor = RGBColor(255, 127, 14);

/// Writes the curves of `history` as a PNG of [`CURVES_SIZE`] to `path`, titled with
/// `run_name` and the final val_accuracy. Fails if the history holds no epoch.
pub fn write_curves_png(history: &History, run_name: &str, path: &Path) -> Result<(), PlotError> {
    let panels = Panels::new(history, path)?;
    render_png(path, CURVES_SIZE, |root| draw(root, &panels, run_name))
}

/// The same picture as [`write_curves_png`], as SVG.
pub fn write_curves_svg(history: &History, run_name: &str, path: &Path) -> Result<(), PlotError> {
    let panels = Panels::new(history, path)?;
    render_svg(path, CURVES_SIZE, |root| draw(root, &panels, run_name))
}

/// One series: its name and its (epoch, value) points, 1-based epochs, finite values only.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(i32, f64)>,
}

/// What the two panels show.
struct Panels {
    epochs: usize,
    final_val_accuracy: f64,
    loss: [Series; 2],
    accuracy: [Series; 2],
}

impl Panels {
    fn new(history: &History, path: &Path) -> Result<Self, PlotError> {
        // Epochs whose four numbers are all there; a hand-made history may have ragged keys.
        let epochs: Vec<_> = (0..history.epochs())
            .map_while(|i| history.get(i))
            .collect();
        let Some(last) = epochs.last() else {
            return Err(PlotError::input(path, "the history holds no epoch to draw"));
        };
        let series = |name, color, value: fn(&crate::run_dir::EpochMetrics) -> f64| Series {
            name,
            color,
            points: epochs
                .iter()
                .zip(1..)
                .map(|(m, epoch)| (epoch, value(m)))
                .filter(|(_, v)| v.is_finite())
                .collect(),
        };
        Ok(Self {
            epochs: epochs.len(),
            final_val_accuracy: last.val_accuracy,
            loss: [
                series("loss", TRAIN_COLOR, |m| m.loss),
                series("val_loss", VALID_COLOR, |m| m.val_loss),
            ],
            accuracy: [
                series("accuracy", TRAIN_COLOR, |m| m.accuracy),
                series("val_accuracy", VALID_COLOR, |m| m.val_accuracy),
            ],
        })
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &Panels,
    run_name: &str,
) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!(
        "{run_name} — final val_accuracy {:.4}",
        panels.final_val_accuracy
    );
    let body = root
        .titled(&title, (FAMILY, 28))
        .map_err(|e| e.to_string())?;
    let halves = body.split_evenly((1, 2));
    let loss_range = value_range(&panels.loss, Bound::Loss);
    let accuracy_range = value_range(&panels.accuracy, Bound::Accuracy);
    draw_panel(
        &halves[0],
        "loss",
        &panels.loss,
        panels.epochs,
        loss_range,
        SeriesLabelPosition::UpperRight,
    )?;
    draw_panel(
        &halves[1],
        "accuracy",
        &panels.accuracy,
        panels.epochs,
        accuracy_range,
        SeriesLabelPosition::LowerRight,
    )
}

enum Bound {
    /// From 0 (or below, for a negative value) up.
    Loss,
    /// Around the values, never above 1 unless a value is.
    Accuracy,
}

/// The y range that shows every point with a margin.
fn value_range(series: &[Series], bound: Bound) -> Range<f64> {
    let values = series.iter().flat_map(|s| s.points.iter().map(|&(_, v)| v));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let span = (hi - lo).max(match bound {
        Bound::Loss => 0.05,
        Bound::Accuracy => 0.01,
    });
    match bound {
        Bound::Loss => lo.min(0.0)..hi + 0.1 * span,
        Bound::Accuracy => {
            let top = (hi + 0.15 * span).min(1.0).max(hi);
            let bottom = (lo - 0.15 * span).max(0.0).min(lo);
            if top > bottom {
                bottom..top
            } else {
                bottom..bottom + 0.01
            }
        }
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    series: &[Series; 2],
    epochs: usize,
    y_range: Range<f64>,
    legend: SeriesLabelPosition,
) -> DrawResult {
    let epochs = i32::try_from(epochs).unwrap_or(i32::MAX - 1);
    // Epochs 1..=n, with half an axis step of room on each side; the labels at 0 and n + 1 are
    // left blank.
    let mut chart = ChartBuilder::on(area)
        .caption(name, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0..epochs + 1, y_range)
        .map_err(|e| e.to_string())?;
    let blank_outside = |epoch: &i32| {
        if (1..=epochs).contains(epoch) {
            epoch.to_string()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(name)
        .x_labels(usize::try_from(epochs + 2).unwrap_or(12).min(12))
        .x_label_formatter(&blank_outside)
        // Plotters puts the ticks at round values; four significant digits drop its float
        // noise (0.30000000000000004) and the zeros a fixed width would pad them with.
        .y_label_formatter(&|v| crate::table::human(*v))
        .axis_desc_style((FAMILY, 18))
        .label_style((FAMILY, 15))
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|e| e.to_string())?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2)));
        // Markers, so that a single epoch still shows.
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&point| Circle::new(point, 4, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::EpochMetrics;

    fn history(epochs: usize) -> History {
        let mut h = History::default();
        for e in 0..epochs {
            let e = e as f64;
            h.push(EpochMetrics {
                loss: 0.25 / (e + 1.0),
                accuracy: 0.92 + 0.015 * e,
                val_loss: 0.12 / (e + 1.0) + 0.02,
                val_accuracy: 0.95 + 0.006 * e,
            });
        }
        h
    }

    /// Distinct colours in an RGB image.
    fn colours(image: &image::RgbImage) -> usize {
        image
            .pixels()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    #[test]
    fn curves_are_written_as_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("curves.png");
        let svg = dir.path().join("curves.svg");
        write_curves_png(&history(5), "unit-run", &png).unwrap();
        write_curves_svg(&history(5), "unit-run", &svg).unwrap();

        let image = image::open(&png).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), CURVES_SIZE);
        // Lines in two colours, anti-aliased text in grey levels: far from uniform.
        assert!(colours(&image) > 50, "{} colours", colours(&image));
        let has = |c: RGBColor| image.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(TRAIN_COLOR) && has(VALID_COLOR));

        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        for label in [
            "unit-run — final val_accuracy 0.9740",
            "\nval_loss\n",
            "\nval_accuracy\n",
            "\nepoch\n",
        ] {
            assert!(text.contains(label), "{label} missing from the SVG");
        }
        // Nothing but the two pictures in the directory: no temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// The y axis's tick labels fall on round values (a step of 1, 2 or 5 times a power of
    /// ten, each a multiple of it), printed with no more digits than they have, whatever the
    /// values: no 0.473 or 0.356.
    #[test]
    fn axis_ticks_are_round_values() {
        let dir = tempfile::tempdir().unwrap();
        let awkward = |scale: f64, offset: f64| {
            let mut h = History::default();
            for e in 0..7 {
                let e = f64::from(e);
                h.push(EpochMetrics {
                    loss: scale * (1.0 / (e + 1.3)) + offset,
                    accuracy: 0.4731 + 0.0713 * e.sqrt(),
                    val_loss: scale * (0.9 / (e + 1.1)) + offset,
                    val_accuracy: 0.3561 + 0.0837 * e.sqrt(),
                });
            }
            h
        };
        for (scale, offset) in [(0.473, 0.0), (0.0871, 0.003), (0.0123, 0.0004)] {
            let svg = dir.path().join("ticks.svg");
            write_curves_svg(&awkward(scale, offset), "ticks", &svg).unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            // The label texts: lines of the SVG that are numbers, less the epochs 1..=7.
            let labels: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| l.parse::<f64>().is_ok() && l.parse::<u32>().is_err())
                .collect();
            assert!(labels.len() >= 6, "{scale}: {labels:?}");
            for label in &labels {
                let v: f64 = label.parse().unwrap();
                assert_eq!(crate::table::human(v), *label, "{scale}: {labels:?}");
            }
            // The two panels' labels, each rising; a fall starts the second. (Scales whose
            // ticks are below 1: whole numbers are taken for epochs.)
            let values: Vec<f64> = labels.iter().map(|l| l.parse().unwrap()).collect();
            let split = (1..values.len())
                .find(|&i| values[i] < values[i - 1])
                .unwrap_or(values.len());
            for panel in [&values[..split], &values[split..]] {
                if panel.len() < 2 {
                    continue;
                }
                let step = panel[1] - panel[0];
                let power = 10f64.powf(step.log10().floor());
                let mantissa = step / power;
                assert!(
                    [1.0, 2.0, 2.5, 5.0]
                        .iter()
                        .any(|m| (mantissa - m).abs() < 1e-6),
                    "{scale}: {labels:?}"
                );
                for v in panel {
                    let k = v / step;
                    assert!((k - k.round()).abs() < 1e-6, "{scale}: {labels:?}");
                }
            }
        }
    }

    #[test]
    fn one_epoch_draws_and_no_epoch_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("one.png");
        write_curves_png(&history(1), "one", &png).unwrap();
        let image = image::open(&png).unwrap().to_rgb8();
        let has = |c: RGBColor| image.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(
            has(TRAIN_COLOR) && has(VALID_COLOR),
            "the single epoch's markers"
        );

        let empty = dir.path().join("empty.png");
        let err = write_curves_png(&History::default(), "none", &empty).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: the history holds no epoch to draw", empty.display())
        );
        assert!(!empty.exists());
    }

    /// The centres of the filled markers of `color` in columns `xs`: pixels whose 5×5
    /// neighbourhood is all `color` (a 2-pixel line never is), grouped, averaged, left to right.
    fn markers(image: &image::RgbImage, color: RGBColor, xs: Range<u32>) -> Vec<(f64, f64)> {
        let is = |x: u32, y: u32| image.get_pixel(x, y).0 == [color.0, color.1, color.2];
        let (_, height) = image.dimensions();
        let mut centres: Vec<(f64, f64, f64)> = Vec::new(); // (sum x, sum y, count)
        for x in xs.start.max(2)..xs.end - 2 {
            for y in 2..height - 2 {
                let solid = (x - 2..=x + 2).all(|i| (y - 2..=y + 2).all(|j| is(i, j)));
                if !solid {
                    continue;
                }
                let (fx, fy) = (f64::from(x), f64::from(y));
                match centres
                    .iter_mut()
                    .find(|c| (c.0 / c.2 - fx).abs() < 6.0 && (c.1 / c.2 - fy).abs() < 6.0)
                {
                    Some(c) => *c = (c.0 + fx, c.1 + fy, c.2 + 1.0),
                    None => centres.push((fx, fy, 1.0)),
                }
            }
        }
        let mut points: Vec<_> = centres.iter().map(|c| (c.0 / c.2, c.1 / c.2)).collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    }

    /// Markers one epoch apart, and heights in proportion to the values: the map from values
    /// to pixels is one straight line.
    fn assert_plotted(points: &[(f64, f64)], values: &[f64], series: &str) {
        assert_eq!(points.len(), values.len(), "{series}: {points:?}");
        let step = points[1].0 - points[0].0;
        assert!(step > 50.0, "{series}: {points:?}");
        let scale = (points[1].1 - points[0].1) / (values[1] - values[0]);
        assert!(scale < 0.0, "{series}: larger values are drawn higher");
        for (i, (&(x, y), &v)) in points.iter().zip(values).enumerate() {
            assert!(
                (x - (points[0].0 + step * i as f64)).abs() <= 1.0,
                "{series}: {points:?}"
            );
            let expected = points[0].1 + scale * (v - values[0]);
            assert!(
                (y - expected).abs() <= 1.0,
                "{series}, epoch {}: y {y}, not {expected}",
                i + 1
            );
        }
    }

    #[test]
    fn each_epochs_values_land_where_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("known.png");
        // Values far apart, so that the two series' markers never touch.
        let history = History {
            loss: vec![0.9, 0.7, 0.6, 0.3, 0.2],
            accuracy: vec![0.60, 0.70, 0.75, 0.90, 0.95],
            val_loss: vec![1.6, 1.5, 1.3, 1.25, 1.2],
            val_accuracy: vec![0.30, 0.40, 0.35, 0.45, 0.50],
        };
        write_curves_png(&history, "known", &png).unwrap();
        let image = image::open(&png).unwrap().to_rgb8();
        let (width, _) = CURVES_SIZE;
        let left = 0..width / 2;
        let right = width / 2..width;
        assert_plotted(
            &markers(&image, TRAIN_COLOR, left.clone()),
            &history.loss,
            "loss",
        );
        assert_plotted(
            &markers(&image, VALID_COLOR, left),
            &history.val_loss,
            "val_loss",
        );
        assert_plotted(
            &markers(&image, TRAIN_COLOR, right.clone()),
            &history.accuracy,
            "accuracy",
        );
        assert_plotted(
            &markers(&image, VALID_COLOR, right),
            &history.val_accuracy,
            "val_accuracy",
        );
        // Both series of a panel share its axes: epoch e of each is in the same column.
        let (loss, val) = (
            markers(&image, TRAIN_COLOR, 0..width / 2),
            markers(&image, VALID_COLOR, 0..width / 2),
        );
        for (a, b) in loss.iter().zip(&val) {
            assert!((a.0 - b.0).abs() <= 1.0, "{loss:?} {val:?}");
        }
    }

    #[test]
    fn odd_values_draw_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = history(3);
        h.loss[1] = f64::NAN;
        h.val_loss[2] = f64::INFINITY;
        h.accuracy = vec![1.0, 1.0, 1.0];
        h.val_accuracy = vec![0.0, 0.0, 0.0];
        write_curves_png(&h, "odd", &dir.path().join("odd.png")).unwrap();
        h.val_accuracy.pop();
        write_curves_png(&h, "ragged", &dir.path().join("ragged.png")).unwrap();
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/curves.png");
        let err = write_curves_png(&history(2), "r", &path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{err}"
        );
    }
}
