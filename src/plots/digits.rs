//! Digits as pictures: one image as the tutorial's `plt.imshow(x_train[0])` shows it, and grids
//! of up to 64 with a caption each (the first digits of a split with their labels, or the
//! mistakes of a model captioned `true → predicted (p)`).
//!
//! Pixels are drawn as stored in MNIST: white strokes on black, 0 black and 255 white.

use super::font::FAMILY;
use super::{DrawResult, PlotError, render_png, write_png};
use crate::data::idx::{PIXELS, SIDE};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// The most digits a grid holds.
pub const MAX_GRID_DIGITS: usize = 64;

/// Digits per row of a grid.
const COLUMNS: usize = 8;
/// Screen pixels per MNIST pixel in a grid.
const SCALE: i32 = 3;
const DIGIT_W: i32 = SIDE as i32 * SCALE;
const DIGIT_H: i32 = SIDE as i32 * SCALE;
const CELL_W: i32 = 116;
const CELL_H: i32 = DIGIT_H + 34;
const MARGIN: i32 = 12;
const TITLE_H: i32 = 44;
/// A narrow grid still leaves room for its title.
const MIN_GRID_W: i32 = 4 * CELL_W;

/// One digit of a grid and the line written under it.
#[derive(Debug, Clone, Copy)]
pub struct DigitCell<'a> {
    /// 28×28 pixels, row after row, as [`crate::data::MnistSplit::image`] gives them.
    pub image: &'a [u8; PIXELS],
    pub caption: &'a str,
}

/// The caption of a misclassified digit: `7 → 2 (0.93)`, with the probability the model gave
/// its prediction.
pub fn mistake_caption(truth: u8, predicted: u8, probability: f64) -> String {
    format!("{truth} → {predicted} ({probability:.2})")
}

/// The pixel size of a grid of `cells` digits (at most [`MAX_GRID_DIGITS`] are drawn).
pub fn digit_grid_size(cells: usize) -> (u32, u32) {
    let cells = cells.min(MAX_GRID_DIGITS);
    let columns = cells.clamp(1, COLUMNS) as i32;
    let rows = cells.div_ceil(COLUMNS).max(1) as i32;
    let width = 2 * MARGIN + (columns * CELL_W).max(MIN_GRID_W);
    let height = TITLE_H + rows * CELL_H + MARGIN;
    (width as u32, height as u32)
}

/// Writes up to [`MAX_GRID_DIGITS`] digits as a PNG grid, eight a row, each with its caption
/// under it and `title` above them all. More digits than that is an error (pick which ones to
/// show first); none draws the title and "no digits".
pub fn write_digit_grid_png(
    cells: &[DigitCell<'_>],
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    if cells.len() > MAX_GRID_DIGITS {
        return Err(PlotError::input(
            path,
            format!(
                "{} digits given; a grid holds at most {MAX_GRID_DIGITS}",
                cells.len()
            ),
        ));
    }
    let size = digit_grid_size(cells.len());
    render_png(path, size, |root| draw_grid(root, cells, title, size))
}

/// Writes one digit as a grayscale PNG, each MNIST pixel as `scale` × `scale` pixels (scale 1
/// gives the 28×28 image itself). `scale` must be 1 to 64.
pub fn write_digit_png(image: &[u8; PIXELS], scale: u32, path: &Path) -> Result<(), PlotError> {
    if !(1..=64).contains(&scale) {
        return Err(PlotError::input(
            path,
            format!("scale must be 1 to 64 (got {scale})"),
        ));
    }
    let s = scale as usize;
    let (width, height) = (SIDE * s, SIDE * s);
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| image[(y / s) * SIDE + x / s]))
        .collect();
    write_png(
        path,
        &pixels,
        (width as u32, height as u32),
        image::ExtendedColorType::L8,
    )
}

fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    cells: &[DigitCell<'_>],
    title: &str,
    (width, _): (u32, u32),
) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let width = width as i32;
    let centered = Pos::new(HPos::Center, VPos::Center);
    root.draw_text(
        title,
        &(FAMILY, 22).into_font().color(&BLACK).pos(centered),
        (width / 2, TITLE_H / 2),
    )
    .map_err(err)?;
    if cells.is_empty() {
        return root
            .draw_text(
                "no digits",
                &(FAMILY, 18)
                    .into_font()
                    .color(&RGBColor(120, 120, 120))
                    .pos(centered),
                (width / 2, TITLE_H + CELL_H / 2),
            )
            .map_err(err);
    }
    let columns = cells.len().min(COLUMNS) as i32;
    let left = (width - columns * CELL_W) / 2;
    let caption = (FAMILY, 16).into_font().color(&BLACK).pos(centered);
    for (index, cell) in cells.iter().enumerate() {
        let (row, column) = ((index / COLUMNS) as i32, (index % COLUMNS) as i32);
        let x = left + column * CELL_W + (CELL_W - DIGIT_W) / 2;
        let y = TITLE_H + row * CELL_H;
        for (i, &value) in cell.image.iter().enumerate() {
            let px = x + (i % SIDE) as i32 * SCALE;
            let py = y + (i / SIDE) as i32 * SCALE;
            root.draw(&Rectangle::new(
                [(px, py), (px + SCALE, py + SCALE)],
                RGBColor(value, value, value).filled(),
            ))
            .map_err(err)?;
        }
        root.draw(&Rectangle::new(
            [(x - 1, y - 1), (x + DIGIT_W, y + DIGIT_H)],
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(err)?;
        root.draw_text(
            cell.caption,
            &caption,
            (x + DIGIT_W / 2, y + DIGIT_H + (CELL_H - DIGIT_H) / 2),
        )
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic digit: a bright vertical bar at column `at`, its value `value`.
    fn bar(at: usize, value: u8) -> [u8; PIXELS] {
        let mut image = [0u8; PIXELS];
        for row in 4..24 {
            image[row * SIDE + at] = value;
            image[row * SIDE + at + 1] = value;
        }
        image
    }

    #[test]
    fn a_digit_png_holds_the_exact_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let digit = bar(10, 200);
        let one = dir.path().join("one.png");
        write_digit_png(&digit, 1, &one).unwrap();
        let image = image::open(&one).unwrap().to_luma8();
        assert_eq!(image.dimensions(), (28, 28));
        assert_eq!(image.as_raw().as_slice(), digit.as_slice());

        let big = dir.path().join("big.png");
        write_digit_png(&digit, 10, &big).unwrap();
        let image = image::open(&big).unwrap().to_luma8();
        assert_eq!(image.dimensions(), (280, 280));
        assert_eq!(image.get_pixel(105, 150).0, [200]);
        assert_eq!(image.get_pixel(95, 150).0, [0]);
        assert_eq!(image.get_pixel(105, 35).0, [0]);

        let bad = dir.path().join("bad.png");
        let err = write_digit_png(&digit, 0, &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: scale must be 1 to 64 (got 0)", bad.display())
        );
        assert!(!bad.exists());
    }

    #[test]
    fn a_grid_places_each_digit_with_its_caption() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<[u8; PIXELS]> = (0..10).map(|i| bar(2 + 2 * i, 255)).collect();
        let captions: Vec<String> = (0..10)
            .map(|i| mistake_caption(i as u8, (i as u8 + 1) % 10, 0.5 + i as f64 / 25.0))
            .collect();
        assert_eq!(captions[3], "3 → 4 (0.62)");
        let cells: Vec<DigitCell> = images
            .iter()
            .zip(&captions)
            .map(|(image, caption)| DigitCell { image, caption })
            .collect();
        let path = dir.path().join("grid.png");
        write_digit_grid_png(&cells, "ten bars", &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        // Ten digits: eight in the first row, two in the second.
        assert_eq!(image.dimensions(), digit_grid_size(10));
        assert_eq!(
            image.dimensions(),
            (
                (2 * MARGIN + 8 * CELL_W) as u32,
                (TITLE_H + 2 * CELL_H + MARGIN) as u32
            )
        );

        let left = (image.width() as i32 - 8 * CELL_W) / 2;
        for (index, digit) in images.iter().enumerate() {
            let (row, column) = ((index / COLUMNS) as i32, (index % COLUMNS) as i32);
            let x = left + column * CELL_W + (CELL_W - DIGIT_W) / 2;
            let y = TITLE_H + row * CELL_H;
            // Every MNIST pixel shows as a SCALE × SCALE block of its grey.
            for (i, &value) in digit.iter().enumerate() {
                let px = x + (i % SIDE) as i32 * SCALE + 1;
                let py = y + (i / SIDE) as i32 * SCALE + 1;
                assert_eq!(
                    image.get_pixel(px as u32, py as u32).0,
                    [value; 3],
                    "digit {index}, pixel {i}"
                );
            }
            // The caption under it darkens some pixels of the white background.
            let caption_dark = (x - 10..x + DIGIT_W + 10)
                .flat_map(|cx| (y + DIGIT_H + 4..y + CELL_H).map(move |cy| (cx, cy)))
                .filter(|&(cx, cy)| image.get_pixel(cx as u32, cy as u32).0[0] < 128)
                .count();
            assert!(
                caption_dark > 40,
                "digit {index}: caption has {caption_dark} dark pixels"
            );
        }
        // The second row's empty slots stay white.
        let (x, y) = (left + 5 * CELL_W + 10, TITLE_H + CELL_H + 10);
        assert_eq!(image.get_pixel(x as u32, y as u32).0, [255; 3]);
    }

    #[test]
    fn grid_limits_are_errors_or_pictures_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let digit = bar(5, 255);
        let cells = vec![
            DigitCell {
                image: &digit,
                caption: "5"
            };
            65
        ];
        let path = dir.path().join("many.png");
        let err = write_digit_grid_png(&cells, "too many", &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: 65 digits given; a grid holds at most 64",
                path.display()
            )
        );
        assert!(!path.exists());

        write_digit_grid_png(&cells[..64], "sixty-four", &path).unwrap();
        let image = image::open(&path).unwrap();
        assert_eq!((image.width(), image.height()), digit_grid_size(64));
        assert_eq!(
            digit_grid_size(64).1,
            (TITLE_H + 8 * CELL_H + MARGIN) as u32
        );

        let none = dir.path().join("none.png");
        write_digit_grid_png(&[], "no mistakes", &none).unwrap();
        let image = image::open(&none).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), digit_grid_size(0));
        assert!(
            image.pixels().any(|p| p.0[0] < 128),
            "the title and 'no digits' show"
        );
    }
}
