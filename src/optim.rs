//! The optimizer Keras compiles by default: RMSprop with `learning_rate=0.001, rho=0.9,
//! epsilon=1e-7`, no momentum, not centered. Per parameter `w` with gradient `g`:
//!
//! ```text
//! v ← rho·v + (1 − rho)·g²          (v starts at 0)
//! w ← w − lr·g / sqrt(v + epsilon)   (epsilon inside the square root, as in Keras 3)
//! ```
//!
//! with `v` flushed to 0 where it falls below the smallest normal f32 (~1.2e-38), as the
//! TensorFlow kernels under Keras flush every subnormal result to zero.
//!
//! Burn's `RmsProp` adds epsilon outside the square root (and defaults to momentum 0.9), so it
//! cannot give the same numbers; this is the Keras update as a Burn [`Optimizer`].
//!
//! The other optimizers a config can name, [`KerasAdam`] (Adam, AdamW) and [`KerasSgd`], are
//! Keras's too, each in its own file; [`OptimizerName`] chooses, [`KerasOptimizerConfig`] builds.
//! Any of them takes Keras's `weight_decay` (decoupled: `w ← w − w·wd·lr` before the step).

mod adam;
mod sgd;

pub use adam::{KerasAdam, KerasAdamState};
pub use sgd::{KerasSgd, KerasSgdState};

use crate::kernels::{self, Kernels};
use burn::config::Config;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// How the learning rate moves over a run (`optimizer.schedule`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The learning rate throughout, as the tutorial's `RMSprop()`.
    #[default]
    Constant,
    /// Keras's `CosineDecay(learning_rate, decay_steps)` with `alpha = 0`: from the learning
    /// rate at the first step down along half a cosine to 0 after `decay_steps`, the run's
    /// steps (epochs × batches per epoch).
    Cosine,
}

impl Schedule {
    pub fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }

    /// The scheduler Burn's `Learner` steps for a run of `steps` optimizer steps. Burn's
    /// cosine annealing at iteration i is Keras's `CosineDecay` at step i (both count from 0).
    /// Err: the reason Burn refuses the settings (a cosine start above 1, no steps).
    pub fn scheduler(
        &self,
        learning_rate: LearningRate,
        steps: usize,
    ) -> Result<ModuleLrScheduler, String> {
        match self {
            Schedule::Constant => Ok(learning_rate.into()),
            Schedule::Cosine => CosineAnnealingLrSchedulerConfig::new(learning_rate, steps).init(),
        }
    }
}

/// Which Keras optimizer a run trains with (`optimizer.name`, `--optimizer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// `RMSprop()`, the tutorial's.
    #[default]
    Rmsprop,
    /// `Adam()`.
    Adam,
    /// `AdamW()`: Adam with weight decay 0.004 by default.
    Adamw,
    /// `SGD()`, with momentum and Nesterov momentum when set.
    Sgd,
}

impl OptimizerName {
    pub fn is_rmsprop(&self) -> bool {
        *self == OptimizerName::Rmsprop
    }

    pub fn name(self) -> &'static str {
        match self {
            OptimizerName::Rmsprop => "rmsprop",
            OptimizerName::Adam => "adam",
            OptimizerName::Adamw => "adamw",
            OptimizerName::Sgd => "sgd",
        }
    }

    /// Keras's default `weight_decay` for this optimizer: 0.004 for AdamW, none otherwise.
    pub fn default_weight_decay(self) -> Option<f64> {
        (self == OptimizerName::Adamw).then_some(0.004)
    }
}

impl std::fmt::Display for OptimizerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every optimizer's settings, Keras's defaults unless set; [`Self::init`] builds the one
/// `name` says, the other keys unused.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasOptimizerConfig {
    pub name: OptimizerName,
    /// RMSprop's.
    pub rho: f64,
    /// RMSprop's (inside the square root), Adam's and AdamW's (outside it).
    pub epsilon: f64,
    /// Adam's and AdamW's.
    pub beta_1: f64,
    pub beta_2: f64,
    pub amsgrad: bool,
    /// SGD's.
    pub momentum: f64,
    pub nesterov: bool,
    /// Any optimizer's; `None`: no decay step (AdamW's 0.004 is filled in by
    /// [`OptimizerName::default_weight_decay`] where the config is read).
    pub weight_decay: Option<f64>,
}

impl Default for KerasOptimizerConfig {
    /// Keras's defaults: `RMSprop()`, and `Adam()`'s and `SGD()`'s keys.
    fn default() -> Self {
        let rmsprop = KerasRmsPropConfig::new();
        Self {
            name: OptimizerName::Rmsprop,
            rho: rmsprop.rho,
            epsilon: rmsprop.epsilon,
            beta_1: 0.9,
            beta_2: 0.999,
            amsgrad: false,
            momentum: 0.0,
            nesterov: false,
            weight_decay: None,
        }
    }
}

impl KerasOptimizerConfig {
    /// The optimizer for a whole module, as Burn's `Learner` takes it. Only RMSprop's update
    /// has a fused kernel; the others run on Burn's tensor operations whatever `kernels` is
    /// (the model's layers still take `kernels`).
    pub fn init(&self, kernels: Kernels) -> ModuleOptimizer {
        match self.name {
            OptimizerName::Rmsprop => KerasRmsPropConfig::new()
                .with_rho(self.rho)
                .with_epsilon(self.epsilon)
                .with_weight_decay(self.weight_decay)
                .init(kernels),
            OptimizerName::Adam | OptimizerName::Adamw => ModuleOptimizer::from(self.adam()),
            OptimizerName::Sgd => ModuleOptimizer::from(self.sgd()),
        }
    }

    /// Adam (AdamW with a weight decay) with these settings.
    pub fn adam(&self) -> KerasAdam {
        KerasAdam::new(
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.amsgrad,
            self.weight_decay,
        )
    }

    /// SGD with these settings.
    pub fn sgd(&self) -> KerasSgd {
        KerasSgd::new(self.momentum, self.nesterov, self.weight_decay)
    }

    /// Whether the update runs in the fused kernels with `kernels` on `device`: RMSprop's
    /// only.
    pub fn fused_on(&self, kernels: Kernels, device: &Device) -> bool {
        self.name.is_rmsprop() && kernels.fused_on(device)
    }
}

/// Keras's `_apply_weight_decay`, before the optimizer's step: `w ← w − w·wd·lr` in f32.
fn decay_weight<const D: usize>(
    tensor: Tensor<D>,
    lr: LearningRate,
    weight_decay: Option<f32>,
) -> Tensor<D> {
    match weight_decay {
        Some(wd) => {
            let decay = tensor.clone().mul_scalar(wd).mul_scalar(lr as f32);
            tensor.sub(decay)
        }
        None => tensor,
    }
}

/// 0 where `|x|` is below the smallest normal f32, as TensorFlow's CPU kernels flush subnormal
/// results (see [`KerasRmsProp`]).
fn flush_subnormal<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    let tiny = tensor.clone().abs().lower_elem(f32::MIN_POSITIVE);
    tensor.mask_fill(tiny, 0.0)
}

/// Keras's RMSprop settings (its defaults).
#[derive(Config, Debug, PartialEq)]
pub struct KerasRmsPropConfig {
    /// Discount of the running average of squared gradients.
    #[config(default = 0.9)]
    pub rho: f64,
    /// Added to the running average inside the square root.
    #[config(default = 1e-7)]
    pub epsilon: f64,
    /// Keras's `weight_decay` (None: no decay step, Keras's default).
    pub weight_decay: Option<f64>,
}

impl KerasRmsPropConfig {
    /// The optimizer for a whole module, as Burn's `Learner` takes it, stepping with `kernels`
    /// (the fused update where the device has it, else Burn's tensor operations).
    pub fn init(&self, kernels: Kernels) -> ModuleOptimizer {
        ModuleOptimizer::from(self.optimizer(kernels))
    }

    /// The optimizer for one parameter at a time (what [`Self::init`] wraps), for stepping
    /// tensors directly, as the kernels' parity test does.
    pub fn optimizer(&self, kernels: Kernels) -> KerasRmsProp {
        KerasRmsProp {
            rho: self.rho as f32,
            // Keras computes `1 - rho` in Python's f64, then multiplies an f32 tensor by it:
            // 0.1, where `1.0 - 0.9f32` would give 0.100000024.
            keep: (1.0 - self.rho) as f32,
            epsilon: self.epsilon as f32,
            weight_decay: self.weight_decay.map(|wd| wd as f32),
            kernels,
        }
    }
}

/// RMSprop exactly as Keras 3 computes it.
#[derive(Debug, Clone)]
pub struct KerasRmsProp {
    rho: f32,
    /// `1 − rho`.
    keep: f32,
    epsilon: f32,
    weight_decay: Option<f32>,
    kernels: Kernels,
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
        let tensor = decay_weight(tensor, lr, self.weight_decay);
        if self.kernels.fused_on(&tensor.device()) {
            let velocity = state.map(|s| s.velocity);
            let (tensor, velocity) = kernels::rmsprop(
                tensor,
                grad,
                velocity,
                lr,
                self.rho,
                self.keep,
                self.epsilon,
            );
            return (tensor, Some(KerasRmsPropState { velocity }));
        }
        let squared = grad.clone().square().mul_scalar(self.keep);
        let velocity = match state {
            Some(state) => state.velocity.mul_scalar(self.rho).add(squared),
            None => squared,
        };
        // Flushed to zero below the smallest normal f32, as TensorFlow's kernels flush Keras's
        // (see `kernels::rmsprop`).
        let velocity = velocity
            .clone()
            .mask_fill(velocity.lower_elem(f32::MIN_POSITIVE), 0.0);
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

    fn floats(tensor: Tensor<1>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The cosine schedule is Keras's `CosineDecay(lr, decay_steps)` (alpha 0) step for step:
    /// `lr · ½(1 + cos(π·step/decay_steps))`, from the rate itself at step 0 to 0 at the end;
    /// the constant schedule is the rate at every step.
    #[test]
    fn the_cosine_schedule_is_keras_cosine_decay() {
        let (lr, steps) = (0.001, 40);
        let mut cosine = Schedule::Cosine.scheduler(lr, steps).unwrap();
        let mut constant = Schedule::Constant.scheduler(lr, steps).unwrap();
        for step in 0..=steps {
            let keras =
                lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps as f64).cos());
            let got = cosine.step().base();
            assert!((got - keras).abs() < 1e-15, "step {step}: {got} vs {keras}");
            assert_eq!(constant.step().base(), lr);
        }
        assert!(Schedule::Cosine.scheduler(1.5, steps).is_err());
        assert!(Schedule::Cosine.scheduler(lr, 0).is_err());
    }

    /// Two steps of both paths against the formula in f64, with gradients small enough
    /// (~1e-4) that epsilon's place matters: `sqrt(v + eps)` (Keras) and `sqrt(v) + eps`
    /// (Burn's RmsProp) differ ten-fold here, and `1 − rho` computed in f32 shows too.
    #[test]
    fn two_steps_match_the_keras_formula_by_hand() {
        let device = Backend::Ndarray.device(0).unwrap();
        let (w0, g1, g2) = (
            [1.0f32, -2.0, 0.5, 0.25],
            [1e-4f32, -2e-4, 0.0, 3e-5],
            [3e-4f32, 1e-4, -4e-4, 2e-5],
        );
        let (lr, rho, eps) = (0.001, 0.9, 1e-7);
        // Keras's update, in f64 from the f32 inputs.
        let step = |w: f64, v: f64, g: f32| {
            let g = f64::from(g);
            let v = rho * v + (1.0 - rho) * g * g;
            (w - lr * g / (v + eps).sqrt(), v)
        };
        for kernels in Kernels::ALL {
            let optim = KerasRmsPropConfig::new().optimizer(kernels);
            let mut w = Tensor::<1>::from_data(w0, &device);
            let mut state = None;
            let mut want: Vec<(f64, f64)> = w0.iter().map(|&w| (f64::from(w), 0.0)).collect();
            for g in [g1, g2] {
                (w, state) = optim.step(lr, w, Tensor::<1>::from_data(g, &device), state);
                for (want, g) in want.iter_mut().zip(g) {
                    *want = step(want.0, want.1, g);
                }
                let got_w = floats(w.clone());
                let got_v = floats(state.as_ref().unwrap().velocity.clone());
                for (i, (&(w, v), (gw, gv))) in
                    want.iter().zip(got_w.iter().zip(&got_v)).enumerate()
                {
                    // Each step moves a weight by ~1e-4 to 3e-3, and `sqrt(v) + eps` by up to ten times
                    // more: the rounding of w in f32 (~1e-7) is the limit.
                    assert!(
                        (f64::from(*gw) - w).abs() <= 4e-7 * w.abs().max(1.0),
                        "{kernels} w[{i}]: {gw} vs {w}"
                    );
                    // v ~ 1e-9: equal to a relative 1e-6, which `1 − rho` in f32 (2.4e-7 off)
                    // would still pass, so it is checked exactly below.
                    assert!(
                        (f64::from(*gv) - v).abs() <= 1e-6 * v,
                        "{kernels} v[{i}]: {gv} vs {v}"
                    );
                }
            }
        }
        // The first velocity is (1 − rho)·g² with 1 − rho rounded once to f32, as Keras's is.
        for kernels in Kernels::ALL {
            let optim = KerasRmsPropConfig::new().optimizer(kernels);
            let g = Tensor::<1>::from_data([1.0f32], &device);
            let (_, state) = optim.step(lr, Tensor::<1>::from_data([0.0f32], &device), g, None);
            assert_eq!(floats(state.unwrap().velocity), [0.1f32], "{kernels}");
        }
    }

    /// Keras's `weight_decay` on RMSprop: the weight shrinks by `w·wd·lr` before the step, on
    /// both paths (the fused update after Burn's decay), and without it nothing changes.
    #[test]
    fn rmsprop_takes_kerass_weight_decay_before_its_step() {
        let device = Backend::Ndarray.device(0).unwrap();
        let (w0, g) = ([1.0f32, -2.0, 0.5], [0.1f32, -0.2, 0.0]);
        let (lr, rho, eps, wd) = (0.01f64, 0.9, 1e-7, 0.2);
        for kernels in Kernels::ALL {
            let decayed = KerasRmsPropConfig::new()
                .with_weight_decay(Some(wd))
                .optimizer(kernels);
            let (w, _) = decayed.step(
                lr,
                Tensor::<1>::from_data(w0, &device),
                Tensor::<1>::from_data(g, &device),
                None,
            );
            for (i, (got, (&w, &g))) in floats(w).iter().zip(w0.iter().zip(&g)).enumerate() {
                let (w, g) = (f64::from(w), f64::from(g));
                let w = w - w * wd * lr;
                let v = (1.0 - rho) * g * g;
                let want = w - lr * g / (v + eps).sqrt();
                assert!(
                    (f64::from(*got) - want).abs() < 3e-7,
                    "{kernels} w[{i}]: {got} vs {want}"
                );
            }
        }
    }

    /// A weight whose gradient stays 0 decays its velocity by rho a step; below the smallest
    /// normal f32 it becomes exactly 0 on both paths, as in TensorFlow, rather than stick at a
    /// subnormal as plain f32 arithmetic does (4·2⁻¹⁴⁹ × 0.9 rounds back to 4·2⁻¹⁴⁹).
    #[test]
    fn a_velocity_without_gradient_decays_to_zero_not_into_the_subnormals() {
        let device = Backend::Ndarray.device(0).unwrap();
        let start = [1e-30f32, 2e-38, 1.3e-38, 0.5, f32::from_bits(4)];
        let steps = 200;
        // f32 arithmetic without the flush, and with it.
        let plain = (0..steps).fold(start, |v, _| v.map(|v| 0.9f32 * v));
        assert!(
            plain[0] > 0.0 && !plain[0].is_normal(),
            "stuck at {:e}",
            plain[0]
        );
        let flushed = (0..steps).fold(start, |v, _| {
            v.map(|v| {
                let v = 0.9f32 * v;
                if v.is_normal() { v } else { 0.0 }
            })
        });
        assert_eq!(flushed[..3], [0.0; 3]);
        assert!(flushed[3] > 0.0);
        for kernels in Kernels::ALL {
            let optim = KerasRmsPropConfig::new().optimizer(kernels);
            let mut w = Tensor::<1>::from_data([0.25f32; 5], &device);
            let mut state = Some(KerasRmsPropState {
                velocity: Tensor::<1>::from_data(start, &device),
            });
            for _ in 0..steps {
                let g = Tensor::<1>::zeros([5], &device);
                (w, state) = optim.step(1e-3, w, g, state);
            }
            assert_eq!(floats(state.unwrap().velocity), flushed, "{kernels}");
            assert_eq!(
                floats(w),
                [0.25f32; 5],
                "{kernels}: a zero gradient moved a weight"
            );
        }
    }
}
