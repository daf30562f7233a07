//! The arithmetic of the fused kernels, on ndarray tensors of f32.
//!
//! Matrix products go to the `gemm` crate (the one Burn's flex backend uses), which packs,
//! vectorises (AVX-512 or AVX2/FMA on x86-64, whichever the CPU has, through its `x86-v4`
//! feature; NEON on ARM) and splits the work over rayon's threads.
//!
//! The sparse path and the other hand-vectorised loops here are written for AVX2. Where it is
//! missing, or `MNIST_MLP_NO_SIMD=1` is set (read once; how CI runs the fallback on an AVX2
//! machine), every product goes to gemm and the remaining loops run as plain Rust: skipping
//! zeros one scalar at a time is not known to beat gemm's vector kernels (on Apple Silicon, say).

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

use burn::backend::TensorMetadata;
use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// The tensor's values in row-major order, borrowed when they already are.
fn values(tensor: &NdArrayTensor) -> Cow<'_, [f32]> {
    let NdArrayTensor::F32(storage) = tensor else {
        // The model is f32 throughout; another dtype here is a bug, not a user error.
        panic!("fused kernels take f32 tensors, got {:?}", tensor.dtype());
    };
    let view = storage.view();
    match view.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(view.iter().copied().collect()),
    }
}

fn dims(tensor: &NdArrayTensor) -> Vec<usize> {
    match tensor {
        NdArrayTensor::F32(storage) => storage.shape().to_vec(),
        other => panic!("fused kernels take f32 tensors, got {:?}", other.dtype()),
    }
}

fn matrix_dims(tensor: &NdArrayTensor) -> [usize; 2] {
    match dims(tensor)[..] {
        [rows, cols] => [rows, cols],
        ref other => panic!("expected a matrix, got shape {other:?}"),
    }
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// A matrix operand: its values and the distance, in elements, between consecutive rows and
/// consecutive columns (so a transpose is a swap of the two strides, not a copy).
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    fn rows(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(values: &'a [f32], cols: usize) -> Self {
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
unsafe fn gemm_into(
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
    if super::simd::level() == super::Simd::Avx2 && std::arch::is_x86_feature_detected!("avx512f") {
        return unsafe { gemm_fma(m, n, k, a, b, out, accumulate) };
    }
    unsafe {
        gemm::gemm(
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
            gemm::Parallelism::Rayon(0),
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
unsafe fn gemm_fma(
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
            gemm::Parallelism::Rayon(0),
        )
    }};
}
#[cfg(target_arch = "x86_64")]
use gemm_with;

/// `out += a · b`.
fn matmul_add(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>, out: &mut [f32]) {
    assert_eq!(out.len(), m * n);
    // SAFETY: `out` is an initialised slice of m×n floats.
    unsafe { gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), true) }
}

/// A new `m × n` product `a · b`.
fn product(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>) -> Vec<f32> {
    // Zeroed, though gemm 0.19 does not read the output when told not to: that is not
    // documented, and a zeroed allocation this size comes from the OS already zeroed.
    let mut out = vec![0.0; m * n];
    // SAFETY: `out` is an initialised slice of m×n floats.
    unsafe { gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), false) };
    out
}

/// Whether the AVX2 loops run: the SIMD level ([`super::simd::level`]) is AVX2 or above.
pub(super) fn simd() -> bool {
    super::simd::level() >= super::Simd::Avx2
}

/// Whether the AVX-512 loops run: the SIMD level is AVX-512.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    super::simd::level() == super::Simd::Avx512
}

/// `relu(x·w + b)` or `x·w + b`, and `x`'s non-zeros when the product took them (the backward
/// pass takes them too: the weight gradient is `xᵀ·g`).
pub(super) fn dense(
    x: &NdArrayTensor,
    w: &NdArrayTensor,
    b: &NdArrayTensor,
    relu: bool,
) -> (NdArrayTensor, Option<Sparse>) {
    let [m, k] = matrix_dims(x);
    let [k_w, n] = matrix_dims(w);
    assert_eq!(k, k_w, "dense: x is [{m}, {k}] but w is [{k_w}, {n}]");
    let bias = values(b);
    assert_eq!(
        bias.len(),
        n,
        "dense: bias of {} for {n} outputs",
        bias.len()
    );
    let xs = values(x);
    let sparse = Sparse::for_product(&xs, m, k, n);
    let y = match &sparse {
        Some(x) => x.times(&values(w), n, Some(&bias), relu),
        None => {
            // The output starts as the bias in every row and the product is added to it.
            let mut y = Vec::with_capacity(m * n);
            for _ in 0..m {
                y.extend_from_slice(&bias);
            }
            matmul_add(
                m,
                n,
                k,
                Operand::rows(&xs, k),
                Operand::rows(&values(w), n),
                &mut y,
            );
            if relu {
                for value in &mut y {
                    *value = relu_of(*value);
                }
            }
            y
        }
    };
    (tensor(y, &[m, n]), sparse)
}

/// ReLU, passing NaN through: `z < 0` is false for NaN, so a diverging step stays visible in
/// the loss.
#[inline(always)]
fn relu_of(z: f32) -> f32 {
    if z < 0.0 { 0.0 } else { z }
}

/// Gradients of [`dense`] given its inputs, `x`'s non-zeros when [`dense`] found it sparse, its
/// output `y` and the output's gradient `g`: `(dx, dw, db)`, `dx` only when `need_dx`.
pub(super) fn dense_backward(
    x: &NdArrayTensor,
    x_sparse: Option<&Sparse>,
    w: &NdArrayTensor,
    y: &NdArrayTensor,
    g: NdArrayTensor,
    relu: bool,
    need_dx: bool,
) -> (Option<NdArrayTensor>, NdArrayTensor, NdArrayTensor) {
    let [m, k] = matrix_dims(x);
    let [_, n] = matrix_dims(w);
    let mut g = writable(g);
    let grad = values_mut(&mut g);
    let mut db = vec![0.0f32; n];
    let ys = values(y);
    for (row, y_row) in grad.chunks_exact_mut(n).zip(ys.chunks_exact(n)) {
        if relu {
            // ReLU passes the gradient where its output is positive, as Burn's and Keras's do.
            // Every element is written, so that this compiles to a vector select, not to a
            // branch per element that mispredicts on the irregular pattern of zeros.
            for (gi, yi) in row.iter_mut().zip(y_row) {
                *gi = if *yi <= 0.0 { 0.0 } else { *gi };
            }
        }
        for (sum, gi) in db.iter_mut().zip(&*row) {
            *sum += gi;
        }
    }
    let grad = &*grad;
    let xs = values(x);
    let ws = values(w);
    // Skipping x's zeros would also skip 0·inf and 0·NaN, which are NaN: a gradient that is
    // not finite somewhere (its column sums, `db`, show it) takes the GEMM, as Burn's ops do,
    // so a diverging step ends the same way whichever path its batch took.
    let x_sparse = x_sparse.filter(|_| db.iter().all(|d| d.is_finite()));
    // The two products are independent: side by side, each keeps a thread busy where a product
    // of this size alone does not keep two.
    let (dw, dx) = rayon::join(
        || match x_sparse {
            Some(x) => x.transposed_times(grad, n),
            None => product(k, n, m, Operand::transposed(&xs, k), Operand::rows(grad, n)),
        },
        || {
            need_dx.then(|| {
                let dx = match transposed_for_product(&ws, m, k, n) {
                    Some(wt) => product(m, k, n, Operand::rows(grad, n), Operand::rows(&wt, k)),
                    None => product(m, k, n, Operand::rows(grad, n), Operand::transposed(&ws, n)),
                };
                tensor(dx, &[m, k])
            })
        },
    );
    (dx, tensor(dw, &[k, n]), tensor(db, &[n]))
}

/// `w` (`k × n`, row-major) transposed, `n × k` row-major, for `g · wᵀ` with `g` `m × n`: where
/// the CPU has AVX-512 and the product is not small (else `None`). gemm wants the weight's
/// columns contiguous; handed `w` as it is, it first packs it with a strided gather that took
/// five times as long as the product itself (285 µs against 50 µs for 32 × 512 × 512 on a Zen
/// 5). Transposed here in 16 × 16 tiles (37 µs), gemm multiplies in the same order and gives
/// the same gradient bit for bit (packing only copies). Not below 16 rows or 64 columns: for
/// some small products gemm takes other kernels for the two layouts, whose sums round
/// differently (of 3,468 shapes from 8 × 32 × 32 up, all those with 8 rows and 32 inputs), and
/// the packing it saves there is small anyway.
fn transposed_for_product(w: &[f32], m: usize, k: usize, n: usize) -> Option<Vec<f32>> {
    if m < 16 || k.min(n) < 64 {
        return None;
    }
    transposed(w, k, n)
}

/// `w` (`k × n`, row-major) transposed, `n × k` row-major, where the CPU has AVX-512.
fn transposed(w: &[f32], k: usize, n: usize) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        assert_eq!(w.len(), k * n, "transpose: w is not k × n");
        let mut out = vec![0.0f32; n * k];
        let (k_tiles, n_tiles) = (k - k % TILE, n - n % TILE);
        // A strip of columns at a time, down the rows: each tile's 16 source lines are read
        // once, and its 16 destination rows are written in order. Across the rows first, the
        // source rows 2 KB apart fell into the same few L1 sets and the transpose took 3×.
        for c in (0..n_tiles).step_by(TILE) {
            for r in (0..k_tiles).step_by(TILE) {
                // SAFETY: the CPU has AVX-512F (`avx512`).
                unsafe { transpose_tile(&w[r * n + c..], n, &mut out[c * k + r..], k) };
            }
        }
        // The edges past the last whole tile, if any, one element at a time.
        for r in 0..k {
            let first = if r < k_tiles { n_tiles } else { 0 };
            for c in first..n {
                out[c * k + r] = w[r * n + c];
            }
        }
        return Some(out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (w, k, n);
    None
}

/// The side of [`transpose_tile`]'s square: one AVX-512 register.
#[cfg(target_arch = "x86_64")]
const TILE: usize = 16;

/// The 16 × 16 block at the start of `src` (rows `src_stride` apart) transposed into `dst`
/// (rows `dst_stride` apart), in registers: pairs of rows interleaved, then pairs of pairs,
/// then 128-bit lanes exchanged twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose_tile(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    use std::arch::x86_64::{
        __m512, _mm512_loadu_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
        _mm512_unpackhi_ps, _mm512_unpacklo_ps,
    };
    assert!(src.len() >= (TILE - 1) * src_stride + TILE);
    assert!(dst.len() >= (TILE - 1) * dst_stride + TILE);
    // SAFETY: row i of the tile is TILE floats from i·stride, inside the slices (checked).
    let rows: [__m512; TILE] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.as_ptr().add(i * src_stride)) });
    // Within each 128-bit lane: rows 2p and 2p+1 interleaved, then 4 × 4 blocks transposed.
    let pairs: [__m512; TILE] = std::array::from_fn(|i| {
        let (a, b) = (rows[i & !1], rows[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let quads: [__m512; TILE] = std::array::from_fn(|i| {
        let q = i & !3;
        match i % 4 {
            0 => _mm512_shuffle_ps::<0x44>(pairs[q], pairs[q + 2]),
            1 => _mm512_shuffle_ps::<0xEE>(pairs[q], pairs[q + 2]),
            2 => _mm512_shuffle_ps::<0x44>(pairs[q + 1], pairs[q + 3]),
            _ => _mm512_shuffle_ps::<0xEE>(pairs[q + 1], pairs[q + 3]),
        }
    });
    // Then the 4 × 4 blocks moved to their lanes: even lanes and odd lanes, twice.
    let halves: [__m512; TILE] = std::array::from_fn(|i| {
        let (half, j) = (i & !7, i % 8);
        let (a, b) = (quads[half + j % 4], quads[half + j % 4 + 4]);
        if j < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    });
    for (i, row) in (0..TILE)
        .map(|i| {
            let (a, b) = (halves[i % 8], halves[i % 8 + 8]);
            if i < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            }
        })
        .enumerate()
    {
        // SAFETY: as for the loads, inside `dst` (checked).
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(i * dst_stride), row) };
    }
}

/// Per-row cross-entropy `-Σ t·log_softmax(z)` and the row's `log_softmax(z)`, kept for the
/// backward pass.
pub(super) fn softmax_cross_entropy(
    logits: &NdArrayTensor,
    targets: &NdArrayTensor,
) -> (NdArrayTensor, NdArrayTensor) {
    let [m, c] = matrix_dims(logits);
    assert_eq!(
        matrix_dims(targets),
        [m, c],
        "targets must match the logits"
    );
    let z = values(logits);
    let t = values(targets);
    let mut log_p = vec![0.0f32; m * c];
    let mut loss = vec![0.0f32; m];
    for (((z, t), log_p), loss) in z
        .chunks_exact(c)
        .zip(t.chunks_exact(c))
        .zip(log_p.chunks_exact_mut(c))
        .zip(loss.iter_mut())
    {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = z.iter().map(|zi| (zi - max).exp()).sum::<f32>().ln();
        let mut sum = 0.0f32;
        for ((lp, zi), ti) in log_p.iter_mut().zip(z).zip(t) {
            *lp = zi - max - log_sum;
            sum += ti * *lp;
        }
        *loss = -sum;
    }
    (tensor(loss, &[m]), tensor(log_p, &[m, c]))
}

/// Gradients of [`softmax_cross_entropy`] with respect to the logits and to the targets, given
/// the saved `log_softmax`, the targets and the gradient `g` `[m]` of each row's loss.
pub(super) fn softmax_cross_entropy_backward(
    log_p: &NdArrayTensor,
    targets: &NdArrayTensor,
    g: &NdArrayTensor,
) -> (NdArrayTensor, NdArrayTensor) {
    let [m, c] = matrix_dims(log_p);
    let log_p = values(log_p);
    let t = values(targets);
    let g = values(g);
    let mut d_logits = vec![0.0f32; m * c];
    let mut d_targets = vec![0.0f32; m * c];
    for i in 0..m {
        let row = i * c..(i + 1) * c;
        let t_sum: f32 = t[row.clone()].iter().sum();
        for j in row {
            // d/dz_j of -Σ t·(z − lse) is Σt·softmax_j − t_j.
            d_logits[j] = g[i] * (t_sum * log_p[j].exp() - t[j]);
            d_targets[j] = -g[i] * log_p[j];
        }
    }
    (tensor(d_logits, &[m, c]), tensor(d_targets, &[m, c]))
}

/// Whether [`dense`] skips the zeros of `x` (`m × k`) for a product with `n` columns.
#[cfg(test)]
pub(super) fn takes_sparse_path(x: &[f32], m: usize, k: usize, n: usize) -> bool {
    Sparse::for_product(x, m, k, n).is_some()
}

/// At most this fraction of non-zero inputs takes the sparse path of [`dense`]: MNIST images are
/// about 81% zeros, and skipping them saves four fifths of the first layer's arithmetic.
const SPARSE_DENSITY: f64 = 0.3;

/// Output columns one pass of the sparse products computes: 64 floats are eight AVX registers,
/// which hold the sums while the scaled rows of the other matrix are added into them.
const SPARSE_BLOCK: usize = 64;

/// The block the AVX-512 loop takes where it fits: eight registers of sums, as the AVX2 loop's.
/// Four (one block) would leave it waiting on each multiply-add's latency: every term adds into
/// the same sums, so only as many multiply-adds run at once as there are registers of sums.
const WIDE_BLOCK: usize = 2 * SPARSE_BLOCK;

/// The column blocks `(start, width)` of an `n`-column sparse product: [`WIDE_BLOCK`]s while
/// they fit when the AVX-512 loop runs, then [`SPARSE_BLOCK`]s, then what is left. A column's
/// sum is the same whichever block it is in.
fn column_blocks(n: usize) -> impl Iterator<Item = (usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    let widest = if avx512() { WIDE_BLOCK } else { SPARSE_BLOCK };
    #[cfg(not(target_arch = "x86_64"))]
    let widest = SPARSE_BLOCK;
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = n.checked_sub(start).filter(|&left| left > 0)?;
        let width = [widest, SPARSE_BLOCK, left]
            .into_iter()
            .find(|&width| width <= left)?;
        let block = (start, width);
        start += width;
        Some(block)
    })
}

/// Output rows of the weight gradient per task: small enough that rayon can even out the work
/// between threads (the image's middle rows hold more ink than its top and bottom ones).
const SPARSE_ROWS_PER_TASK: usize = 32;

/// The non-zero entries of a row-major `m × k` matrix, row by row (compressed sparse rows), in
/// column order within each row. Skipping zeros leaves every sum the same except for its
/// rounding (no other term changes): each product is the sum of the non-zero terms, as a GEMM's
/// is of all terms in its own order. (Only a weight that is already infinite or NaN could tell:
/// 0·inf is NaN, a skipped term is not.)
#[derive(Debug)]
pub(super) struct Sparse {
    /// Row `i`'s entries are `starts[i]..starts[i + 1]` of `cols` and `values`.
    starts: Vec<usize>,
    /// u32: half the bytes of usize to read for every entry.
    cols: Vec<u32>,
    values: Vec<f32>,
    /// Columns of the dense matrix.
    k: usize,
}

impl Sparse {
    /// `x`'s non-zero entries when skipping its zeros is worth it for a product with `n`
    /// columns, else `None`. Narrower products than a block (the output layer's 10 columns)
    /// are too small for the saving to pay for finding the non-zeros.
    fn for_product(x: &[f32], m: usize, k: usize, n: usize) -> Option<Self> {
        if n < SPARSE_BLOCK || !simd() {
            return None;
        }
        Self::of(x, m, k)
    }

    /// `x`'s non-zero entries when they are few enough to be worth it, else `None`.
    fn of(x: &[f32], m: usize, k: usize) -> Option<Self> {
        if m == 0 || k == 0 || u32::try_from(k.max(m)).is_err() {
            return None;
        }
        let limit = (SPARSE_DENSITY * (m * k) as f64) as usize;
        let mut starts = Vec::with_capacity(m + 1);
        starts.push(0);
        // Room for a row past the limit, and for one vector's stores past that: compacting
        // writes whole vectors. Not zeroed: only what the compaction wrote is kept.
        let room = limit + k + 8;
        let (mut cols, mut values) = (Vec::with_capacity(room), Vec::with_capacity(room));
        let mut end = 0;
        for row in x.chunks_exact(k) {
            end = compact(
                row,
                &mut cols.spare_capacity_mut()[..room],
                &mut values.spare_capacity_mut()[..room],
                end,
            );
            if end > limit {
                return None;
            }
            starts.push(end);
        }
        // SAFETY: `compact` wrote every position before `end` (it writes each position it
        // passes, in order), in both.
        unsafe {
            cols.set_len(end);
            values.set_len(end);
        }
        Some(Self {
            starts,
            cols,
            values,
            k,
        })
    }

    fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// `self · b`, plus `bias` in every row when given, then ReLU when `relu`, for `b` `k × n`
    /// row-major. Each thread takes a contiguous chunk of rows and goes through the output a
    /// block of columns at a time: the block's part of `b` (`k` × 256 bytes) stays in the L2
    /// cache while the chunk's rows gather from it.
    fn times(&self, b: &[f32], n: usize, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
        let (m, k) = (self.rows(), self.k);
        assert_eq!(b.len(), k * n, "sparse product: b is not k × n");
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "sparse product: bias is not n long");
        }
        let mut out = Vec::with_capacity(m * n);
        if n > 0 {
            let rows_per_task = m.div_ceil(rayon::current_num_threads()).max(1);
            out.spare_capacity_mut()[..m * n]
                .par_chunks_mut(rows_per_task * n)
                .enumerate()
                .for_each(|(task, chunk)| {
                    let first = task * rows_per_task;
                    for (start, width) in column_blocks(n) {
                        let init = bias.map(|bias| &bias[start..start + width]);
                        for (i, out_row) in (first..).zip(chunk.chunks_exact_mut(n)) {
                            let entries = self.starts[i]..self.starts[i + 1];
                            let terms = Terms {
                                rows: &b[start..],
                                stride: n,
                                indices: &self.cols[entries.clone()],
                                values: &self.values[entries],
                            };
                            combine(&mut out_row[start..start + width], terms, init, relu);
                        }
                    }
                });
        }
        // SAFETY: the chunks cover the first m×n elements, and `combine` wrote every element
        // of every block of every row of each.
        unsafe { out.set_len(m * n) };
        out
    }

    /// `selfᵀ · g` for `g` `m × n` row-major: `k × n`. Row `p` of the result is the sum of the
    /// rows of `g` where column `p` of `self` is non-zero, scaled by those entries, so the
    /// entries are first sorted by column; `g` (256 KB at batch 128) stays in the L2 cache.
    fn transposed_times(&self, g: &[f32], n: usize) -> Vec<f32> {
        let (m, k) = (self.rows(), self.k);
        assert_eq!(g.len(), m * n, "sparse product: g is not m × n");
        let columns = Columns::of(self);
        let mut out = Vec::with_capacity(k * n);
        if n > 0 {
            out.spare_capacity_mut()[..k * n]
                .par_chunks_mut(SPARSE_ROWS_PER_TASK * n)
                .enumerate()
                .for_each(|(task, chunk)| {
                    for (p, out_row) in
                        (task * SPARSE_ROWS_PER_TASK..).zip(chunk.chunks_exact_mut(n))
                    {
                        let (indices, values) = columns.get(p);
                        for (start, width) in column_blocks(n) {
                            let terms = Terms {
                                rows: &g[start..],
                                stride: n,
                                indices,
                                values,
                            };
                            combine(&mut out_row[start..start + width], terms, None, false);
                        }
                    }
                });
        }
        // SAFETY: as in `times`, every element of the k×n result was written.
        unsafe { out.set_len(k * n) };
        out
    }
}

/// Writes `row`'s non-zero entries (their columns and values) to `cols` and `values` from
/// `at` on, and returns where they end. Without a branch per element (whether a pixel is zero
/// is too irregular to predict): every element is written, and the write position moves on past
/// the non-zero ones only. Up to 8 elements past the returned end may be overwritten.
fn compact(
    row: &[f32],
    cols: &mut [MaybeUninit<u32>],
    values: &mut [MaybeUninit<f32>],
    at: usize,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the CPU has AVX2 and POPCNT (`simd`).
        return unsafe { compact_avx2(row, cols, values, at) };
    }
    compact_each(row, 0, cols, values, at)
}

/// [`compact`] one element at a time, for `row` starting at column `first`.
fn compact_each(
    row: &[f32],
    first: u32,
    cols: &mut [MaybeUninit<u32>],
    values: &mut [MaybeUninit<f32>],
    mut at: usize,
) -> usize {
    for (j, &v) in (first..).zip(row) {
        cols[at].write(j);
        values[at].write(v);
        at += usize::from(v != 0.0);
    }
    at
}

/// For each 8-bit mask, the lanes whose bits are set, in order, then zeros: the shuffle that
/// moves a vector's non-zero lanes to its front.
#[cfg(target_arch = "x86_64")]
static PACK: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut found) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][found] = lane as u32;
                found += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// [`compact`] eight elements at a time: a comparison gives the mask of non-zero lanes, [`PACK`]
/// the shuffle that moves them to the front, and both the values and their columns are stored
/// whole. (POPCNT: the write position moves on by each mask's bit count, on the critical path.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn compact_avx2(
    row: &[f32],
    cols: &mut [MaybeUninit<u32>],
    values: &mut [MaybeUninit<f32>],
    mut at: usize,
) -> usize {
    use std::arch::x86_64::{
        _CMP_NEQ_UQ, _mm256_add_epi32, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_loadu_si256,
        _mm256_movemask_ps, _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm256_storeu_si256,
    };
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for (first, chunk) in (0u32..).step_by(8).zip(chunks) {
        // SAFETY (loads and stores): `chunk`, `PACK[mask]` and the two bounds-checked output
        // slices each hold 8 elements of 4 bytes.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        // Unordered: NaN counts as non-zero, as `v != 0.0` does; -0.0 is zero.
        let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps()));
        let lanes = &PACK[mask as usize];
        let shuffle = unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) };
        let (out_values, out_cols) = (&mut values[at..at + 8], &mut cols[at..at + 8]);
        unsafe {
            _mm256_storeu_ps(
                out_values.as_mut_ptr().cast(),
                _mm256_permutevar8x32_ps(v, shuffle),
            );
            // Columns are below 2³² (`Sparse::of` checks): the bits wrap as u32's would.
            let base = _mm256_set1_epi32(first as i32);
            _mm256_storeu_si256(
                out_cols.as_mut_ptr().cast(),
                _mm256_add_epi32(base, shuffle),
            );
        }
        at += mask.count_ones() as usize;
    }
    compact_each(tail, (row.len() - tail.len()) as u32, cols, values, at)
}

/// The entries of a [`Sparse`] matrix sorted by column (a counting sort; compressed sparse
/// columns), each with its row, rows in order within a column.
struct Columns {
    /// Column `c`'s entries are `starts[c]..starts[c + 1]`.
    starts: Vec<usize>,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl Columns {
    fn of(x: &Sparse) -> Self {
        let mut starts = vec![0; x.k + 1];
        for &c in &x.cols {
            starts[c as usize + 1] += 1;
        }
        for c in 1..starts.len() {
            starts[c] += starts[c - 1];
        }
        let (mut rows, mut values) = (vec![0; x.cols.len()], vec![0.0; x.cols.len()]);
        let mut next = starts.clone();
        for (i, entries) in (0u32..).zip(x.starts.windows(2)) {
            for e in entries[0]..entries[1] {
                let slot = &mut next[x.cols[e] as usize];
                rows[*slot] = i;
                values[*slot] = x.values[e];
                *slot += 1;
            }
        }
        Self {
            starts,
            rows,
            values,
        }
    }

    fn get(&self, c: usize) -> (&[u32], &[f32]) {
        let range = self.starts[c]..self.starts[c + 1];
        (&self.rows[range.clone()], &self.values[range])
    }
}

/// Some rows of a row-major matrix whose rows are `stride` apart, each scaled: row
/// `indices[e]` times `values[e]`.
#[derive(Clone, Copy)]
struct Terms<'a> {
    rows: &'a [f32],
    stride: usize,
    indices: &'a [u32],
    values: &'a [f32],
}

impl<'a> Terms<'a> {
    /// The terms, each with the `width` elements of its row.
    fn each(self, width: usize) -> impl Iterator<Item = (f32, &'a [f32])> {
        let Self {
            rows,
            stride,
            indices,
            values,
        } = self;
        indices.iter().zip(values).map(move |(&r, &v)| {
            let at = r as usize * stride;
            (v, &rows[at..at + width])
        })
    }
}

/// `out = init + Σ terms` (from zero without `init`), then ReLU when `relu`, over the first
/// `out.len()` columns of the rows. The terms are added in the order given.
fn combine(out: &mut [MaybeUninit<f32>], terms: Terms<'_>, init: Option<&[f32]>, relu: bool) {
    #[cfg(target_arch = "x86_64")]
    if out.len() == WIDE_BLOCK && avx512() {
        // SAFETY: the CPU has AVX-512F (`avx512`).
        return unsafe { combine_avx512::<{ WIDE_BLOCK / 16 }>(out, terms, init, relu) };
    }
    #[cfg(target_arch = "x86_64")]
    if let Ok(out) = <&mut [MaybeUninit<f32>; SPARSE_BLOCK]>::try_from(&mut *out)
        && simd()
    {
        if avx512() {
            // SAFETY: the CPU has AVX-512F (`avx512`).
            return unsafe { combine_avx512::<{ SPARSE_BLOCK / 16 }>(out, terms, init, relu) };
        }
        // SAFETY: the CPU has AVX2 and FMA (`simd`).
        return unsafe { combine_avx2(out, terms, init, relu) };
    }
    combine_each(out, terms, init, relu);
}

/// [`combine`] one column at a time, at most a block wide.
fn combine_each(out: &mut [MaybeUninit<f32>], terms: Terms<'_>, init: Option<&[f32]>, relu: bool) {
    // The products cut their columns into blocks: the sums fit on the stack.
    let width = out.len();
    let mut block = [0.0f32; SPARSE_BLOCK];
    let sums = &mut block[..width];
    if let Some(init) = init {
        sums.copy_from_slice(init);
    }
    for (v, row) in terms.each(width) {
        for (sum, x) in sums.iter_mut().zip(row) {
            *sum += v * x;
        }
    }
    for (o, &sum) in out.iter_mut().zip(&*sums) {
        o.write(if relu { relu_of(sum) } else { sum });
    }
}

/// [`combine`] for a full block: the sums held in eight AVX registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn combine_avx2(
    out: &mut [MaybeUninit<f32>; SPARSE_BLOCK],
    terms: Terms<'_>,
    init: Option<&[f32]>,
    relu: bool,
) {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_max_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    const LANES: usize = 8;
    const VECTORS: usize = SPARSE_BLOCK / LANES;
    // SAFETY (every load and store below): each pointer is to SPARSE_BLOCK floats (`init` and
    // `row`, bounds-checked where they are taken, `row` in `Terms::each`, and `out`), read or
    // written at offsets LANES·j + 0..LANES for j < VECTORS, inside them.
    let mut sums: [__m256; VECTORS] = match init {
        Some(init) => {
            let init = &init[..SPARSE_BLOCK];
            std::array::from_fn(|j| unsafe { _mm256_loadu_ps(init.as_ptr().add(LANES * j)) })
        }
        None => [_mm256_setzero_ps(); VECTORS],
    };
    for (v, row) in terms.each(SPARSE_BLOCK) {
        let scale = _mm256_set1_ps(v);
        for (j, sum) in sums.iter_mut().enumerate() {
            let x = unsafe { _mm256_loadu_ps(row.as_ptr().add(LANES * j)) };
            *sum = _mm256_fmadd_ps(scale, x, *sum);
        }
    }
    let zero = _mm256_setzero_ps();
    for (j, sum) in sums.into_iter().enumerate() {
        // max(0, z) returns its second operand when either is NaN, and z itself for -0.0, as
        // `relu_of` does.
        let value = if relu { _mm256_max_ps(zero, sum) } else { sum };
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(LANES * j).cast::<f32>(), value) };
    }
}

/// [`combine_avx2`] in `VECTORS` AVX-512 registers of sums (4 or 8: a block of 64 or 128
/// columns, `out`'s length). Each column's sum takes the same terms in the same order, one
/// fused multiply-add each, so the results are those of [`combine_avx2`] bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn combine_avx512<const VECTORS: usize>(
    out: &mut [MaybeUninit<f32>],
    terms: Terms<'_>,
    init: Option<&[f32]>,
    relu: bool,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    const LANES: usize = 16;
    let width = VECTORS * LANES;
    assert_eq!(out.len(), width, "combine: a block of {width} columns");
    // SAFETY (every load and store below): as in `combine_avx2`, each pointer is to `width`
    // floats (`out`, checked above; `init` and `row`, where they are taken), read or written
    // at offsets LANES·j + 0..LANES for j < VECTORS.
    let mut sums: [__m512; VECTORS] = match init {
        Some(init) => {
            let init = &init[..width];
            std::array::from_fn(|j| unsafe { _mm512_loadu_ps(init.as_ptr().add(LANES * j)) })
        }
        None => [_mm512_setzero_ps(); VECTORS],
    };
    for (v, row) in terms.each(width) {
        let scale = _mm512_set1_ps(v);
        for (j, sum) in sums.iter_mut().enumerate() {
            let x = unsafe { _mm512_loadu_ps(row.as_ptr().add(LANES * j)) };
            *sum = _mm512_fmadd_ps(scale, x, *sum);
        }
    }
    let zero = _mm512_setzero_ps();
    for (j, sum) in sums.into_iter().enumerate() {
        // As `_mm256_max_ps`: the second operand when either is NaN, z itself for -0.0.
        let value = if relu { _mm512_max_ps(zero, sum) } else { sum };
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(LANES * j).cast::<f32>(), value) };
    }
}

/// Elements per task when the update is split over threads: large enough that a task's
/// scheduling cost is small against its work.
const CHUNK: usize = 1 << 15;

/// Keras's RMSprop step, in one pass over the parameter, updating the running average in place
/// (the optimizer holds the only reference to it) and the parameter too when nothing else holds
/// it. Burn's `Learner` keeps its own handle on the model while the optimizer steps it, so in
/// training the parameter is shared; the gradient is not (Burn hands it over and drops it after
/// the step), so the new parameter is written over the gradient, element by element as each is
/// read: the same memory traffic as an update in place, where writing a third buffer costs a
/// fifth more and, measured alone, twice the time. Only when both are shared (a caller keeping
/// its gradient) does the new parameter go to a new buffer, written once, never zeroed first.
pub(super) fn rmsprop(
    w: NdArrayTensor,
    g: NdArrayTensor,
    v: NdArrayTensor,
    lr: f64,
    rho: f32,
    keep: f32,
    eps: f32,
) -> (NdArrayTensor, NdArrayTensor) {
    let shape = dims(&w);
    assert_eq!(shape, dims(&g), "gradient and parameter shapes differ");
    assert_eq!(
        shape,
        dims(&v),
        "running average and parameter shapes differ"
    );
    let mut v = writable(v);
    let vs = values_mut(&mut v);
    let rms = RmsProp {
        lr: lr as f32,
        rho,
        keep,
        eps,
    };
    let w = if is_writable(&w) {
        let mut w = w;
        let gs = values(&g);
        let ws = values_mut(&mut w);
        for_chunks(ws.len(), (ws, vs), |(w, v), range| {
            rms.in_place(w, v, &gs[range])
        });
        w
    } else if is_writable(&g) {
        let mut g = g;
        let ws = values(&w);
        let gs = values_mut(&mut g);
        for_chunks(gs.len(), (gs, vs), |(g, v), range| {
            rms.over_gradient(g, &ws[range], v)
        });
        g
    } else {
        let (ws, gs) = (values(&w), values(&g));
        let mut out = Vec::<f32>::with_capacity(ws.len());
        let spare = &mut out.spare_capacity_mut()[..ws.len()];
        for_chunks(ws.len(), (spare, vs), |(o, v), range| {
            rms.into_new(o, &ws[range.clone()], v, &gs[range])
        });
        // SAFETY: `into_new` wrote each of the first `ws.len()` elements (the chunks cover
        // `spare`, whose length the shape assertions above make that of `ws`, `vs` and `gs`).
        unsafe { out.set_len(ws.len()) };
        tensor(out, &shape)
    };
    (w, v)
}

/// Calls `step` on matching chunks of the two slices of `len` elements, with the range of
/// elements each chunk covers, on several threads when there are more than [`CHUNK`].
fn for_chunks<A: Send, B: Send>(
    len: usize,
    (a, b): (&mut [A], &mut [B]),
    step: impl Fn((&mut [A], &mut [B]), std::ops::Range<usize>) + Sync,
) {
    assert!(
        a.len() == len && b.len() == len,
        "chunks of different lengths"
    );
    if len <= CHUNK {
        return step((a, b), 0..len);
    }
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(i, (a, b))| {
            let first = i * CHUNK;
            let range = first..first + a.len();
            step((a, b), range)
        });
}

/// The constants of one RMSprop step.
#[derive(Clone, Copy)]
struct RmsProp {
    lr: f32,
    rho: f32,
    keep: f32,
    eps: f32,
}

impl RmsProp {
    /// The new weight, updating the running average: the same operations, in the same order,
    /// as `optim::KerasRmsProp` (no fused multiply-adds, so the same rounding too).
    #[inline(always)]
    fn step(self, w: f32, v: &mut f32, g: f32) -> f32 {
        *v = flush_subnormal(self.rho * *v + self.keep * (g * g));
        w - (self.lr * g) / (*v + self.eps).sqrt()
    }

    #[inline(always)]
    fn in_place_generic(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        for ((wi, vi), gi) in w.iter_mut().zip(v).zip(g) {
            *wi = self.step(*wi, vi, *gi);
        }
    }

    #[inline(always)]
    fn over_gradient_generic(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        for ((gi, wi), vi) in g.iter_mut().zip(w).zip(v) {
            *gi = self.step(*wi, vi, *gi);
        }
    }

    #[inline(always)]
    fn into_new_generic(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        for (((oi, wi), vi), gi) in out.iter_mut().zip(w).zip(v).zip(g) {
            oi.write(self.step(*wi, vi, *gi));
        }
    }

    /// The same loops compiled for AVX2: twice as many lanes for the division and square root,
    /// which bound this loop, than the baseline x86-64 build's SSE2 (and 256-bit integer
    /// operations for [`flush_subnormal`]'s test of the exponent bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn in_place_avx2(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.in_place_generic(w, v, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn over_gradient_avx2(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        self.over_gradient_generic(g, w, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn into_new_avx2(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        self.into_new_generic(out, w, v, g)
    }

    /// The same loops in AVX-512: twice the lanes again. Division and square root are exact
    /// in every width, so the results are the same bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn in_place_avx512(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.in_place_generic(w, v, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn over_gradient_avx512(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        self.over_gradient_generic(g, w, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn into_new_avx512(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        self.into_new_generic(out, w, v, g)
    }

    /// `w` updated in place.
    fn in_place(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F (`avx512`).
            return unsafe { self.in_place_avx512(w, v, g) };
        }
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: the CPU has AVX2 (`simd`).
            return unsafe { self.in_place_avx2(w, v, g) };
        }
        self.in_place_generic(w, v, g)
    }

    /// The new weights written over the gradient `g`.
    fn over_gradient(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F (`avx512`).
            return unsafe { self.over_gradient_avx512(g, w, v) };
        }
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: the CPU has AVX2 (`simd`).
            return unsafe { self.over_gradient_avx2(g, w, v) };
        }
        self.over_gradient_generic(g, w, v)
    }

    /// The new weights written to `out`, one per element of `w`.
    fn into_new(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F (`avx512`).
            return unsafe { self.into_new_avx512(out, w, v, g) };
        }
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: the CPU has AVX2 (`simd`).
            return unsafe { self.into_new_avx2(out, w, v, g) };
        }
        self.into_new_generic(out, w, v, g)
    }
}

/// `x`, or 0 when it is subnormal (below `f32::MIN_POSITIVE` in magnitude, not 0): Keras's
/// optimizer runs on TensorFlow, whose CPU kernels flush subnormal results to zero, so its running
/// average never holds one. Without the flush, a weight whose gradient stays 0 (a pixel that is
/// always blank) decays its average `v ← 0.9·v` into the subnormals, where it sticks (a few units
/// of the last place times 0.9 rounds back to itself), and every later step pays the CPU's slow
/// path for it: on an Intel Xeon the epoch grew from 3.1 to 3.9 s over five epochs. The test is on
/// the bits, so that the test itself does no floating-point arithmetic on a subnormal.
#[inline(always)]
fn flush_subnormal(x: f32) -> f32 {
    if x.to_bits() & 0x7f80_0000 == 0 {
        0.0
    } else {
        x
    }
}

/// Whether `tensor` can be written in place: the only reference to a contiguous buffer.
fn is_writable(tensor: &NdArrayTensor) -> bool {
    matches!(tensor, NdArrayTensor::F32(storage)
        if storage.is_unique() && storage.view().is_standard_layout())
}

/// `tensor` itself when nothing else holds its buffer and it is contiguous (the optimizer's
/// parameters and running averages, the gradients), else a contiguous copy that can be written.
fn writable(tensor_in: NdArrayTensor) -> NdArrayTensor {
    if is_writable(&tensor_in) {
        return tensor_in;
    }
    let shape = dims(&tensor_in);
    tensor(values(&tensor_in).into_owned(), &shape)
}

fn values_mut(tensor: &mut NdArrayTensor) -> &mut [f32] {
    match tensor {
        NdArrayTensor::F32(storage) => storage
            .ensure_owned()
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("`writable` keeps only contiguous buffers")),
        other => panic!("fused kernels take f32 tensors, got {:?}", other.dtype()),
    }
}

#[cfg(test)]
mod tests {
    use super::{SPARSE_BLOCK, SPARSE_ROWS_PER_TASK, Sparse};

    #[test]
    fn mostly_zero_inputs_take_the_sparse_path_with_every_non_zero() {
        // 3 × 4, three non-zeros (25%).
        let x = [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5, 0.0, 3.0, 0.0, 0.0];
        let rows = Sparse::of(&x, 3, 4).expect("25% non-zero is sparse");
        assert_eq!(rows.starts, [0, 1, 2, 3]);
        assert_eq!(rows.cols, [1, 3, 1]);
        assert_eq!(rows.values, [2.0, -1.5, 3.0]);
        // 4 non-zeros of 12 is over the threshold: the dense GEMM is used.
        let denser = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5, 0.0, 3.0, 0.0, 0.0];
        assert!(Sparse::of(&denser, 3, 4).is_none());
        // Products narrower than a block take the dense GEMM however sparse the input, and so
        // does every product without the AVX2 loops (`MNIST_MLP_NO_SIMD=1`).
        assert!(Sparse::for_product(&x, 3, 4, SPARSE_BLOCK - 1).is_none());
        assert_eq!(
            Sparse::for_product(&x, 3, 4, SPARSE_BLOCK).is_some(),
            super::simd()
        );
    }

    /// Eight elements at a time and one by one, the non-zeros come out the same: NaN is one,
    /// -0.0 is not.
    #[test]
    fn every_non_zero_is_found_in_order() {
        let k = 8 * 5 + 3;
        let mut x = vec![0.0f32; 2 * k];
        for (at, v) in [
            (0, 1.0),
            (7, f32::NAN),
            (8, -0.0),
            (9, -2.0),
            (41, 3.0),
            (42, 4.0),
        ] {
            x[k + at] = v;
        }
        let rows = Sparse::of(&x, 2, k).expect("6 in 86 is sparse");
        assert_eq!(rows.starts, [0, 0, 5]);
        assert_eq!(rows.cols, [0, 7, 9, 41, 42]);
        let values = &rows.values;
        assert!(values[1].is_nan());
        assert_eq!(
            [values[0], values[2], values[3], values[4]],
            [1.0, -2.0, 3.0, 4.0]
        );
        let mut cols = vec![std::mem::MaybeUninit::new(0); k];
        let mut found = vec![std::mem::MaybeUninit::new(0.0); k];
        assert_eq!(super::compact_each(&x[k..], 0, &mut cols, &mut found, 0), 5);
        // SAFETY: initialised above.
        let cols: Vec<u32> = cols.iter().map(|c| unsafe { c.assume_init() }).collect();
        assert_eq!(cols[..5], rows.cols);
    }

    /// The AVX2 block and the plain loop compute the same sums (up to the rounding of a fused
    /// multiply-add), with and without bias and ReLU.
    #[test]
    fn both_ways_of_combining_rows_agree() {
        use super::{Terms, combine, combine_each};
        use std::mem::MaybeUninit;
        let stride = SPARSE_BLOCK + 3;
        let rows: Vec<f32> = (0..5 * stride)
            .map(|i| ((i * 13) % 7) as f32 - 3.0)
            .collect();
        let (indices, values) = ([4u32, 0, 2], [0.5f32, -1.25, 2.0]);
        let terms = Terms {
            rows: &rows,
            stride,
            indices: &indices,
            values: &values,
        };
        let init: Vec<f32> = (0..SPARSE_BLOCK).map(|j| j as f32 * 0.125 - 4.0).collect();
        for (init, relu) in [(None, false), (Some(&init[..]), true)] {
            let mut fast = [MaybeUninit::new(f32::NAN); SPARSE_BLOCK];
            let mut plain = [MaybeUninit::new(f32::NAN); SPARSE_BLOCK];
            combine(&mut fast, terms, init, relu);
            combine_each(&mut plain, terms, init, relu);
            for j in 0..SPARSE_BLOCK {
                // SAFETY: initialised above, and written by both.
                let (a, b) = unsafe { (fast[j].assume_init(), plain[j].assume_init()) };
                let want = init.map_or(0.0, |init| init[j])
                    + (0..3)
                        .map(|e| values[e] * rows[indices[e] as usize * stride + j])
                        .sum::<f32>();
                let want = if relu { want.max(0.0) } else { want };
                assert!(
                    (a - want).abs() < 1e-5 && (b - want).abs() < 1e-5,
                    "{j}: {a} {b} {want}"
                );
            }
        }
    }

    /// Where the CPU has AVX-512, its blocks of 128 and of 64 columns give the AVX2 block's sums
    /// bit for bit (the same terms in the same order, one fused multiply-add each), NaN and
    /// -0.0 through the ReLU included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_blocks_equal_the_avx2_block() {
        use super::{Terms, WIDE_BLOCK, avx512, combine_avx2, combine_avx512};
        use std::mem::MaybeUninit;
        if !avx512() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let stride = WIDE_BLOCK + 5;
        let mut rows: Vec<f32> = (0..40 * stride)
            .map(|i| (((i * 7919) % 1009) as f32 - 504.0) / 97.0)
            .collect();
        rows[3 * stride + 5] = f32::NAN;
        rows[9 * stride + SPARSE_BLOCK + 2] = f32::NAN;
        let indices: Vec<u32> = (0..40u32).rev().step_by(3).collect();
        let values: Vec<f32> = (0..indices.len())
            .map(|e| (e as f32 - 6.5) * 0.37)
            .collect();
        let terms = |from: usize| Terms {
            rows: &rows[from..],
            stride,
            indices: &indices,
            values: &values,
        };
        let mut init: Vec<f32> = (0..WIDE_BLOCK).map(|j| j as f32 * 0.5 - 16.0).collect();
        init[7] = -0.0;
        init[SPARSE_BLOCK + 9] = -0.0;
        for (init, relu) in [(None, false), (None, true), (Some(&init[..]), true)] {
            let half = |h: usize| init.map(|init| &init[h * SPARSE_BLOCK..]);
            let mut wide = [MaybeUninit::new(1.0f32); WIDE_BLOCK];
            let mut halves = [MaybeUninit::new(2.0f32); WIDE_BLOCK];
            let mut narrow = [MaybeUninit::new(3.0f32); WIDE_BLOCK];
            // SAFETY: the CPU has AVX-512F (checked above), hence AVX2 and FMA.
            unsafe {
                combine_avx512::<8>(&mut wide, terms(0), init, relu);
                for (h, (halves, narrow)) in halves
                    .chunks_exact_mut(SPARSE_BLOCK)
                    .zip(narrow.chunks_exact_mut(SPARSE_BLOCK))
                    .enumerate()
                {
                    let from = h * SPARSE_BLOCK;
                    combine_avx512::<4>(halves, terms(from), half(h), relu);
                    let narrow: &mut [MaybeUninit<f32>; SPARSE_BLOCK] = narrow.try_into().unwrap();
                    combine_avx2(narrow, terms(from), half(h), relu);
                }
            }
            for j in 0..WIDE_BLOCK {
                // SAFETY: initialised above, and written by all three.
                let [a, b, c] = [wide[j], halves[j], narrow[j]].map(|v| unsafe { v.assume_init() });
                assert_eq!(a.to_bits(), c.to_bits(), "column {j}: {a} vs {c}");
                assert_eq!(b.to_bits(), c.to_bits(), "column {j}: {b} vs {c}");
            }
        }
    }

    /// The column blocks cover the columns once, in order: wide blocks (where the AVX-512 loop
    /// runs) while they fit, then blocks, then one rest narrower than a block.
    #[test]
    fn column_blocks_cover_every_column_once() {
        use super::{WIDE_BLOCK, column_blocks};
        for n in 0..4 * WIDE_BLOCK {
            let blocks: Vec<(usize, usize)> = column_blocks(n).collect();
            let mut next = 0;
            for (i, &(start, width)) in blocks.iter().enumerate() {
                assert_eq!(start, next, "n = {n}: {blocks:?}");
                let last = i + 1 == blocks.len();
                assert!(
                    width == WIDE_BLOCK || width == SPARSE_BLOCK || (last && width < SPARSE_BLOCK),
                    "n = {n}: {blocks:?}"
                );
                next += width;
            }
            assert_eq!(next, n, "n = {n}: {blocks:?}");
            let narrow = blocks.iter().filter(|b| b.1 == SPARSE_BLOCK).count();
            #[cfg(target_arch = "x86_64")]
            if super::avx512() {
                assert!(narrow <= 1, "n = {n}: {blocks:?}");
            }
        }
    }

    /// The tiled transpose is the transpose, whole tiles and edges alike, and `g · wᵀ` through
    /// it is the strided product bit for bit for the products training takes (gemm's packing
    /// only copies); small products keep the strided operand.
    #[test]
    fn the_transposed_weight_gives_the_same_input_gradient() {
        use super::{Operand, product, transposed, transposed_for_product};
        if transposed(&[1.0], 1, 1).is_none() {
            eprintln!("no AVX-512 on this CPU: the strided product runs");
            return;
        }
        let shapes = [
            (32, 512, 512),
            (128, 512, 512),
            (96, 512, 512),
            (32, 1024, 1024),
            (96, 1024, 1024),
            (16, 784, 256),
            (17, 300, 100),
            (33, 64, 1000),
        ];
        for (m, k, n) in shapes {
            let w: Vec<f32> = (0..k * n)
                .map(|i| (((i * 7919) % 1009) as f32 - 504.0) / 997.0)
                .collect();
            let wt = transposed_for_product(&w, m, k, n).expect("a product large enough");
            for r in 0..k {
                for c in 0..n {
                    assert_eq!(wt[c * k + r], w[r * n + c], "[{r}, {c}] of {k} × {n}");
                }
            }
            let g: Vec<f32> = (0..m * n)
                .map(|i| {
                    if i % 3 == 0 {
                        ((i * 31) % 17) as f32 / 7.0 - 1.1
                    } else {
                        0.0
                    }
                })
                .collect();
            let strided = product(m, k, n, Operand::rows(&g, n), Operand::transposed(&w, n));
            let tiled = product(m, k, n, Operand::rows(&g, n), Operand::rows(&wt, k));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&strided), bits(&tiled), "{m} × {k} × {n}");
        }
        // Edges only, and no whole tile.
        for (k, n) in [(5, 7), (16, 17), (33, 15)] {
            let w: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            let wt = transposed(&w, k, n).expect("AVX-512, as above");
            for r in 0..k {
                for c in 0..n {
                    assert_eq!(wt[c * k + r], w[r * n + c], "[{r}, {c}] of {k} × {n}");
                }
            }
        }
        for (m, k, n) in [
            (32, 512, 10),
            (4, 64, 64),
            (8, 32, 512),
            (15, 512, 512),
            (32, 63, 512),
        ] {
            assert!(transposed_for_product(&vec![0.0; k * n], m, k, n).is_none());
        }
    }

    /// `gemm_with!` calls gemm's driver as `gemm::gemm` does: with the kernels gemm picks on this
    /// CPU (AVX-512 where it has it, else AVX2), the same products bit for bit, in both layouts
    /// and with accumulation. (So `gemm_fma` is what `gemm::gemm` runs on a CPU without AVX-512.)
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn gemm_with_calls_gemm_as_gemm_does() {
        use super::{Operand, gemm_with};
        for (m, k, n) in [
            (32, 784, 512),
            (32, 512, 10),
            (7, 33, 65),
            (128, 512, 512),
            (1, 5, 1),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 101) as f32 / 13.0 - 3.7)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 7919) % 1009) as f32 / 997.0 - 0.5)
                .collect();
            for (transposed, accumulate) in [(false, false), (true, true)] {
                let b_op = || {
                    if transposed {
                        Operand::transposed(&b, k)
                    } else {
                        Operand::rows(&b, n)
                    }
                };
                // `b` read as n × k transposed, for the transposed case: same values, k × n.
                let init: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
                let (mut want, mut got) = (init.clone(), init);
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        want.as_mut_ptr(),
                        1,
                        n as isize,
                        accumulate,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        b_op().col_stride as isize,
                        b_op().row_stride as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    );
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        gemm_with!(
                            V4,
                            avx512f,
                            16,
                            m,
                            n,
                            k,
                            &Operand::rows(&a, k),
                            &b_op(),
                            got.as_mut_ptr(),
                            accumulate
                        );
                    } else {
                        gemm_with!(
                            V3,
                            fma,
                            8,
                            m,
                            n,
                            k,
                            &Operand::rows(&a, k),
                            &b_op(),
                            got.as_mut_ptr(),
                            accumulate
                        );
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&want), bits(&got), "{m} × {k} × {n}, {transposed}");
            }
        }
    }

    /// The sparse path's ReLU is `relu_of`: NaN (a diverging step) passes, so the loss shows it.
    #[test]
    fn the_sparse_relu_passes_nan() {
        for n in [SPARSE_BLOCK, 10] {
            let x = [0.0, 1.0, 0.0, 0.0];
            let mut b = vec![-1.0f32; 4 * n];
            b[n + 3] = f32::NAN;
            b[n + 4] = 2.0;
            let sparse = Sparse::of(&x, 1, 4).expect("one in four is sparse");
            let y = sparse.times(&b, n, None, true);
            assert!(y[3].is_nan(), "width {n}: {}", y[3]);
            assert_eq!((y[0], y[4]), (0.0, 2.0), "width {n}");
        }
    }

    /// The products against plain triple loops, for widths that are whole blocks, a block and a
    /// part, and less than a block, and for more rows and columns than one task takes.
    #[test]
    fn the_sparse_products_equal_the_dense_ones() {
        let (m, k) = (197, 4 * SPARSE_ROWS_PER_TASK + 3);
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                if i % 7 == 0 {
                    (i % 13) as f32 - 6.0
                } else {
                    0.0
                }
            })
            .collect();
        let sparse = Sparse::of(&x, m, k).expect("1 in 7 is sparse");
        // One wide block (on AVX-512), a wide block, a block and a rest, a block and a rest,
        // only a rest.
        for n in [SPARSE_BLOCK * 2, SPARSE_BLOCK * 3 + 3, SPARSE_BLOCK + 5, 10] {
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 31) % 17) as f32 * 0.25 - 2.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.5).collect();
            let got = sparse.times(&b, n, Some(&bias), false);
            for i in 0..m {
                for j in 0..n {
                    let want = bias[j] + (0..k).map(|p| x[i * k + p] * b[p * n + j]).sum::<f32>();
                    let at = got[i * n + j];
                    assert!(
                        (at - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "[{i}, {j}]: {at} vs {want}"
                    );
                }
            }
            // ReLU applied on the way out: the same sums, negatives zeroed.
            let relu = sparse.times(&b, n, Some(&bias), true);
            for (r, z) in relu.iter().zip(&got) {
                assert_eq!(*r, z.max(0.0));
            }
            // xᵀ·g.
            let g: Vec<f32> = (0..m * n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let got = sparse.transposed_times(&g, n);
            for p in 0..k {
                for j in 0..n {
                    let want: f32 = (0..m).map(|i| x[i * k + p] * g[i * n + j]).sum();
                    let at = got[p * n + j];
                    assert!(
                        (at - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "[{p}, {j}]: {at} vs {want}"
                    );
                }
            }
        }
    }
}
