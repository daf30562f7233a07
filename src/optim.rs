//! The optimizer Keras compiles by default: RMSprop with `learning_rate=0.001, rho=0.9,
//! epsilon=1e-7`, no momentum, not centered. Per parameter `w` with gradient `g`:
//!
//! ```text
//! v ← rho·v + (1 − rho)·g²          (v starts at 0)
//! w ← w − lr·g / sqrt(v + epsilon)   (epsilon inside the square root, as in Keras 3)
//! ```
//!
//! Burn's `RmsProp` adds epsilon outside the square root (and defaults to momentum 0.9), so it
//! cannot give the same numbers; this is the Keras update as a Burn [`Optimizer`].

use crate::kernels;
use burn::config::Config;
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// Keras's RMSprop settings (its defaults).
#[derive(Config, Debug, PartialEq)]
pub struct KerasRmsPropConfig {
    /// Discount of the running average of squared gradients.
    #[config(default = 0.9)]
    pub rho: f64,
    /// Added to the running average inside the square root.
    #[config(default = 1e-7)]
    pub epsilon: f64,
}

impl KerasRmsPropConfig {
    /// The optimizer for a whole module, as Burn's `Learner` takes it.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(KerasRmsProp {
            rho: self.rho as f32,
            epsilon: self.epsilon as f32,
        })
    }
}

/// RMSprop exactly as Keras 3 computes it.
#[derive(Debug, Clone)]
pub struct KerasRmsProp {
    rho: f32,
    epsilon: f32,
}

/// The running average of squared gradients of one parameter (Keras's "velocity").
#[derive(Debug, Clone)]
pub struct KerasRmsPropState<const D: usize> {
    pub velocity: Tensor<D>,
}

impl<const D: usize> RecordState for KerasRmsPropState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "velocity", self.velocity.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let velocity = Tensor::from_data(src.take_tensor(prefix, "velocity")?, device);
        Some(Self { velocity })
    }
}

impl Optimizer for KerasRmsProp {
    type State<const D: usize> = KerasRmsPropState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if kernels::supported(&tensor.device()) {
            let velocity = state.map(|s| s.velocity);
            let (tensor, velocity) =
                kernels::rmsprop(tensor, grad, velocity, lr, self.rho, self.epsilon);
            return (tensor, Some(KerasRmsPropState { velocity }));
        }
        let squared = grad.clone().square().mul_scalar(1.0 - self.rho);
        let velocity = match state {
            Some(state) => state.velocity.mul_scalar(self.rho).add(squared),
            None => squared,
        };
        let increment = grad
            .mul_scalar(lr)
            .div(velocity.clone().add_scalar(self.epsilon).sqrt());
        (tensor.sub(increment), Some(KerasRmsPropState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        KerasRmsPropState {
            velocity: state.velocity.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    #[test]
    fn two_steps_match_the_keras_formula_by_hand() {
        let device = Backend::Ndarray.device(0).unwrap();
        let optim = KerasRmsProp {
            rho: 0.9,
            epsilon: 1e-7,
        };
        let w = Tensor::<1>::from_data([1.0f32, -2.0, 0.5], &device);
        let g1 = Tensor::<1>::from_data([0.1f32, -0.2, 0.0], &device);
        let (w, state) = optim.step(0.001, w, g1, None);
        let w1 = w.clone().into_data().try_to_vec::<f32>().unwrap();
        // v = 0.1·g², so w -= 0.001·g / sqrt(0.1·g² + 1e-7).
        let expected = |w: f64, g: f64, v: f64| w - 0.001 * g / (v + 1e-7).sqrt();
        let v1 = [0.1 * 0.01, 0.1 * 0.04, 0.0];
        let e1 = [
            expected(1.0, 0.1, v1[0]),
            expected(-2.0, -0.2, v1[1]),
            expected(0.5, 0.0, v1[2]),
        ];
        for (got, want) in w1.iter().zip(e1) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
        // First step of RMSprop moves each weight by about lr/sqrt(0.1) ≈ 0.00316.
        assert!((f64::from(w1[0]) - (1.0 - 0.0031623)).abs() < 1e-6);

        let g2 = Tensor::<1>::from_data([0.3f32, 0.1, -0.4], &device);
        let (w, state) = optim.step(0.001, w, g2, state);
        let v2 = [
            0.9 * v1[0] + 0.1 * 0.09,
            0.9 * v1[1] + 0.1 * 0.01,
            0.9 * v1[2] + 0.1 * 0.16,
        ];
        let velocity = state
            .unwrap()
            .velocity
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (got, want) in velocity.iter().zip(v2) {
            // f32 arithmetic: equal to a relative 1e-6.
            assert!(
                (f64::from(*got) - want).abs() < 1e-6 * want,
                "{got} vs {want}"
            );
        }
        let w2 = w.into_data().try_to_vec::<f32>().unwrap();
        let e2 = [
            expected(e1[0], 0.3, v2[0]),
            expected(e1[1], 0.1, v2[1]),
            expected(e1[2], -0.4, v2[2]),
        ];
        for (got, want) in w2.iter().zip(e2) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
