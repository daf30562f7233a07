//! Products with a mostly-zero left operand (MNIST images): its non-zeros only.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// Whether [`dense`] skips the zeros of `x` (`m × k`) for a product with `n` columns.
#[cfg(test)]
pub(in crate::kernels) fn takes_sparse_path(x: &[f32], m: usize, k: usize, n: usize) -> bool {
    Sparse::for_product(x, m, k, n).is_some()
}

/// At most this fraction of non-zero inputs takes the sparse path of [`dense`]: MNIST images are
/// about 81% zeros, and skipping them saves four fifths of the first layer's arithmetic.
pub(super) const SPARSE_DENSITY: f64 = 0.3;

/// Output columns one pass of the sparse products computes: 64 floats are eight AVX registers,
/// which hold the sums while the scaled rows of the other matrix are added into them.
pub(super) const SPARSE_BLOCK: usize = 64;

/// The block the AVX-512 loop takes where it fits: eight registers of sums, as the AVX2 loop's.
/// Four (one block) would leave it waiting on each multiply-add's latency: every term adds into
/// the same sums, so only as many multiply-adds run at once as there are registers of sums.
// Only the AVX-512 loop takes it, so elsewhere than x86-64 nothing does.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) const WIDE_BLOCK: usize = 2 * SPARSE_BLOCK;

/// The column blocks `(start, width)` of an `n`-column sparse product: [`WIDE_BLOCK`]s while
/// they fit when the AVX-512 loop runs, then [`SPARSE_BLOCK`]s, then what is left. A column's
/// sum is the same whichever block it is in.
pub(super) fn column_blocks(n: usize) -> impl Iterator<Item = (usize, usize)> {
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
pub(super) const SPARSE_ROWS_PER_TASK: usize = 32;

/// The non-zero entries of a row-major `m × k` matrix, row by row (compressed sparse rows), in
/// column order within each row. Skipping zeros leaves every sum the same except for its
/// rounding (no other term changes): each product is the sum of the non-zero terms, as a GEMM's
/// is of all terms in its own order. (Only a weight that is already infinite or NaN could tell:
/// 0·inf is NaN, a skipped term is not.)
#[derive(Debug)]
pub(in crate::kernels) struct Sparse {
    /// Row `i`'s entries are `starts[i]..starts[i + 1]` of `cols` and `values`.
    pub(super) starts: Vec<usize>,
    /// u32: half the bytes of usize to read for every entry.
    pub(super) cols: Vec<u32>,
    pub(super) values: Vec<f32>,
    /// Columns of the dense matrix.
    pub(super) k: usize,
}

impl Sparse {
    /// `x`'s non-zero entries when skipping its zeros is worth it for a product with `n`
    /// columns, else `None`. Narrower products than a block (the output layer's 10 columns)
    /// are too small for the saving to pay for finding the non-zeros.
    pub(super) fn for_product(x: &[f32], m: usize, k: usize, n: usize) -> Option<Self> {
        if n < SPARSE_BLOCK || !simd() {
            return None;
        }
        Self::of(x, m, k)
    }

    /// `x`'s non-zero entries when they are few enough to be worth it, else `None`.
    pub(super) fn of(x: &[f32], m: usize, k: usize) -> Option<Self> {
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

    pub(super) fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// `self · b`, plus `bias` in every row when given, then ReLU when `relu`, for `b` `k × n`
    /// row-major. Each thread takes a contiguous chunk of rows and goes through the output a
    /// block of columns at a time: the block's part of `b` (`k` × 256 bytes) stays in the L2
    /// cache while the chunk's rows gather from it.
    pub(super) fn times(&self, b: &[f32], n: usize, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
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
    pub(super) fn transposed_times(&self, g: &[f32], n: usize) -> Vec<f32> {
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
pub(super) fn compact(
    row: &[f32],
    cols: &mut [MaybeUninit<u32>],
    values: &mut [MaybeUninit<f32>],
    at: usize,
) -> usize {
    by_level!(
        avx512: compact_avx2(row, cols, values, at),
        avx2: compact_avx2(row, cols, values, at),
        plain: compact_each(row, 0, cols, values, at),
    )
}

/// [`compact`] one element at a time, for `row` starting at column `first`.
pub(super) fn compact_each(
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

/// The entries of a [`Sparse`] matrix sorted by column (a counting sort; compressed sparse
/// columns), each with its row, rows in order within a column.
pub(super) struct Columns {
    /// Column `c`'s entries are `starts[c]..starts[c + 1]`.
    starts: Vec<usize>,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl Columns {
    pub(super) fn of(x: &Sparse) -> Self {
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

    pub(super) fn get(&self, c: usize) -> (&[u32], &[f32]) {
        let range = self.starts[c]..self.starts[c + 1];
        (&self.rows[range.clone()], &self.values[range])
    }
}

/// Some rows of a row-major matrix whose rows are `stride` apart, each scaled: row
/// `indices[e]` times `values[e]`.
#[derive(Clone, Copy)]
pub(super) struct Terms<'a> {
    pub(super) rows: &'a [f32],
    pub(super) stride: usize,
    pub(super) indices: &'a [u32],
    pub(super) values: &'a [f32],
}

impl<'a> Terms<'a> {
    /// The terms, each with the `width` elements of its row.
    pub(super) fn each(self, width: usize) -> impl Iterator<Item = (f32, &'a [f32])> {
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
pub(super) fn combine(
    out: &mut [MaybeUninit<f32>],
    terms: Terms<'_>,
    init: Option<&[f32]>,
    relu: bool,
) {
    by_level!(
        avx512: match out.len() {
            WIDE_BLOCK => combine_avx512::<{ WIDE_BLOCK / 16 }>(out, terms, init, relu),
            SPARSE_BLOCK => combine_avx512::<{ SPARSE_BLOCK / 16 }>(out, terms, init, relu),
            _ => combine_each(out, terms, init, relu),
        },
        avx2: match <&mut [MaybeUninit<f32>; SPARSE_BLOCK]>::try_from(&mut *out) {
            Ok(block) => combine_avx2(block, terms, init, relu),
            Err(_) => combine_each(out, terms, init, relu),
        },
        plain: combine_each(out, terms, init, relu),
    )
}

/// [`combine`] one column at a time, at most a block wide.
pub(super) fn combine_each(
    out: &mut [MaybeUninit<f32>],
    terms: Terms<'_>,
    init: Option<&[f32]>,
    relu: bool,
) {
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
