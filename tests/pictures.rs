//! The pictures a real `train` run leaves in its run directory, and the digit pictures drawn from
//! real MNIST images.

mod common;

use common::{mnist_dir, mnist_mlp, real_mnist, run_ok};
use mnist_mlp::plots::{self, DigitCell};
use mnist_mlp::run_dir::RunDir;
use std::collections::HashSet;

#[test]
fn train_draws_the_curves_into_the_run_directory() {
    let home = tempfile::tempdir().unwrap();
    run_ok(
        mnist_mlp(home.path())
            .arg("train")
            .arg("--data-dir")
            .arg(mnist_dir())
            .args(["--artifact-dir", "artifacts", "--run-name", "drawn"])
            .args([
                "--dashboard",
                "none",
                "--epochs",
                "2",
                "--backend",
                "ndarray",
            ])
            .args(["--limit-train", "1000", "--limit-valid", "500"]),
    );
    let run = RunDir::open(home.path().join("artifacts/runs/drawn"));
    let history = run.read_history().unwrap();
    assert_eq!(history.epochs(), 2);

    let image = image::open(run.curves_png_path()).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), plots::CURVES_SIZE);
    let colours: HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "only {} colours", colours.len());
    // The training series in blue, validation in orange (matplotlib's first two colours).
    assert!(colours.contains(&[31, 119, 180]) && colours.contains(&[255, 127, 14]));
    // Mostly white background, yet a fair share of the picture is drawn on.
    let white = image.pixels().filter(|p| p.0 == [255; 3]).count();
    let share = white as f64 / (image.width() * image.height()) as f64;
    assert!((0.5..0.98).contains(&share), "white share {share}");

    // The SVG carries the title with the run's name and its final val_accuracy.
    let svg = std::fs::read_to_string(run.curves_svg_path()).unwrap();
    let last = history.last().unwrap();
    let title = format!("drawn — final val_accuracy {:.4}", last.val_accuracy);
    assert!(svg.contains(&title), "{title} not in the SVG");
}

#[test]
fn real_digits_draw_as_a_captioned_grid_and_as_one_image() {
    let mnist = real_mnist();
    let dir = tempfile::tempdir().unwrap();
    let train = &mnist.train;

    // The tutorial's plt.imshow(x_train[0]): the first training image, a 5.
    let one = dir.path().join("digit.png");
    plots::write_digit_png(train.image(0), 1, &one).unwrap();
    let image = image::open(&one).unwrap().to_luma8();
    assert_eq!(image.dimensions(), (28, 28));
    assert_eq!(image.as_raw().as_slice(), train.image(0).as_slice());
    assert_eq!(train.label(0), 5);

    let labels: Vec<String> = (0..16).map(|i| train.label(i).to_string()).collect();
    let cells: Vec<DigitCell> = (0..16)
        .map(|i| DigitCell {
            image: train.image(i),
            caption: &labels[i],
        })
        .collect();
    let grid = dir.path().join("grid.png");
    plots::write_digit_grid_png(&cells, "x_train[:16]", &grid).unwrap();
    let image = image::open(&grid).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), plots::digit_grid_size(16));
    // Each MNIST pixel is a 3×3 block of its grey, on black: the black pixels are the digits'
    // zero pixels, nine each, plus the cores of the caption and title glyphs.
    let black = image.pixels().filter(|p| p.0 == [0; 3]).count();
    let zeros: usize = (0..16)
        .map(|i| train.image(i).iter().filter(|&&v| v == 0).count() * 9)
        .sum();
    assert!(
        black >= zeros && black < zeros + 2000,
        "{black} black pixels, the digits alone have {zeros}"
    );
}
