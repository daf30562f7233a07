//! The arithmetic of the fused kernels, on ndarray tensors of f32.
//!
//! Matrix products go to the `gemm` crate (the one Burn's flex backend uses), which packs,
//! vectorises (AVX2/FMA, AVX-512 where present) and splits the work over rayon's threads.

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

/// `out += a · b`.
fn matmul_add(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>, out: &mut [f32]) {
    assert_eq!(out.len(), m * n);
    // SAFETY: `out` is an initialised slice of m×n floats.
    unsafe { gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), true) }
}

/// A new `m × n` product `a · b`.
fn product(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>) -> Vec<f32> {
    // Not zeroed first: that would be one more pass over the output (1.6 MB for the first
    // layer's weight gradient), and gemm writes every element when it does not read them.
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: the capacity holds m×n floats; gemm writes all of them (read_dst is false), so
    // they are initialised when the length is set.
    unsafe {
        gemm_into(m, n, k, &a, &b, out.as_mut_ptr(), false);
        out.set_len(m * n);
    }
    out
}

/// `relu(x·w + b)` or `x·w + b`.
pub(super) fn dense(
    x: &NdArrayTensor,
    w: &NdArrayTensor,
    b: &NdArrayTensor,
    relu: bool,
) -> NdArrayTensor {
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
    let mut y = match SparseColumns::of(&xs, m, k) {
        Some(columns) => columns.times_plus_bias(&values(w), &bias, n),
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
            y
        }
    };
    if relu {
        for value in &mut y {
            // `z < 0` is false for NaN, so a diverging step stays visible in the loss.
            if *value < 0.0 {
                *value = 0.0;
            }
        }
    }
    tensor(y, &[m, n])
}

/// Gradients of [`dense`] given its inputs, its output `y` and the output's gradient `g`:
/// `(dx, dw, db)`, `dx` only when `need_dx`.
pub(super) fn dense_backward(
    x: &NdArrayTensor,
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
    if relu {
        // ReLU passes the gradient where its output is positive, as Burn's and Keras's do.
        for (gi, yi) in grad.iter_mut().zip(values(y).iter()) {
            if *yi <= 0.0 {
                *gi = 0.0;
            }
        }
    }
    let grad = &*grad;
    let mut db = vec![0.0f32; n];
    for row in grad.chunks_exact(n) {
        for (sum, gi) in db.iter_mut().zip(row) {
            *sum += gi;
        }
    }
    let xs = values(x);
    let dw = match SparseColumns::of(&xs, m, k) {
        Some(columns) => columns.transposed_times(grad, n),
        None => product(k, n, m, Operand::transposed(&xs, k), Operand::rows(grad, n)),
    };
    let dx = need_dx.then(|| {
        let dx = product(
            m,
            k,
            n,
            Operand::rows(grad, n),
            Operand::transposed(&values(w), n),
        );
        tensor(dx, &[m, k])
    });
    (dx, tensor(dw, &[k, n]), tensor(db, &[n]))
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

/// At most this fraction of non-zero inputs takes the sparse path of [`dense`]: MNIST images are
/// about 81% zeros, and skipping them saves four fifths of the first layer's arithmetic.
const SPARSE_DENSITY: f64 = 0.3;

/// Output columns per task of the sparse product: a block of 32 rows stays in the L1 cache.
const SPARSE_BLOCK: usize = 128;

/// Batches of at most this many rows take the sparse path (training's batches of 32). Larger ones
/// (`eval`'s chunks of 1000) keep the GEMM, whose cache blocking suits them: a sparse block of
/// 1000 output rows no longer fits in cache. (Timings on a busy machine did not separate the two
/// at 1000 rows; batch 32 training took about a third less CPU time sparse.)
const SPARSE_MAX_ROWS: usize = 64;

/// The non-zero entries of a row-major `m × k` matrix, column by column. Skipping zeros leaves
/// every sum the same except for its rounding (no other term changes): each product is the sum,
/// in order, of the non-zero terms, as a GEMM's is of all terms in its own order. (Only a weight
/// that is already infinite or NaN could tell: 0·inf is NaN, a skipped term is not.)
struct SparseColumns {
    /// Column `j`'s entries are `starts[j]..starts[j + 1]` of `rows` and `values`.
    starts: Vec<usize>,
    rows: Vec<usize>,
    values: Vec<f32>,
    m: usize,
}

impl SparseColumns {
    /// `x`'s non-zero entries when they are few enough to be worth it, else `None`.
    fn of(x: &[f32], m: usize, k: usize) -> Option<Self> {
        if m == 0 || m > SPARSE_MAX_ROWS || k == 0 {
            return None;
        }
        let non_zero: usize = x.iter().map(|v| usize::from(*v != 0.0)).sum();
        if non_zero as f64 > SPARSE_DENSITY * (m * k) as f64 {
            return None;
        }
        let mut starts = Vec::with_capacity(k + 1);
        let (mut rows, mut values) = (Vec::with_capacity(non_zero), Vec::with_capacity(non_zero));
        starts.push(0);
        for j in 0..k {
            for i in 0..m {
                let v = x[i * k + j];
                if v != 0.0 {
                    rows.push(i);
                    values.push(v);
                }
            }
            starts.push(rows.len());
        }
        Some(Self {
            starts,
            rows,
            values,
            m,
        })
    }

    fn column(&self, j: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = self.starts[j]..self.starts[j + 1];
        self.rows[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }

    /// `x · w + b` for `w` `k × n`: each row of `w` is read once and added, scaled, to the rows
    /// of the output whose input is non-zero there; blocks of output columns run in parallel.
    fn times_plus_bias(&self, w: &[f32], bias: &[f32], n: usize) -> Vec<f32> {
        let (m, k) = (self.m, self.starts.len() - 1);
        assert_eq!(w.len(), k * n);
        let blocks: Vec<(usize, Vec<f32>)> = (0..n)
            .step_by(SPARSE_BLOCK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let width = SPARSE_BLOCK.min(n - start);
                let mut block = Vec::with_capacity(m * width);
                for _ in 0..m {
                    block.extend_from_slice(&bias[start..start + width]);
                }
                for j in 0..k {
                    let w_row = &w[j * n + start..j * n + start + width];
                    for (i, v) in self.column(j) {
                        axpy(&mut block[i * width..(i + 1) * width], v, w_row);
                    }
                }
                (start, block)
            })
            .collect();
        let mut y = vec![0.0f32; m * n];
        for (start, block) in blocks {
            let width = block.len() / m;
            for (y_row, b_row) in y.chunks_exact_mut(n).zip(block.chunks_exact(width)) {
                y_row[start..start + width].copy_from_slice(b_row);
            }
        }
        y
    }

    /// `xᵀ · g` for `g` `m × n`: row `j` of the result sums, scaled, the rows of `g` whose input
    /// is non-zero in column `j`, and is zero where there are none.
    fn transposed_times(&self, g: &[f32], n: usize) -> Vec<f32> {
        let k = self.starts.len() - 1;
        assert_eq!(g.len(), self.m * n);
        let rows_per_task = SPARSE_BLOCK / 4;
        let mut out = Vec::with_capacity(k * n);
        out.spare_capacity_mut()[..k * n]
            .par_chunks_mut(n * rows_per_task)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (offset, row) in rows.chunks_exact_mut(n).enumerate() {
                    // Each row is zeroed just before it is summed into, while it is in cache.
                    let row = zeroed(row);
                    for (i, v) in self.column(chunk * rows_per_task + offset) {
                        axpy(row, v, &g[i * n..(i + 1) * n]);
                    }
                }
            });
        // SAFETY: `zeroed` initialised every row of the first k×n elements above.
        unsafe { out.set_len(k * n) };
        out
    }
}

/// `row` filled with zeros, as initialised floats.
fn zeroed(row: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for value in row.iter_mut() {
        value.write(0.0);
    }
    // SAFETY: every element was just written; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(std::ptr::from_mut(row) as *mut [f32]) }
}

/// `y += a·x`, with AVX where the CPU has it (runtime check).
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[inline(always)]
    fn generic(y: &mut [f32], a: f32, x: &[f32]) {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi += a * xi;
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn avx(y: &mut [f32], a: f32, x: &[f32]) {
        generic(y, a, x)
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, checked just above.
        return unsafe { avx(y, a, x) };
    }
    generic(y, a, x)
}

/// Elements per task when the update is split over threads: large enough that a task's
/// scheduling cost is small against its work.
const CHUNK: usize = 1 << 15;

/// Keras's RMSprop step, in one pass over the parameter, updating the running average in place
/// (the optimizer holds the only reference to it) and the parameter too when nothing else holds
/// it. Burn's `Learner` keeps its own handle on the model while the optimizer steps it, so in
/// training the new parameter goes to a new buffer, written once, never zeroed first.
pub(super) fn rmsprop(
    w: NdArrayTensor,
    g: &NdArrayTensor,
    v: NdArrayTensor,
    lr: f64,
    rho: f32,
    eps: f32,
) -> (NdArrayTensor, NdArrayTensor) {
    let gs = values(g);
    let shape = dims(&w);
    assert_eq!(shape, dims(g), "gradient and parameter shapes differ");
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
        keep: 1.0 - rho,
        eps,
    };
    let parallel = gs.len() > CHUNK;
    let w = if is_writable(&w) {
        let mut w = w;
        let ws = values_mut(&mut w);
        if parallel {
            ws.par_chunks_mut(CHUNK)
                .zip(vs.par_chunks_mut(CHUNK))
                .zip(gs.par_chunks(CHUNK))
                .for_each(|((w, v), g)| rms.in_place(w, v, g));
        } else {
            rms.in_place(ws, vs, &gs);
        }
        w
    } else {
        let ws = values(&w);
        let mut out = Vec::<f32>::with_capacity(ws.len());
        let spare = &mut out.spare_capacity_mut()[..ws.len()];
        if parallel {
            spare
                .par_chunks_mut(CHUNK)
                .zip(ws.par_chunks(CHUNK))
                .zip(vs.par_chunks_mut(CHUNK))
                .zip(gs.par_chunks(CHUNK))
                .for_each(|(((o, w), v), g)| rms.into_new(o, w, v, g));
        } else {
            rms.into_new(spare, &ws, vs, &gs);
        }
        // SAFETY: `into_new` wrote each of the first `ws.len()` elements (the chunks of `spare`,
        // `ws`, `vs` and `gs` have the same lengths, as the shape assertions above ensure).
        unsafe { out.set_len(ws.len()) };
        tensor(out, &shape)
    };
    (w, v)
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
        *v = self.rho * *v + self.keep * (g * g);
        w - (self.lr * g) / (*v + self.eps).sqrt()
    }

    #[inline(always)]
    fn in_place_generic(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        for ((wi, vi), gi) in w.iter_mut().zip(v).zip(g) {
            *wi = self.step(*wi, vi, *gi);
        }
    }

    #[inline(always)]
    fn into_new_generic(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        for (((oi, wi), vi), gi) in out.iter_mut().zip(w).zip(v).zip(g) {
            oi.write(self.step(*wi, vi, *gi));
        }
    }

    /// The same loops compiled for AVX: twice as many lanes for the division and square root,
    /// which bound this loop, than the baseline x86-64 build's SSE2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn in_place_avx(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.in_place_generic(w, v, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn into_new_avx(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        self.into_new_generic(out, w, v, g)
    }

    /// `w` updated in place.
    fn in_place(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            return unsafe { self.in_place_avx(w, v, g) };
        }
        self.in_place_generic(w, v, g)
    }

    /// The new weights written to `out`, one per element of `w`.
    fn into_new(self, out: &mut [MaybeUninit<f32>], w: &[f32], v: &mut [f32], g: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            return unsafe { self.into_new_avx(out, w, v, g) };
        }
        self.into_new_generic(out, w, v, g)
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
    use super::SparseColumns;

    #[test]
    fn mostly_zero_inputs_take_the_sparse_path_with_every_non_zero() {
        // 3 × 4, three non-zeros (25%).
        let x = [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5, 0.0, 3.0, 0.0, 0.0];
        let columns = SparseColumns::of(&x, 3, 4).expect("25% non-zero is sparse");
        let listed: Vec<Vec<(usize, f32)>> = (0..4).map(|j| columns.column(j).collect()).collect();
        assert_eq!(
            listed,
            vec![vec![], vec![(0, 2.0), (2, 3.0)], vec![], vec![(1, -1.5)]]
        );
        // 4 non-zeros of 12 is over the threshold: the dense GEMM is used.
        let denser = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.5, 0.0, 3.0, 0.0, 0.0];
        assert!(SparseColumns::of(&denser, 3, 4).is_none());
        // Large batches keep the GEMM however sparse.
        let mut tall = vec![0.0f32; 65 * 4];
        tall[5] = 1.0;
        assert!(SparseColumns::of(&tall, 65, 4).is_none());
        assert!(SparseColumns::of(&tall[..64 * 4], 64, 4).is_some());
    }
}
