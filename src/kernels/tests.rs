//! The fused kernels against the same maths written with Burn's general tensor operations.

use super::*;
use crate::backend::Backend;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn device() -> Device {
    Backend::Ndarray.device(0).unwrap()
}

/// A seeded source of test values: a failure reproduces (Burn's device RNG is shared with the
/// tests running beside this one).
fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn tensor_of<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Uniform on ±1.
fn random<const D: usize>(rng: &mut StdRng, shape: [usize; D], device: &Device) -> Tensor<D> {
    let values = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    tensor_of(values, shape, device)
}

/// Like MNIST images: about 80% zeros, which takes the kernels' sparse path.
fn sparse_random<const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let values = (0..shape.iter().product())
        .map(|_| {
            if rng.random_range(0.0..1.0) < 0.8 {
                0.0
            } else {
                rng.random_range(-1.0..1.0)
            }
        })
        .collect();
    tensor_of(values, shape, device)
}

/// Whether [`dense`] takes its sparse path for input `x` and `n` outputs.
fn takes_sparse_path(x: &Tensor<2>, n: usize) -> bool {
    let [m, k] = x.dims();
    cpu::takes_sparse_path(&x.to_data().try_to_vec::<f32>().unwrap(), m, k, n)
}

fn assert_close<const D: usize>(got: Tensor<D>, want: Tensor<D>, tolerance: f32) {
    assert_eq!(got.dims(), want.dims());
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    let want = want.into_data().try_to_vec::<f32>().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * (1.0 + w.abs()),
            "element {i}: {g} vs {w}"
        );
    }
}

fn reference_dense(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, with_relu: bool) -> Tensor<2> {
    let z = x.matmul(w) + b.unsqueeze_dim(0);
    if with_relu { relu(z) } else { z }
}

#[test]
fn the_ndarray_device_takes_the_fused_path() {
    assert!(supported(&device()));
    assert!(supported(&device().autodiff()));
}

/// `(m, k, n)`: the tutorial's layers at batch 32 and 300 (more rows than one thread takes), k
/// not a multiple of 8, n below a block of 64, a block and a part, exactly a block.
const SHAPES: [(usize, usize, usize); 7] = [
    (32, 784, 512),
    (300, 784, 512),
    (16, 512, 10),
    (3, 5, 7),
    (40, 301, 130),
    (9, 203, 64),
    (8, 200, 63),
];

/// Dense and mostly-zero inputs for `shape`, each with whether it takes the sparse path, which
/// is asserted: a sparse input takes it whenever the product is a block wide or more (and the
/// CPU runs the AVX2 loops), a dense one never.
fn inputs(rng: &mut StdRng, (m, k, n): (usize, usize, usize), device: &Device) -> [Tensor<2>; 2] {
    let (dense_x, sparse_x) = (
        random(rng, [m, k], device),
        sparse_random(rng, [m, k], device),
    );
    assert!(!takes_sparse_path(&dense_x, n), "{m}x{k}x{n}");
    assert_eq!(
        takes_sparse_path(&sparse_x, n),
        n >= 64 && cpu::simd(),
        "{m}x{k}x{n}"
    );
    [dense_x, sparse_x]
}

#[test]
fn dense_forward_matches_matmul_plus_bias_and_relu() {
    let device = device();
    let mut rng = rng(1);
    for (m, k, n) in SHAPES {
        let (w, b) = (
            random(&mut rng, [k, n], &device),
            random(&mut rng, [n], &device),
        );
        for x in inputs(&mut rng, (m, k, n), &device) {
            for with_relu in [true, false] {
                assert_close(
                    dense(x.clone(), w.clone(), b.clone(), with_relu),
                    reference_dense(x.clone(), w.clone(), b.clone(), with_relu),
                    // Sums of up to 784 products of magnitude ~1, added in another order: their
                    // rounding differs by about 1e-5 however small the result.
                    1e-4,
                );
            }
        }
    }
}

/// `(dx, dw, db)` of `sum(dense(x, w, b) · upstream)`, by the fused kernels or by Burn's ops.
fn dense_grads(
    fused: bool,
    [x, w, b]: [&Tensor<2>; 3],
    upstream: &Tensor<2>,
    with_relu: bool,
) -> [Tensor<2>; 3] {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let b = b.clone().flatten::<1>(0, 1).require_grad();
    let y = if fused {
        dense(x.clone(), w.clone(), b.clone(), with_relu)
    } else {
        reference_dense(x.clone(), w.clone(), b.clone(), with_relu)
    };
    let grads = (y * upstream.clone()).sum().backward();
    [
        x.grad(&grads).unwrap(),
        w.grad(&grads).unwrap(),
        b.grad(&grads).unwrap().unsqueeze(),
    ]
}

#[test]
fn dense_gradients_match_autodiff_of_the_general_ops() {
    let device = device().autodiff();
    let mut rng = rng(2);
    for (m, k, n) in SHAPES {
        let upstream = random(&mut rng, [m, n], &device);
        let w = random(&mut rng, [k, n], &device);
        let b = random(&mut rng, [1, n], &device);
        for x in inputs(&mut rng, (m, k, n), &device) {
            for with_relu in [true, false] {
                let fused = dense_grads(true, [&x, &w, &b], &upstream, with_relu);
                let reference = dense_grads(false, [&x, &w, &b], &upstream, with_relu);
                for (f, r) in fused.into_iter().zip(reference) {
                    // Sums over up to 300 rows: rounding order differs as in the forward pass.
                    assert_close(f.inner(), r.inner(), 1e-4);
                }
            }
        }
    }
}

/// An infinite upstream gradient (a diverging step) makes the weight gradient NaN wherever
/// Burn's ops make it NaN, also when the input is mostly zeros: the sparse path would skip the
/// 0·inf terms, which are NaN, and give a finite number there.
#[test]
fn a_non_finite_gradient_gives_the_same_nans_on_every_path() {
    let device = device().autodiff();
    let mut rng = rng(3);
    let (m, k, n) = (16, 100, 128);
    let w = random(&mut rng, [k, n], &device);
    let b = random(&mut rng, [1, n], &device);
    for poison in [f32::INFINITY, f32::NAN] {
        let mut values = random(&mut rng, [m, n], &device)
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        values[5 * n + 7] = poison;
        let upstream = tensor_of(values, [m, n], &device);
        for (x, sparse) in inputs(&mut rng, (m, k, n), &device)
            .into_iter()
            .zip([false, true])
        {
            // Each element as NaN, ±inf or finite (0).
            let kinds = |t: Tensor<2>| -> Vec<f32> {
                let data = t.inner().to_data();
                data.iter::<f32>()
                    .map(|v| if v.is_finite() { 0.0 } else { v })
                    .collect()
            };
            let fused = dense_grads(true, [&x, &w, &b], &upstream, false).map(kinds);
            let reference = dense_grads(false, [&x, &w, &b], &upstream, false).map(kinds);
            // 0·inf where the mostly-zero input is 0.
            assert_eq!(
                reference[1].iter().any(|v| v.is_nan()),
                sparse || poison.is_nan(),
                "{poison}: NaNs in the reference weight gradient"
            );
            for ((name, f), r) in ["dx", "dw", "db"].iter().zip(fused).zip(reference) {
                // Compared bit for bit, so that NaN equals NaN.
                let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
                assert!(
                    bits(f) == bits(r),
                    "{poison} {name}: non-finite values in other places"
                );
            }
        }
    }
}

#[test]
fn an_input_without_gradient_gets_none() {
    let device = device().autodiff();
    let mut rng = rng(4);
    let x = random(&mut rng, [4, 6], &device);
    let w = random(&mut rng, [6, 3], &device).require_grad();
    let b = random(&mut rng, [3], &device).require_grad();
    let grads = dense(x.clone(), w.clone(), b, true).sum().backward();
    assert!(w.grad(&grads).is_some());
    assert!(x.grad(&grads).is_none());
}

#[test]
fn cross_entropy_and_its_gradient_match_log_softmax() {
    let device = device().autodiff();
    let mut rng = rng(5);
    let logits0 = random(&mut rng, [6, 10], &device).mul_scalar(5.0);
    let labels = [3usize, 0, 9, 9, 1, 4];
    let mut one_hot = vec![0.0f32; 60];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * 10 + l] = 1.0;
    }
    let targets = tensor_of(one_hot, [6, 10], &device);
    let weights = random(&mut rng, [6], &device);
    let run = |fused: bool| {
        let logits = logits0.clone().require_grad();
        let loss = if fused {
            softmax_cross_entropy(logits.clone(), targets.clone())
        } else {
            (log_softmax(logits.clone(), 1) * targets.clone())
                .sum_dim(1)
                .neg()
                .reshape([6])
        };
        let grads = (loss.clone() * weights.clone()).sum().backward();
        (loss, logits.grad(&grads).unwrap())
    };
    let (fused_loss, fused_grad) = run(true);
    let (loss, grad) = run(false);
    assert_close(fused_loss.inner(), loss.inner(), 1e-5);
    assert_close(fused_grad, grad, 1e-5);
}

#[test]
fn rmsprop_matches_the_general_update_over_several_steps() {
    let device = device();
    let mut rng = rng(6);
    let (lr, rho, eps) = (0.001, 0.9f32, 1e-7f32);
    let mut w_fused = random(&mut rng, [50, 40], &device);
    let mut w_ref = w_fused.clone();
    let mut v_fused = None;
    let mut v_ref: Option<Tensor<2>> = None;
    for _ in 0..3 {
        let g = random(&mut rng, [50, 40], &device);
        let (w, v) = rmsprop(w_fused, g.clone(), v_fused, lr, rho, 1.0 - rho, eps);
        (w_fused, v_fused) = (w, Some(v));
        let squared = g.clone().square().mul_scalar(1.0 - rho);
        let v = match v_ref {
            Some(v) => v.mul_scalar(rho).add(squared),
            None => squared,
        };
        w_ref = w_ref - g.mul_scalar(lr).div(v.clone().add_scalar(eps).sqrt());
        v_ref = Some(v);
    }
    assert_close(w_fused, w_ref, 1e-6);
    assert_close(v_fused.unwrap(), v_ref.unwrap(), 1e-6);
}

/// The first layer's 401,408 weights are updated in chunks on several threads: in place when the
/// optimizer holds the only reference, over the gradient when only the gradient is unshared (as
/// in training: Burn's Learner keeps a handle on the weights), into a new buffer when both are
/// shared. Every element equals the scalar formula in f32, operation for operation, and a
/// shared buffer is never written.
#[test]
fn the_threaded_rmsprop_equals_the_scalar_formula() {
    let device = device();
    let mut rng = rng(7);
    let shape = [784, 512];
    let (lr, rho, keep, eps) = (0.001f32, 0.9f32, 0.1f32, 1e-7f32);
    let [w, g] = [0, 1].map(|_| random(&mut rng, shape, &device));
    let v = random(&mut rng, shape, &device).abs().mul_scalar(1e-3);
    let values = |t: &Tensor<2>| t.to_data().try_to_vec::<f32>().unwrap();
    let (w0, g0, v0) = (values(&w), values(&g), values(&v));
    let mut want_v = v0.clone();
    let want_w: Vec<f32> = w0
        .iter()
        .zip(&mut want_v)
        .zip(&g0)
        .map(|((w, v), g)| {
            *v = rho * *v + keep * (g * g);
            w - (lr * g) / (*v + eps).sqrt()
        })
        .collect();
    for (w_shared, g_shared) in [(false, false), (true, false), (true, true)] {
        let w = tensor_of(w0.clone(), shape, &device);
        let g = tensor_of(g0.clone(), shape, &device);
        let kept_w = w_shared.then(|| w.clone());
        let kept_g = g_shared.then(|| g.clone());
        let (new_w, new_v) = rmsprop(w, g, Some(v.clone()), lr.into(), rho, keep, eps);
        let case = format!("w shared {w_shared}, g shared {g_shared}");
        assert!(values(&new_w) == want_w, "{case}: weights differ");
        assert!(values(&new_v) == want_v, "{case}: running averages differ");
        if let Some(kept) = kept_w {
            assert_eq!(
                values(&kept),
                w0,
                "{case}: the other weights handle changed"
            );
        }
        if let Some(kept) = kept_g {
            assert_eq!(
                values(&kept),
                g0,
                "{case}: the other gradient handle changed"
            );
        }
    }
}

#[test]
fn rmsprop_on_tracked_tensors_updates_the_values() {
    let plain = device();
    let tracked = plain.clone().autodiff();
    let mut rng = rng(8);
    let w = random(&mut rng, [30, 20], &plain);
    let g = random(&mut rng, [30, 20], &plain);
    let v = random(&mut rng, [30, 20], &plain).abs();
    let (w_plain, v_plain) = rmsprop(w.clone(), g.clone(), Some(v.clone()), 0.01, 0.9, 0.1, 1e-7);
    let on_tracked = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &tracked).require_grad();
    let (w_tracked, v_tracked) = rmsprop(
        on_tracked(&w),
        on_tracked(&g),
        Some(on_tracked(&v)),
        0.01,
        0.9,
        0.1,
        1e-7,
    );
    assert_close(w_tracked.inner(), w_plain.clone(), 0.0);
    assert_close(v_tracked.inner(), v_plain, 0.0);
    // And the step moved every weight against its gradient.
    let moved = (w_plain - w) * g;
    assert!(moved.into_data().iter::<f32>().all(|x| x < 0.0));
}
