//! What augmentation costs per epoch: the preset applied to all 60,000 training images, on one
//! thread and over rayon's threads (as the loader does), best of five. Both the wall-clock time
//! and the CPU time of the process are given: on a shared machine the CPU time is the cost.
//!
//!     cargo run --release --example augment_speed [DATA_DIR]

use mnist_mlp::augment::Augment;
use mnist_mlp::data::Mnist;
use mnist_mlp::data::source::{Sources, default_cache_dir};
use rayon::prelude::*;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let sources = Sources {
        data_dir: std::env::args().nth(1).map(Into::into),
        cache_dir: default_cache_dir(),
        mirrors: Vec::new(),
        npm_package: None,
        progress: false,
    };
    let train = Mnist::load(&sources)?.train;
    let preset = Augment::preset();
    let n = train.len();
    let best = |parallel: bool| {
        (0..5)
            .map(|epoch| {
                let (start, cpu) = (Instant::now(), cpu_seconds());
                let sum: u64 = if parallel {
                    (0..n)
                        .into_par_iter()
                        .map(|i| {
                            u64::from(
                                preset.apply(train.image(i), train.label(i), 42, epoch, i)[400],
                            )
                        })
                        .sum()
                } else {
                    (0..n)
                        .map(|i| {
                            u64::from(
                                preset.apply(train.image(i), train.label(i), 42, epoch, i)[400],
                            )
                        })
                        .sum()
                };
                std::hint::black_box(sum);
                (start.elapsed().as_secs_f64(), cpu_seconds() - cpu)
            })
            .fold((f64::MAX, f64::MAX), |a, b| (a.0.min(b.0), a.1.min(b.1)))
    };
    let one = best(false);
    let all = best(true);
    println!(
        "{n} images on one thread: {:.3} s wall, {:.3} s CPU ({:.1} µs CPU an image)",
        one.0,
        one.1,
        one.1 * 1e6 / n as f64
    );
    println!(
        "{n} images on {} threads: {:.3} s wall, {:.3} s CPU",
        rayon::current_num_threads(),
        all.0,
        all.1
    );
    Ok(())
}

/// CPU seconds this process has used, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(usage.ru_utime) + t(usage.ru_stime)
}
