//! Fused CPU kernels for the tutorial's MLP, as a Burn backend extension of the ndarray backend.
//!
//! Built from Burn's general tensor operations, one training step of the MLP is many
//! separate passes over memory (matmul, bias add, ReLU, their gradients, transposes made
//! contiguous, and the optimizer's nine element-wise operations over 670k parameters), each into
//! a freshly allocated buffer, with single-threaded matrix products. These kernels do the same
//! arithmetic in a few passes:
//!
//! - [`dense`]: `relu(x·w + b)` (or without the ReLU), one multi-threaded GEMM accumulated onto
//!   the bias, then the ReLU; its backward pass masks the gradient by the ReLU and computes
//!   the weight, bias and input gradients with two GEMMs, skipping the input gradient when the
//!   input needs none (the images). Mostly-zero inputs (MNIST images are ~81% zeros) skip the
//!   zeros instead of multiplying them, in the forward pass and in the weight gradient: same
//!   sums up to rounding order, a fifth of the first layer's arithmetic;
//! - [`softmax_cross_entropy`]: per-sample categorical cross-entropy from logits, whose gradient
//!   is `softmax − one_hot` computed in the same pass;
//! - [`rmsprop`]: Keras's RMSprop update in one pass, updating the running average in place.
//!
//! The arithmetic is the same as the general path's (same formulas, f32), so results agree to
//! rounding; `tests` checks both paths against each other. Other backends (flex, wgpu) keep the
//! general path: [`supported`] says which one a device takes, and [`Kernels::Burn`] chooses it on
//! ndarray too (`--kernels burn`: to see what the kernels buy, or to work around a bug in them).

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

mod autodiff;
mod cpu;
mod simd;
mod threads;

pub use simd::{Simd, SimdError};

pub use threads::{MAX_THREADS, ThreadsError, available_cores, default_threads, run_on_threads};

use burn::backend::{Dispatch, DispatchDevice, NdArray, backend_extension, tensor::FloatTensor};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The fused operations. Implemented for [`NdArray`] (the arithmetic) and for Burn's autodiff
/// wrapper of it (the backward passes).
#[backend_extension(Autodiff, NdArray)]
pub trait MlpKernels: burn::backend::Backend {
    /// `x·w + b`, then ReLU when `relu`: `x` `[m, k]`, `w` `[k, n]`, `b` `[n]` → `[m, n]`.
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// Categorical cross-entropy of each row of `logits` `[m, c]` against the one-hot rows of
    /// `targets` `[m, c]`: `[m]`.
    fn softmax_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// One Keras RMSprop step: `v ← rho·v + keep·g²` (0 where that is subnormal, as under
    /// TensorFlow), `w ← w − lr·g/√(v+eps)`, where `keep` is `1 − rho` (rounded once, as Keras
    /// does). Returns `(w, v)`.
    fn rmsprop(
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lr: f64,
        rho: f32,
        keep: f32,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Which implementation of the MLP's operations a run trains with: `run.kernels` in the
/// config, `--kernels` on `train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// This module's fused kernels (ndarray only).
    Fused,
    /// Burn's stock ops: `Linear`, `Relu`, `log_softmax`, and Keras's RMSprop written with
    /// tensor operations (`crate::optim`). What every other backend runs.
    Burn,
}

impl Kernels {
    pub const ALL: [Kernels; 2] = [Kernels::Fused, Kernels::Burn];

    /// The default on `backend`: fused where they exist, Burn's ops elsewhere.
    pub fn default_on(backend: crate::backend::Backend) -> Self {
        if backend == crate::backend::Backend::Ndarray {
            Kernels::Fused
        } else {
            Kernels::Burn
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fused => "fused",
            Kernels::Burn => "burn",
        }
    }

    /// Whether operations on `device` go through the fused kernels: asked for, and on a device
    /// that has them (a model trained fused and scored on wgpu takes Burn's ops there).
    pub fn fused_on(self, device: &Device) -> bool {
        self == Kernels::Fused && supported(device)
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Kernels::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown kernels `{0}`; expected fused or burn")]
pub struct UnknownKernels(String);

impl std::str::FromStr for Kernels {
    type Err = UnknownKernels;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kernels::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKernels(s.to_string()))
    }
}

/// The SIMD level the kernels run at in this process (`MNIST_MLP_SIMD`, read once), or why the
/// level asked for cannot be used (a one-line error for the command line to stop with).
pub fn simd() -> Result<Simd, SimdError> {
    simd::chosen()
}

/// The SIMD level a run with `kernels` on `device` computes at: `None` where the fused kernels
/// do not run.
pub fn simd_on(kernels: Kernels, device: &Device) -> Option<Simd> {
    kernels.fused_on(device).then(simd::level)
}

/// Whether `device` runs these kernels (Burn's ndarray backend, with or without autodiff).
pub fn supported(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::NdArray(_)
    )
}

/// `relu(x·w + b)` (or `x·w + b` when `relu` is false), differentiable.
pub fn dense(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::dense(
        x.into_dispatch(),
        w.into_dispatch(),
        b.into_dispatch(),
        relu,
    ))
}

/// Per-sample categorical cross-entropy from logits and one-hot targets, differentiable.
pub fn softmax_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::softmax_cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// One Keras RMSprop step on one parameter; returns the new parameter and running average. The
/// running average starts at zeros (`None`), as Keras's does. `keep` is `1 − rho`.
pub fn rmsprop<const D: usize>(
    w: Tensor<D>,
    g: Tensor<D>,
    v: Option<Tensor<D>>,
    lr: f64,
    rho: f32,
    keep: f32,
    eps: f32,
) -> (Tensor<D>, Tensor<D>) {
    let v = v.unwrap_or_else(|| g.zeros_like());
    let (w, v) = Dispatch::rmsprop(
        w.into_dispatch(),
        g.into_dispatch(),
        v.into_dispatch(),
        lr,
        rho,
        keep,
        eps,
    );
    (Tensor::from_dispatch(w), Tensor::from_dispatch(v))
}

impl MlpKernels for NdArray {
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        cpu::dense(&x, &w, &b, relu).0
    }

    fn softmax_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cpu::softmax_cross_entropy(&logits, &targets).0
    }

    fn rmsprop(
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lr: f64,
        rho: f32,
        keep: f32,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cpu::rmsprop(w, g, v, lr, rho, keep, eps)
    }
}

#[cfg(test)]
mod tests;
