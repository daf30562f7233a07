//! The one font every picture uses, compiled into the binary: machines without any system font
//! (containers, CI) still get labelled pictures. It is DejaVu Sans (see `assets/fonts/`),
//! registered with plotters' `ab_glyph` text renderer under the family name `sans-serif`, which
//! is the family plotters asks for by default.

use plotters::style::{FontStyle, register_font};
use std::sync::OnceLock;

/// DejaVu Sans 2.37: Latin, Greek, Cyrillic and the arrows the captions use.
pub const DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family the pictures ask for.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process.
pub fn ensure_registered() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font DejaVuSans.ttf cannot be parsed".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::prelude::*;

    /// Renders `text` at 40 px on a white 400×80 bitmap; returns the RGB pixels.
    fn render(text: &str) -> Vec<u8> {
        ensure_registered().unwrap();
        let mut pixels = vec![255u8; 400 * 80 * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (400, 80)).into_drawing_area();
            root.draw_text(text, &(FAMILY, 40).into_font().color(&BLACK), (20, 20))
                .unwrap();
            root.present().unwrap();
        }
        pixels
    }

    fn dark_pixels_in(
        pixels: &[u8],
        x: std::ops::Range<usize>,
        y: std::ops::Range<usize>,
    ) -> usize {
        y.flat_map(|row| x.clone().map(move |col| (row, col)))
            .filter(|&(row, col)| pixels[(row * 400 + col) * 3] < 128)
            .count()
    }

    #[test]
    fn text_renders_where_it_is_drawn() {
        let pixels = render("Epoch 1");
        // "Epoch 1" at 40 px from (20, 20) covers about 140 × 40 pixels; its strokes darken a
        // good share of them, and nothing is drawn far from it.
        let inside = dark_pixels_in(&pixels, 20..200, 10..75);
        assert!(inside > 300, "only {inside} dark pixels where the text is");
        assert_eq!(dark_pixels_in(&pixels, 250..400, 0..80), 0);
        assert_eq!(dark_pixels_in(&pixels, 0..15, 0..80), 0);
        // Different text, different pixels: glyphs, not boxes.
        assert_ne!(render("Epoch 1"), render("Epoch 7"));
    }

    #[test]
    fn the_caption_arrow_has_a_glyph() {
        // A code point the font lacks is drawn as the "missing glyph" box; the arrow of
        // `7 → 2` must not be.
        let arrow = render("→");
        let missing = render("\u{E000}");
        assert!(dark_pixels_in(&arrow, 20..80, 10..75) > 50);
        assert_ne!(arrow, missing);
    }
}
