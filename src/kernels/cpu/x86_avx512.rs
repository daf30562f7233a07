//! The AVX-512 loops: the sparse products' wide block and the 16 × 16 transpose tile.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// The 16 × 16 block at the start of `src` (rows `src_stride` apart) transposed into `dst`
/// (rows `dst_stride` apart), in registers: pairs of rows interleaved, then pairs of pairs,
/// then 128-bit lanes exchanged twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose_tile(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
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

/// [`combine_avx2`] in `VECTORS` AVX-512 registers of sums (4 or 8: a block of 64 or 128
/// columns, `out`'s length). Each column's sum takes the same terms in the same order, one
/// fused multiply-add each, so the results are those of [`combine_avx2`] bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn combine_avx512<const VECTORS: usize>(
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
