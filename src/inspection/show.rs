//! `show`: one MNIST sample as the tutorial looks at it, its 28×28 pixel values printed row by
//! row (`{:3} ` each) with its label, and as a picture; or the first digits of a split as one
//! labelled grid picture.

use super::InspectError;
use crate::config::TrainConfig;
use crate::data::idx::{PIXELS, SIDE};
use crate::data::{Mnist, MnistSplit};
use crate::plots::{self, DigitCell};
use std::fmt::Write;
use std::path::Path;

/// Screen pixels per MNIST pixel in `--png` of one digit: 280×280, big enough to see.
pub const PNG_SCALE: u32 = 10;

/// Which MNIST split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images (the tutorial's validation data).
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    fn of(self, mnist: &Mnist) -> &MnistSplit {
        match self {
            Split::Train => &mnist.train,
            Split::Test => &mnist.valid,
        }
    }
}

/// What to show.
#[derive(Debug, Clone)]
pub struct ShowRequest<'a> {
    pub split: Split,
    /// The sample (0-based); with `grid`, the first of the grid.
    pub index: usize,
    /// Where to save the picture.
    pub png: Option<&'a Path>,
    /// Draw this many digits from `index` on as a grid into `png` instead of one.
    pub grid: Option<usize>,
}

/// Loads MNIST as `config` says and shows what `request` asks for; returns the text to print.
pub fn show(config: &TrainConfig, request: &ShowRequest<'_>) -> Result<String, InspectError> {
    let mnist = Mnist::load(&config.sources(false))?;
    let split = request.split.of(&mnist);
    let count = request.grid.unwrap_or(1).max(1);
    let last = request.index.saturating_add(count - 1);
    if last >= split.len() {
        return Err(InspectError::IndexOutOfRange {
            split: request.split.name(),
            index: last,
            len: split.len(),
        });
    }
    let mut out = String::new();
    match request.grid {
        None => {
            out.push_str(&pixel_grid(split.image(request.index)));
            let _ = writeln!(
                out,
                "label: {} ({} split, index {})",
                split.label(request.index),
                request.split.name(),
                request.index
            );
            if let Some(png) = request.png {
                plots::write_digit_png(split.image(request.index), PNG_SCALE, png)?;
                let _ = writeln!(out, "Wrote {}", png.display());
            }
        }
        Some(_) => {
            let range = request.index..=last;
            let captions: Vec<String> = range
                .clone()
                .map(|i| format!("#{i}: {}", split.label(i)))
                .collect();
            let cells: Vec<DigitCell<'_>> = range
                .zip(&captions)
                .map(|(i, caption)| DigitCell {
                    image: split.image(i),
                    caption,
                })
                .collect();
            let labels: Vec<String> = (request.index..=last)
                .map(|i| split.label(i).to_string())
                .collect();
            let _ = writeln!(
                out,
                "labels of {} split images {}–{}: {}",
                request.split.name(),
                request.index,
                last,
                labels.join(" ")
            );
            if let Some(png) = request.png {
                let title = format!(
                    "MNIST {} split, images {}–{}",
                    request.split.name(),
                    request.index,
                    last
                );
                plots::write_digit_grid_png(&cells, &title, png)?;
                let _ = writeln!(out, "Wrote {}", png.display());
            }
        }
    }
    Ok(out)
}

/// The tutorial's loop: each row of pixel values, each as `{:3} `.
pub fn pixel_grid(image: &[u8; PIXELS]) -> String {
    let mut out = String::with_capacity(PIXELS * 4 + SIDE);
    for row in image.chunks_exact(SIDE) {
        for value in row {
            let _ = write!(out, "{value:3} ");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_takes_four_columns() {
        let mut image = [0u8; PIXELS];
        image[0] = 7;
        image[1] = 255;
        image[SIDE] = 18;
        let grid = pixel_grid(&image);
        let lines: Vec<&str> = grid.lines().collect();
        assert_eq!(lines.len(), SIDE);
        assert!(lines.iter().all(|l| l.len() == SIDE * 4));
        assert!(lines[0].starts_with("  7 255   0 "));
        assert!(lines[1].starts_with(" 18   0 "));
    }
}
