//! `predict RUN IMAGE...`: a user's own picture of a digit, prepared as MNIST's digits were
//! made, and the model's ten probabilities for it.
//!
//! MNIST's digits are white on black, their bounding box scaled to fit 20×20 keeping its
//! aspect ratio (anti-aliased, hence the grey edges), then placed in 28×28 so that their centre
//! of mass is in the middle of pixel (14, 14). [`prepare`] does the same to any picture `image`
//! reads (PNG, JPEG, PGM/PPM; colour or grey; any size up to [`MAX_SIDE`]): grey it, invert it
//! when its background is light, stretch its contrast so the background is 0, then box, scale
//! and centre; strokes far thicker or thinner than MNIST's are brought to MNIST's width and the
//! digit boxed again (a marker's stroke would otherwise fill the box as no MNIST digit does).

use super::{ComputeOn, InspectError};
use crate::augment::{stroke_width, thicken};
use crate::batcher::MnistBatcher;
use crate::data::idx::{CLASSES, PIXELS, SIDE};
use crate::model::Mlp;
use crate::run_dir::RunDir;
use crate::saved::{self, Weights};
use burn::data::dataloader::batcher::Batcher;
use image::imageops::FilterType;
use image::{GrayImage, ImageFormat, ImageReader, Limits};
use std::path::{Path, PathBuf};

/// The largest width or height accepted: larger pictures are refused before they are decoded,
/// so memory stays bounded (16384² grey is 256 MiB; the decoder's allocations are capped too).
/// `serve` passes its own, lower cap to [`prepare_bytes`].
pub const MAX_SIDE: u32 = 16_384;
const MAX_ALLOC: u64 = 1 << 30;
/// Bytes per pixel the decoder may allocate (RGBA at 16 bits), within [`MAX_ALLOC`]: the
/// allocation cap of a lower side cap shrinks with it.
const ALLOC_PER_PIXEL: u64 = 8;
/// The side of the box MNIST fits each digit into.
const BOX: u32 = 20;
/// A picture whose ink is fainter than this (on 0–255) against its background holds no digit.
const MIN_CONTRAST: f32 = 32.0;
/// After stretching, pixels above this count as ink for the bounding box.
const INK: u8 = 32;

/// The model's verdict on one picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub digit: u8,
    pub probabilities: [f32; CLASSES],
}

/// Prepares each picture, then classifies them all with `which` weights of `run` (the final
/// model, else the last checkpoint, when `None`), on `on`. Every picture is checked before the
/// model is loaded, so a bad one fails fast.
pub fn predict(
    run: &RunDir,
    which: Option<Weights>,
    pictures: &[PathBuf],
    on: ComputeOn,
) -> Result<Vec<Prediction>, InspectError> {
    let prepared = pictures
        .iter()
        .map(|path| prepare(path))
        .collect::<Result<Vec<_>, _>>()?;
    let config = run.read_config()?;
    let device = on.device(&config)?;
    let saved = saved::load(run, which, &device)?;
    let probabilities = classify(&saved.model, &prepared, &device)?;
    Ok(pictures
        .iter()
        .zip(probabilities)
        .map(|(path, probabilities)| Prediction {
            path: path.clone(),
            digit: super::eval::argmax(&probabilities),
            probabilities,
        })
        .collect())
}

/// `predict --json`: `{"predictions": [{"image", "digit", "probabilities": [p0, …, p9]}]}`, in
/// the order the pictures were given, probabilities unrounded.
pub fn to_json(predictions: &[Prediction]) -> String {
    let predictions: Vec<serde_json::Value> = predictions
        .iter()
        .map(|p| {
            serde_json::json!({
                "image": p.path,
                "digit": p.digit,
                "probabilities": p.probabilities,
            })
        })
        .collect();
    format!("{:#}\n", serde_json::json!({ "predictions": predictions }))
}

/// One row per picture: the digit, then the ten probabilities.
pub fn render(predictions: &[Prediction]) -> String {
    use crate::table::{Align, Table};
    let mut columns = vec![
        ("image".to_string(), Align::Left),
        ("digit".to_string(), Align::Right),
    ];
    columns.extend((0..CLASSES).map(|c| (format!("p({c})"), Align::Right)));
    let columns: Vec<(&str, Align)> = columns.iter().map(|(t, a)| (t.as_str(), *a)).collect();
    let mut table = Table::new(&columns);
    for p in predictions {
        let mut cells = vec![p.path.display().to_string(), p.digit.to_string()];
        cells.extend(p.probabilities.iter().map(|v| format!("{v:.4}")));
        table.row(cells);
    }
    table.render(0)
}

/// The softmax output for each prepared image.
pub fn classify(
    model: &Mlp,
    images: &[[u8; PIXELS]],
    device: &burn::tensor::Device,
) -> Result<Vec<[f32; CLASSES]>, InspectError> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let input = MnistBatcher.batch(images.iter().collect(), device);
    let out = model
        .probabilities(input)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| InspectError::Compute(format!("{e:?}")))?;
    Ok(out
        .chunks_exact(CLASSES)
        .map(|row| {
            let mut p = [0.0; CLASSES];
            p.copy_from_slice(row);
            p
        })
        .collect())
}

/// Reads the picture at `path` and makes it an MNIST digit: 28×28, white on black, the digit in
/// a 20×20 box centred by mass.
pub fn prepare(path: &Path) -> Result<[u8; PIXELS], InspectError> {
    let meta = std::fs::metadata(path).map_err(|source| InspectError::ImageRead {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(image_error(path, "is a directory, not a picture"));
    }
    if meta.len() == 0 {
        return Err(image_error(path, "empty file, not a picture"));
    }
    let gray = read_gray(path, MAX_SIDE, || {
        Ok(std::io::BufReader::new(std::fs::File::open(path)?))
    })?;
    digit_of(path, &gray)
}

/// [`prepare`] for a picture already in memory (`serve`'s drawing pad), refusing a side over
/// `max_side` (at most [`MAX_SIDE`]) from its header; `name` says where it came from in errors.
pub fn prepare_bytes(
    name: &Path,
    bytes: &[u8],
    max_side: u32,
) -> Result<[u8; PIXELS], InspectError> {
    if bytes.is_empty() {
        return Err(image_error(name, "empty file, not a picture"));
    }
    let gray = read_gray(name, max_side.min(MAX_SIDE), || {
        Ok(std::io::Cursor::new(bytes))
    })?;
    digit_of(name, &gray)
}

fn digit_of(path: &Path, gray: &GrayImage) -> Result<[u8; PIXELS], InspectError> {
    to_mnist(gray).ok_or_else(|| InspectError::Image {
        path: path.to_path_buf(),
        message: "no digit found: the picture is one flat colour".to_string(),
    })
}

fn image_error(path: &Path, message: impl Into<String>) -> InspectError {
    InspectError::Image {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Decodes the picture `source` opens (named `path` in errors) to grey, transparent pixels over
/// white (a digit drawn on a transparent canvas is dark ink on nothing). Every pass, the
/// header's included, runs under the same limits: at most `max_side` a side, checked from the
/// header before decoding, and at most [`max_alloc`] bytes allocated by the decoder.
fn read_gray<R: std::io::BufRead + std::io::Seek>(
    path: &Path,
    max_side: u32,
    source: impl Fn() -> std::io::Result<R>,
) -> Result<GrayImage, InspectError> {
    let read_error = |source| InspectError::ImageRead {
        path: path.to_path_buf(),
        source,
    };
    let open = || -> Result<ImageReader<R>, InspectError> {
        let mut reader = ImageReader::new(source().map_err(read_error)?)
            .with_guessed_format()
            .map_err(read_error)?;
        if reader.format().is_none() {
            return Err(image_error(
                path,
                "not a picture this tool reads (PNG, JPEG, PGM/PPM/PBM)",
            ));
        }
        reader.limits(limits(max_side));
        Ok(reader)
    };
    let reader = open()?;
    let decoded = if reader.format() == Some(ImageFormat::Png) {
        decode_png(path, reader.into_inner(), max_side)?
    } else {
        let (width, height) = reader
            .into_dimensions()
            .map_err(|e| decode_error(path, e, max_side))?;
        check_size(path, width, height, max_side)?;
        open()?
            .decode()
            .map_err(|e| decode_error(path, e, max_side))?
    };
    let rgba = decoded.to_luma_alpha8();
    let (w, h) = rgba.dimensions();
    let gray = GrayImage::from_fn(w, h, |x, y| {
        let [l, a] = rgba.get_pixel(x, y).0;
        let alpha = f32::from(a) / 255.0;
        image::Luma([(f32::from(l) * alpha + 255.0 * (1.0 - alpha)).round() as u8])
    });
    Ok(gray)
}

/// The limits of every decoding pass for pictures of at most `max_side` a side.
fn limits(max_side: u32) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(max_alloc(max_side));
    limits
}

/// A picture of `width`×`height` is one to decode.
fn check_size(path: &Path, width: u32, height: u32, max_side: u32) -> Result<(), InspectError> {
    if width == 0 || height == 0 {
        return Err(image_error(path, format!("{width}×{height} pixels: empty")));
    }
    if width > max_side || height > max_side {
        return Err(too_large(path, width, height, max_side));
    }
    Ok(())
}

/// A PNG, decoded by the `png` crate itself rather than through `image`, which gives no way to
/// skip chunks: the colour profile (iCCP) and the text chunks (tEXt, zTXt, iTXt) are skipped
/// unread, since a 1 MB iCCP can inflate to a gigabyte and nothing here uses it; the rest is
/// decoded as `image` does (palette and low bit depths expanded, 16 bits kept), within
/// [`max_alloc`].
fn decode_png<R: std::io::BufRead + std::io::Seek>(
    path: &Path,
    source: R,
    max_side: u32,
) -> Result<image::DynamicImage, InspectError> {
    let budget = max_alloc(max_side);
    let fault = |e| png_error(path, e, max_side);
    let bytes = usize::try_from(budget).unwrap_or(usize::MAX);
    let mut decoder = png::Decoder::new_with_limits(source, png::Limits { bytes });
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(png::Transformations::EXPAND);
    let header = decoder.read_header_info().map_err(fault)?;
    check_size(path, header.width, header.height, max_side)?;
    let mut reader = decoder.read_info().map_err(fault)?;
    let too_large = || {
        image_error(
            path,
            format!("too large to decode within {} MiB", budget >> 20),
        )
    };
    let size = reader.output_buffer_size().ok_or_else(too_large)?;
    if size as u64 > budget {
        return Err(too_large());
    }
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).map_err(fault)?;
    buffer.truncate(frame.buffer_size());
    let (width, height) = (frame.width, frame.height);
    let wide = |bytes: &[u8]| -> Vec<u16> {
        bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect()
    };
    use image::{DynamicImage as D, ImageBuffer as B};
    let decoded = match (frame.color_type, frame.bit_depth) {
        (png::ColorType::Grayscale, png::BitDepth::Eight) => {
            B::from_raw(width, height, buffer).map(D::ImageLuma8)
        }
        (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight) => {
            B::from_raw(width, height, buffer).map(D::ImageLumaA8)
        }
        (png::ColorType::Rgb, png::BitDepth::Eight) => {
            B::from_raw(width, height, buffer).map(D::ImageRgb8)
        }
        (png::ColorType::Rgba, png::BitDepth::Eight) => {
            B::from_raw(width, height, buffer).map(D::ImageRgba8)
        }
        (png::ColorType::Grayscale, png::BitDepth::Sixteen) => {
            B::from_raw(width, height, wide(&buffer)).map(D::ImageLuma16)
        }
        (png::ColorType::GrayscaleAlpha, png::BitDepth::Sixteen) => {
            B::from_raw(width, height, wide(&buffer)).map(D::ImageLumaA16)
        }
        (png::ColorType::Rgb, png::BitDepth::Sixteen) => {
            B::from_raw(width, height, wide(&buffer)).map(D::ImageRgb16)
        }
        (png::ColorType::Rgba, png::BitDepth::Sixteen) => {
            B::from_raw(width, height, wide(&buffer)).map(D::ImageRgba16)
        }
        _ => None,
    };
    decoded.ok_or_else(|| {
        image_error(
            path,
            format!(
                "not a readable picture: {:?} at {:?} bits",
                frame.color_type, frame.bit_depth
            ),
        )
    })
}

/// [`decode_error`]'s words for what the `png` crate reports.
fn png_error(path: &Path, error: png::DecodingError, max_side: u32) -> InspectError {
    match error {
        png::DecodingError::LimitsExceeded => image_error(
            path,
            format!(
                "too large to decode within {} MiB",
                max_alloc(max_side) >> 20
            ),
        ),
        png::DecodingError::IoError(source) => {
            decode_error(path, image::ImageError::IoError(source), max_side)
        }
        other => image_error(path, format!("not a readable picture: {other}")),
    }
}

/// What the decoder may allocate for a picture of at most `max_side` a side.
fn max_alloc(max_side: u32) -> u64 {
    (u64::from(max_side).pow(2) * ALLOC_PER_PIXEL).min(MAX_ALLOC)
}

fn too_large(path: &Path, width: u32, height: u32, max_side: u32) -> InspectError {
    image_error(
        path,
        format!("{width}×{height} pixels: too large (at most {max_side}×{max_side} are read)"),
    )
}

fn decode_error(path: &Path, error: image::ImageError, max_side: u32) -> InspectError {
    match error {
        image::ImageError::Limits(_) => image_error(
            path,
            format!(
                "too large to decode within {} MiB",
                max_alloc(max_side) >> 20
            ),
        ),
        image::ImageError::IoError(source)
            if source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            image_error(path, "truncated: the file ends before the picture does")
        }
        image::ImageError::IoError(source) => InspectError::ImageRead {
            path: path.to_path_buf(),
            source,
        },
        other => image_error(path, format!("not a readable picture: {other}")),
    }
}

/// The MNIST digit in a grey picture; `None` when it has no contrast to find a digit by.
pub fn to_mnist(gray: &GrayImage) -> Option<[u8; PIXELS]> {
    let (w, h) = gray.dimensions();
    // The background is what the border shows most: a light one means dark ink, inverted.
    let border: Vec<u8> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| gray.get_pixel(x, y).0[0])
        .collect();
    let light = border.iter().map(|&p| u64::from(p)).sum::<u64>() / border.len() as u64 > 127;
    let ink = |p: u8| if light { 255 - p } else { p };
    let mut sorted: Vec<u8> = border.iter().map(|&p| ink(p)).collect();
    sorted.sort_unstable();
    let background = f32::from(sorted[sorted.len() / 2]);
    let peak = f32::from(gray.pixels().map(|p| ink(p.0[0])).max().unwrap_or(0));
    if peak - background < MIN_CONTRAST {
        return None;
    }
    // White on black, the background at 0 and the strongest ink at 255.
    let stretched = GrayImage::from_fn(w, h, |x, y| {
        let v =
            (f32::from(ink(gray.get_pixel(x, y).0[0])) - background) * 255.0 / (peak - background);
        image::Luma([v.clamp(0.0, 255.0).round() as u8])
    });

    let digit = box_and_centre(&stretched)?;
    // Thinning or thickening moves the stroke's ends too: the digit is boxed again after it.
    let normalised = stroke_like_mnist(&digit);
    if normalised == digit {
        return Some(digit);
    }
    box_and_centre(&GrayImage::from_raw(
        SIDE as u32,
        SIDE as u32,
        normalised.to_vec(),
    )?)
}

/// MNIST's box and centring: the ink's bounding box scaled to fit 20×20 keeping its aspect,
/// placed in 28×28 with its centre of mass where MNIST's are.
fn box_and_centre(stretched: &GrayImage) -> Option<[u8; PIXELS]> {
    let (w, h) = stretched.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in stretched.enumerate_pixels() {
        if p.0[0] > INK {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        return None;
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let cropped = image::imageops::crop_imm(stretched, x0, y0, bw, bh).to_image();
    // The longer side becomes 20 pixels, the other keeps the aspect ratio.
    let scale = BOX as f32 / bw.max(bh) as f32;
    let (sw, sh) = (
        ((bw as f32 * scale).round() as u32).clamp(1, BOX),
        ((bh as f32 * scale).round() as u32).clamp(1, BOX),
    );
    let boxed = image::imageops::resize(&cropped, sw, sh, FilterType::Lanczos3);

    // Centre of mass of the scaled digit, moved to the centre of the 28×28 image.
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in boxed.enumerate_pixels() {
        let v = f64::from(p.0[0]);
        mass += v;
        mx += v * (f64::from(x) + 0.5);
        my += v * (f64::from(y) + 0.5);
    }
    // Where MNIST's digits have their centre of mass: the middle of pixel 14 (14.5 with pixel
    // centres at +0.5; measured over the test set: 14.51, 14.49), not the image's middle.
    let centre = SIDE as f64 / 2.0 + 0.5;
    let (cx, cy) = if mass > 0.0 {
        (mx / mass, my / mass)
    } else {
        (f64::from(sw) / 2.0, f64::from(sh) / 2.0)
    };
    // Kept inside the image: a lopsided digit may not centre exactly.
    let left = ((centre - cx).round() as i64).clamp(0, (SIDE as u32 - sw) as i64) as usize;
    let top = ((centre - cy).round() as i64).clamp(0, (SIDE as u32 - sh) as i64) as usize;
    let mut out = [0u8; PIXELS];
    for (x, y, p) in boxed.enumerate_pixels() {
        out[(top + y as usize) * SIDE + left + x as usize] = p.0[0];
    }
    Some(out)
}

/// The range of stroke widths ([`stroke_width`]) of the middle half of MNIST's test digits,
/// measured by `examples/stroke_widths.rs` (1.67 and 2.34 px).
const MNIST_STROKE: (f32, f32) = (1.67, 2.34);

/// The digit with its strokes brought into MNIST's usual range of widths: a marker's thick
/// strokes thinned, a fine pen's thickened, by erosion or dilation, each side by half the
/// difference. Digits already in the range, as half of MNIST's own are, are left as they are.
fn stroke_like_mnist(digit: &[u8; PIXELS]) -> [u8; PIXELS] {
    let (thin, thick) = MNIST_STROKE;
    let mut out = *digit;
    // A fractional step does less than its fraction to a faint or anti-aliased stroke: measure
    // again and go on, a few times at most.
    for _ in 0..4 {
        let width = stroke_width(&out);
        out = if width > thick {
            thicken(&out, -(width - thick) / 2.0)
        } else if width < thin && width > 0.0 {
            thicken(&out, (thin - width) / 2.0)
        } else {
            return out;
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white bar on black, 3 wide and 12 tall, off centre in a 40×40 picture.
    fn bar(light_background: bool) -> GrayImage {
        GrayImage::from_fn(40, 40, |x, y| {
            let ink = (5..8).contains(&x) && (2..14).contains(&y);
            let v = if ink { 255 } else { 0 };
            image::Luma([if light_background { 255 - v } else { v }])
        })
    }

    fn bounding_box(image: &[u8; PIXELS]) -> (usize, usize, usize, usize) {
        let ink: Vec<(usize, usize)> = (0..PIXELS)
            .filter(|&i| image[i] > INK)
            .map(|i| (i % SIDE, i / SIDE))
            .collect();
        let xs = ink.iter().map(|p| p.0);
        let ys = ink.iter().map(|p| p.1);
        (
            xs.clone().min().unwrap(),
            ys.clone().min().unwrap(),
            xs.max().unwrap(),
            ys.max().unwrap(),
        )
    }

    #[test]
    fn a_digit_is_boxed_to_20_and_centred_by_mass() {
        let digit = to_mnist(&bar(false)).unwrap();
        let (x0, y0, x1, y1) = bounding_box(&digit);
        // 12 tall becomes 20 tall (give or take the filter's ringing); 3 wide becomes 5,
        // which is thicker than MNIST's strokes: thinned to 2 to 4.
        assert!((19..=21).contains(&(y1 - y0 + 1)), "{y0}..{y1}");
        assert!((2..=4).contains(&(x1 - x0 + 1)), "{x0}..{x1}");
        // Symmetric, so its centre of mass is where MNIST's are, the middle of pixel 14.
        let mass: f64 = digit.iter().map(|&p| f64::from(p)).sum();
        let cx: f64 = (0..PIXELS)
            .map(|i| f64::from(digit[i]) * ((i % SIDE) as f64 + 0.5))
            .sum::<f64>()
            / mass;
        let cy: f64 = (0..PIXELS)
            .map(|i| f64::from(digit[i]) * ((i / SIDE) as f64 + 0.5))
            .sum::<f64>()
            / mass;
        assert!((cx - 14.5).abs() <= 0.5, "{cx}");
        assert!((cy - 14.5).abs() <= 0.5, "{cy}");
        // The background is black, the stroke white.
        assert_eq!(digit[0], 0);
        assert_eq!(*digit.iter().max().unwrap(), 255);
    }

    /// A ring of radius 7 around the middle, `width` pixels wide.
    fn ring(width: f32) -> [u8; PIXELS] {
        std::array::from_fn(|i| {
            let (x, y) = ((i % SIDE) as f32 - 13.5, (i / SIDE) as f32 - 13.5);
            let off = ((x * x + y * y).sqrt() - 7.0).abs();
            (255.0 * (width / 2.0 + 0.5 - off).clamp(0.0, 1.0)).round() as u8
        })
    }

    #[test]
    fn strokes_are_brought_to_mnists_widths() {
        let (thin, thick) = MNIST_STROKE;
        // A marker's stroke is thinned, a fine pen's thickened, into MNIST's range (give or
        // take what a fractional erosion or dilation can do).
        let marker = ring(5.0);
        assert!(stroke_width(&marker) > 4.0);
        let thinned = stroke_like_mnist(&marker);
        let w = stroke_width(&thinned);
        assert!((thin - 0.3..=thick + 0.3).contains(&w), "{w}");
        let pen = ring(0.8);
        assert!(stroke_width(&pen) < 1.2);
        let w = stroke_width(&stroke_like_mnist(&pen));
        assert!((thin - 0.3..=thick + 0.3).contains(&w), "{w}");
        // A stroke already in range is left exactly as it is.
        let mnist_like = ring(2.5);
        assert!((thin..=thick).contains(&stroke_width(&mnist_like)));
        assert_eq!(stroke_like_mnist(&mnist_like), mnist_like);
    }

    #[test]
    fn a_dark_digit_on_white_is_inverted() {
        assert_eq!(to_mnist(&bar(true)), to_mnist(&bar(false)));
    }

    #[test]
    fn a_flat_picture_holds_no_digit() {
        assert_eq!(
            to_mnist(&GrayImage::from_pixel(30, 30, image::Luma([200]))),
            None
        );
        // Noise of a few levels is not a digit either.
        let faint = GrayImage::from_fn(30, 30, |x, y| image::Luma([100 + ((x + y) % 5) as u8]));
        assert_eq!(to_mnist(&faint), None);
    }
}
