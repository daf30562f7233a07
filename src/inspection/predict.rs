//! `predict RUN IMAGE...`: a user's own picture of a digit, prepared as MNIST's digits were
//! made, and the model's ten probabilities for it.
//!
//! MNIST's digits are white on black, their bounding box scaled to fit 20×20 keeping its
//! aspect ratio (anti-aliased, hence the grey edges), then placed in 28×28 so that their centre
//! of mass is in the middle of pixel (14, 14). [`prepare`] decodes any picture `image` reads
//! (PNG, JPEG, PGM/PPM; colour or grey; any size up to [`MAX_SIDE`]) to grey and hands it to
//! [`to_mnist`], which does the same to a pen's digit on paper, photographed or
//! scanned (its steps are described there).

pub use super::digit_prep::to_mnist;
use super::{ComputeOn, InspectError};
use crate::batcher::MnistBatcher;
use crate::data::idx::{CLASSES, PIXELS, SIDE};
use crate::model::Mlp;
use crate::run_dir::RunDir;
use crate::saved::{self, Weights};
use burn::data::dataloader::batcher::Batcher;
use image::{GrayImage, ImageEncoder, ImageFormat, ImageReader, Limits};
use std::path::{Path, PathBuf};

/// The largest width or height accepted: larger pictures are refused before they are decoded,
/// so memory stays bounded (16384² grey is 256 MiB; the decoder's allocations are capped too).
/// `serve` passes its own, lower cap to [`prepare_bytes`].
pub const MAX_SIDE: u32 = 16_384;
const MAX_ALLOC: u64 = 1 << 30;
/// Bytes per pixel the decoder may allocate (RGBA at 16 bits), within [`MAX_ALLOC`]: the
/// allocation cap of a lower side cap shrinks with it.
const ALLOC_PER_PIXEL: u64 = 8;

/// The model's verdict on one picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub digit: u8,
    pub probabilities: [f32; CLASSES],
}

/// Prepares each picture, then classifies them all with `which` weights of `run` (the final
/// model, else the last checkpoint, when `None`), on `on`. Every picture is checked before the
/// model is loaded, so a bad one fails fast; [`predict_each`] answers the others instead.
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
    let probabilities = classify_with(run, which, &prepared, on)?;
    Ok(pictures
        .iter()
        .zip(probabilities)
        .map(|(path, probabilities)| prediction(path, probabilities))
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

/// What `predict` made of one picture: its prepared 28×28 (what the model saw) and the
/// model's verdict, or why the picture could not be read.
#[derive(Debug)]
pub struct Answer {
    pub path: PathBuf,
    pub outcome: Result<(Prediction, [u8; PIXELS]), InspectError>,
}

/// [`predict`] picture by picture: one that cannot be read or holds no digit gets its error,
/// and the others their predictions. The model is loaded only when some picture needs it; an
/// error of the run or the model (not of a picture) is the whole call's.
pub fn predict_each(
    run: &RunDir,
    which: Option<Weights>,
    pictures: &[PathBuf],
    on: ComputeOn,
) -> Result<Vec<Answer>, InspectError> {
    let prepared: Vec<Result<[u8; PIXELS], InspectError>> =
        pictures.iter().map(|path| prepare(path)).collect();
    let good: Vec<[u8; PIXELS]> = prepared.iter().flatten().copied().collect();
    let mut probabilities = if good.is_empty() {
        Vec::new()
    } else {
        classify_with(run, which, &good, on)?
    }
    .into_iter();
    let mut answers = Vec::with_capacity(pictures.len());
    for (path, prepared) in pictures.iter().zip(prepared) {
        let outcome = match prepared {
            Ok(image) => match probabilities.next() {
                Some(p) => Ok((prediction(path, p), image)),
                None => Err(InspectError::Compute(
                    "the model gave fewer answers than pictures".to_string(),
                )),
            },
            Err(e) => Err(e),
        };
        answers.push(Answer {
            path: path.clone(),
            outcome,
        });
    }
    Ok(answers)
}

fn classify_with(
    run: &RunDir,
    which: Option<Weights>,
    prepared: &[[u8; PIXELS]],
    on: ComputeOn,
) -> Result<Vec<[f32; CLASSES]>, InspectError> {
    let config = run.read_config()?;
    let device = on.device(&config)?;
    let saved = saved::load(run, which, &device)?;
    classify(&saved.model, prepared, &device)
}

fn prediction(path: &Path, probabilities: [f32; CLASSES]) -> Prediction {
    Prediction {
        path: path.to_path_buf(),
        digit: super::eval::argmax(&probabilities),
        probabilities,
    }
}

/// Writes each prepared 28×28 (white on black, as the model saw it) into `dir` as a PNG named
/// after its picture (`seven.jpg` → `seven.png`; a number is added where two would clash), and
/// returns the paths written. `dir` is made if missing.
pub fn save_inputs(
    dir: &Path,
    inputs: &[(&Path, &[u8; PIXELS])],
) -> Result<Vec<PathBuf>, InspectError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        InspectError::Out(crate::fsutil::WriteError {
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let mut taken = std::collections::HashSet::new();
    let mut written = Vec::new();
    for (picture, image) in inputs {
        let stem = picture
            .file_stem()
            .map_or_else(|| "picture".into(), |s| s.to_string_lossy().into_owned());
        let mut name = format!("{stem}.png");
        let mut n = 1;
        while !taken.insert(name.clone()) {
            n += 1;
            name = format!("{stem}-{n}.png");
        }
        let path = dir.join(name);
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(
                image.as_slice(),
                SIDE as u32,
                SIDE as u32,
                image::ExtendedColorType::L8,
            )
            .map_err(|e| InspectError::Compute(format!("{}: {e}", path.display())))?;
        crate::fsutil::write_atomic(&path, &png).map_err(InspectError::Out)?;
        written.push(path);
    }
    Ok(written)
}

/// What `predict IMAGE...` shows: the table of the pictures it read (empty when none was),
/// and the error of each one it could not, in the order given. With `save_input`, each read
/// picture's prepared 28×28 is written there first ([`save_inputs`]); with `json`, the
/// predictions as [`to_json`] gives them.
pub fn report(
    answers: Vec<Answer>,
    save_input: Option<&Path>,
    json: bool,
) -> Result<(String, Vec<InspectError>), InspectError> {
    let mut read = Vec::new();
    let mut failed = Vec::new();
    for answer in answers {
        match answer.outcome {
            Ok(pair) => read.push(pair),
            Err(e) => failed.push(e),
        }
    }
    if let Some(dir) = save_input {
        let inputs: Vec<(&Path, &[u8; PIXELS])> = read
            .iter()
            .map(|(p, image)| (p.path.as_path(), image))
            .collect();
        save_inputs(dir, &inputs)?;
    }
    let predictions: Vec<Prediction> = read.into_iter().map(|(p, _)| p).collect();
    let table = if json {
        to_json(&predictions)
    } else if predictions.is_empty() {
        String::new()
    } else {
        render(&predictions)
    };
    Ok((table, failed))
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
    to_mnist(gray).map_err(|why| image_error(path, why.to_string()))
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
