//! The data stage: the four IDX files ([`idx`]), where they come from ([`source`]), and the
//! in-memory set with its Burn `Dataset` ([`dataset`]).

pub mod dataset;
pub mod idx;
pub mod source;

pub use dataset::{Mnist, MnistDataset, MnistItem, MnistSplit};

/// The `data` subcommand's report: where the set came from, its shapes as the tutorial prints
/// them, value range, label counts and checksums.
pub fn describe(mnist: &Mnist) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "MNIST from {}", mnist.origin);
    for (x, y, split) in [
        ("x_train", "y_train", &mnist.train),
        ("x_valid", "y_valid", &mnist.valid),
    ] {
        let (min, max) = split.pixel_range().unwrap_or((0, 0));
        let _ = writeln!(
            out,
            "  {x}: ({}, 28, 28) uint8, min {min}, max {max}",
            split.len()
        );
        let counts = split.label_counts().map(|c| c.to_string()).join(" ");
        let _ = writeln!(
            out,
            "  {y}: ({},) uint8, counts per digit 0-9: {counts}",
            split.len()
        );
    }
    for checksum in &mnist.checksums {
        let verdict = if checksum.matches_published {
            "matches the published MNIST"
        } else {
            "differs from the published MNIST"
        };
        let _ = writeln!(
            out,
            "  {} sha256 {} ({verdict})",
            checksum.name, checksum.sha256
        );
    }
    out
}
