//! Pictures of what training recorded, drawn with `plotters` and encoded with `image`: the
//! training curves ([`write_curves_png`], [`write_curves_svg`]), the confusion matrix
//! ([`write_confusion_png`]), grids of digits with captions ([`write_digit_grid_png`]) and one
//! digit as an image ([`write_digit_png`]).
//!
//! Every picture is rendered in memory and then written atomically, so a failure never leaves a
//! half-written file. Text uses a font compiled into the binary ([`font`]): no system font is
//! needed.

mod confusion;
mod curves;
mod digits;
pub mod font;

pub use confusion::{CONFUSION_SIZE, ConfusionMatrix, write_confusion_png};
pub use curves::{CURVES_SIZE, write_curves_png, write_curves_svg};
pub use digits::{
    DigitCell, MAX_GRID_DIGITS, digit_grid_size, mistake_caption, write_digit_grid_png,
    write_digit_png,
};

use crate::fsutil::{WriteError, write_atomic};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea, SVGBackend};
use std::path::{Path, PathBuf};

/// A picture that could not be made; each names the file it was for.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The data cannot be drawn (no epochs, too many digits, a zero scale, ...).
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: cannot draw: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error("{}: cannot encode PNG: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl PlotError {
    fn input(path: &Path, message: impl Into<String>) -> Self {
        PlotError::Input {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    fn draw(path: &Path, error: impl std::fmt::Display) -> Self {
        PlotError::Draw {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}

/// What the drawing functions return: plotters' errors, already turned into text, since each
/// back end has its own error type.
type DrawResult = Result<(), String>;

/// Renders `(width, height)` pixels with `draw` on a white bitmap and writes them to `path` as
/// PNG.
fn render_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    let pixels = render_rgb(path, (width, height), draw)?;
    write_png_rgb(path, &pixels, (width, height))
}

/// Renders into an RGB buffer, 3 bytes a pixel, row after row.
fn render_rgb(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<Vec<u8>, PlotError> {
    font::ensure_registered().map_err(|e| PlotError::draw(path, e))?;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        // The buffer holds exactly width × height RGB pixels, which is all the back end checks.
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root).map_err(|e| PlotError::draw(path, e))?;
        root.present().map_err(|e| PlotError::draw(path, e))?;
    }
    Ok(pixels)
}

/// Renders with `draw` as SVG and writes it to `path`.
fn render_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    font::ensure_registered().map_err(|e| PlotError::draw(path, e))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).map_err(|e| PlotError::draw(path, e))?;
        root.present().map_err(|e| PlotError::draw(path, e))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

fn write_png_rgb(path: &Path, pixels: &[u8], size: (u32, u32)) -> Result<(), PlotError> {
    write_png(path, pixels, size, image::ExtendedColorType::Rgb8)
}

fn write_png(
    path: &Path,
    pixels: &[u8],
    (width, height): (u32, u32),
    color: image::ExtendedColorType,
) -> Result<(), PlotError> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|source| PlotError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(write_atomic(path, &png)?)
}
