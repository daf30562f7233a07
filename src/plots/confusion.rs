//! The 10×10 confusion matrix as a heatmap, counts in the cells: rows are the true digit,
//! columns the predicted one.

use super::font::FAMILY;
use super::{DrawResult, PlotError, render_png};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// `counts[true_digit][predicted_digit]`: how many images of `true_digit` were predicted as
/// `predicted_digit`.
pub type ConfusionMatrix = [[u64; 10]; 10];

/// Width and height of the confusion matrix picture, in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (700, 710);

const CELL: i32 = 56;
/// Top-left corner of the grid of cells.
const GRID_X: i32 = 110;
const GRID_Y: i32 = 70;

/// The diagonal (right answers) in blue by the share of its row; the other cells (mistakes) in
/// orange by their count against the largest mistake, so that even a few mistakes show.
const RIGHT_DARK: (f64, f64, f64) = (8.0, 81.0, 156.0);
const WRONG_LIGHT: (f64, f64, f64) = (254.0, 230.0, 206.0);
const WRONG_DARK: (f64, f64, f64) = (217.0, 72.0, 1.0);

/// Writes `counts` as a heatmap PNG of [`CONFUSION_SIZE`] to `path`, with `title` above it.
pub fn write_confusion_png(
    counts: &ConfusionMatrix,
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    render_png(path, CONFUSION_SIZE, |root| draw(root, counts, title))
}

/// The fill of cell (`truth`, `predicted`).
fn cell_color(counts: &ConfusionMatrix, truth: usize, predicted: usize) -> RGBColor {
    let count = counts[truth][predicted] as f64;
    if count == 0.0 {
        return WHITE;
    }
    if truth == predicted {
        let row: u64 = counts[truth].iter().sum();
        let share = count / row as f64;
        lerp((255.0, 255.0, 255.0), RIGHT_DARK, share)
    } else {
        let most = (0..10)
            .flat_map(|t| (0..10).filter(move |&p| p != t).map(move |p| (t, p)))
            .map(|(t, p)| counts[t][p])
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        lerp(WRONG_LIGHT, WRONG_DARK, count / most)
    }
}

fn lerp(from: (f64, f64, f64), to: (f64, f64, f64), t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(from.0, to.0), mix(from.1, to.1), mix(from.2, to.2))
}

/// Black text on light cells, white on dark ones.
fn text_color(fill: RGBColor) -> RGBColor {
    let luma = 0.299 * f64::from(fill.0) + 0.587 * f64::from(fill.1) + 0.114 * f64::from(fill.2);
    if luma < 140.0 { WHITE } else { BLACK }
}

/// One cell of the matrix: its colour, its border and its count.
fn draw_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    counts: &ConfusionMatrix,
    truth: usize,
    predicted: usize,
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let x = GRID_X + predicted as i32 * CELL;
    let y = GRID_Y + truth as i32 * CELL;
    let fill = cell_color(counts, truth, predicted);
    root.draw(&Rectangle::new(
        [(x, y), (x + CELL, y + CELL)],
        fill.filled(),
    ))
    .map_err(err)?;
    root.draw(&Rectangle::new(
        [(x, y), (x + CELL, y + CELL)],
        RGBColor(200, 200, 200).stroke_width(1),
    ))
    .map_err(err)?;
    let count = counts[truth][predicted];
    let color = if count == 0 {
        RGBColor(190, 190, 190)
    } else {
        text_color(fill)
    };
    let centered = Pos::new(HPos::Center, VPos::Center);
    root.draw_text(
        &count.to_string(),
        &(FAMILY, 17).into_font().color(&color).pos(centered),
        (x + CELL / 2, y + CELL / 2),
    )
    .map_err(err)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    counts: &ConfusionMatrix,
    title: &str,
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let centered = Pos::new(HPos::Center, VPos::Center);
    let (width, _) = CONFUSION_SIZE;
    let width = width as i32;
    root.draw_text(
        title,
        &(FAMILY, 22).into_font().color(&BLACK).pos(centered),
        (width / 2, 26),
    )
    .map_err(err)?;

    let cells = 10 * CELL;
    for truth in 0..10 {
        for predicted in 0..10 {
            draw_cell(root, counts, truth, predicted)?;
        }
    }
    root.draw(&Rectangle::new(
        [(GRID_X, GRID_Y), (GRID_X + cells, GRID_Y + cells)],
        BLACK.stroke_width(1),
    ))
    .map_err(err)?;

    // Digit labels: predicted along the bottom, true down the left.
    let label = (FAMILY, 18).into_font().color(&BLACK).pos(centered);
    for digit in 0..10 {
        let middle = digit * CELL + CELL / 2;
        root.draw_text(
            &digit.to_string(),
            &label,
            (GRID_X + middle, GRID_Y + cells + 16),
        )
        .map_err(err)?;
        root.draw_text(&digit.to_string(), &label, (GRID_X - 16, GRID_Y + middle))
            .map_err(err)?;
    }
    let axis = (FAMILY, 20).into_font().color(&BLACK).pos(centered);
    root.draw_text(
        "predicted",
        &axis,
        (GRID_X + cells / 2, GRID_Y + cells + 48),
    )
    .map_err(err)?;
    root.draw_text(
        "true",
        &axis.transform(FontTransform::Rotate270),
        (GRID_X - 52, GRID_Y + cells / 2),
    )
    .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix shaped like a real one: most on the diagonal, a few mistakes.
    fn synthetic() -> ConfusionMatrix {
        let mut counts = [[0u64; 10]; 10];
        for (digit, row) in counts.iter_mut().enumerate() {
            row[digit] = 950 + 10 * digit as u64;
            row[(digit + 3) % 10] = 2 + digit as u64;
        }
        counts[4][9] = 31;
        counts
    }

    fn pixel(image: &image::RgbImage, x: i32, y: i32) -> [u8; 3] {
        image.get_pixel(x as u32, y as u32).0
    }

    #[test]
    fn heatmap_colours_cells_and_writes_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        let counts = synthetic();
        write_confusion_png(&counts, "synthetic", &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), CONFUSION_SIZE);

        // A cell's corner (inside its border) holds its fill; its centre holds the count's
        // text, which differs from the fill.
        let corner = |t: usize, p: usize| {
            pixel(
                &image,
                GRID_X + p as i32 * CELL + 4,
                GRID_Y + t as i32 * CELL + 4,
            )
        };
        for digit in 0..10 {
            let fill = cell_color(&counts, digit, digit);
            assert_eq!(corner(digit, digit), [fill.0, fill.1, fill.2]);
            assert!(fill.2 > fill.0, "the diagonal is blue: {fill:?}");
        }
        assert_eq!(
            corner(4, 9),
            [WRONG_DARK.0 as u8, WRONG_DARK.1 as u8, WRONG_DARK.2 as u8]
        );
        assert_eq!(corner(0, 1), [255, 255, 255], "an empty cell is white");
        let mistake = cell_color(&counts, 0, 3);
        assert!(mistake.0 > mistake.2, "a mistake is orange: {mistake:?}");

        // Text in every cell: the pixels around a cell's centre are not all its fill.
        for t in 0..10 {
            for p in 0..10 {
                let fill = cell_color(&counts, t, p);
                let (cx, cy) = (
                    GRID_X + p as i32 * CELL + CELL / 2,
                    GRID_Y + t as i32 * CELL + CELL / 2,
                );
                let differing = (-12..12)
                    .flat_map(|dx| (-8..8).map(move |dy| (dx, dy)))
                    .filter(|&(dx, dy)| pixel(&image, cx + dx, cy + dy) != [fill.0, fill.1, fill.2])
                    .count();
                assert!(differing > 10, "cell ({t}, {p}) has no visible count");
            }
        }
        // Axis labels left of and below the grid.
        let dark_in = |x0: i32, x1: i32, y0: i32, y1: i32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| pixel(&image, x, y)[0] < 128)
                .count()
        };
        assert!(
            dark_in(
                GRID_X + 200,
                GRID_X + 360,
                GRID_Y + 560 + 34,
                GRID_Y + 560 + 62
            ) > 50
        );
        assert!(dark_in(GRID_X - 64, GRID_X - 40, GRID_Y + 250, GRID_Y + 310) > 30);
    }

    /// The columns of cell (`t`, `p`) around its centre that hold text (a pixel off its fill).
    fn text_columns(image: &image::RgbImage, counts: &ConfusionMatrix, t: usize, p: usize) -> i32 {
        let fill = cell_color(counts, t, p);
        let (x0, y0) = (GRID_X + p as i32 * CELL, GRID_Y + t as i32 * CELL);
        (x0 + 3..x0 + CELL - 3)
            .filter(|&x| {
                (y0 + 3..y0 + CELL - 3).any(|y| pixel(image, x, y) != [fill.0, fill.1, fill.2])
            })
            .count() as i32
    }

    #[test]
    fn each_count_is_written_in_its_cell_as_wide_as_its_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("widths.png");
        // One cell per number of digits: 7, 42, 950, 1040 (and zeros elsewhere).
        let mut counts = [[0u64; 10]; 10];
        counts[2][2] = 1040;
        counts[3][3] = 950;
        counts[5][1] = 42;
        counts[6][8] = 7;
        write_confusion_png(&counts, "widths", &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        let widths =
            [(6, 8), (5, 1), (3, 3), (2, 2)].map(|(t, p)| text_columns(&image, &counts, t, p));
        // Each digit adds the width of one glyph (17 px text: 6 to 12 px a digit).
        for pair in widths.windows(2) {
            let step = pair[1] - pair[0];
            assert!((6..=12).contains(&step), "text widths {widths:?}");
        }
        // A full diagonal cell is the darkest blue, with its count in white.
        let fill = cell_color(&counts, 2, 2);
        assert_eq!(fill, RGBColor(8, 81, 156));
        let (cx, cy) = (GRID_X + 2 * CELL + CELL / 2, GRID_Y + 2 * CELL + CELL / 2);
        let white = (-14..14)
            .flat_map(|dx| (-8..8).map(move |dy| (dx, dy)))
            .filter(|&(dx, dy)| pixel(&image, cx + dx, cy + dy).iter().all(|&c| c > 200))
            .count();
        assert!(
            white > 20,
            "white text on the dark cell: {white} light pixels"
        );
        // The lone mistake is the largest mistake: the darkest orange.
        assert_eq!(cell_color(&counts, 5, 1), RGBColor(217, 72, 1));
    }

    #[test]
    fn an_empty_matrix_draws_white_cells_with_grey_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        let counts = [[0; 10]; 10];
        write_confusion_png(&counts, "", &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), CONFUSION_SIZE);
        for t in 0..10 {
            for p in 0..10 {
                let (x0, y0) = (GRID_X + p as i32 * CELL, GRID_Y + t as i32 * CELL);
                assert_eq!(pixel(&image, x0 + 4, y0 + 4), [255, 255, 255]);
                // One glyph, "0", in light grey: no pixel darker than the text's grey.
                let glyph = text_columns(&image, &counts, t, p);
                assert!(
                    (5..=12).contains(&glyph),
                    "cell ({t}, {p}): {glyph} columns"
                );
                let darkest = (x0 + 10..x0 + CELL - 10)
                    .flat_map(|x| (y0 + 10..y0 + CELL - 10).map(move |y| (x, y)))
                    .map(|(x, y)| pixel(&image, x, y)[0])
                    .min()
                    .unwrap();
                assert!((180..=200).contains(&darkest), "cell ({t}, {p}): {darkest}");
            }
        }
    }
}
