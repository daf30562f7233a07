//! Data augmentation for training: each training image redrawn a little differently in every
//! epoch (rotated, shifted, zoomed, sheared, its stroke thickened or thinned, elastically
//! distorted as Simard et al. 2003 do), so that the model learns the variety of real writing
//! rather than MNIST's own habits, and sometimes seen coarsely, as a small digit in a photo or a
//! low-resolution scan shows it; a 1 may get the flag that much of the world writes on it and
//! MNIST's writers rarely did. Off by default: the tutorial trains on the images as they are.
//!
//! The settings are the `[augment]` section of the config. Names and ranges follow Keras's
//! preprocessing layers: `rotation` is `RandomRotation(factor)` (a fraction of a full turn),
//! `translation` is `RandomTranslation(height_factor=width_factor)` (a fraction of the side),
//! `zoom` is `RandomZoom(height_factor)` with the aspect kept (positive zooms out, the digit
//! gets smaller), `shear` is `RandomShear(x_factor)`'s horizontal shear, drawn in both directions.
//!
//! What one image gets is a function of `(seed, epoch, index)` alone (the index in the training
//! set, not the position in the shuffled order), so a resumed run sees exactly the images an
//! uninterrupted run sees. The geometry is one affine map plus a coarse elastic field, sampled
//! once per output pixel (bilinear): about 10 µs an image.

use crate::data::idx::{PIXELS, SIDE};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// The `[augment]` section: what varies, and by how much. Every range is symmetric around "no
/// change"; the defaults are the preset that `--augment` turns on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Augment the training images (never the validation images).
    pub enabled: bool,
    /// Rotation by up to ± this fraction of a full turn (0.04: ±14.4°); 0 to 0.25.
    pub rotation: f64,
    /// Shift by up to ± this fraction of the side, each axis (0.1: ±2.8 px); 0 to 0.3. A shift
    /// that would push ink onto the border is cut short.
    pub translation: f64,
    /// Zoom by a factor in [1 - zoom, 1 + zoom]: above 1 the digit shrinks; 0 to 0.5.
    pub zoom: f64,
    /// Horizontal shear of up to ± this many pixels per pixel of height; 0 to 1.
    pub shear: f64,
    /// Stroke thickness: up to ± this fraction of a one-pixel dilation (more) or erosion
    /// (less); 0 to 1.
    pub thickness: f64,
    /// Elastic distortion: each node of a coarse grid moves by up to ± this many pixels, each
    /// axis, and the field between nodes is interpolated (a cheap stand-in for Simard's
    /// Gaussian-smoothed random field); 0 to 4.
    pub elastic: f64,
    /// The elastic grid's spacing in pixels: larger is smoother; 2 to 28.
    pub elastic_scale: f64,
    /// Coarse sampling: the digit seen at down to this fraction of its resolution (0.3: as few
    /// as 8×8 samples), averaged over each sample's area, scaled back and its edges sharpened
    /// again, as a coarse scanner or a small digit in a photo blurs it; 0 (never) to 0.8.
    pub coarse: f64,
    /// The continental 1: the chance that a training 1 gets the flag much of the world writes on
    /// it (a stroke from the stem's top down to its left), which MNIST's American writers rarely
    /// drew; without it a flagged 1 reads as a 7. 0 (never) to 1.
    pub flag: f64,
}

impl Default for Augment {
    /// The preset, switched off.
    fn default() -> Self {
        Self {
            enabled: false,
            rotation: 0.04,
            translation: 0.08,
            zoom: 0.12,
            shear: 0.2,
            thickness: 0.5,
            elastic: 1.2,
            elastic_scale: 7.0,
            coarse: 0.0,
            flag: 0.0,
        }
    }
}

/// A key of `[augment]` whose value is out of its range.
#[derive(Debug, Clone, PartialEq)]
pub struct BadSetting {
    pub key: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl Augment {
    /// The preset `--augment` turns on: the defaults, enabled.
    pub fn preset() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    pub fn is_off(&self) -> bool {
        !self.enabled
    }

    /// Every value finite and within its range; the error names the first bad key.
    pub fn validate(&self) -> Result<(), BadSetting> {
        let checks: [(&'static str, f64, f64, f64, &'static str); 9] = [
            (
                "augment.rotation",
                self.rotation,
                0.0,
                0.25,
                "must be in [0, 0.25] (a fraction of a full turn)",
            ),
            (
                "augment.translation",
                self.translation,
                0.0,
                0.3,
                "must be in [0, 0.3] (a fraction of the side)",
            ),
            ("augment.zoom", self.zoom, 0.0, 0.5, "must be in [0, 0.5]"),
            ("augment.shear", self.shear, 0.0, 1.0, "must be in [0, 1]"),
            (
                "augment.thickness",
                self.thickness,
                0.0,
                1.0,
                "must be in [0, 1]",
            ),
            (
                "augment.elastic",
                self.elastic,
                0.0,
                4.0,
                "must be in [0, 4] (pixels)",
            ),
            (
                "augment.elastic_scale",
                self.elastic_scale,
                2.0,
                28.0,
                "must be in [2, 28] (pixels)",
            ),
            (
                "augment.coarse",
                self.coarse,
                0.0,
                0.8,
                "must be in [0, 0.8] (a fraction of the resolution)",
            ),
            (
                "augment.flag",
                self.flag,
                0.0,
                1.0,
                "must be in [0, 1] (a chance)",
            ),
        ];
        for (key, value, low, high, reason) in checks {
            if !(value.is_finite() && (low..=high).contains(&value)) {
                return Err(BadSetting { key, value, reason });
            }
        }
        Ok(())
    }

    /// The random transform of training image `index`, a `label`, in epoch `epoch` (0-based).
    pub fn draw(&self, seed: u64, epoch: usize, index: usize, label: u8) -> Transform {
        let mut rng = StdRng::seed_from_u64(sample_stream(seed, epoch, index));
        let mut symmetric = |range: f64| {
            if range > 0.0 {
                rng.random_range(-range..=range) as f32
            } else {
                0.0
            }
        };
        let side = SIDE as f64;
        let angle = symmetric(self.rotation * std::f64::consts::TAU);
        let shift = [
            symmetric(self.translation * side),
            symmetric(self.translation * side),
        ];
        let zoom = symmetric(self.zoom);
        let shear = symmetric(self.shear);
        let thickness = symmetric(self.thickness);
        let elastic = (self.elastic > 0.0).then(|| {
            let cells = (side / self.elastic_scale).ceil().max(1.0) as usize;
            let nodes = (0..(cells + 1) * (cells + 1) * 2)
                .map(|_| symmetric(self.elastic))
                .collect();
            Elastic {
                cells,
                nodes,
                reach: self.elastic as f32,
            }
        });
        // Drawn last, so that the other transforms are what they were before it existed.
        let samples = if self.coarse > 0.0 {
            let fraction = 1.0 - rng.random_range(0.0..=self.coarse);
            ((side * fraction).round() as usize).clamp(1, SIDE)
        } else {
            SIDE
        };
        // Last again, and only for 1s: the rest of every image's draw is as it was without it.
        let flag = (label == 1 && self.flag > 0.0 && rng.random_bool(self.flag)).then(|| Flag {
            angle: rng.random_range(FLAG_ANGLE) as f32,
            length: rng.random_range(FLAG_LENGTH) as f32,
        });
        Transform {
            angle,
            shift,
            zoom,
            shear,
            thickness,
            elastic,
            samples,
            flag,
        }
    }

    /// Training image `index`, a `label`, as epoch `epoch` sees it.
    pub fn apply(
        &self,
        image: &[u8; PIXELS],
        label: u8,
        seed: u64,
        epoch: usize,
        index: usize,
    ) -> [u8; PIXELS] {
        let transform = self.draw(seed, epoch, index, label);
        let flagged = transform.flag.as_ref().map(|flag| flag.drawn_on(image));
        let image = flagged.as_ref().unwrap_or(image);
        transform.fitted(image).apply(image)
    }
}

/// The flag's angle from the vertical, radians (25° to 55°): steeper than a 7's top stroke,
/// whatever the stem's slant, so that a flagged 1 does not become a 7.
const FLAG_ANGLE: std::ops::RangeInclusive<f64> = 0.44..=0.96;
/// The flag's length, a fraction of the digit's height.
const FLAG_LENGTH: std::ops::RangeInclusive<f64> = 0.25..=0.5;

/// The continental 1's flag: a straight stroke from the top of the stem down to its left,
/// `angle` radians from the vertical, `length` of the digit's height long, as wide as the
/// digit's strokes.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub angle: f32,
    pub length: f32,
}

impl Flag {
    /// `image` (a white-on-black 1) with the flag drawn on, anti-aliased; the stroke ends a
    /// pixel inside the border. A blank image is returned as it is.
    pub fn drawn_on(&self, image: &[u8; PIXELS]) -> [u8; PIXELS] {
        let half = stroke_width(image).clamp(1.0, 4.0) / 2.0;
        let Some((top, height)) = stem_top(image, half) else {
            return *image;
        };
        let (sin, cos) = self.angle.sin_cos();
        let reach = self.length * height;
        let end = [
            (top[0] - reach * sin).clamp(1.0, LAST - 1.0),
            (top[1] + reach * cos).clamp(1.0, LAST - 1.0),
        ];
        std::array::from_fn(|i| {
            let p = [(i % SIDE) as f32, (i / SIDE) as f32];
            let ink = 255.0 * (half + 0.5 - to_segment(p, top, end)).clamp(0.0, 1.0);
            image[i].max((ink + 0.5) as u8)
        })
    }
}

/// Where a 1's stem starts, and how tall its ink is: the ink's mean x over its top two rows
/// (rows with a pixel at half ink or more), `half` (half a stroke) below the top. `None` when
/// blank.
fn stem_top(image: &[u8; PIXELS], half: f32) -> Option<([f32; 2], f32)> {
    let inked = |y: &usize| image[y * SIDE..(y + 1) * SIDE].iter().any(|&p| p >= 128);
    let first = (0..SIDE).find(inked)?;
    let last = (0..SIDE).rev().find(inked)?;
    let (mut mass, mut x) = (0.0, 0.0);
    for y in first..=(first + 1).min(last) {
        for (col, &p) in image[y * SIDE..(y + 1) * SIDE].iter().enumerate() {
            mass += f32::from(p);
            x += f32::from(p) * col as f32;
        }
    }
    let top = [x / mass, first as f32 + half];
    Some((top, (last - first + 1) as f32))
}

/// The distance from `p` to the segment from `a` to `b`.
fn to_segment(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (ab, ap) = ([b[0] - a[0], b[1] - a[1]], [p[0] - a[0], p[1] - a[1]]);
    let length2 = ab[0] * ab[0] + ab[1] * ab[1];
    let t = if length2 > 0.0 {
        ((ap[0] * ab[0] + ap[1] * ab[1]) / length2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dx, dy) = (ap[0] - t * ab[0], ap[1] - t * ab[1]);
    (dx * dx + dy * dy).sqrt()
}

/// One independent random stream per `(seed, epoch, index)` (SplitMix64's finaliser mixes them).
fn sample_stream(seed: u64, epoch: usize, index: usize) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let golden = 0x9E37_79B9_7F4A_7C15u64;
    mix(
        mix(mix(seed.wrapping_add(golden)) ^ (epoch as u64).wrapping_add(golden))
            ^ (index as u64).wrapping_add(golden),
    )
}

/// A coarse random displacement field: `(cells + 1)²` nodes over the image, each with an
/// `[x, y]` displacement, interpolated bilinearly between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Elastic {
    pub cells: usize,
    /// Row-major nodes, `[x, y]` pairs flattened.
    pub nodes: Vec<f32>,
    /// The largest displacement any node may have, each axis.
    pub reach: f32,
}

impl Elastic {
    /// The displacement at every output pixel, `[x, y]` planes, bilinear between the nodes
    /// (separably: along each node row first, then between the rows).
    fn field(&self) -> [[f32; PIXELS]; 2] {
        let per_cell = self.cells as f32 / (SIDE - 1) as f32;
        let at: [(usize, f32); SIDE] = std::array::from_fn(|i| {
            let g = i as f32 * per_cell;
            let c = (g as usize).min(self.cells - 1);
            (c, g - c as f32)
        });
        let row = self.cells + 1;
        let mut planes = [[0f32; PIXELS]; 2];
        for (axis, plane) in planes.iter_mut().enumerate() {
            let node = |i: usize, j: usize| self.nodes[(j * row + i) * 2 + axis];
            // Each node row interpolated across the image's columns.
            let rows: Vec<[f32; SIDE]> = (0..row)
                .map(|j| {
                    std::array::from_fn(|x| {
                        let (c, f) = at[x];
                        node(c, j) * (1.0 - f) + node(c + 1, j) * f
                    })
                })
                .collect();
            for (y, out) in plane.chunks_exact_mut(SIDE).enumerate() {
                let (c, f) = at[y];
                let (top, bottom) = (&rows[c], &rows[c + 1]);
                for x in 0..SIDE {
                    out[x] = top[x] * (1.0 - f) + bottom[x] * f;
                }
            }
        }
        planes
    }
}

/// One image's transform. Coordinates are pixel indices, x to the right and y down; the centre
/// of the image is (13.5, 13.5).
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// Radians, counter-clockwise as seen (as Keras's positive `RandomRotation`).
    pub angle: f32,
    /// `[x, y]` pixels.
    pub shift: [f32; 2],
    /// Keras's zoom: the digit is scaled by `1 / (1 + zoom)`.
    pub zoom: f32,
    /// Horizontal shear: x moves by `shear` pixels per pixel below the centre.
    pub shear: f32,
    /// Above 0, this fraction of a one-pixel dilation; below 0, of an erosion.
    pub thickness: f32,
    pub elastic: Option<Elastic>,
    /// Samples per side of the coarse view ([`coarse`]); `SIDE` leaves the image as it is.
    pub samples: usize,
    /// The continental 1's flag, drawn on before the rest ([`Augment::apply`]); only 1s get one.
    pub flag: Option<Flag>,
}

const CENTRE: f32 = (SIDE as f32 - 1.0) / 2.0;
const LAST: f32 = (SIDE - 1) as f32;

impl Transform {
    /// No change at all.
    pub fn identity() -> Self {
        Self {
            angle: 0.0,
            shift: [0.0, 0.0],
            zoom: 0.0,
            shear: 0.0,
            thickness: 0.0,
            elastic: None,
            samples: SIDE,
            flag: None,
        }
    }

    /// The forward linear map (digit → picture, about the centre): rotate · shear / (1 + zoom).
    fn forward(&self) -> [[f32; 2]; 2] {
        let (sin, cos) = self.angle.sin_cos();
        let k = 1.0 / (1.0 + self.zoom);
        let s = self.shear;
        // Rotation counter-clockwise on a y-down screen: (x, y) → (x cos + y sin, -x sin + y cos).
        [
            [cos * k, (cos * s + sin) * k],
            [-sin * k, (-sin * s + cos) * k],
        ]
    }

    /// This transform, made to keep `image`'s ink off the border: the digit's box, widened by
    /// what the sampling and the elastic field can add, must land inside the picture. A digit
    /// that would not fit is zoomed out until it does; a shift that would push it out is cut
    /// short. A stroke cut off by the border could change what digit it is.
    pub fn fitted(mut self, image: &[u8; PIXELS]) -> Self {
        let Some((low, high)) = ink_box(image) else {
            return self;
        };
        let reach = 1.0 + self.elastic.as_ref().map_or(0.0, |e| e.reach);
        // The coarse view spreads ink by up to one sample's width, in the picture.
        let blur = if self.samples < SIDE {
            SIDE as f32 / self.samples as f32
        } else {
            0.0
        };
        let corners = |t: &Self| {
            let m = t.forward();
            let mut extent = [[f32::MAX, f32::MIN]; 2];
            for x in [low[0] - reach, high[0] + reach] {
                for y in [low[1] - reach, high[1] + reach] {
                    let (dx, dy) = (x - CENTRE, y - CENTRE);
                    for (axis, row) in m.iter().enumerate() {
                        let v = CENTRE + row[0] * dx + row[1] * dy;
                        extent[axis] = [extent[axis][0].min(v), extent[axis][1].max(v)];
                    }
                }
            }
            extent
        };
        // Strictly inside [0, LAST]: a margin of a hair keeps the border pixels at exactly 0.
        let room = LAST - 0.01 - 2.0 * blur;
        let extent = corners(&self);
        let widest = extent.iter().map(|e| e[1] - e[0]).fold(0.0, f32::max);
        if widest > room {
            self.zoom = (1.0 + self.zoom) * widest / room - 1.0;
        }
        let extent = corners(&self);
        for (axis, [lo, hi]) in extent.into_iter().enumerate() {
            let (least, most) = (0.005 + blur - lo, LAST - 0.005 - blur - hi);
            self.shift[axis] = if least <= most {
                self.shift[axis].clamp(least, most)
            } else {
                (least + most) / 2.0
            };
        }
        self
    }

    /// The transformed image: each output pixel samples the input (bilinear) where the inverse
    /// map and the elastic field send it, then the stroke is thickened or thinned.
    pub fn apply(&self, image: &[u8; PIXELS]) -> [u8; PIXELS] {
        let m = self.forward();
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inverse = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        let Some((low, high)) = ink_box(image) else {
            return *image;
        };
        // A sample farther than a pixel from the ink's box reads only blank: most of them.
        let (low, high) = ([low[0] - 1.0, low[1] - 1.0], [high[0] + 1.0, high[1] + 1.0]);
        let padded = padded(image);
        let field = self.elastic.as_ref().map(Elastic::field);
        let mut out = [0f32; PIXELS];
        for y in 0..SIDE {
            let dy = y as f32 - CENTRE - self.shift[1];
            for x in 0..SIDE {
                let dx = x as f32 - CENTRE - self.shift[0];
                let (mut sx, mut sy) = (
                    CENTRE + inverse[0][0] * dx + inverse[0][1] * dy,
                    CENTRE + inverse[1][0] * dx + inverse[1][1] * dy,
                );
                if let Some([ex, ey]) = &field {
                    sx += ex[y * SIDE + x];
                    sy += ey[y * SIDE + x];
                }
                if sx > low[0] && sx < high[0] && sy > low[1] && sy < high[1] {
                    out[y * SIDE + x] = bilinear(&padded, sx, sy);
                }
            }
        }
        let out = coarse(&stroke(&out, self.thickness), self.samples);
        // Rounded to the nearest level (values are at least 0: `+ 0.5` then truncation).
        std::array::from_fn(|i| (out[i].clamp(0.0, 255.0) + 0.5) as u8)
    }
}

/// `image` seen through `samples`×`samples` coarse samples, each the mean of the pixels under
/// it, then interpolated back (bilinear between sample centres) and its edges sharpened again
/// (ink at half the strongest sample's becomes half ink, over a ramp half as wide as the ink
/// range), as a scanner's or a camera's coarse view of a digit is seen once printed back.
/// The ink stays inside the sampled area's box widened by one sample.
fn coarse(image: &[f32; PIXELS], samples: usize) -> [f32; PIXELS] {
    if samples >= SIDE {
        return *image;
    }
    let down = area_weights(samples);
    let up = bilinear_weights(samples);
    let small = separable(&down, image, samples, SIDE);
    let big = separable(&up, &small, SIDE, samples);
    let strongest = big.iter().copied().fold(0.0, f32::max);
    if strongest <= 0.0 {
        return *image;
    }
    let mut out = [0f32; PIXELS];
    for (o, &v) in out.iter_mut().zip(&big) {
        *o = 255.0 * ((v / strongest - 0.5) * 2.0 + 0.5).clamp(0.0, 1.0);
    }
    out
}

/// Row `i` (of `samples`) holds the share of each of `SIDE` pixels in sample `i`'s area.
fn area_weights(samples: usize) -> Vec<[f32; SIDE]> {
    let width = SIDE as f32 / samples as f32;
    (0..samples)
        .map(|i| {
            let (start, end) = (i as f32 * width, (i + 1) as f32 * width);
            std::array::from_fn(|x| {
                let overlap = (end.min(x as f32 + 1.0) - start.max(x as f32)).max(0.0);
                overlap / width
            })
        })
        .collect()
}

/// Row `x` (of `SIDE`) holds the bilinear weights of the `samples` sample centres at pixel `x`.
fn bilinear_weights(samples: usize) -> Vec<Vec<f32>> {
    let width = SIDE as f32 / samples as f32;
    (0..SIDE)
        .map(|x| {
            let mut row = vec![0f32; samples];
            // Position in sample units, clamped to the outermost centres.
            let at = ((x as f32 + 0.5) / width - 0.5).clamp(0.0, (samples - 1) as f32);
            let i = (at as usize).min(samples.saturating_sub(2));
            let f = at - i as f32;
            row[i] += 1.0 - f;
            if i + 1 < samples {
                row[i + 1] += f;
            }
            row
        })
        .collect()
}

/// `weights` (`to` rows over `from` columns) applied to a `from`×`from` image's rows and then
/// its columns: a `to`×`to` image, row-major.
fn separable<W: AsRef<[f32]>>(weights: &[W], image: &[f32], to: usize, from: usize) -> Vec<f32> {
    // Along x: each row of the image to `to` values.
    let mut across = vec![0f32; from * to];
    for y in 0..from {
        let row = &image[y * from..(y + 1) * from];
        for (i, w) in weights.iter().enumerate() {
            across[y * to + i] = w.as_ref().iter().zip(row).map(|(a, b)| a * b).sum();
        }
    }
    // Along y.
    let mut out = vec![0f32; to * to];
    for (j, w) in weights.iter().enumerate() {
        for (y, &weight) in w.as_ref().iter().enumerate() {
            if weight != 0.0 {
                for i in 0..to {
                    out[j * to + i] += weight * across[y * to + i];
                }
            }
        }
    }
    out
}

/// The side of [`padded`]: the image with a blank frame, one pixel before and three after, so
/// that every sample's four neighbours are inside it.
const PAD: usize = 32;

/// The image in the middle of a blank `PAD`×`PAD` frame, offset by one pixel.
fn padded(image: &[u8; PIXELS]) -> [f32; PAD * PAD] {
    let mut padded = [0f32; PAD * PAD];
    for (row, pixels) in image.chunks_exact(SIDE).enumerate() {
        let start = (row + 1) * PAD + 1;
        for (out, &p) in padded[start..start + SIDE].iter_mut().zip(pixels) {
            *out = f32::from(p);
        }
    }
    padded
}

/// The box `[x, y]` low and high corners of the pixels with any ink; `None` for a blank image.
fn ink_box(image: &[u8; PIXELS]) -> Option<([f32; 2], [f32; 2])> {
    let mut low = [usize::MAX; 2];
    let mut high = [0usize; 2];
    for (y, row) in image.chunks_exact(SIDE).enumerate() {
        let Some(first) = row.iter().position(|&p| p > 0) else {
            continue;
        };
        let last = row.iter().rposition(|&p| p > 0).unwrap_or(first);
        low = [low[0].min(first), low[1].min(y)];
        high = [high[0].max(last), high[1].max(y)];
    }
    (low[0] != usize::MAX).then(|| {
        (
            [low[0] as f32, low[1] as f32],
            [high[0] as f32, high[1] as f32],
        )
    })
}

/// The image at `(x, y)`, bilinear between the four nearest pixels; outside it is blank.
/// Positions are clamped into the blank frame, so every read is in bounds (the mask only
/// tells the compiler so).
fn bilinear(padded: &[f32; PAD * PAD], x: f32, y: f32) -> f32 {
    // Both at least 0 here, so truncation is floor (`floor` itself is a libm call on a
    // baseline x86-64 build, and this runs 47 million times an epoch).
    let (px, py) = (
        x.clamp(-1.0, SIDE as f32) + 1.0,
        y.clamp(-1.0, SIDE as f32) + 1.0,
    );
    let (x0, y0) = (px as usize, py as usize);
    let (fx, fy) = (px - x0 as f32, py - y0 as f32);
    let i = (y0 * PAD + x0) & (PAD * PAD - 1);
    let at = |j: usize| padded[j & (PAD * PAD - 1)];
    let top = at(i) * (1.0 - fx) + at(i + 1) * fx;
    let bottom = at(i + PAD) * (1.0 - fx) + at(i + PAD + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The mean width of the strokes of a white-on-black digit, in pixels: twice the ink (in
/// pixels of full ink) over the length of its outline (edges between pixels on either side of
/// half ink). A stroke of width w and length L has ink w·L and an outline of about 2·L.
pub fn stroke_width(image: &[u8; PIXELS]) -> f32 {
    let ink: f32 = image.iter().map(|&p| f32::from(p) / 255.0).sum();
    let on = |i: usize| image[i] >= 128;
    let mut outline = 0usize;
    for y in 0..SIDE {
        for x in 0..SIDE {
            let i = y * SIDE + x;
            if x + 1 < SIDE && on(i) != on(i + 1) {
                outline += 1;
            }
            if y + 1 < SIDE && on(i) != on(i + SIDE) {
                outline += 1;
            }
        }
    }
    if outline == 0 {
        0.0
    } else {
        2.0 * ink / outline as f32
    }
}

/// `image`'s strokes `amount` of a one-pixel dilation thicker (above 0) or of an erosion
/// thinner (below 0), each side; whole steps first, then the fraction.
pub fn thicken(image: &[u8; PIXELS], amount: f32) -> [u8; PIXELS] {
    let mut out: [f32; PIXELS] = std::array::from_fn(|i| f32::from(image[i]));
    let mut left = amount;
    while left.abs() > 0.0 {
        let step = left.clamp(-1.0, 1.0);
        out = stroke(&out, step);
        left -= step;
    }
    std::array::from_fn(|i| (out[i].clamp(0.0, 255.0) + 0.5) as u8)
}

/// The stroke `amount` of a one-pixel dilation thicker (above 0) or erosion thinner (below 0),
/// over the 4-neighbourhood. The border ring is left as it is, so a stroke never grows onto it.
fn stroke(image: &[f32; PIXELS], amount: f32) -> [f32; PIXELS] {
    if amount == 0.0 {
        return *image;
    }
    if amount > 0.0 {
        morph(image, amount, f32::max)
    } else {
        morph(image, -amount, f32::min)
    }
}

/// Each inner pixel moved `amount` of the way to `pick` of itself and its 4 neighbours.
fn morph(image: &[f32; PIXELS], amount: f32, pick: impl Fn(f32, f32) -> f32) -> [f32; PIXELS] {
    let mut out = *image;
    for y in 1..SIDE - 1 {
        for x in 1..SIDE - 1 {
            let i = y * SIDE + x;
            let morphed = pick(
                pick(image[i], image[i - 1]),
                pick(image[i + 1], pick(image[i - SIDE], image[i + SIDE])),
            );
            out[i] = image[i] + amount * (morphed - image[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_epoch_and_index() {
        let base = sample_stream(1, 2, 3);
        assert_ne!(base, sample_stream(2, 2, 3));
        assert_ne!(base, sample_stream(1, 3, 3));
        assert_ne!(base, sample_stream(1, 2, 4));
        assert_ne!(sample_stream(0, 1, 0), sample_stream(0, 0, 1));
        assert_eq!(base, sample_stream(1, 2, 3));
    }

    #[test]
    fn the_identity_changes_nothing() {
        let image: [u8; PIXELS] = std::array::from_fn(|i| (i * 37 % 256) as u8);
        assert_eq!(Transform::identity().apply(&image), image);
    }

    #[test]
    fn a_shift_by_whole_pixels_moves_every_pixel() {
        let mut image = [0u8; PIXELS];
        image[10 * SIDE + 12] = 200;
        let t = Transform {
            shift: [3.0, -2.0],
            ..Transform::identity()
        };
        let out = t.apply(&image);
        assert_eq!(out[8 * SIDE + 15], 200);
        assert_eq!(out.iter().map(|&p| u32::from(p)).sum::<u32>(), 200);
    }

    #[test]
    fn the_elastic_field_interpolates_its_nodes() {
        let cells = 2;
        let nodes: Vec<f32> = (0..9).flat_map(|n| [n as f32, -(n as f32)]).collect();
        let e = Elastic {
            cells,
            nodes,
            reach: 8.0,
        };
        let [fx, fy] = e.field();
        let at = |x: usize, y: usize| (fx[y * SIDE + x], fy[y * SIDE + x]);
        assert_eq!(at(0, 0), (0.0, 0.0));
        assert_eq!(at(27, 0), (2.0, -2.0));
        assert_eq!(at(27, 27), (8.0, -8.0));
        let (x, _) = at(0, 27);
        assert!((x - 6.0).abs() < 1e-5, "{x}");
        // Half way between nodes 0 and 1 of the top row.
        let (x, _) = at(7, 0);
        assert!((x - 7.0 * 2.0 / 27.0).abs() < 1e-5, "{x}");
    }

    #[test]
    fn a_coarse_view_keeps_a_block_and_blurs_a_thin_line_back_to_ink() {
        // An 8×8 block on the 2-pixel grid, seen through 14×14 samples: each sample is whole
        // ink or none, so the block comes back solid with at most a pixel of soft edge.
        let mut block = [0f32; PIXELS];
        for y in 10..18 {
            for x in 10..18 {
                block[y * SIDE + x] = 255.0;
            }
        }
        let out = coarse(&block, 14);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let v = out[y * SIDE + x];
                if (11..17).contains(&x) && (11..17).contains(&y) {
                    assert_eq!(v, 255.0, "inside at ({x}, {y})");
                }
                if !(9..19).contains(&x) || !(9..19).contains(&y) {
                    assert_eq!(v, 0.0, "outside at ({x}, {y})");
                }
            }
        }
        // A one-pixel line seen through 7 samples (a quarter of each sample's width) is faint
        // in every sample, and is sharpened back to full ink, thicker.
        let mut line = [0f32; PIXELS];
        for y in 4..24 {
            line[y * SIDE + 13] = 255.0;
        }
        let out = coarse(&line, 7);
        assert_eq!(out[14 * SIDE + 13], 255.0);
        assert_eq!(out[14 * SIDE + 2], 0.0);
        let width = (0..SIDE).filter(|&x| out[14 * SIDE + x] > 127.0).count();
        assert!((2..=5).contains(&width), "{width}");
        // All samples is no change.
        assert_eq!(coarse(&line, SIDE), line);
    }

    #[test]
    fn validation_names_the_key() {
        let bad = Augment {
            zoom: 0.7,
            ..Augment::preset()
        };
        assert_eq!(bad.validate().unwrap_err().key, "augment.zoom");
        let bad = Augment {
            elastic_scale: f64::NAN,
            ..Augment::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "augment.elastic_scale");
        assert_eq!(Augment::preset().validate(), Ok(()));
    }
}
