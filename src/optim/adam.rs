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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use burn::optim::Optimizer;

    fn floats(tensor: Tensor<1>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Keras's Adam in f64 from the f32 inputs: `(w, m, v, v̂)` after one step at `t`.
    #[allow(clippy::too_many_arguments)]
    fn keras_step(
        (w, m, v, hat): (f64, f64, f64, f64),
        g: f32,
        t: i32,
        lr: f64,
        (b1, b2, eps): (f64, f64, f64),
        amsgrad: bool,
        wd: Option<f64>,
    ) -> (f64, f64, f64, f64) {
        let g = f64::from(g);
        let w = w - w * wd.unwrap_or(0.0) * lr;
        // Keras casts the betas to f32 before the powers: 1 − 0.999f32 is 1.3e-5 off 0.001, and
        // the f64 formula's alpha would be that much off Keras's.
        let (p1, p2) = (f64::from(b1 as f32), f64::from(b2 as f32));
        let alpha = lr * (1.0 - p2.powi(t)).sqrt() / (1.0 - p1.powi(t));
        let m = m + (g - m) * (1.0 - b1);
        let v = v + (g * g - v) * (1.0 - b2);
        let hat = hat.max(v);
        let used = if amsgrad { hat } else { v };
        (w - m * alpha / (used.sqrt() + eps), m, v, hat)
    }

    /// Four steps of Adam, Adam with AMSGrad and AdamW (with its default decay and a larger
    /// one, at a learning rate where the decay shows) against Keras's formulas in f64. The
    /// gradients span 1e-6 to 1: at 1e-6 epsilon outside the square root (Keras) and inside
    /// it differ a hundred-fold, and a falling gradient makes AMSGrad's v̂ differ from v.
    #[test]
    fn four_steps_match_the_keras_formulas_by_hand() {
        let device = Backend::Ndarray.device(0).unwrap();
        let w0 = [1.0f32, -2.0, 0.5, 0.25, -0.75];
        let grads = [
            [1e-6f32, -2e-4, 0.5, 3e-5, 1.0],
            [3e-6f32, 1e-4, -0.4, 2e-5, 0.01],
            [-1e-6f32, 5e-4, 0.1, 0.0, 1e-3],
            [2e-6f32, -1e-4, 0.3, -1e-5, 1e-4],
        ];
        let (b1, b2, eps) = (0.9, 0.999, 1e-7);
        for (amsgrad, wd, lr) in [
            (false, None, 0.001),
            (true, None, 0.001),
            (false, Some(0.004), 0.05),
            (true, Some(0.1), 0.05),
        ] {
            let optim = KerasAdam::new(b1, b2, eps, amsgrad, wd);
            let mut w = Tensor::<1>::from_data(w0, &device);
            let mut state = None;
            let mut want: Vec<_> = w0.iter().map(|&w| (f64::from(w), 0.0, 0.0, 0.0)).collect();
            for (t, g) in grads.iter().enumerate() {
                let t = t as i32 + 1;
                (w, state) = optim.step(lr, w, Tensor::<1>::from_data(*g, &device), state);
                for (want, &g) in want.iter_mut().zip(g) {
                    *want = keras_step(*want, g, t, lr, (b1, b2, eps), amsgrad, wd);
                }
                let s = state.as_ref().unwrap();
                assert_eq!(s.time, t as usize);
                assert_eq!(s.velocity_hat.is_some(), amsgrad);
                let (got_w, got_m, got_v) = (
                    floats(w.clone()),
                    floats(s.momentum.clone()),
                    floats(s.velocity.clone()),
                );
                let case = format!("amsgrad {amsgrad}, wd {wd:?}, step {t}");
                for (i, &(w, m, v, hat)) in want.iter().enumerate() {
                    // The rounding of w in f32 (~1e-7 a step) is the limit; a step moves a
                    // weight by about lr, and epsilon's place would move it by 1% to 99% of it.
                    let close = |got: f32, want: f64, tol: f64| {
                        (f64::from(got) - want).abs() <= tol * want.abs().max(1e-30)
                    };
                    assert!(
                        (f64::from(got_w[i]) - w).abs() <= 5e-7 * w.abs().max(1.0),
                        "{case} w[{i}]: {} vs {w}",
                        got_w[i]
                    );
                    assert!(
                        close(got_m[i], m, 1e-6),
                        "{case} m[{i}]: {} vs {m}",
                        got_m[i]
                    );
                    assert!(
                        close(got_v[i], v, 1e-6),
                        "{case} v[{i}]: {} vs {v}",
                        got_v[i]
                    );
                    if let Some(got_hat) = s.velocity_hat.clone().map(floats) {
                        assert!(close(got_hat[i], hat, 1e-6), "{case} v̂[{i}]");
                    }
                }
            }
        }
        // The first averages are (1 − beta)·g with 1 − beta rounded once to f32, as Keras's.
        let optim = KerasAdam::new(b1, b2, eps, false, None);
        let g = Tensor::<1>::from_data([1.0f32], &device);
        let (_, state) = optim.step(0.001, Tensor::<1>::from_data([0.0f32], &device), g, None);
        let state = state.unwrap();
        assert_eq!(floats(state.momentum), [0.1f32]);
        assert_eq!(floats(state.velocity), [0.001f32]);
    }

    /// The first step of Adam moves every weight with a gradient well above epsilon by the
    /// learning rate, whatever the gradient's size (the bias correction's point), and AdamW
    /// first shrinks the weight by `w·wd·lr`.
    #[test]
    fn the_first_step_moves_by_the_learning_rate() {
        let device = Backend::Ndarray.device(0).unwrap();
        let lr = 0.01;
        for (wd, shrink) in [(None, 1.0), (Some(0.5), 1.0 - 0.5 * lr)] {
            let optim = KerasAdam::new(0.9, 0.999, 1e-7, false, wd);
            let w = Tensor::<1>::from_data([1.0f32, 1.0, 1.0], &device);
            let g = Tensor::<1>::from_data([0.5f32, -3.0, 400.0], &device);
            let (w, _) = optim.step(lr, w, g, None);
            let got = floats(w);
            for (got, sign) in got.iter().zip([1.0, -1.0, 1.0]) {
                let want = shrink - sign * lr;
                assert!(
                    (f64::from(*got) - want).abs() < 2e-6,
                    "{wd:?}: {got} vs {want}"
                );
            }
        }
    }

    /// The state a checkpoint holds reads back whole, step count included, so that a resumed
    /// Adam takes the bias correction of the step it is at.
    #[test]
    fn the_state_reads_back_with_its_step_count() {
        let device = Backend::Ndarray.device(0).unwrap();
        for amsgrad in [false, true] {
            let optim = KerasAdam::new(0.9, 0.999, 1e-7, amsgrad, None);
            let mut w = Tensor::<1>::from_data([1.0f32, 2.0], &device);
            let mut state = None;
            for _ in 0..3 {
                let g = Tensor::<1>::from_data([0.1f32, -0.2], &device);
                (w, state) = optim.step(0.001, w, g, state);
            }
            let state = state.unwrap();
            let mut sink = StateSink::default();
            state.state_flatten("p", &mut sink);
            let mut source = StateSource::new(sink.scalars.into_iter().collect());
            for (name, data) in sink.tensors {
                source.insert_tensor(name, data);
            }
            let back = KerasAdamState::<1>::state_unflatten("p", &mut source, &device).unwrap();
            assert_eq!(back.time, 3);
            assert_eq!(floats(back.momentum), floats(state.momentum));
            assert_eq!(floats(back.velocity), floats(state.velocity));
            assert_eq!(
                back.velocity_hat.map(floats),
                state.velocity_hat.map(floats)
            );
        }
    }
}
