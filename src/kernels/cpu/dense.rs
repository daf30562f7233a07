//! The dense layer: `relu(x·w + b)` forward, its gradients backward (the input's through
//! the transposed weight).

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// `relu(x·w + b)` or `x·w + b`, and `x`'s non-zeros when the product took them (the backward
/// pass takes them too: the weight gradient is `xᵀ·g`).
pub(in crate::kernels) fn dense(
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
pub(super) fn relu_of(z: f32) -> f32 {
    if z < 0.0 { 0.0 } else { z }
}

/// Gradients of [`dense`] given its inputs, `x`'s non-zeros when [`dense`] found it sparse, its
/// output `y` and the output's gradient `g`: `(dx, dw, db)`, `dx` only when `need_dx`.
pub(in crate::kernels) fn dense_backward(
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

/// `w` (`k × n`, row-major) transposed, `n × k` row-major, for `g · wᵀ` with `g` `m × n`, where
/// the product is not small (else `None`). gemm wants the weight's columns contiguous; handed
/// `w` as it is, it first packs it with a strided gather that took five times as long as the
/// product itself (285 µs against 50 µs for 32 × 512 × 512 on a Zen 5). Transposed here in
/// 16 × 16 tiles (37 µs in AVX-512 registers), gemm multiplies in the same order and gives the
/// same gradient bit for bit (packing only copies; tested at every SIMD level). Not below 16 rows
/// or 64 columns: for some small products gemm takes other kernels for the two layouts, whose
/// sums round differently (of 3,468 shapes from 8 × 32 × 32 up, all those with 8 rows and 32
/// inputs), and the packing it saves there is small anyway.
pub(super) fn transposed_for_product(w: &[f32], m: usize, k: usize, n: usize) -> Option<Vec<f32>> {
    if m < 16 || k.min(n) < 64 {
        return None;
    }
    Some(transposed(w, k, n))
}

/// The side of the transpose's square tiles: one AVX-512 register.
pub(super) const TILE: usize = 16;

/// `w` (`k × n`, row-major) transposed, `n × k` row-major: in AVX-512 or AVX registers where the
/// level allows, else one element at a time, tile by tile.
pub(super) fn transposed(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    by_level!(
        avx512: transposed_by_tiles(w, k, n, |src, s, dst, d| transpose_tile(src, s, dst, d)),
        avx2: transposed_by_tiles(w, k, n, |src, s, dst, d| transpose_tile_avx2(src, s, dst, d)),
        plain: transposed_by_tiles(w, k, n, transpose_tile_plain),
    )
}

/// [`transposed`] with `tile` transposing each whole [`TILE`] × [`TILE`] block (the source's
/// rows, then the destination's, a stride apart), the edges one element at a time.
fn transposed_by_tiles(
    w: &[f32],
    k: usize,
    n: usize,
    tile: impl Fn(&[f32], usize, &mut [f32], usize),
) -> Vec<f32> {
    assert_eq!(w.len(), k * n, "transpose: w is not k × n");
    let mut out = vec![0.0f32; n * k];
    let (k_tiles, n_tiles) = (k - k % TILE, n - n % TILE);
    // A strip of columns at a time, down the rows: each tile's 16 source lines are read once,
    // and its 16 destination rows are written in order. Across the rows first, the source rows
    // 2 KB apart fell into the same few L1 sets and the transpose took 3×.
    for c in (0..n_tiles).step_by(TILE) {
        for r in (0..k_tiles).step_by(TILE) {
            tile(&w[r * n + c..], n, &mut out[c * k + r..], k);
        }
    }
    // The edges past the last whole tile, if any, one element at a time.
    for r in 0..k {
        let first = if r < k_tiles { n_tiles } else { 0 };
        for c in first..n {
            out[c * k + r] = w[r * n + c];
        }
    }
    out
}

/// One [`TILE`] × [`TILE`] block transposed, element by element.
pub(super) fn transpose_tile_plain(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    for i in 0..TILE {
        let row = &src[i * src_stride..i * src_stride + TILE];
        for (j, &x) in row.iter().enumerate() {
            dst[j * dst_stride + i] = x;
        }
    }
}
