//! Matrix products through the `gemm` crate, at the SIMD level's kernels.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// A matrix operand: its values and the distance, in elements, between consecutive rows and
/// consecutive columns (so a transpose is a swap of the two strides, not a copy).
pub(super) struct Operand<'a> {
    pub(super) values: &'a [f32],
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl<'a> Operand<'a> {
    pub(super) fn rows(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(super) fn transposed(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// `out` (`m × n`, row-major) = `a` (`m × k`) · `b` (`k × n`), plus `out`'s previous values
/// when `accumulate`.
///
/// # Safety
/// `out` must be valid for writing `m × n` floats, and for reading them when `accumulate`.
pub(super) unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    a: &Operand<'_>,
    b: &Operand<'_>,
    out: *mut f32,
    accumulate: bool,
) {
    assert!(a.values.len() >= m * k && b.values.len() >= k * n);
    // SAFETY: `a` and `b` are checked above to hold m×k and k×n elements, `out` is the
    // caller's; gemm reads `out` only when `accumulate` (read_dst) and writes each of its
    // m×n elements exactly once otherwise.
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::level() == crate::kernels::Simd::Avx2
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        return unsafe { gemm_fma(m, n, k, a, b, out, accumulate) };
    }
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            a.values.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::Rayon(0),
        );
    }
}

/// [`gemm_into`] through gemm's AVX2/FMA kernels, the ones it picks on a CPU without AVX-512:
/// gemm 0.19 chooses its kernels by CPU alone, with no setting to cap them, so at the `avx2`
/// level on an AVX-512 CPU this calls the same generic driver with the same kernels and
/// arguments as `gemm::gemm` does on an AVX2 CPU (its transpose to a column-major destination
/// included; every stride here is positive, so none of its sign flips applies). A test checks
/// the same call with the AVX-512 kernels against `gemm::gemm` bit for bit.
///
/// # Safety
/// As [`gemm_into`], whose checks it relies on; the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn gemm_fma(
    m: usize,
    n: usize,
    k: usize,
    a: &Operand<'_>,
    b: &Operand<'_>,
    out: *mut f32,
    accumulate: bool,
) {
    // SAFETY: the caller's.
    unsafe { gemm_with!(V3, fma, 8, m, n, k, a, b, out, accumulate) }
}

/// gemm's generic driver with the kernels of module `$kernels` (of `$lanes` f32 lanes, for the
/// `$simd` instruction set), as `gemm::gemm` calls it.
#[cfg(target_arch = "x86_64")]
macro_rules! gemm_with {
    ($simd:ident, $kernels:ident, $lanes:literal, $m:expr, $n:expr, $k:expr, $a:expr, $b:expr,
     $out:expr, $accumulate:expr) => {{
        use gemm_common::simd::{$simd, MixedSimd};
        use gemm_f32::microkernel::$kernels::f32::{H_M, H_N, H_UKR, MR_DIV_N, NR, UKR};
        const N: usize = $lanes;
        let (a, b): (&Operand<'_>, &Operand<'_>) = ($a, $b);
        let Some(simd) = <$simd as MixedSimd<f32, f32, f32, f32>>::try_new() else {
            unreachable!("called only where the CPU has the instructions")
        };
        let (m, n) = ($m, $n);
        let (dst_cs, dst_rs) = (1isize, n as isize);
        let (lhs, lhs_cs, lhs_rs) = (a.values.as_ptr(), a.col_stride as isize, a.row_stride as isize);
        let (rhs, rhs_cs, rhs_rs) = (b.values.as_ptr(), b.col_stride as isize, b.row_stride as isize);
        // gemm::gemm: "we want to transpose if the destination is column-oriented".
        let (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) =
            if dst_cs.abs() < dst_rs.abs() {
                (n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs)
            } else {
                (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs)
            };
        gemm_common::gemm::gemm_basic_generic::<_, f32, N, { MR_DIV_N * N }, NR, MR_DIV_N, H_M, H_N>(
            simd, m, n, $k, $out, dst_cs, dst_rs, $accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs,
            rhs_rs, 1.0, 1.0, false, false, false, |a, b, c| a * b + c, &UKR, &H_UKR, false,
            ::gemm::Parallelism::Rayon(0),
        )
    }};
}

#[cfg(target_arch = "x86_64")]
pub(super) use gemm_with;

/// `out += a · b`.
pub(super) fn matmul_add(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut [f32],
) {
    assert_eq!(out.len(), m * n);
    // SAFETY: `out` is an initialised slice of m×n floats.
    unsafe { gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), true) }
}

/// A new `m × n` product `a · b`.
pub(super) fn product(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>) -> Vec<f32> {
    // Zeroed, though gemm 0.19 does not read the output when told not to: that is not
    // documented, and a zeroed allocation this size comes from the OS already zeroed.
    let mut out = vec![0.0; m * n];
    // SAFETY: `out` is an initialised slice of m×n floats.
    unsafe { gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), false) };
    out
}
