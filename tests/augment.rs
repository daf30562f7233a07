//! Augmentation (`[augment]`, `--augment`): what each transform does to a digit, measured on
//! small synthetic digits and on real MNIST; that an image's augmentation is a function of
//! (seed, epoch, index) alone, so a resumed run equals an uninterrupted one bit for bit; that it
//! is off unless asked for; and that bad settings are one-line errors naming the key.

mod common;

use burn::data::dataloader::DataLoader;
use common::{
    PATIENCE, assert_fails, mnist_dir, mnist_mlp, read_info, real_mnist, run_of, run_ok,
    shared_temp_dir, train_args, wait_exit,
};
use mnist_mlp::augment::{Augment, Elastic, Flag, Transform};
use mnist_mlp::backend::Backend;
use mnist_mlp::data::idx::{PIXELS, SIDE};
use mnist_mlp::data::{MnistDataset, MnistSplit};
use mnist_mlp::run_dir::RunStatus;
use mnist_mlp::saved::{self, Weights};
use mnist_mlp::training::MnistLoader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A ring of radius 6 and width 2 around the centre, anti-aliased: a synthetic 0.
fn ring() -> [u8; PIXELS] {
    std::array::from_fn(|i| {
        let (x, y) = ((i % SIDE) as f32 - 13.5, (i / SIDE) as f32 - 13.5);
        let off = ((x * x + y * y).sqrt() - 6.0).abs();
        (255.0 * (1.5 - off).clamp(0.0, 1.0)).round() as u8
    })
}

/// A vertical bar, 2 wide and 14 tall, at the centre: a synthetic 1.
fn bar() -> [u8; PIXELS] {
    std::array::from_fn(|i| {
        let (x, y) = (i % SIDE, i / SIDE);
        if (13..15).contains(&x) && (7..21).contains(&y) {
            255
        } else {
            0
        }
    })
}

fn mass(image: &[u8; PIXELS]) -> f64 {
    image.iter().map(|&p| f64::from(p)).sum()
}

/// The centre of mass, `(x, y)`.
fn centroid(image: &[u8; PIXELS]) -> (f64, f64) {
    let m = mass(image);
    let (mut x, mut y) = (0.0, 0.0);
    for (i, &p) in image.iter().enumerate() {
        x += f64::from(p) * (i % SIDE) as f64;
        y += f64::from(p) * (i / SIDE) as f64;
    }
    (x / m, y / m)
}

fn border_ink(image: &[u8; PIXELS]) -> u32 {
    (0..PIXELS)
        .filter(|i| {
            let (x, y) = (i % SIDE, i / SIDE);
            x == 0 || y == 0 || x == SIDE - 1 || y == SIDE - 1
        })
        .map(|i| u32::from(image[i]))
        .sum()
}

/// Cosine similarity of two images, each blurred by a 5×5 box first: shapes that match, give
/// or take a pixel or two, score high; thin strokes that miss each other by a pixel do too.
fn similarity(a: &[u8; PIXELS], b: &[u8; PIXELS]) -> f64 {
    let blur = |image: &[u8; PIXELS]| -> Vec<f64> {
        (0..PIXELS)
            .map(|i| {
                let (x, y) = ((i % SIDE) as isize, (i / SIDE) as isize);
                let mut sum = 0.0;
                for dy in -2..=2 {
                    for dx in -2..=2 {
                        let (u, v) = (x + dx, y + dy);
                        if (0..SIDE as isize).contains(&u) && (0..SIDE as isize).contains(&v) {
                            sum += f64::from(image[v as usize * SIDE + u as usize]);
                        }
                    }
                }
                sum
            })
            .collect()
    };
    let (a, b) = (blur(a), blur(b));
    let dot: f64 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
    let norm = |v: &[f64]| v.iter().map(|p| p * p).sum::<f64>().sqrt();
    dot / (norm(&a) * norm(&b))
}

#[test]
fn a_quarter_turn_moves_a_known_pixel_where_expected() {
    // A 2×2 block right of the centre, centre (20.5, 13.5).
    let mut image = [0u8; PIXELS];
    for (x, y) in [(20, 13), (21, 13), (20, 14), (21, 14)] {
        image[y * SIDE + x] = 200;
    }
    let turn = |angle: f32| {
        Transform {
            angle,
            ..Transform::identity()
        }
        .apply(&image)
    };
    // Counter-clockwise as seen: right of the centre goes above it, to (13.5, 6.5).
    let quarter = turn(std::f32::consts::FRAC_PI_2);
    for (x, y) in [(13, 6), (14, 6), (13, 7), (14, 7)] {
        assert_eq!(quarter[y * SIDE + x], 200, "({x}, {y})");
    }
    assert_eq!(mass(&quarter), 800.0);
    // Clockwise, below it; half a turn, left of it.
    let back = turn(-std::f32::consts::FRAC_PI_2);
    assert_eq!(back[20 * SIDE + 13], 200);
    let half = turn(std::f32::consts::PI);
    assert_eq!(half[13 * SIDE + 6], 200);
    // 30°: the block's centre of mass moves on the circle of radius 7.
    let (x, y) = centroid(&turn(std::f32::consts::FRAC_PI_6));
    let (ex, ey) = (13.5 + 7.0 * 30f64.to_radians().cos(), 13.5 - 7.0 * 0.5);
    assert!((x - ex).abs() < 0.1 && (y - ey).abs() < 0.1, "({x}, {y})");
}

#[test]
fn zoom_shear_and_thickness_do_what_they_say() {
    let ring = ring();
    let ring_mass = mass(&ring);
    // Keras's zoom 1: the digit at half size, a quarter of the ink, still centred.
    let half = Transform {
        zoom: 1.0,
        ..Transform::identity()
    }
    .apply(&ring);
    let ratio = mass(&half) / ring_mass;
    assert!((0.22..0.28).contains(&ratio), "{ratio}");
    let (x, y) = centroid(&half);
    assert!((x - 13.5).abs() < 0.05 && (y - 13.5).abs() < 0.05);
    // Zoomed in (-0.25): 1/(1-0.25)² = 1.78 times the ink.
    let big = Transform {
        zoom: -0.25,
        ..Transform::identity()
    }
    .apply(&ring);
    let ratio = mass(&big) / ring_mass;
    assert!((1.68..1.88).contains(&ratio), "{ratio}");

    // A shear of 0.5 slants the bar: its bottom half moves right of its top half by half its
    // height (7 rows apart → 3.5 pixels).
    let bar = bar();
    let slanted = Transform {
        shear: 0.5,
        ..Transform::identity()
    }
    .apply(&bar);
    let half_of = |image: &[u8; PIXELS], rows: std::ops::Range<usize>| {
        let mut part = [0u8; PIXELS];
        for y in rows {
            part[y * SIDE..(y + 1) * SIDE].copy_from_slice(&image[y * SIDE..(y + 1) * SIDE]);
        }
        centroid(&part).0
    };
    let lean = half_of(&slanted, 14..28) - half_of(&slanted, 0..14);
    assert!((lean - 3.5).abs() < 0.3, "{lean}");
    assert!((mass(&slanted) / mass(&bar) - 1.0).abs() < 0.02);

    // Thickness: a full dilation adds a pixel each side of the 2-wide bar (and one at each
    // end): 2 × 14 + 2 × 2 more pixels of ink; a full erosion of a 2-wide bar leaves nothing.
    let thick = Transform {
        thickness: 1.0,
        ..Transform::identity()
    }
    .apply(&bar);
    assert_eq!(mass(&thick), mass(&bar) + 255.0 * (2.0 * 14.0 + 2.0 * 2.0));
    let thin = |amount| {
        Transform {
            thickness: amount,
            ..Transform::identity()
        }
        .apply(&bar)
    };
    assert_eq!(mass(&thin(-1.0)), 0.0);
    let ratio = mass(&thin(-0.5)) / mass(&bar);
    assert!((ratio - 0.5).abs() < 0.01, "{ratio}");
}

#[test]
fn every_transform_keeps_a_digit_inside_and_recognisable() {
    // Each transform alone at the top of its range, then all of them as drawn, on both
    // synthetic digits and real MNIST digits (centred in 20×20, as every MNIST digit is).
    let mnist = real_mnist();
    let mut digits = vec![ring(), bar()];
    digits.extend((0..40).map(|i| *mnist.train.image(i)));
    let mut labels = vec![0, 1];
    labels.extend((0..40).map(|i| mnist.train.label(i)));
    let top = Augment {
        enabled: true,
        rotation: 0.25,
        translation: 0.3,
        zoom: 0.5,
        shear: 1.0,
        thickness: 1.0,
        elastic: 4.0,
        elastic_scale: 4.0,
        coarse: 0.8,
        flag: 1.0,
    };
    let alone = |key: &str| {
        let mut one = Augment {
            enabled: true,
            rotation: 0.0,
            translation: 0.0,
            zoom: 0.0,
            shear: 0.0,
            thickness: 0.0,
            elastic: 0.0,
            elastic_scale: 7.0,
            coarse: 0.0,
            flag: 0.0,
        };
        match key {
            "rotation" => one.rotation = top.rotation,
            "translation" => one.translation = top.translation,
            "zoom" => one.zoom = top.zoom,
            "shear" => one.shear = top.shear,
            "thickness" => one.thickness = top.thickness,
            "coarse" => one.coarse = top.coarse,
            "flag" => one.flag = top.flag,
            _ => one.elastic = top.elastic,
        }
        one
    };
    let settings = [
        "rotation",
        "translation",
        "zoom",
        "shear",
        "thickness",
        "elastic",
        "coarse",
        "flag",
    ]
    .map(alone);
    for (which, augment) in settings
        .iter()
        .chain([&Augment::preset(), &top])
        .enumerate()
    {
        for (index, digit) in digits.iter().enumerate() {
            for epoch in 0..5 {
                let out = augment.apply(digit, labels[index], 7, epoch, index);
                assert_eq!(border_ink(&out), 0, "setting {which}, digit {index}");
                // Mass changes only as the zoom and the stroke make it (everything at the top
                // of its range together, a full erosion of a zoomed-out digit, leaves little).
                let ratio = mass(&out) / mass(digit);
                let least = if which == 9 { 0.02 } else { 0.15 };
                assert!((least..4.0).contains(&ratio), "setting {which}: {ratio}");
                if which == 1 || (which == 0 && index == 0) {
                    // A shift, and a turn of the ring (which needs no zooming out to fit),
                    // move ink; they do not make or lose it.
                    assert!((ratio - 1.0).abs() < 0.08, "setting {which}: {ratio}");
                }
            }
        }
    }
    // The preset keeps what a real digit shows: among the 40 originals, the one an augmented
    // digit looks most like (blurred) mostly has its label.
    let mut same_label = 0;
    for (index, digit) in digits.iter().enumerate().skip(2) {
        let out = Augment::preset().apply(digit, labels[index], 7, 0, index);
        let nearest = (2..digits.len())
            .max_by(|&a, &b| similarity(&out, &digits[a]).total_cmp(&similarity(&out, &digits[b])))
            .unwrap();
        if labels[nearest] == labels[index] {
            same_label += 1;
        }
        let (x, y) = centroid(&out);
        let (x0, y0) = centroid(digit);
        // At most the shift (0.08 × 28 = 2.24 px), the elastic reach (1.2 px) and a pixel for
        // what zoom and shear do to a digit not quite at the centre.
        let most = 2.24 + 1.2 + 1.0;
        assert!(
            (x - x0).abs() < most && (y - y0).abs() < most,
            "digit {index}: ({x0}, {y0}) → ({x}, {y})"
        );
    }
    // (A nearest neighbour among 40 is a weak reader: 32 here; a digit redrawn beyond
    // recognition would be near a random one, 4 in 40.)
    assert!(
        same_label >= 28,
        "{same_label} of 40 nearest to their own label"
    );
}

#[test]
fn an_elastic_field_of_zero_changes_nothing_and_a_uniform_one_shifts() {
    let ring = ring();
    let field = |dx: f32, dy: f32| Elastic {
        cells: 4,
        nodes: (0..25).flat_map(|_| [dx, dy]).collect(),
        reach: dx.abs().max(dy.abs()),
    };
    let still = Transform {
        elastic: Some(field(0.0, 0.0)),
        ..Transform::identity()
    };
    assert_eq!(still.apply(&ring), ring);
    // The field says where each output pixel samples: sampling 2 to the right moves ink left.
    let moved = Transform {
        elastic: Some(field(2.0, 0.0)),
        ..Transform::identity()
    }
    .apply(&ring);
    let (x, y) = centroid(&moved);
    assert!(
        (x - 11.5).abs() < 0.05 && (y - 13.5).abs() < 0.05,
        "({x}, {y})"
    );
}

#[test]
fn a_flag_goes_down_to_the_left_of_a_ones_top_and_leaves_the_stem_as_it_was() {
    let bar = bar();
    // The bar: columns 13-14, rows 7-20, strokes 1.75 px wide (ink 28 px, outline 32 edges).
    // 45 degrees from the vertical, 0.3 of 14 px long: from (13.5, 7.9) to about (10.5, 10.8).
    let flagged = Flag {
        angle: std::f32::consts::FRAC_PI_4,
        length: 0.3,
    }
    .drawn_on(&bar);
    for (i, (&before, &after)) in bar.iter().zip(&flagged).enumerate() {
        let (x, y) = (i % SIDE, i / SIDE);
        assert!(after >= before, "pixel ({x}, {y}) lost ink");
        if after > before {
            assert!(x < 13 && (7..13).contains(&y), "new ink at ({x}, {y})");
        }
    }
    // About the segment's length (4.2 px) times the stroke's width in new ink, of which some
    // falls on the stem.
    let added = (mass(&flagged) - mass(&bar)) / 255.0;
    assert!((3.0..9.0).contains(&added), "{added} px of ink added");
    let left = (0..PIXELS)
        .filter(|&i| flagged[i] >= 128)
        .map(|i| i % SIDE)
        .min()
        .unwrap();
    assert!((9..=11).contains(&left), "flag reaches column {left}");
    // Steeper and longer (30 degrees, 5.6 px): it ends lower, near (10.7, 12.7); the lowest
    // pixel of its stroke at half ink or more is in row 13.
    let steep = Flag {
        angle: std::f32::consts::FRAC_PI_6,
        length: 0.4,
    }
    .drawn_on(&bar);
    let lowest_new = (0..PIXELS)
        .filter(|&i| steep[i] >= 128 && bar[i] == 0)
        .map(|i| i / SIDE)
        .max()
        .unwrap();
    assert_eq!(lowest_new, 13, "steep flag ends in row {lowest_new}");
    // A blank picture has no stem to flag.
    assert_eq!(
        Flag {
            angle: 0.8,
            length: 0.3,
        }
        .drawn_on(&[0; PIXELS]),
        [0; PIXELS]
    );
}

#[test]
fn only_ones_get_a_flag_and_the_rest_of_their_draw_is_as_without_it() {
    let mnist = real_mnist();
    let always = Augment {
        flag: 1.0,
        ..Augment::preset()
    };
    let never = Augment::preset();
    let mut ones = 0;
    for index in 0..200 {
        let (image, label) = (mnist.train.image(index), mnist.train.label(index));
        let with = always.draw(5, 2, index, label);
        let without = never.draw(5, 2, index, label);
        // Drawn last: every other parameter is the one the preset draws.
        assert_eq!(
            Transform {
                flag: None,
                ..with.clone()
            },
            without
        );
        if label == 1 {
            ones += 1;
            let flag = with.flag.expect("a 1 always gets a flag at flag = 1");
            assert!((0.44..=0.96).contains(&flag.angle) && (0.25..=0.5).contains(&flag.length));
            assert_ne!(
                always.apply(image, 1, 5, 2, index),
                never.apply(image, 1, 5, 2, index)
            );
        } else {
            assert_eq!(with.flag, None, "a {label} got a flag");
            assert_eq!(
                always.apply(image, label, 5, 2, index),
                never.apply(image, label, 5, 2, index)
            );
        }
    }
    assert!(ones >= 10, "{ones} ones among the first 200");
    // At flag = 0.5, about half of the 1s in an epoch get one.
    let half = Augment {
        flag: 0.5,
        ..Augment::preset()
    };
    let flagged = (0..2000)
        .filter(|&index| half.draw(5, 0, index, 1).flag.is_some())
        .count();
    assert!((900..1100).contains(&flagged), "{flagged} of 2000");
}

#[test]
fn an_images_augmentation_depends_on_seed_epoch_and_index_only() {
    let mnist = real_mnist();
    let image = mnist.train.image(0);
    let preset = Augment::preset();
    let label = mnist.train.label(0);
    let a = preset.apply(image, label, 3, 1, 0);
    assert_eq!(a, preset.apply(image, label, 3, 1, 0));
    assert_eq!(preset.draw(3, 1, 0, label), preset.draw(3, 1, 0, label));
    assert_ne!(a, *image);
    assert_ne!(a, preset.apply(image, label, 4, 1, 0));
    assert_ne!(a, preset.apply(image, label, 3, 2, 0));
    assert_ne!(a, preset.apply(image, label, 3, 1, 1));
    assert_ne!(preset.draw(3, 1, 0, label), preset.draw(3, 1, 1, label));
}

fn loader(split: &Arc<MnistSplit>) -> MnistLoader {
    let device = Backend::Ndarray.device(0).unwrap();
    MnistLoader::new(MnistDataset::new(split.clone()), 32, device).shuffled(9)
}

fn epoch_pixels(loader: &MnistLoader) -> (Vec<f32>, Vec<i64>) {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for batch in loader.iter() {
        let batch = batch.unwrap();
        pixels.extend(batch.images.into_data().try_to_vec::<f32>().unwrap());
        labels.extend(
            batch
                .targets
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
        );
    }
    (pixels, labels)
}

#[test]
fn the_loader_augments_each_epoch_afresh_and_a_resumed_loader_repeats_it() {
    let split = Arc::new(real_mnist().train.first(200));
    let plain = loader(&split);
    let augmented = loader(&split).augmented(&Augment::preset(), 9);
    let (plain_0, labels_0) = epoch_pixels(&plain);
    let (aug_0, aug_labels_0) = epoch_pixels(&augmented);
    let (aug_1, aug_labels_1) = epoch_pixels(&augmented);
    // The same images in the same order, each with its own label, the pixels redrawn.
    assert_eq!(aug_labels_0, labels_0);
    assert_ne!(aug_0, plain_0);
    assert_ne!(aug_1, aug_0);
    let order: Vec<i64> = plain
        .order(1)
        .iter()
        .map(|&i| i64::from(split.label(i)))
        .collect();
    assert_eq!(aug_labels_1, order);
    // Image by image: the loader's is `apply(seed, epoch, index)`.
    let first = plain.order(1)[0];
    let expected = Augment::preset().apply(split.image(first), split.label(first), 9, 1, first);
    let got: Vec<f32> = expected.iter().map(|&p| f32::from(p) / 255.0).collect();
    assert_eq!(aug_1[..PIXELS], got[..]);
    // Resumed after one epoch: the second epoch again, bit for bit.
    let resumed = loader(&split)
        .augmented(&Augment::preset(), 9)
        .starting_after(1);
    assert_eq!(epoch_pixels(&resumed), (aug_1, aug_labels_1));
    // Off is off: an augmentation that is not enabled leaves the loader as it was.
    let off = loader(&split).augmented(&Augment::default(), 9);
    assert_eq!(epoch_pixels(&off), (plain_0, labels_0));
}

const EPOCHS: usize = 3;

fn train(home: &Path, name: &str, extra: &[&str]) -> Command {
    let mut command = mnist_mlp(home);
    train_args(&mut command, name)
        .args(["--limit-train", "1500", "--limit-valid", "300"])
        .args(["--epochs", "3", "--seed", "11", "--dashboard", "none"])
        .args(extra);
    command
}

/// The home holding the uninterrupted augmented run `whole`, trained once for the tests here.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        run_ok(&mut train(&home, "whole", &["--augment"]));
        home
    })
}

fn file(home: &Path, name: &str, file: &str) -> String {
    std::fs::read_to_string(run_of(home, name).path().join(file)).unwrap()
}

#[test]
fn an_augmented_run_killed_and_resumed_equals_the_uninterrupted_one() {
    let mut child = train(home(), "killed", &["--augment"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = run_of(home(), "killed");
    let start = Instant::now();
    while read_info(&run).is_none_or(|i| i.epochs_done < 1) {
        assert!(start.elapsed() < PATIENCE, "no epoch done");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: signals our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    wait_exit(&mut child);
    let done = read_info(&run).unwrap().epochs_done;
    assert!((1..EPOCHS).contains(&done), "stopped after {done} epochs");

    let mut resume = mnist_mlp(home());
    resume
        .args(["train", "--resume", "killed", "--artifact-dir", "artifacts"])
        .arg("--data-dir")
        .arg(mnist_dir())
        .args(["--dashboard", "none"]);
    run_ok(&mut resume);
    let info = read_info(&run).unwrap();
    assert_eq!(
        (info.status, info.epochs_done),
        (RunStatus::Finished, EPOCHS)
    );
    for name in ["history.json", "history.csv"] {
        assert_eq!(
            file(home(), "whole", name),
            file(home(), "killed", name),
            "{name}"
        );
    }
    let config = file(home(), "killed", "config.toml").replace("\"killed\"", "\"whole\"");
    assert_eq!(file(home(), "whole", "config.toml"), config);
    let device = Backend::Ndarray.device(0).unwrap();
    for which in [Weights::Final, Weights::Epoch(EPOCHS)] {
        let a = saved::load(&run_of(home(), "whole"), Some(which), &device).unwrap();
        let b = saved::load(&run, Some(which), &device).unwrap();
        for (la, lb) in a.model.layers.iter().zip(&b.model.layers) {
            let wa: Vec<f32> = la.weight.val().into_data().try_to_vec().unwrap();
            let wb: Vec<f32> = lb.weight.val().into_data().try_to_vec().unwrap();
            assert!(wa == wb, "{which:?}: weights differ");
        }
    }
}

#[test]
fn augmentation_is_off_unless_asked_for() {
    let home = home();
    // The keys absent, and present with enabled = false: the same run, the same saved config.
    run_ok(&mut train(home, "absent", &[]));
    let config = home.join("off.toml");
    std::fs::write(
        &config,
        "[augment]\nenabled = false\nrotation = 0.2\nelastic = 3.0\n",
    )
    .unwrap();
    run_ok(&mut train(
        home,
        "off",
        &["--config", config.to_str().unwrap()],
    ));
    for name in ["history.json", "history.csv"] {
        assert_eq!(
            file(home, "absent", name),
            file(home, "off", name),
            "{name}"
        );
    }
    let config = file(home, "off", "config.toml").replace("\"off\"", "\"absent\"");
    assert_eq!(file(home, "absent", "config.toml"), config);
    assert!(!file(home, "absent", "config.toml").contains("augment"));
    // --augment does change the training, and its run says how it was augmented.
    assert_ne!(
        file(home, "absent", "history.json"),
        file(home, "whole", "history.json")
    );
    let saved = file(home, "whole", "config.toml");
    assert!(
        saved.contains("[augment]\nenabled = true\nrotation = 0.04\n"),
        "{saved}"
    );
}

#[test]
fn bad_augment_settings_are_one_line_errors_naming_the_key() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            "rotation = 0.5",
            "error: augment.rotation: must be in [0, 0.25] (a fraction of a full turn) (got 0.5)\n",
        ),
        (
            "zoom = -0.1",
            "error: augment.zoom: must be in [0, 0.5] (got -0.1)\n",
        ),
        (
            "elastic = nan",
            "error: augment.elastic: must be in [0, 4] (pixels) (got NaN)\n",
        ),
        (
            "elastic_scale = 1.0",
            "error: augment.elastic_scale: must be in [2, 28] (pixels) (got 1.0)\n",
        ),
        (
            "shear = inf",
            "error: augment.shear: must be in [0, 1] (got inf)\n",
        ),
        (
            "coarse = 0.9",
            "error: augment.coarse: must be in [0, 0.8] (a fraction of the resolution) (got 0.9)\n",
        ),
        (
            "flag = 1.5",
            "error: augment.flag: must be in [0, 1] (a chance) (got 1.5)\n",
        ),
    ];
    for (line, expected) in cases {
        let config = home.path().join("bad.toml");
        std::fs::write(&config, format!("[augment]\nenabled = true\n{line}\n")).unwrap();
        let output = train(
            home.path(),
            "never",
            &["--config", config.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert_fails(&output, 2, expected);
    }
    // Wrong types and unknown keys name the file, the key and the line.
    for (text, key) in [
        (
            "[augment]\nenabled = \"yes\"\n",
            "augment.enabled: invalid type",
        ),
        (
            "[augment]\nrotate = 0.1\n",
            "augment.rotate: unknown key `rotate`",
        ),
    ] {
        let config = home.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let output = train(
            home.path(),
            "never",
            &["--config", config.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let err = common::stderr(&output);
        assert!(
            err.starts_with(&format!("error: {}: {key}", config.display())),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // --augment is a setting of a new run: a resumed run keeps its own.
    let output = mnist_mlp(home.path())
        .args(["train", "--resume", "x", "--augment"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!home.path().join("artifacts").exists());
}
