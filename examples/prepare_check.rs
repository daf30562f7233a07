//! MNIST's test digits through `predict`'s preparation against raw, for a run's final model:
//!     cargo run --release --example prepare_check RUN_DIR
use mnist_mlp::backend::Backend;
use mnist_mlp::data::Mnist;
use mnist_mlp::data::idx::{PIXELS, SIDE};
use mnist_mlp::data::source::{Sources, default_cache_dir};
use mnist_mlp::inspection::predict::{classify, to_mnist};
use mnist_mlp::run_dir::RunDir;
fn main() -> anyhow::Result<()> {
    let run = RunDir::open(std::path::PathBuf::from(
        std::env::args().nth(1).unwrap_or_default(),
    ));
    let sources = Sources {
        data_dir: None,
        cache_dir: default_cache_dir(),
        mirrors: Vec::new(),
        npm_package: None,
        progress: false,
    };
    let m = Mnist::load(&sources)?;
    let device = Backend::Ndarray.device(0)?;
    let model = mnist_mlp::saved::load(&run, None, &device)?.model;
    let raw: Vec<[u8; PIXELS]> = (0..m.valid.len()).map(|i| *m.valid.image(i)).collect();
    let prepared: Vec<[u8; PIXELS]> = raw
        .iter()
        .map(|im| to_mnist(&image::GrayImage::from_raw(28, 28, im.to_vec()).unwrap()).unwrap())
        .collect();
    let scanned: Vec<[u8; PIXELS]> = raw
        .iter()
        .map(|im| {
            to_mnist(&image::GrayImage::from_fn(168, 168, |x, y| {
                image::Luma([255 - im[(y / 6) as usize * SIDE + (x / 6) as usize]])
            }))
            .unwrap()
        })
        .collect();
    for (name, set) in [
        ("raw", &raw),
        ("prepared", &prepared),
        ("scanned 6x", &scanned),
    ] {
        let p = classify(&model, set, &device)?;
        let right = p
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
                    == usize::from(m.valid.label(*i))
            })
            .count();
        println!("{name}: {:.4}", right as f64 / set.len() as f64);
    }
    Ok(())
}
