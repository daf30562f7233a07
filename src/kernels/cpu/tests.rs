//! Unit tests of the CPU kernels' parts.

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
    use super::{Terms, WIDE_BLOCK, combine_avx2, combine_avx512};
    use crate::kernels::Simd;
    use std::mem::MaybeUninit;
    // Whatever level the process runs at: only a CPU without AVX-512 skips this.
    if !Simd::Avx512.on_this_cpu() {
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
        let wt = transposed(&w, k, n);
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
                    ::gemm::Parallelism::Rayon(0),
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

/// The register transposes of a 16 × 16 tile, AVX2's and AVX-512's, are the element-by-element
/// one, for whatever level the process runs at: each one the CPU has is checked (the CPU's own
/// detection), and none is skipped on a CPU that has it.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_register_transpose_is_the_transpose() {
    use super::{TILE, transpose_tile, transpose_tile_avx2, transpose_tile_plain};
    use crate::kernels::Simd;
    let (src_stride, dst_stride) = (TILE + 7, TILE + 3);
    let src: Vec<f32> = (0..TILE * src_stride)
        .map(|i| i as f32 * 0.5 - 9.0)
        .collect();
    let mut want = vec![f32::NAN; TILE * dst_stride];
    transpose_tile_plain(&src, src_stride, &mut want, dst_stride);
    for r in 0..TILE {
        for c in 0..TILE {
            assert_eq!(
                want[c * dst_stride + r],
                src[r * src_stride + c],
                "[{r}, {c}]"
            );
        }
    }
    let mut checked = vec![];
    for level in Simd::available() {
        let mut got = vec![f32::NAN; TILE * dst_stride];
        // SAFETY: the CPU has the level's instructions (`available`).
        match level {
            Simd::Avx512 => unsafe { transpose_tile(&src, src_stride, &mut got, dst_stride) },
            Simd::Avx2 => unsafe { transpose_tile_avx2(&src, src_stride, &mut got, dst_stride) },
            Simd::None => continue,
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // The padding past each row stays as it was: NaN in both.
        assert_eq!(bits(&got), bits(&want), "{level}");
        checked.push(level);
    }
    let has_avx2 = std::arch::is_x86_feature_detected!("avx2");
    assert_eq!(checked.contains(&Simd::Avx2), has_avx2, "{checked:?}");
}
