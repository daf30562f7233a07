//! Keras 3's `Adam` and `AdamW` (`keras/src/optimizers/adam.py`, `adamw.py`): per parameter `w`
//! with gradient `g` at step `t` (from 1),
//!
//! ```text
//! w ← w − w·wd·lr                              (weight decay first, when set; AdamW: 0.004)
//! α ← lr·sqrt(1 − beta_2^t) / (1 − beta_1^t)
//! m ← m + (g − m)·(1 − beta_1)                  (m, v start at 0)
//! v ← v + (g² − v)·(1 − beta_2)
//! v̂ ← max(v̂, v); v ← v̂                         (amsgrad only)
//! w ← w − m·α / (sqrt(v) + epsilon)             (epsilon outside the square root, unlike RMSprop)
//! ```
//!
//! in f32, with `1 − beta` computed in f64 and rounded once, as Keras multiplies an f32 tensor by
//! a Python float. `m` and `v` are flushed to 0 below the smallest normal f32, as TensorFlow's CPU
//! kernels flush every subnormal (see [`super::KerasRmsProp`]).
//!
//! Burn's `Adam` writes the averages as `beta·m + (1 − beta)·g` and puts epsilon's bias
//! correction elsewhere; the step is the same in exact arithmetic but not in f32, so this is
//! Keras's form as a Burn [`Optimizer`]. It runs on Burn's tensor operations on every backend:
//! the fused kernels have RMSprop's update only.

use super::{decay_weight, flush_subnormal};
use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// Keras's `Adam` (with `weight_decay` = `None`) or `AdamW` (`weight_decay` = 0.004).
#[derive(Debug, Clone, PartialEq)]
pub struct KerasAdam {
    pub(super) beta_1: f32,
    pub(super) beta_2: f32,
    /// `1 − beta_1` and `1 − beta_2`, each rounded once from f64.
    pub(super) keep_1: f32,
    pub(super) keep_2: f32,
    pub(super) epsilon: f32,
    pub(super) amsgrad: bool,
    /// Keras's `weight_decay`: `None` takes no decay step at all.
    pub(super) weight_decay: Option<f32>,
}

impl KerasAdam {
    /// Adam with these settings; `weight_decay` `Some` makes it AdamW.
    pub fn new(
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
        amsgrad: bool,
        weight_decay: Option<f64>,
    ) -> Self {
        Self {
            beta_1: beta_1 as f32,
            beta_2: beta_2 as f32,
            keep_1: (1.0 - beta_1) as f32,
            keep_2: (1.0 - beta_2) as f32,
            epsilon: epsilon as f32,
            amsgrad,
            weight_decay: weight_decay.map(|wd| wd as f32),
        }
    }
}

/// The moving averages of one parameter and the steps taken (Keras's `iterations`, per
/// parameter: every parameter of the MLP gets a gradient every step).
#[derive(Debug, Clone)]
pub struct KerasAdamState<const D: usize> {
    pub time: usize,
    /// Keras's "momentum", the average of gradients.
    pub momentum: Tensor<D>,
    /// Keras's "velocity", the average of squared gradients.
    pub velocity: Tensor<D>,
    /// The largest velocity so far (amsgrad only).
    pub velocity_hat: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for KerasAdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "time", burn_pack::Scalar::from(self.time as u64));
        out.push_tensor(prefix, "momentum", self.momentum.clone().into_data());
        out.push_tensor(prefix, "velocity", self.velocity.clone().into_data());
        if let Some(hat) = &self.velocity_hat {
            out.push_tensor(prefix, "velocity_hat", hat.clone().into_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let time = u64::try_from(src.take_scalar(prefix, "time")?).ok()?;
        let mut tensor = |leaf| Some(Tensor::from_data(src.take_tensor(prefix, leaf)?, device));
        Some(Self {
            time: usize::try_from(time).ok()?,
            momentum: tensor("momentum")?,
            velocity: tensor("velocity")?,
            velocity_hat: tensor("velocity_hat"),
        })
    }
}

impl Optimizer for KerasAdam {
    type State<const D: usize> = KerasAdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let tensor = decay_weight(tensor, lr, self.weight_decay);
        let (time, momentum, velocity, velocity_hat) = match state {
            Some(s) => (s.time, s.momentum, s.velocity, s.velocity_hat),
            None => (0, grad.zeros_like(), grad.zeros_like(), None),
        };
        let time = time + 1;
        // Keras: `power(cast(beta, f32), cast(iterations + 1, f32))`, all in f32.
        let lr = lr as f32;
        let beta_1_power = self.beta_1.powf(time as f32);
        let beta_2_power = self.beta_2.powf(time as f32);
        let alpha = lr * (1.0 - beta_2_power).sqrt() / (1.0 - beta_1_power);

        let momentum = flush_subnormal(
            momentum
                .clone()
                .add(grad.clone().sub(momentum).mul_scalar(self.keep_1)),
        );
        let velocity = flush_subnormal(
            velocity
                .clone()
                .add(grad.square().sub(velocity).mul_scalar(self.keep_2)),
        );
        let velocity_hat = self.amsgrad.then(|| match velocity_hat {
            Some(hat) => hat.max_pair(velocity.clone()),
            // v̂ starts at zeros and v ≥ 0.
            None => velocity.clone(),
        });
        let denominator = velocity_hat
            .as_ref()
            .unwrap_or(&velocity)
            .clone()
            .sqrt()
            .add_scalar(self.epsilon);
        let increment = momentum.clone().mul_scalar(alpha).div(denominator);
        let state = KerasAdamState {
            time,
            momentum,
            velocity,
            velocity_hat,
        };
        (tensor.sub(increment), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        KerasAdamState {
            time: state.time,
            momentum: state.momentum.to_device(device),
            velocity: state.velocity.to_device(device),
            velocity_hat: state.velocity_hat.map(|hat| hat.to_device(device)),
        }
    }
}
