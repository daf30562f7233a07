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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use burn::optim::Optimizer;

    fn floats(tensor: Tensor<1>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Four steps of plain SGD, SGD with momentum, with Nesterov momentum, and with weight
    /// decay, against Keras's formulas in f64. Nesterov's weights differ from plain momentum's
    /// by about `momentum·m` a step, far above the f32 rounding allowed here.
    #[test]
    fn four_steps_match_the_keras_formulas_by_hand() {
        let device = Backend::Ndarray.device(0).unwrap();
        let w0 = [1.0f32, -2.0, 0.5, 0.25];
        let grads = [
            [0.5f32, -1.0, 2.0, 0.0],
            [0.25f32, 1.0, -3.0, 0.1],
            [-0.5f32, 0.5, 1.0, 0.2],
            [0.1f32, -0.1, 0.0, -0.3],
        ];
        let lr = 0.01;
        for (momentum, nesterov, wd) in [
            (0.0, false, None),
            (0.9, false, None),
            (0.9, true, None),
            (0.5, true, Some(0.1)),
            (0.0, false, Some(0.3)),
        ] {
            let optim = KerasSgd::new(momentum, nesterov, wd);
            let mut w = Tensor::<1>::from_data(w0, &device);
            let mut state = None;
            let mut want: Vec<(f64, f64)> = w0.iter().map(|&w| (f64::from(w), 0.0)).collect();
            for (t, g) in grads.iter().enumerate() {
                (w, state) = optim.step(lr, w, Tensor::<1>::from_data(*g, &device), state);
                for ((w, m), &g) in want.iter_mut().zip(g) {
                    let g = f64::from(g);
                    *w -= *w * wd.unwrap_or(0.0) * lr;
                    if momentum == 0.0 {
                        *w -= g * lr;
                    } else {
                        *m = *m * momentum - g * lr;
                        *w += if nesterov { *m * momentum - g * lr } else { *m };
                    }
                }
                let case = format!("momentum {momentum}, nesterov {nesterov}, wd {wd:?}, step {t}");
                assert_eq!(state.is_some(), momentum != 0.0, "{case}");
                let got = floats(w.clone());
                for (i, (&(w, m), got)) in want.iter().zip(&got).enumerate() {
                    assert!(
                        (f64::from(*got) - w).abs() <= 3e-7 * w.abs().max(1.0),
                        "{case} w[{i}]: {got} vs {w}"
                    );
                    if let Some(s) = &state {
                        let got_m = floats(s.momentum.clone())[i];
                        assert!(
                            (f64::from(got_m) - m).abs() <= 1e-6 * m.abs() + 1e-12,
                            "{case} m[{i}]: {got_m} vs {m}"
                        );
                    }
                }
            }
        }
    }
}
