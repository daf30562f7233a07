//! Keras 3's `SGD` (`keras/src/optimizers/sgd.py`): per parameter `w` with gradient `g`,
//!
//! ```text
//! w ← w − w·wd·lr                 (weight decay first, when set)
//! momentum = 0:   w ← w − g·lr
//! otherwise:      m ← m·momentum − g·lr          (m starts at 0)
//!                 w ← w + m                      (nesterov: w ← w + m·momentum − g·lr)
//! ```
//!
//! in f32, with `m` flushed to 0 below the smallest normal f32 as TensorFlow's CPU kernels flush
//! it. Burn's `Sgd` keeps its momentum as `momentum·m + g` (dampened) and subtracts `lr·m`: the
//! same path in exact arithmetic, a different one in f32, so this is Keras's form. It runs on
//! Burn's tensor operations on every backend.

use super::{decay_weight, flush_subnormal};
use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// Keras's `SGD(learning_rate, momentum, nesterov, weight_decay)`.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasSgd {
    pub(super) momentum: f32,
    pub(super) nesterov: bool,
    pub(super) weight_decay: Option<f32>,
}

impl KerasSgd {
    pub fn new(momentum: f64, nesterov: bool, weight_decay: Option<f64>) -> Self {
        Self {
            momentum: momentum as f32,
            nesterov,
            weight_decay: weight_decay.map(|wd| wd as f32),
        }
    }
}

/// The momentum of one parameter (Keras's `momentums`; none when momentum is 0).
#[derive(Debug, Clone)]
pub struct KerasSgdState<const D: usize> {
    pub momentum: Tensor<D>,
}

impl<const D: usize> RecordState for KerasSgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "momentum", self.momentum.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let momentum = Tensor::from_data(src.take_tensor(prefix, "momentum")?, device);
        Some(Self { momentum })
    }
}

impl Optimizer for KerasSgd {
    type State<const D: usize> = KerasSgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let tensor = decay_weight(tensor, lr, self.weight_decay);
        let lr = lr as f32;
        // Keras tests `self.momentum != 0` in Python, before any cast.
        if self.momentum == 0.0 {
            return (tensor.sub(grad.mul_scalar(lr)), None);
        }
        let step = grad.mul_scalar(lr);
        let momentum = match state {
            Some(s) => s.momentum.mul_scalar(self.momentum).sub(step.clone()),
            // m starts at zeros: 0·momentum − g·lr.
            None => step.clone().neg(),
        };
        let momentum = flush_subnormal(momentum);
        let tensor = if self.nesterov {
            tensor.add(momentum.clone().mul_scalar(self.momentum).sub(step))
        } else {
            tensor.add(momentum.clone())
        };
        (tensor, Some(KerasSgdState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        KerasSgdState {
            momentum: state.momentum.to_device(device),
        }
    }
}
