//! The arithmetic of the fused kernels, on ndarray tensors of f32.
//!
//! Matrix products go to the `gemm` crate (the one Burn's flex backend uses), which packs,
//! vectorises (AVX-512 or AVX2/FMA on x86-64, whichever the CPU has, through its `x86-v4`
//! feature; NEON on ARM) and splits the work over rayon's threads.
//!
//! The sparse path and the other hand-vectorised loops here are written for AVX2 and AVX-512,
//! chosen by the SIMD level ([`crate::kernels::Simd`], `MNIST_MLP_SIMD`) in one place,
//! `by_level!`. At `none` every product goes to gemm and the remaining loops run as plain Rust:
//! skipping zeros one scalar at a time is not known to beat gemm's vector kernels (on Apple
//! Silicon, say). Where to find what: `matmul.rs` (the gemm wrapper), `dense.rs` (the layer and
//! the transposed weight), `sparse.rs` (the products of mostly-zero inputs), `softmax.rs`,
//! `rmsprop.rs`, and the intrinsics by level in `x86_avx2.rs` and `x86_avx512.rs`.

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

/// The one place where the SIMD level picks code: the `avx512` arm, the `avx2` arm or the `plain`
/// one, by [`crate::kernels::simd::level`]. The x86 arms run in `unsafe` (they call
/// `#[target_feature]` functions): sound, since the level is never above what the CPU has
/// (`Simd::on_this_cpu`). Elsewhere than x86-64 only the plain arm is compiled.
macro_rules! by_level {
    (avx512: $avx512:expr, avx2: $avx2:expr, plain: $plain:expr $(,)?) => {
        match crate::kernels::simd::level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F, AVX2, FMA and POPCNT at this level.
            crate::kernels::Simd::Avx512 => {
                #[allow(unused_unsafe)]
                unsafe {
                    $avx512
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2, FMA and POPCNT at this level.
            crate::kernels::Simd::Avx2 => {
                #[allow(unused_unsafe)]
                unsafe {
                    $avx2
                }
            }
            _ => $plain,
        }
    };
}

mod dense;
mod matmul;
mod rmsprop;
mod softmax;
mod sparse;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

pub(super) use dense::*;
use matmul::*;
pub(super) use rmsprop::*;
pub(super) use softmax::*;
pub(super) use sparse::*;
#[cfg(target_arch = "x86_64")]
use x86_avx2::*;
#[cfg(target_arch = "x86_64")]
use x86_avx512::*;

pub(super) fn dims(tensor: &NdArrayTensor) -> Vec<usize> {
    match tensor {
        NdArrayTensor::F32(storage) => storage.shape().to_vec(),
        other => panic!("fused kernels take f32 tensors, got {:?}", other.dtype()),
    }
}

pub(super) fn matrix_dims(tensor: &NdArrayTensor) -> [usize; 2] {
    match dims(tensor)[..] {
        [rows, cols] => [rows, cols],
        ref other => panic!("expected a matrix, got shape {other:?}"),
    }
}

pub(super) fn tensor(values: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// Whether the AVX2 loops run: the SIMD level ([`super::simd::level`]) is AVX2 or above.
pub(in crate::kernels) fn simd() -> bool {
    super::simd::level() >= super::Simd::Avx2
}

/// Whether the AVX-512 loops run: the SIMD level is AVX-512.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    super::simd::level() == super::Simd::Avx512
}

/// Whether `tensor` can be written in place: the only reference to a contiguous buffer.
pub(super) fn is_writable(tensor: &NdArrayTensor) -> bool {
    matches!(tensor, NdArrayTensor::F32(storage)
        if storage.is_unique() && storage.view().is_standard_layout())
}

/// `tensor` itself when nothing else holds its buffer and it is contiguous (the optimizer's
/// parameters and running averages, the gradients), else a contiguous copy that can be written.
pub(super) fn writable(tensor_in: NdArrayTensor) -> NdArrayTensor {
    if is_writable(&tensor_in) {
        return tensor_in;
    }
    let shape = dims(&tensor_in);
    tensor(values(&tensor_in).into_owned(), &shape)
}

pub(super) fn values_mut(tensor: &mut NdArrayTensor) -> &mut [f32] {
    match tensor {
        NdArrayTensor::F32(storage) => storage
            .ensure_owned()
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("`writable` keeps only contiguous buffers")),
        other => panic!("fused kernels take f32 tensors, got {:?}", other.dtype()),
    }
}

#[cfg(test)]
mod tests;
