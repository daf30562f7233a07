//! A corpus of digits written with a pen on paper and photographed or scanned, made
//! deterministically, for tuning and scoring `predict`'s preparation (issue #37):
//!
//!     cargo run --release --example pen_corpus -- OUT_DIR [PER_CLASS]
//!
//! writes OUT_DIR/dev/<digit>/*.{png,jpg} and OUT_DIR/heldout/<digit>/*, PER_CLASS (default 50)
//! pictures of each digit in each part. The two parts differ only in their seed: tune on `dev`,
//! score `heldout`. Each file's name says how it was made, for scores by condition
//! (scripts/pen_corpus_score.py): `<size>px-<pen>-<paper>-<ink>-<light>-<marks>-<n>`, where
//! pen is hair (0.4–0.8 % of the side), thin (0.8–1.5 %), medium (1.5–3 %) or thick (3–6 %);
//! paper white, grey or tinted; ink black, blue, navy or pencil; light even, gradient or
//! shadow; marks none, specks (dust far from the digit) or ruled (a notebook's lines).
//!
//! Each digit is one of a few stroke templates per class (open or closed 4, flagged or plain
//! 1, crossed or plain 7 …), moved by a smooth random wobble, slanted, rotated, stretched and
//! placed at a random size and position, then drawn with an anti-aliased round pen; the
//! picture is blurred a little, given sensor noise and saved as PNG or JPEG.
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::f32::consts::PI;
use std::path::Path;

type Stroke = Vec<[f32; 2]>;

fn arc(c: [f32; 2], r: [f32; 2], from_deg: f32, to_deg: f32) -> Stroke {
    let n = 48;
    (0..=n)
        .map(|i| {
            let t = (from_deg + (to_deg - from_deg) * i as f32 / n as f32) * PI / 180.0;
            [c[0] + r[0] * t.cos(), c[1] + r[1] * t.sin()]
        })
        .collect()
}

fn line(points: &[[f32; 2]]) -> Stroke {
    // Segments cut into short pieces, so the wobble bends them.
    let mut out = vec![points[0]];
    for w in points.windows(2) {
        for i in 1..=12 {
            let f = i as f32 / 12.0;
            out.push([
                w[0][0] + (w[1][0] - w[0][0]) * f,
                w[0][1] + (w[1][1] - w[0][1]) * f,
            ]);
        }
    }
    out
}

fn join(mut a: Stroke, b: Stroke) -> Stroke {
    a.extend(b);
    a
}

/// The strokes of `digit` in the unit square (y down), variant `v` of a few.
fn template(digit: u8, v: u32) -> Vec<Stroke> {
    match digit {
        0 => vec![arc([0.5, 0.5], [0.3, 0.48], -90.0, 285.0)],
        1 => match v % 3 {
            0 => vec![line(&[[0.5, 0.0], [0.5, 1.0]])],
            1 => vec![line(&[[0.3, 0.22], [0.52, 0.0], [0.52, 1.0]])],
            _ => vec![
                line(&[[0.32, 0.2], [0.5, 0.0], [0.5, 1.0]]),
                line(&[[0.3, 1.0], [0.7, 1.0]]),
            ],
        },
        2 => vec![join(
            arc([0.5, 0.28], [0.27, 0.26], 200.0, 375.0),
            line(&[[0.76, 0.35], [0.2, 1.0], [0.82, 1.0]]),
        )],
        3 => vec![join(
            arc([0.47, 0.26], [0.26, 0.24], 200.0, 450.0),
            arc([0.47, 0.75], [0.29, 0.25], 270.0, 515.0),
        )],
        4 => match v % 2 {
            0 => vec![line(&[
                [0.66, 1.0],
                [0.66, 0.0],
                [0.14, 0.68],
                [0.86, 0.68],
            ])],
            _ => vec![
                line(&[[0.3, 0.0], [0.2, 0.62], [0.86, 0.62]]),
                line(&[[0.66, 0.18], [0.66, 1.0]]),
            ],
        },
        5 => vec![join(
            line(&[[0.8, 0.02], [0.33, 0.02], [0.3, 0.43]]),
            arc([0.48, 0.69], [0.31, 0.3], 235.0, 515.0),
        )],
        6 => vec![join(
            line(&[[0.72, 0.03], [0.5, 0.13], [0.33, 0.33], [0.25, 0.6]]),
            arc([0.5, 0.73], [0.25, 0.26], 170.0, 540.0),
        )],
        7 => match v % 2 {
            0 => vec![line(&[[0.18, 0.02], [0.82, 0.02], [0.42, 1.0]])],
            _ => vec![
                line(&[[0.18, 0.08], [0.82, 0.02], [0.45, 1.0]]),
                line(&[[0.42, 0.52], [0.78, 0.52]]),
            ],
        },
        8 => vec![
            arc([0.5, 0.24], [0.22, 0.23], 0.0, 360.0),
            arc([0.5, 0.72], [0.27, 0.26], -90.0, 270.0),
        ],
        _ => vec![
            arc([0.5, 0.28], [0.25, 0.27], 0.0, 360.0),
            line(&[[0.75, 0.28], [0.7, 1.0]]),
        ],
    }
}

/// How one picture is made.
struct Look {
    size: u32,
    pen: (&'static str, f32),
    paper: (&'static str, [f32; 3]),
    ink: (&'static str, [f32; 3]),
    light: &'static str,
    marks: &'static str,
    jpeg: Option<u8>,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn look(rng: &mut StdRng) -> Look {
    let size = pick(rng, &[200u32, 200, 400, 600, 600, 900]);
    let (pen, lo, hi) = pick(
        rng,
        &[
            ("hair", 0.004, 0.008),
            ("thin", 0.008, 0.015),
            ("thin", 0.008, 0.015),
            ("medium", 0.015, 0.03),
            ("thick", 0.03, 0.06),
        ],
    );
    // At least a pixel wide: a pen finer than the picture's pixels is not drawn as one.
    let width = (rng.random_range(lo..hi) * size as f32).max(1.0);
    let paper = match rng.random_range(0..3) {
        0 => {
            let v = rng.random_range(225.0..255.0);
            ("white", [v, v, v])
        }
        1 => {
            let v = rng.random_range(140.0..200.0);
            ("grey", [v, v, v])
        }
        _ => {
            let tints = [
                [250.0, 238.0, 190.0],
                [225.0, 238.0, 250.0],
                [248.0, 222.0, 226.0],
            ];
            ("tinted", pick(rng, &tints))
        }
    };
    let ink = pick(
        rng,
        &[
            ("black", [25.0, 25.0, 30.0]),
            ("blue", [30.0, 60.0, 190.0]),
            ("navy", [20.0, 30.0, 90.0]),
            ("pencil", [95.0, 95.0, 100.0]),
        ],
    );
    let light = pick(rng, &["even", "gradient", "gradient", "shadow"]);
    let marks = pick(rng, &["none", "none", "specks", "ruled"]);
    let jpeg = rng.random_bool(0.5).then(|| rng.random_range(55..92) as u8);
    Look {
        size,
        pen: (pen, width),
        paper,
        ink,
        light,
        marks,
        jpeg,
    }
}

/// The digit's strokes in pixels: template, wobble, slant, rotation, stretch, size, place.
fn place(rng: &mut StdRng, digit: u8, size: f32, pen: f32) -> Vec<Stroke> {
    let strokes = template(digit, rng.random_range(0..6));
    let wobble: Vec<[f32; 4]> = (0..4)
        .map(|_| {
            [
                rng.random_range(-0.035..0.035),
                rng.random_range(0.5..2.0),
                rng.random_range(0.0..2.0 * PI),
                rng.random_range(0.0..1.0),
            ]
        })
        .collect();
    let slant = rng.random_range(-0.3..0.3);
    let angle = rng.random_range(-0.15..0.15f32);
    let stretch = rng.random_range(0.7..1.2);
    let height = rng.random_range(0.4..0.82) * size;
    let moved: Vec<Stroke> = strokes
        .iter()
        .map(|s| {
            s.iter()
                .map(|&[x, y]| {
                    let mut dx = 0.0;
                    let mut dy = 0.0;
                    for (i, [amp, freq, phase, mix]) in wobble.iter().enumerate() {
                        let t = freq * (x * mix + y * (1.0 - mix)) * 2.0 * PI + phase;
                        if i % 2 == 0 {
                            dx += amp * t.sin();
                        } else {
                            dy += amp * t.sin();
                        }
                    }
                    let (x, y) = ((x + dx - 0.5) * stretch, y + dy - 0.5);
                    let x = x - slant * y;
                    let (s, c) = angle.sin_cos();
                    [(x * c - y * s) * height, (x * s + y * c) * height]
                })
                .collect()
        })
        .collect();
    // Placed anywhere the digit (and its pen) fits, with a small margin.
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in moved.iter().flatten() {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let margin = pen + 0.03 * size;
    let free_x = (size - 2.0 * margin - (x1 - x0)).max(0.0);
    let free_y = (size - 2.0 * margin - (y1 - y0)).max(0.0);
    let ox = margin - x0 + rng.random_range(0.0..=free_x);
    let oy = margin - y0 + rng.random_range(0.0..=free_y);
    moved
        .into_iter()
        .map(|s| s.into_iter().map(|[x, y]| [x + ox, y + oy]).collect())
        .collect()
}

/// Anti-aliased coverage (0–1) of round-ended strokes `width` wide.
fn draw(strokes: &[Stroke], width: f32, w: u32, h: u32, cover: &mut [f32]) {
    let half = width / 2.0;
    for s in strokes {
        for seg in s.windows(2) {
            let ([ax, ay], [bx, by]) = (seg[0], seg[1]);
            let lo_x = (ax.min(bx) - half - 1.0).floor().max(0.0) as u32;
            let hi_x = ((ax.max(bx) + half + 1.0).ceil() as u32).min(w - 1);
            let lo_y = (ay.min(by) - half - 1.0).floor().max(0.0) as u32;
            let hi_y = ((ay.max(by) + half + 1.0).ceil() as u32).min(h - 1);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = (dx * dx + dy * dy).max(1e-9);
            for y in lo_y..=hi_y {
                for x in lo_x..=hi_x {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let t = (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0);
                    let d = ((px - ax - t * dx).powi(2) + (py - ay - t * dy).powi(2)).sqrt();
                    let c = (half + 0.5 - d).clamp(0.0, 1.0);
                    let i = (y * w + x) as usize;
                    cover[i] = cover[i].max(c);
                }
            }
        }
    }
}

/// The light falling on the paper at (x, y), 1 where it is brightest.
fn lighting(rng: &mut StdRng, kind: &str, size: f32) -> impl Fn(f32, f32) -> f32 + use<> {
    let angle = rng.random_range(0.0..2.0 * PI);
    let (c, s) = (angle.cos(), angle.sin());
    let depth = rng.random_range(0.35..0.6);
    let edge = rng.random_range(-0.3..0.3) * size;
    let soft = rng.random_range(0.02..0.1) * size;
    let kind = kind.to_string();
    move |x: f32, y: f32| {
        let along = (x - size / 2.0) * c + (y - size / 2.0) * s;
        match kind.as_str() {
            "gradient" => 1.0 - depth * (along / size + 0.5).clamp(0.0, 1.0),
            "shadow" => 1.0 - depth * 0.8 / (1.0 + (-(along - edge) / soft).exp()),
            _ => 1.0,
        }
    }
}

fn picture(rng: &mut StdRng, digit: u8) -> (RgbImage, Look) {
    let look = look(rng);
    let size = look.size;
    let n = (size * size) as usize;
    let strokes = place(rng, digit, size as f32, look.pen.1);
    let mut cover = vec![0.0f32; n];
    draw(&strokes, look.pen.1, size, size, &mut cover);
    // Ink a little uneven along the stroke, as a ballpoint's is.
    let ink_strength = rng.random_range(0.8..1.0);
    let mut marks = vec![0.0f32; n];
    let mut ruled_colour = [0.0f32; 3];
    match look.marks {
        "specks" => {
            // Dust and dots well away from the digit, where they would stretch its box.
            let (mut bx0, mut by0, mut bx1, mut by1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
            for p in strokes.iter().flatten() {
                bx0 = bx0.min(p[0]);
                by0 = by0.min(p[1]);
                bx1 = bx1.max(p[0]);
                by1 = by1.max(p[1]);
            }
            let gap = 0.06 * size as f32;
            let (mut placed, wanted) = (0, rng.random_range(1..4));
            for _ in 0..200 {
                if placed == wanted {
                    break;
                }
                let (x, y) = (
                    rng.random_range(0.0..size as f32),
                    rng.random_range(0.0..size as f32),
                );
                if x > bx0 - gap && x < bx1 + gap && y > by0 - gap && y < by1 + gap {
                    continue;
                }
                let r = rng.random_range(0.003..0.012) * size as f32 + 0.5;
                draw(
                    &[vec![[x, y], [x + 0.1, y + 0.1]]],
                    2.0 * r,
                    size,
                    size,
                    &mut marks,
                );
                placed += 1;
            }
        }
        "ruled" => {
            let step = rng.random_range(0.08..0.13) * size as f32;
            let width = (rng.random_range(0.002..0.005) * size as f32).max(1.0);
            let tilt = rng.random_range(-0.01..0.01);
            let mut y = rng.random_range(0.0..step);
            while y < size as f32 {
                let line = vec![[0.0, y], [size as f32, y + tilt * size as f32]];
                draw(&[line], width, size, size, &mut marks);
                y += step;
            }
            ruled_colour = pick(rng, &[[150.0, 180.0, 225.0], [170.0, 170.0, 175.0]]);
        }
        _ => {}
    }
    let light = lighting(rng, look.light, size as f32);
    let noise = rng.random_range(1.0..7.0f32);
    let mut image = RgbImage::new(size, size);
    for (x, y, p) in image.enumerate_pixels_mut() {
        let i = (y * size + x) as usize;
        let l = light(x as f32, y as f32);
        let mut rgb = look.paper.1;
        if look.marks == "ruled" {
            for (c, v) in rgb.iter_mut().enumerate() {
                *v += (ruled_colour[c] - *v) * marks[i];
            }
        } else if look.marks == "specks" {
            for v in rgb.iter_mut() {
                *v += (40.0 - *v) * marks[i];
            }
        }
        let a = cover[i] * ink_strength;
        p.0 = std::array::from_fn(|c| {
            let v = (rgb[c] + (look.ink.1[c] - rgb[c]) * a) * l;
            v.clamp(0.0, 255.0) as u8
        });
    }
    let sigma = rng.random_range(0.0..0.0025) * size as f32;
    let mut image = if sigma > 0.3 {
        image::imageops::blur(&image, sigma)
    } else {
        image
    };
    for p in image.pixels_mut() {
        let z: f32 = (0..4).map(|_| rng.random_range(-1.0..1.0f32)).sum::<f32>() * 0.87;
        p.0 =
            p.0.map(|v| (f32::from(v) + z * noise).clamp(0.0, 255.0) as u8);
    }
    (image, look)
}

fn save(image: &RgbImage, look: &Look, dir: &Path, n: usize) -> anyhow::Result<()> {
    let name = format!(
        "{}px-{}-{}-{}-{}-{}-{n:04}",
        look.size, look.pen.0, look.paper.0, look.ink.0, look.light, look.marks
    );
    match look.jpeg {
        Some(quality) => {
            let file =
                std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.jpg")))?);
            image::codecs::jpeg::JpegEncoder::new_with_quality(file, quality)
                .encode_image(image)?;
        }
        None => image.save(dir.join(format!("{name}.png")))?,
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: pen_corpus OUT_DIR [PER_CLASS]"))?,
    );
    let per_class: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    // The parts' seeds: nothing else tells them apart.
    for (part, seed) in [("dev", 3701u64), ("heldout", 3702)] {
        for digit in 0..10u8 {
            let dir = out.join(part).join(digit.to_string());
            std::fs::create_dir_all(&dir)?;
            for n in 0..per_class {
                let mut rng =
                    StdRng::seed_from_u64(seed * 1_000_003 + u64::from(digit) * 10_007 + n as u64);
                let (image, look) = picture(&mut rng, digit);
                save(&image, &look, &dir, n)?;
            }
        }
    }
    println!(
        "{} pictures in {}: dev and heldout, {per_class} of each digit each",
        20 * per_class,
        out.display()
    );
    Ok(())
}
