//! The AVX2 loops: finding a row's non-zeros, the sparse products' block, and the 16 × 16
//! transpose tile as four 8 × 8 ones.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// For each 8-bit mask, the lanes whose bits are set, in order, then zeros: the shuffle that
/// moves a vector's non-zero lanes to its front.
#[cfg(target_arch = "x86_64")]
pub(super) static PACK: [[u32; 8]; 256] = {
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
pub(super) fn compact_avx2(
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

/// [`combine`] for a full block: the sums held in eight AVX registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn combine_avx2(
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

/// The 16 × 16 block at the start of `src` (rows `src_stride` apart) transposed into `dst`
/// (rows `dst_stride` apart), as [`transpose_tile`] does in AVX-512 registers: here four 8 × 8
/// blocks, each transposed in eight AVX registers and stored at the mirrored place. Only copies,
/// so the result is the same bit for bit at every level.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn transpose_tile_avx2(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    const HALF: usize = TILE / 2;
    assert!(src.len() >= (TILE - 1) * src_stride + TILE);
    assert!(dst.len() >= (TILE - 1) * dst_stride + TILE);
    for (r, c) in [(0, 0), (0, HALF), (HALF, 0), (HALF, HALF)] {
        // SAFETY: the 8 × 8 block at row r, column c of the tile and its mirror at row c,
        // column r are inside the slices (checked above for the whole tile).
        unsafe {
            transpose_8x8(
                src.as_ptr().add(r * src_stride + c),
                src_stride,
                dst.as_mut_ptr().add(c * dst_stride + r),
                dst_stride,
            )
        }
    }
}

/// The 8 × 8 block at `src` (rows `src_stride` apart) transposed to `dst`: pairs of rows
/// interleaved, then pairs of pairs, then the 128-bit halves exchanged.
///
/// # Safety
/// `src` must be valid for reading and `dst` for writing 8 rows of 8 floats, rows a stride apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::{
        __m256, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    // SAFETY: the caller's.
    let rows: [__m256; 8] =
        std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * src_stride)) });
    // Rows 2p and 2p+1 interleaved within each 128-bit half.
    let pairs: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (rows[i & !1], rows[i | 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // Then each half holds one column of four rows: [q] columns 0/4, 1/5, 2/6, 3/7.
    let quads: [__m256; 8] = std::array::from_fn(|i| {
        let q = i & !3;
        match i % 4 {
            0 => _mm256_shuffle_ps::<0x44>(pairs[q], pairs[q + 2]),
            1 => _mm256_shuffle_ps::<0xEE>(pairs[q], pairs[q + 2]),
            2 => _mm256_shuffle_ps::<0x44>(pairs[q + 1], pairs[q + 3]),
            _ => _mm256_shuffle_ps::<0xEE>(pairs[q + 1], pairs[q + 3]),
        }
    });
    for j in 0..8 {
        // Column j: the low halves (rows 0–3, then 4–7) for j < 4, the high halves after.
        let (a, b) = (quads[j % 4], quads[j % 4 + 4]);
        let column = if j < 4 {
            _mm256_permute2f128_ps::<0x20>(a, b)
        } else {
            _mm256_permute2f128_ps::<0x31>(a, b)
        };
        // SAFETY: the caller's.
        unsafe { _mm256_storeu_ps(dst.add(j * dst_stride), column) };
    }
}
