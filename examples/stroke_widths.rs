use mnist_mlp::augment::stroke_width;
use mnist_mlp::data::Mnist;
use mnist_mlp::data::source::{Sources, default_cache_dir};
fn main() -> anyhow::Result<()> {
    let sources = Sources {
        data_dir: None,
        cache_dir: default_cache_dir(),
        mirrors: Vec::new(),
        npm_package: None,
        progress: false,
    };
    let m = Mnist::load(&sources)?;
    let mut w: Vec<f32> = (0..m.valid.len())
        .map(|i| stroke_width(m.valid.image(i)))
        .collect();
    w.sort_by(f32::total_cmp);
    let q = |f: f64| w[((w.len() - 1) as f64 * f) as usize];
    println!(
        "mnist test: p5 {:.2} p25 {:.2} p50 {:.2} p75 {:.2} p95 {:.2}",
        q(0.05),
        q(0.25),
        q(0.5),
        q(0.75),
        q(0.95)
    );
    let mut v = Vec::new();
    for path in std::env::args().skip(1) {
        let d = mnist_mlp::inspection::predict::prepare(std::path::Path::new(&path))?;
        v.push(stroke_width(&d));
    }
    v.sort_by(f32::total_cmp);
    if !v.is_empty() {
        let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
        println!(
            "pictures: p5 {:.2} p25 {:.2} p50 {:.2} p75 {:.2} p95 {:.2}",
            q(0.05),
            q(0.25),
            q(0.5),
            q(0.75),
            q(0.95)
        );
    }
    Ok(())
}
