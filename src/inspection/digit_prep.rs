//! A picture of one digit made an MNIST digit, in named steps, as the classic digit pipelines
//! do (issue #37): a pen on paper, photographed or scanned, as well as MNIST's own digits and
//! `serve`'s drawing pad.
//!
//! 1. [`ink_of`]: ink told from paper by which tail of the picture's levels is longer (ink is
//!    the minority), and made bright on dark.
//! 2. [`flatten`]: the paper's own level estimated on a coarse grid (each cell's median, then a
//!    grey opening over 3×3 cells, which no stroke survives) and taken away, so uneven light,
//!    grey or tinted paper all become 0; on light paper the ink is divided by the paper's
//!    brightness, since light multiplies.
//! 3. [`threshold`]: Otsu's level over what is left, kept within a band of the ink's level.
//! 4. [`remove_lines`] and [`digit_components`]: a notebook's ruled lines (thin, across the
//!    picture) dropped, then the digit's connected pieces kept and specks away from it dropped.
//! 5. [`stroke_width`]: the stroke width of the kept ink measured; a pen too fine for the
//!    digit's size is drawn again at MNIST's width before the picture is shrunk ([`redraw`]),
//!    since shrinking a hairline leaves a faint smear no threshold can thicken back.
//! 6. [`box_and_centre`]: the box fitted into 20×20 keeping its aspect, centred by mass in
//!    28×28, and [`stroke_like_mnist`] bringing the strokes into MNIST's range of widths.

use crate::augment::{stroke_width as mnist_stroke_width, thicken};
use crate::data::idx::{PIXELS, SIDE};
use image::GrayImage;
use image::imageops::FilterType;

/// The side of the box MNIST fits each digit into.
const BOX: u32 = 20;
/// A picture whose ink is fainter than this (on 0–255) against its paper holds no digit.
const MIN_CONTRAST: f32 = 32.0;
/// After stretching, pixels above this count as ink for the bounding box.
pub const INK: u8 = 32;
/// Pictures are worked on at most this many pixels a side (larger ones shrunk first): enough
/// for a pen at a third of a percent of the side, and the steps stay fast.
const WORK_SIDE: u32 = 1024;
/// Pictures up to this side (MNIST's 28×28, small scans such as #22's 96×96) keep one paper
/// level, from the border, as MNIST's own digits have: a grid on them would be a few pixels a
/// cell, narrower than their strokes.
const SMALL: u32 = 128;
/// The paper's level varies by less than this across the grid: taken as one level.
const EVEN_PAPER: f32 = 8.0;
/// How many times farther one side's tail must reach from the picture's median than the other
/// for the whole picture to decide which side is ink.
const CLEAR_TAIL: f32 = 4.0;
/// The share of the grid's cells, the lightest, taken as bare paper when judging whether the
/// paper is even: more than ink covers in any picture of one digit, less than a shadow leaves lit.
const PAPER_CELLS: f64 = 0.7;
/// The stroke MNIST's digits have in their 20-pixel box, which a redrawn pen is given.
const MNIST_PEN: f32 = 2.2;
/// A pen finer than this in the 20-pixel box is redrawn at [`MNIST_PEN`] before shrinking.
const FINE_PEN: f32 = 1.5;
/// Redrawing needs the digit's box at least this many pixels long to measure the pen.
const REDRAW_FROM: u32 = 40;

/// Why a picture holds no digit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoDigit {
    #[error("no digit found: the picture is one flat colour")]
    Flat,
    #[error(
        "no digit found: nothing stands out from the paper (the strongest mark differs from it by {contrast} of 255 levels; a digit needs {})",
        MIN_CONTRAST as u8
    )]
    Faint { contrast: u8 },
    #[error("no digit found: only ruled lines or specks too small to be a digit")]
    OnlyMarks,
}

/// A grey picture as floats, one a pixel, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

impl Plane {
    fn at(&self, x: u32, y: u32) -> f32 {
        self.values[(y * self.width + x) as usize]
    }
}

/// The MNIST digit in a grey picture: 28×28, white on black, in a 20×20 box centred by mass.
pub fn to_mnist(gray: &GrayImage) -> Result<[u8; PIXELS], NoDigit> {
    let work = working_size(gray);
    let (ink, light) = ink_of(&work)?;
    let flat = flatten(&ink, light);
    let peak = percentile(&flat.values, 0.9995);
    if peak < MIN_CONTRAST {
        return Err(NoDigit::Faint {
            contrast: peak.round() as u8,
        });
    }
    let level = threshold(&flat.values, peak);
    let mut mask: Vec<bool> = flat.values.iter().map(|&v| v > level).collect();
    remove_lines(&mut mask, flat.width, flat.height);
    let keep = digit_components(&mask, flat.width, flat.height).ok_or(NoDigit::OnlyMarks)?;
    let digit = clean(&flat, &keep, level, peak);
    let digit = redraw(&digit, &keep);
    let boxed = box_and_centre(&digit).ok_or(NoDigit::OnlyMarks)?;
    // Thinning or thickening moves the stroke's ends too: the digit is boxed again after it.
    let normalised = stroke_like_mnist(&boxed);
    if normalised == boxed {
        return Ok(boxed);
    }
    GrayImage::from_raw(SIDE as u32, SIDE as u32, normalised.to_vec())
        .and_then(|image| box_and_centre(&image))
        .ok_or(NoDigit::OnlyMarks)
}

/// The picture shrunk to at most [`WORK_SIDE`] a side (area-averaged), as it is otherwise.
pub fn working_size(gray: &GrayImage) -> GrayImage {
    let (w, h) = gray.dimensions();
    let longer = w.max(h);
    if longer <= WORK_SIDE {
        return gray.clone();
    }
    let scale = WORK_SIDE as f32 / longer as f32;
    let (sw, sh) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    image::imageops::resize(gray, sw, sh, FilterType::Triangle)
}

/// The picture as ink (bright) on paper (dark), and whether the paper was the light side. Ink
/// is the minority of the pixels, so the paper is the median level around each pixel (a
/// shadow moves it), and the ink is on the side of it where the levels reach farther.
pub fn ink_of(gray: &GrayImage) -> Result<(Plane, bool), NoDigit> {
    let (width, height) = gray.dimensions();
    let levels = Plane {
        width,
        height,
        values: gray.pixels().map(|p| f32::from(p.0[0])).collect(),
    };
    let (min, max) = levels
        .values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if max - min < 1.0 {
        return Err(NoDigit::Flat);
    }
    // The whole picture's median first: where one side's tail clearly reaches farther (a clean
    // scan, thick strokes that fill the cells below), that decides; the local medians only
    // where it does not (a shadow's dark half on light paper looks like ink to the whole).
    let median = percentile(&levels.values, 0.5);
    let (low, high) = (
        median - percentile(&levels.values, 0.002),
        percentile(&levels.values, 0.998) - median,
    );
    let clear = low.max(high) > CLEAR_TAIL * low.min(high).max(1.0);
    let local = if width.max(height) <= SMALL || clear {
        vec![median; levels.values.len()]
    } else {
        let cell = cell_side(&levels);
        let (grid, gw, gh) = cell_medians(&levels, cell);
        upsample(&grid, gw, gh, cell, width, height)
    };
    let off: Vec<f32> = levels
        .values
        .iter()
        .zip(&local)
        .map(|(v, m)| v - m)
        .collect();
    let light = -percentile(&off, 0.002) > percentile(&off, 0.998);
    let values = if light {
        levels.values.iter().map(|&v| 255.0 - v).collect()
    } else {
        levels.values
    };
    Ok((
        Plane {
            width,
            height,
            values,
        },
        light,
    ))
}

/// Cells of a 24th of the picture's longer side: 3×3 of them (an eighth of the side) is wider
/// than a pen's or marker's stroke on a photo (the corpus's thickest are 6 % of the side), so
/// an opening over them leaves only the paper. (On dev, 5×5 cells read 1.4 points fewer: they
/// follow a shadow's edge less closely.)
fn cell_side(plane: &Plane) -> u32 {
    (plane.width.max(plane.height) / 24).max(4)
}

/// The median of each `cell`×`cell` square, and the grid's width and height.
fn cell_medians(plane: &Plane, cell: u32) -> (Vec<f32>, u32, u32) {
    let (w, h) = (plane.width, plane.height);
    let (gw, gh) = (w.div_ceil(cell), h.div_ceil(cell));
    let mut grid = vec![0.0f32; (gw * gh) as usize];
    for gy in 0..gh {
        for gx in 0..gw {
            let cell_values: Vec<f32> = (gy * cell..((gy + 1) * cell).min(h))
                .flat_map(|y| (gx * cell..((gx + 1) * cell).min(w)).map(move |x| (x, y)))
                .map(|(x, y)| plane.at(x, y))
                .collect();
            grid[(gy * gw + gx) as usize] = percentile(&cell_values, 0.5);
        }
    }
    (grid, gw, gh)
}

/// The grid's values at every pixel, bilinear between the cells' centres.
fn upsample(grid: &[f32], gw: u32, gh: u32, cell: u32, w: u32, h: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        let fy = ((y as f32 + 0.5) / cell as f32 - 0.5).clamp(0.0, (gh - 1) as f32);
        let (y0, ty) = (fy.floor() as u32, fy.fract());
        let y1 = (y0 + 1).min(gh - 1);
        for x in 0..w {
            let fx = ((x as f32 + 0.5) / cell as f32 - 0.5).clamp(0.0, (gw - 1) as f32);
            let (x0, tx) = (fx.floor() as u32, fx.fract());
            let x1 = (x0 + 1).min(gw - 1);
            let g = |gx: u32, gy: u32| grid[(gy * gw + gx) as usize];
            let top = g(x0, y0) + (g(x1, y0) - g(x0, y0)) * tx;
            let bottom = g(x0, y1) + (g(x1, y1) - g(x0, y1)) * tx;
            out.push(top + (bottom - top) * ty);
        }
    }
    out
}

/// The ink with the paper's level taken away (see the module's step 2); 0 is paper.
pub fn flatten(ink: &Plane, light: bool) -> Plane {
    let paper = paper_level(ink);
    let values = ink
        .values
        .iter()
        .zip(&paper)
        .map(|(&v, &p)| {
            let above = (v - p).max(0.0);
            if light {
                // Ink at reflectance r on paper lit at L shows L·r: divided by the paper's L.
                // Capped, so a deep shadow's noise is not blown up into ink.
                above * (255.0 / (255.0 - p).max(64.0))
            } else {
                above
            }
        })
        .collect();
    Plane {
        width: ink.width,
        height: ink.height,
        values,
    }
}

/// The paper's level (in ink units) under each pixel.
fn paper_level(ink: &Plane) -> Vec<f32> {
    let (w, h) = (ink.width, ink.height);
    let n = (w * h) as usize;
    if w.max(h) <= SMALL {
        return vec![border_median(ink); n];
    }
    let cell = cell_side(ink);
    let (grid, gw, gh) = cell_medians(ink, cell);
    // Even paper (a scan, thick strokes that fill whole cells, which the opening below would
    // take for paper): the lightest cells, bare paper whatever the ink, all at one level.
    let paper = percentile(&grid, PAPER_CELLS);
    if paper - percentile(&grid, 0.0) < EVEN_PAPER {
        return vec![percentile(&grid, PAPER_CELLS / 2.0); n];
    }
    let eroded = neighbourhood(&grid, gw, gh, f32::min);
    let opened = neighbourhood(&eroded, gw, gh, f32::max);
    let smooth = neighbourhood_mean(&opened, gw, gh);
    let (lo, hi) = smooth
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi - lo < EVEN_PAPER {
        return vec![percentile(&smooth, 0.5); n];
    }
    upsample(&smooth, gw, gh, cell, w, h)
}

fn border_median(ink: &Plane) -> f32 {
    let (w, h) = (ink.width, ink.height);
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| ink.at(x, y))
        .collect();
    percentile(&border, 0.5)
}

/// Each grid value replaced by `pick` of its 3×3 neighbourhood.
fn neighbourhood(grid: &[f32], w: u32, h: u32, pick: fn(f32, f32) -> f32) -> Vec<f32> {
    let mut out = grid.to_vec();
    for y in 0..h {
        for x in 0..w {
            let mut v = grid[(y * w + x) as usize];
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    v = pick(v, grid[(ny * w + nx) as usize]);
                }
            }
            out[(y * w + x) as usize] = v;
        }
    }
    out
}

fn neighbourhood_mean(grid: &[f32], w: u32, h: u32) -> Vec<f32> {
    let mut out = grid.to_vec();
    for y in 0..h {
        for x in 0..w {
            let (mut sum, mut n) = (0.0, 0.0);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    sum += grid[(ny * w + nx) as usize];
                    n += 1.0;
                }
            }
            out[(y * w + x) as usize] = sum / n;
        }
    }
    out
}

/// The `q` quantile (0–1) of `values` (nearest rank).
pub fn percentile(values: &[f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    let k = (((sorted.len() - 1) as f64) * q).round() as usize;
    let (_, v, _) = sorted.select_nth_unstable_by(k, f32::total_cmp);
    *v
}

/// The level between paper and ink: Otsu's over the flattened picture, kept between a quarter
/// and half of the ink's `peak` (Otsu's alone, on a picture that is nearly all paper, can
/// fall into the paper's noise).
pub fn threshold(values: &[f32], peak: f32) -> f32 {
    otsu(values).clamp(0.25 * peak, 0.5 * peak)
}

/// Otsu's level: the one that best splits `values` (0–255) into two classes by variance.
pub fn otsu(values: &[f32]) -> f32 {
    let mut histogram = [0f64; 256];
    for &v in values {
        histogram[v.round().clamp(0.0, 255.0) as usize] += 1.0;
    }
    let total: f64 = histogram.iter().sum();
    let sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, c)| i as f64 * c)
        .sum();
    let (mut below, mut below_sum, mut best, mut level) = (0.0, 0.0, -1.0, 0.0);
    for (i, &count) in histogram.iter().enumerate() {
        below += count;
        below_sum += i as f64 * count;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let (m0, m1) = (below_sum / below, (sum - below_sum) / above);
        let between = below * above * (m0 - m1).powi(2);
        if between > best {
            best = between;
            level = i as f32 + 0.5;
        }
    }
    level
}

/// Drops ruled lines from the ink `mask`: rows of ink (level, or tilted by up to 1.5 %) that
/// run from one edge of the picture to the other and fill most of its width, as a notebook's
/// lines do and a digit's strokes, which stop short of the edges, do not. Columns likewise.
/// Pictures up to [`SMALL`] a side (MNIST's own) have no lines to drop.
pub fn remove_lines(mask: &mut [bool], w: u32, h: u32) {
    if w.max(h) <= SMALL {
        return;
    }
    for vertical in [false, true] {
        let (along, across) = if vertical { (h, w) } else { (w, h) };
        let index = |a: u32, c: u32| {
            if vertical {
                (a * w + c) as usize
            } else {
                (c * w + a) as usize
            }
        };
        let edge = (along / 20).max(1);
        for step in -6i32..=6 {
            let tilt = step as f32 * 0.0025;
            // Each ink pixel's row when the picture is sheared by -tilt: a line at that tilt
            // falls into one row.
            let row_of = |a: u32, c: u32| (c as f32 - tilt * a as f32).round() as i64;
            let offset = (tilt.abs() * along as f32).ceil() as i64 + 1;
            let rows = across as i64 + 2 * offset;
            let mut count = vec![0u32; rows as usize];
            let mut first = vec![u32::MAX; rows as usize];
            let mut last = vec![0u32; rows as usize];
            for c in 0..across {
                for a in 0..along {
                    if mask[index(a, c)] {
                        let r = (row_of(a, c) + offset) as usize;
                        count[r] += 1;
                        first[r] = first[r].min(a);
                        last[r] = last[r].max(a);
                    }
                }
            }
            let line =
                |r: usize| count[r] * 10 >= along * 6 && first[r] < edge && last[r] >= along - edge;
            let lines: Vec<bool> = (0..rows as usize).map(line).collect();
            if !lines.iter().any(|&l| l) {
                continue;
            }
            // The line's row and the rows beside it that it spills into.
            for c in 0..across {
                for a in 0..along {
                    let r = (row_of(a, c) + offset) as usize;
                    let on_line = lines[r]
                        || (r > 0 && lines[r - 1] && count[r] * 10 >= along)
                        || (r + 1 < lines.len() && lines[r + 1] && count[r] * 10 >= along);
                    if on_line {
                        mask[index(a, c)] = false;
                    }
                }
            }
        }
    }
}

/// One 8-connected piece of a mask.
#[derive(Debug, Clone)]
pub struct Piece {
    pub pixels: Vec<usize>,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Piece {
    fn longer_side(&self) -> u32 {
        (self.x1 - self.x0).max(self.y1 - self.y0) + 1
    }
}

/// The 8-connected pieces of `mask`.
pub fn components(mask: &[bool], w: u32, h: u32) -> Vec<Piece> {
    let mut seen = vec![false; mask.len()];
    let mut pieces = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (sx, sy) = ((start as u32) % w, (start as u32) / w);
        let mut piece = Piece {
            pixels: Vec::new(),
            x0: sx,
            y0: sy,
            x1: sx,
            y1: sy,
        };
        while let Some(i) = stack.pop() {
            piece.pixels.push(i);
            let (x, y) = ((i as u32) % w, (i as u32) / w);
            piece.x0 = piece.x0.min(x);
            piece.x1 = piece.x1.max(x);
            piece.y0 = piece.y0.min(y);
            piece.y1 = piece.y1.max(y);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = (ny * w + nx) as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        pieces.push(piece);
    }
    pieces
}

/// The digit's pixels in the ink `mask`: its longest piece (specks are small and round, a
/// stroke long), then every piece inside or near the box of those kept so far, as long as it
/// is more than a speck beside them; specks and marks away from the digit are left out, so
/// they do not stretch its box. `None` when the mask holds nothing.
pub fn digit_components(mask: &[bool], w: u32, h: u32) -> Option<Vec<bool>> {
    let mut pieces = components(mask, w, h);
    pieces.sort_by_key(|p| std::cmp::Reverse((p.longer_side(), p.pixels.len())));
    let anchor = pieces.first()?;
    let (mut x0, mut y0, mut x1, mut y1) = (anchor.x0, anchor.y0, anchor.x1, anchor.y1);
    let anchor_size = anchor.pixels.len();
    let mut kept = vec![false; pieces.len()];
    kept[0] = true;
    loop {
        let mut grew = false;
        let reach = (x1 - x0).max(y1 - y0) / 4 + 1;
        for (k, p) in pieces.iter().enumerate() {
            if kept[k] {
                continue;
            }
            let gap_x = p.x0.saturating_sub(x1).max(x0.saturating_sub(p.x1));
            let gap_y = p.y0.saturating_sub(y1).max(y0.saturating_sub(p.y1));
            let inside = gap_x == 0 && gap_y == 0;
            let near = gap_x.max(gap_y) <= reach && p.pixels.len() * 50 >= anchor_size;
            if inside || near {
                kept[k] = true;
                (x0, y0, x1, y1) = (x0.min(p.x0), y0.min(p.y0), x1.max(p.x1), y1.max(p.y1));
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let mut out = vec![false; mask.len()];
    for (p, _) in pieces.iter().zip(&kept).filter(|(_, k)| **k) {
        for &i in &p.pixels {
            out[i] = true;
        }
    }
    Some(out)
}

/// The flattened picture with only the digit left, stretched so paper is 0 and the ink's
/// `peak` 255. The digit is its kept pieces, on a small clean scan (up to [`SMALL`] a side)
/// also what fainter ink (above 40 % of the `level`) joins them, a thin stretch of a stroke,
/// as hysteresis thresholding keeps it (on a photo, that would take in what is left of a
/// shadow's edge), and two pixels around, for the anti-aliased edges; inside that,
/// what is fainter than the paper's noise (measured away from the digit) goes to 0 too.
pub fn clean(flat: &Plane, keep: &[bool], level: f32, peak: f32) -> GrayImage {
    let (w, h) = (flat.width, flat.height);
    let around = grow(keep, w, h, 2);
    let paper: Vec<f32> = flat
        .values
        .iter()
        .zip(&around)
        .filter(|(_, n)| !**n)
        .map(|(v, _)| *v)
        .collect();
    let noise = percentile(&paper, 0.9).min(level / 2.0);
    let low = (0.4 * level).max(1.5 * noise);
    let mut faint: Vec<bool> = flat.values.iter().map(|&v| v > low).collect();
    remove_lines(&mut faint, w, h);
    let mut digit = keep.to_vec();
    if w.max(h) > SMALL {
        faint.fill(false);
    }
    for piece in components(&faint, w, h) {
        if piece.pixels.iter().any(|&i| keep[i]) {
            for &i in &piece.pixels {
                digit[i] = true;
            }
        }
    }
    let near = grow(&digit, w, h, 2);
    GrayImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let v = if near[i] {
            (flat.values[i] - noise) * 255.0 / (peak - noise).max(1.0)
        } else {
            0.0
        };
        image::Luma([v.clamp(0.0, 255.0).round() as u8])
    })
}

/// `mask` grown by `by` pixels in every direction (a square).
fn grow(mask: &[bool], w: u32, h: u32, by: u32) -> Vec<bool> {
    let mut rows = vec![false; mask.len()];
    for y in 0..h {
        for x in 0..w {
            rows[(y * w + x) as usize] =
                (x.saturating_sub(by)..=(x + by).min(w - 1)).any(|nx| mask[(y * w + nx) as usize]);
        }
    }
    let mut out = vec![false; mask.len()];
    for y in 0..h {
        for x in 0..w {
            out[(y * w + x) as usize] =
                (y.saturating_sub(by)..=(y + by).min(h - 1)).any(|ny| rows[(ny * w + x) as usize]);
        }
    }
    out
}

/// The digit drawn again with MNIST's pen when its own is too fine for its size (a 1-pixel
/// line on a 200-pixel digit would shrink to a tenth of a pixel); otherwise as it is.
pub fn redraw(digit: &GrayImage, keep: &[bool]) -> GrayImage {
    let (w, h) = digit.dimensions();
    let Some((x0, y0, x1, y1)) = bounds(keep, w) else {
        return digit.clone();
    };
    let longer = (x1 - x0).max(y1 - y0) + 1;
    if longer < REDRAW_FROM {
        return digit.clone();
    }
    let width = stroke_width(keep, w, h);
    let scale = BOX as f32 / longer as f32;
    if width * scale >= FINE_PEN {
        return digit.clone();
    }
    // Every pixel within half MNIST's pen of the drawn line's middle, less the line's own half.
    let grow_by = (MNIST_PEN / scale - width) / 2.0;
    let distance = squared_distance_to(keep, w, h);
    let reach = grow_by.max(0.0).powi(2);
    GrayImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        image::Luma([if distance[i] <= reach { 255 } else { 0 }])
    })
}

fn bounds(mask: &[bool], w: u32) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y) = ((i as u32) % w, (i as u32) / w);
        b = Some(match b {
            None => (x, y, x, y),
            Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
        });
    }
    b
}

/// The width of the strokes of `mask`, in pixels: each stroke's middle (the pixels farthest
/// from the paper across it) is half its width from the paper, so twice the median distance
/// there, less the half pixel a pixel's centre adds.
pub fn stroke_width(mask: &[bool], w: u32, h: u32) -> f32 {
    let paper: Vec<bool> = mask.iter().map(|m| !m).collect();
    let distance: Vec<f32> = squared_distance_to(&paper, w, h)
        .into_iter()
        .map(f32::sqrt)
        .collect();
    let mut middles = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            if !mask[i] {
                continue;
            }
            let d = distance[i];
            let higher = |nx: u32, ny: u32| distance[(ny * w + nx) as usize] > d;
            let ridge = !(x > 0 && higher(x - 1, y)
                || x + 1 < w && higher(x + 1, y)
                || y > 0 && higher(x, y - 1)
                || y + 1 < h && higher(x, y + 1));
            if ridge {
                middles.push(d);
            }
        }
    }
    if middles.is_empty() {
        return 0.0;
    }
    (2.0 * percentile(&middles, 0.5) - 0.5).max(1.0)
}

/// Each pixel's squared Euclidean distance to the nearest pixel set in `to` (the picture's
/// outside counts as unset), by Felzenszwalb and Huttenlocher's two passes of lower envelopes.
pub fn squared_distance_to(to: &[bool], w: u32, h: u32) -> Vec<f32> {
    const FAR: f32 = 1e12;
    let mut grid: Vec<f32> = to.iter().map(|&t| if t { 0.0 } else { FAR }).collect();
    let mut line = Vec::new();
    for x in 0..w {
        line.clear();
        line.extend((0..h).map(|y| grid[(y * w + x) as usize]));
        let out = envelope(&line);
        for y in 0..h {
            grid[(y * w + x) as usize] = out[y as usize];
        }
    }
    for y in 0..h {
        let row = (y * w) as usize..((y + 1) * w) as usize;
        let out = envelope(&grid[row.clone()]);
        grid[row].copy_from_slice(&out);
    }
    grid
}

/// One dimension of the distance transform: min over q of (p − q)² + f(q).
fn envelope(f: &[f32]) -> Vec<f32> {
    let n = f.len();
    let mut out = vec![0.0; n];
    let mut v = vec![0usize; n];
    let mut z = vec![0.0f32; n + 1];
    let mut k = 0;
    z[0] = f32::NEG_INFINITY;
    z[1] = f32::INFINITY;
    let meet = |q: usize, p: usize| {
        ((f[q] + (q * q) as f32) - (f[p] + (p * p) as f32)) / (2.0 * (q as f32 - p as f32))
    };
    for q in 1..n {
        let mut s = meet(q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = meet(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f32::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f32 {
            k += 1;
        }
        let d = q as f32 - v[k] as f32;
        *o = d * d + f[v[k]];
    }
    out
}

/// MNIST's box and centring: the ink's bounding box scaled to fit 20×20 keeping its aspect,
/// placed in 28×28 with its centre of mass where MNIST's are.
pub fn box_and_centre(stretched: &GrayImage) -> Option<[u8; PIXELS]> {
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

/// The range of stroke widths ([`mnist_stroke_width`]) of the middle half of MNIST's test
/// digits, measured by `examples/stroke_widths.rs` (1.67 and 2.34 px).
pub const MNIST_STROKE: (f32, f32) = (1.67, 2.34);

/// The digit with its strokes brought into MNIST's usual range of widths: a marker's thick
/// strokes thinned, a fine pen's thickened, by erosion or dilation, each side by half the
/// difference. Digits already in the range, as half of MNIST's own are, are left as they are.
pub fn stroke_like_mnist(digit: &[u8; PIXELS]) -> [u8; PIXELS] {
    let (thin, thick) = MNIST_STROKE;
    let mut out = *digit;
    // A fractional step does less than its fraction to a faint or anti-aliased stroke: measure
    // again and go on, a few times at most.
    for _ in 0..4 {
        let width = mnist_stroke_width(&out);
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
        assert!(mnist_stroke_width(&marker) > 4.0);
        let thinned = stroke_like_mnist(&marker);
        let w = mnist_stroke_width(&thinned);
        assert!((thin - 0.3..=thick + 0.3).contains(&w), "{w}");
        let pen = ring(0.8);
        assert!(mnist_stroke_width(&pen) < 1.2);
        let w = mnist_stroke_width(&stroke_like_mnist(&pen));
        assert!((thin - 0.3..=thick + 0.3).contains(&w), "{w}");
        // A stroke already in range is left exactly as it is.
        let mnist_like = ring(2.5);
        assert!((thin..=thick).contains(&mnist_stroke_width(&mnist_like)));
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
            Err(NoDigit::Flat)
        );
        // Noise of a few levels is not a digit either.
        let faint = GrayImage::from_fn(30, 30, |x, y| image::Luma([100 + ((x + y) % 5) as u8]));
        assert!(matches!(to_mnist(&faint), Err(NoDigit::Faint { .. })));
    }

    /// Dark ink (level 30) drawn along `points` (fractions of the side) with an anti-aliased
    /// round pen `pen` pixels wide, on paper whose level at (x, y) `paper` gives.
    fn written(
        side: u32,
        pen: f32,
        points: &[[f32; 2]],
        paper: impl Fn(u32, u32) -> f32,
    ) -> GrayImage {
        let s = side as f32;
        GrayImage::from_fn(side, side, |x, y| {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = points
                .windows(2)
                .map(|seg| {
                    let (a, b) = (
                        [seg[0][0] * s, seg[0][1] * s],
                        [seg[1][0] * s, seg[1][1] * s],
                    );
                    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
                    let t = (((px - a[0]) * dx + (py - a[1]) * dy) / (dx * dx + dy * dy))
                        .clamp(0.0, 1.0);
                    ((px - a[0] - t * dx).powi(2) + (py - a[1] - t * dy).powi(2)).sqrt()
                })
                .fold(f32::MAX, f32::min);
            let cover = (pen / 2.0 + 0.5 - d).clamp(0.0, 1.0);
            let p = paper(x, y);
            image::Luma([(p + (30.0 / 255.0 * p - p) * cover).round() as u8])
        })
    }

    const SEVEN: [[f32; 2]; 3] = [[0.3, 0.2], [0.7, 0.2], [0.45, 0.8]];

    fn ring_points(cx: f32, cy: f32, r: f32) -> Vec<[f32; 2]> {
        (0..=64)
            .map(|i| {
                let t = i as f32 / 64.0 * std::f32::consts::TAU;
                [cx + r * t.cos(), cy + 1.4 * r * t.sin()]
            })
            .collect()
    }

    fn share_of_ink(digit: &[u8; PIXELS]) -> f32 {
        digit.iter().filter(|&&p| p >= 128).count() as f32 / PIXELS as f32
    }

    #[test]
    fn a_one_pixel_line_comes_out_with_mnists_stroke() {
        let (thin, thick) = MNIST_STROKE;
        for side in [200, 600] {
            for (name, points) in [("7", SEVEN.to_vec()), ("0", ring_points(0.5, 0.5, 0.25))] {
                let picture = written(side, 1.0, &points, |_, _| 250.0);
                let digit = to_mnist(&picture).unwrap();
                let w = mnist_stroke_width(&digit);
                assert!(
                    (thin - 0.25..=thick + 0.25).contains(&w),
                    "a {name} on {side}²: width {w}"
                );
                // Strokes, not the filled grey box the old thickening made of them.
                let ink = share_of_ink(&digit);
                assert!(
                    (0.05..0.3).contains(&ink),
                    "a {name} on {side}²: {ink} inked"
                );
            }
        }
    }

    #[test]
    fn a_speck_far_from_the_digit_leaves_it_as_it_was() {
        for (side, pen) in [(300, 3.0), (200, 1.0), (600, 8.0)] {
            // The 7 near the top-left corner, a speck near the bottom-right one.
            let points: Vec<[f32; 2]> = SEVEN.iter().map(|p| [p[0] * 0.6, p[1] * 0.6]).collect();
            let clean = to_mnist(&written(side, pen, &points, |_, _| 245.0)).unwrap();
            let speck = side as f32 * 0.9;
            let dusty = written(side, pen, &points, |x, y| {
                let d = ((x as f32 - speck).powi(2) + (y as f32 - speck).powi(2)).sqrt();
                if d < side as f32 * 0.012 + 1.0 {
                    40.0
                } else {
                    245.0
                }
            });
            let dusty = to_mnist(&dusty).unwrap();
            // The same crop: the box the digit was fitted by, to the pixel.
            assert_eq!(
                bounding_box(&clean),
                bounding_box(&dusty),
                "{side}² pen {pen}"
            );
            // And nearly the same levels (the speck moves Otsu's level a little, and with it
            // an anti-aliased edge here and there).
            let mean = clean
                .iter()
                .zip(&dusty)
                .map(|(&a, &b)| f32::from(a.abs_diff(b)))
                .sum::<f32>()
                / PIXELS as f32;
            assert!(mean < 4.0, "{side}² pen {pen}: mean difference {mean}");
        }
    }

    #[test]
    fn paper_in_uneven_light_comes_out_clean() {
        for side in [200, 500] {
            let even = to_mnist(&written(side, 4.0, &SEVEN, |_, _| 240.0)).unwrap();
            // Light falling off from the left edge to the right one, to half; and a shadow's
            // edge across the middle.
            let lit = |x: u32, _| 240.0 * (1.0 - 0.5 * x as f32 / side as f32);
            let shadow = |_, y: u32| if y < side / 2 { 240.0 } else { 130.0 };
            for (how, light) in [
                ("gradient", &lit as &dyn Fn(u32, u32) -> f32),
                ("shadow", &shadow),
            ] {
                let digit = to_mnist(&written(side, 4.0, &SEVEN, light)).unwrap();
                // No paper became ink: every pixel away from the even-light digit's strokes
                // is black.
                let near_ink = |i: usize| {
                    let (x, y) = ((i % SIDE) as i64, (i / SIDE) as i64);
                    (-1..=1).any(|dy| {
                        (-1..=1).any(|dx| {
                            let (nx, ny) = (x + dx, y + dy);
                            (0..SIDE as i64).contains(&nx)
                                && (0..SIDE as i64).contains(&ny)
                                && even[(ny as usize) * SIDE + nx as usize] > 0
                        })
                    })
                };
                let stray: Vec<usize> = (0..PIXELS)
                    .filter(|&i| !near_ink(i) && digit[i] > 0)
                    .collect();
                assert!(stray.is_empty(), "{how} on {side}²: paper at {stray:?}");
                let mean = digit
                    .iter()
                    .zip(&even)
                    .map(|(&a, &b)| f32::from(a.abs_diff(b)))
                    .sum::<f32>()
                    / PIXELS as f32;
                assert!(mean < 12.0, "{how} on {side}²: mean difference {mean}");
            }
        }
    }

    #[test]
    fn ruled_lines_are_dropped_and_a_digits_bar_is_not() {
        let (w, h) = (300u32, 300u32);
        let mut mask = vec![false; (w * h) as usize];
        // A line across the picture, tilted by 1 %, two pixels thick.
        for x in 0..w {
            let y = 100 + x / 100;
            mask[(y * w + x) as usize] = true;
            mask[((y + 1) * w + x) as usize] = true;
        }
        // A 7's top bar, most of the width, but stopping short of the edges.
        for x in 40..260 {
            mask[(200 * w + x) as usize] = true;
        }
        remove_lines(&mut mask, w, h);
        // Of the line's 600 pixels, at most a stray one where it steps a row is left.
        let left = (90 * w..110 * w).filter(|&i| mask[i as usize]).count();
        assert!(left <= 2, "{left} pixels of the line left");
        assert!((40..260).all(|x| mask[(200 * w + x) as usize]));
        assert_eq!(mask.iter().filter(|&&m| m).count(), 220 + left);
    }

    #[test]
    fn distances_and_stroke_widths_are_measured() {
        let (w, h) = (40u32, 30u32);
        let to: Vec<bool> = (0..w * h)
            .map(|i| i == 5 * w + 7 || i == 20 * w + 30)
            .collect();
        let d = squared_distance_to(&to, w, h);
        for y in 0..h {
            for x in 0..w {
                let brute = [(7i64, 5i64), (30, 20)]
                    .iter()
                    .map(|&(px, py)| ((x as i64 - px).pow(2) + (y as i64 - py).pow(2)) as f32)
                    .fold(f32::MAX, f32::min);
                assert_eq!(d[(y * w + x) as usize], brute, "({x}, {y})");
            }
        }
        // Bars of known width, level and slanted: measured within half a pixel.
        for width in [1u32, 3, 6, 9] {
            for slant in [0.0f32, 0.5] {
                let mask: Vec<bool> = (0..60 * 60)
                    .map(|i| {
                        let (x, y) = ((i % 60) as f32, (i / 60) as f32);
                        let centre = 30.0 + slant * (y - 30.0);
                        let across = (x - centre).abs() * (1.0 / (1.0 + slant * slant).sqrt());
                        (10.0..50.0).contains(&y) && across < width as f32 / 2.0
                    })
                    .collect();
                let measured = stroke_width(&mask, 60, 60);
                assert!(
                    (measured - width as f32).abs() <= 0.75,
                    "width {width}, slant {slant}: {measured}"
                );
            }
        }
    }

    #[test]
    fn otsu_splits_two_levels() {
        let values: Vec<f32> = (0..1000)
            .map(|i| if i % 10 == 0 { 200.0 } else { 20.0 })
            .collect();
        let level = otsu(&values);
        assert!((20.0..200.0).contains(&level), "{level}");
    }
}
