//! The fused kernels' SIMD level: chosen once per process, shown and overridable.
//!
//! The best level the CPU has, unless `MNIST_MLP_SIMD` names a lower one (`MNIST_MLP_NO_SIMD=1`
//! is the older spelling of `MNIST_MLP_SIMD=none`). The level holds for everything the kernels
//! run, gemm's matrix products included: at `avx2` no AVX-512 instruction runs anywhere, as on
//! a CPU without it; at `none` the kernels' own loops are plain Rust (what ARM and x86-64 CPUs
//! without AVX2 compile them to), and gemm keeps the kernels it picks for the CPU (NEON on ARM).

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// A SIMD level of the kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Simd {
    /// Plain Rust loops (vectorised as the compiler's target allows: SSE2, NEON).
    None,
    /// AVX2 and FMA (and POPCNT): most x86-64 CPUs since 2013–2015.
    Avx2,
    /// AVX-512F on top: Intel Xeons and some Core CPUs, AMD Zen 4 and 5.
    Avx512,
}

impl Simd {
    pub const ALL: [Simd; 3] = [Simd::None, Simd::Avx2, Simd::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Simd::None => "none",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level.
    pub fn on_this_cpu(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Simd::None => true,
                Simd::Avx2 => has!("avx2") && has!("fma") && has!("popcnt"),
                Simd::Avx512 => Simd::Avx2.on_this_cpu() && has!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Simd::None
        }
    }

    /// The levels this CPU can run, lowest first (`none` always).
    pub fn available() -> Vec<Simd> {
        Simd::ALL.into_iter().filter(|s| s.on_this_cpu()).collect()
    }

    /// The best level this CPU can run.
    pub fn best() -> Simd {
        Simd::available().pop().unwrap_or(Simd::None)
    }
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the level asked for cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdError {
    #[error("MNIST_MLP_SIMD: unknown level `{0}`; expected avx512, avx2 or none")]
    Unknown(String),
    #[error("MNIST_MLP_SIMD: this CPU cannot run {asked}; it runs {}", levels(&Simd::available()))]
    Unsupported { asked: Simd },
}

fn levels(levels: &[Simd]) -> String {
    let names: Vec<&str> = levels.iter().rev().map(|s| s.name()).collect();
    names.join(", ")
}

/// The level `MNIST_MLP_SIMD` (else `MNIST_MLP_NO_SIMD`) asks for, checked against the CPU; the
/// best the CPU has when neither is set.
fn requested(simd: Option<&str>, no_simd: Option<&str>) -> Result<Simd, SimdError> {
    let asked = match (simd.map(str::trim).filter(|s| !s.is_empty()), no_simd) {
        (Some(name), _) => Simd::ALL
            .into_iter()
            .find(|s| s.name() == name.to_ascii_lowercase())
            .ok_or_else(|| SimdError::Unknown(name.to_string()))?,
        (None, Some("1")) => Simd::None,
        (None, _) => return Ok(Simd::best()),
    };
    if asked.on_this_cpu() {
        Ok(asked)
    } else {
        Err(SimdError::Unsupported { asked })
    }
}

/// The process's level, from the environment, read once.
pub fn chosen() -> Result<Simd, SimdError> {
    static CHOSEN: OnceLock<Result<Simd, SimdError>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let var = |name| std::env::var(name).ok();
            requested(
                var("MNIST_MLP_SIMD").as_deref(),
                var("MNIST_MLP_NO_SIMD").as_deref(),
            )
        })
        .clone()
}

/// The level the kernels run at: [`chosen`], or `none` when the environment asks for something
/// unusable (the command line checks [`chosen`] first and stops with its error; this fallback
/// only keeps a library caller that did not from running instructions the CPU lacks).
pub fn level() -> Simd {
    chosen().unwrap_or(Simd::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_picks_the_level() {
        assert_eq!(requested(None, None), Ok(Simd::best()));
        assert_eq!(requested(None, Some("0")), Ok(Simd::best()));
        assert_eq!(requested(None, Some("1")), Ok(Simd::None));
        assert_eq!(requested(Some("none"), None), Ok(Simd::None));
        assert_eq!(requested(Some("NONE"), None), Ok(Simd::None));
        // The new variable wins over the old one.
        assert_eq!(
            requested(Some(Simd::best().name()), Some("1")),
            Ok(Simd::best())
        );
        for level in Simd::ALL {
            let got = requested(Some(level.name()), None);
            if level.on_this_cpu() {
                assert_eq!(got, Ok(level));
            } else {
                assert_eq!(got, Err(SimdError::Unsupported { asked: level }));
                assert!(got.unwrap_err().to_string().contains("cannot run"));
            }
        }
        assert_eq!(
            requested(Some("sse9"), None).unwrap_err().to_string(),
            "MNIST_MLP_SIMD: unknown level `sse9`; expected avx512, avx2 or none"
        );
    }

    #[test]
    fn levels_are_ordered_and_available_ones_nest() {
        assert!(Simd::None < Simd::Avx2 && Simd::Avx2 < Simd::Avx512);
        let available = Simd::available();
        assert_eq!(available[0], Simd::None);
        assert_eq!(available, Simd::ALL[..available.len()]);
    }
}
