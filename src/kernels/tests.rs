//! The fused kernels against the same maths written with Burn's general tensor operations.

use super::*;
use crate::backend::Backend;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Distribution, Tensor};

fn device() -> Device {
    Backend::Ndarray.device(0).unwrap()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
}

/// Like MNIST images: about 80% zeros, which takes the kernels' sparse path.
fn sparse_random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let keep: Tensor<D> = Tensor::random(shape, Distribution::Uniform(0.0, 1.0), device);
    random(shape, device).mask_fill(keep.lower_elem(0.8), 0.0)
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

#[test]
fn dense_forward_matches_matmul_plus_bias_and_relu() {
    let device = device();
    for (m, k, n) in [
        (32, 784, 512),
        (16, 512, 10),
        (3, 5, 7),
        (40, 300, 130),
        (300, 784, 512),
    ] {
        let (w, b) = (random([k, n], &device), random([n], &device));
        let (dense_x, sparse_x) = (random([m, k], &device), sparse_random([m, k], &device));
        for (x, with_relu) in [
            (&dense_x, true),
            (&dense_x, false),
            (&sparse_x, true),
            (&sparse_x, false),
        ] {
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

#[test]
fn dense_gradients_match_autodiff_of_the_general_ops() {
    let device = device().autodiff();
    let (m, k, n) = (8, 200, 140);
    let upstream = random([m, n], &device);
    let w0 = random([k, n], &device);
    let b0 = random([n], &device);
    let dense_x = random([m, k], &device);
    let sparse_x = sparse_random([m, k], &device);
    for (x0, with_relu) in [
        (&dense_x, true),
        (&dense_x, false),
        (&sparse_x, true),
        (&sparse_x, false),
    ] {
        let grads_of = |fused: bool| {
            let x = x0.clone().require_grad();
            let w = w0.clone().require_grad();
            let b = b0.clone().require_grad();
            let y = if fused {
                dense(x.clone(), w.clone(), b.clone(), with_relu)
            } else {
                reference_dense(x.clone(), w.clone(), b.clone(), with_relu)
            };
            let grads = (y * upstream.clone()).sum().backward();
            (
                x.grad(&grads).unwrap(),
                w.grad(&grads).unwrap(),
                b.grad(&grads).unwrap(),
            )
        };
        let (fx, fw, fb) = grads_of(true);
        let (rx, rw, rb) = grads_of(false);
        assert_close(fx, rx, 1e-5);
        assert_close(fw, rw, 1e-5);
        assert_close(fb, rb, 1e-5);
    }
}

#[test]
fn an_input_without_gradient_gets_none() {
    let device = device().autodiff();
    let x = random([4, 6], &device);
    let w = random([6, 3], &device).require_grad();
    let b = random([3], &device).require_grad();
    let grads = dense(x.clone(), w.clone(), b, true).sum().backward();
    assert!(w.grad(&grads).is_some());
    assert!(x.grad(&grads).is_none());
}

#[test]
fn cross_entropy_and_its_gradient_match_log_softmax() {
    let device = device().autodiff();
    let logits0 = random([6, 10], &device).mul_scalar(5.0);
    let labels = [3usize, 0, 9, 9, 1, 4];
    let mut one_hot = vec![0.0f32; 60];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * 10 + l] = 1.0;
    }
    let targets = Tensor::<2>::from_data(burn::tensor::TensorData::new(one_hot, [6, 10]), &device);
    let weights = random([6], &device);
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
    let (lr, rho, eps) = (0.001, 0.9f32, 1e-7f32);
    let mut w_fused = random([50, 40], &device);
    let mut w_ref = w_fused.clone();
    let mut v_fused = None;
    let mut v_ref: Option<Tensor<2>> = None;
    for _ in 0..3 {
        let g = random([50, 40], &device);
        let (w, v) = rmsprop(w_fused, g.clone(), v_fused, lr, rho, eps);
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

#[test]
fn rmsprop_on_tracked_tensors_updates_the_values() {
    let plain = device();
    let tracked = plain.clone().autodiff();
    let w = random([30, 20], &plain);
    let g = random([30, 20], &plain);
    let v = random([30, 20], &plain).abs();
    let (w_plain, v_plain) = rmsprop(w.clone(), g.clone(), Some(v.clone()), 0.01, 0.9, 1e-7);
    let on_tracked = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &tracked).require_grad();
    let (w_tracked, v_tracked) = rmsprop(
        on_tracked(&w),
        on_tracked(&g),
        Some(on_tracked(&v)),
        0.01,
        0.9,
        1e-7,
    );
    assert_close(w_tracked.inner(), w_plain.clone(), 0.0);
    assert_close(v_tracked.inner(), v_plain, 0.0);
    // And the step moved every weight against its gradient.
    let moved = (w_plain - w) * g;
    assert!(moved.into_data().iter::<f32>().all(|x| x < 0.0));
}
