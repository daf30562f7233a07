//! The tutorial's model: `Dense(512, relu) → Dense(512, relu) → Dense(10, softmax)` on 784
//! inputs, initialised as Keras initialises `Dense` (Glorot uniform weights, zero biases).
//!
//! [`Mlp::forward`] returns logits; the softmax of the tutorial's last layer is
//! [`Mlp::probabilities`], and the loss is computed from the logits
//! ([`categorical_crossentropy`]), which is what Keras does too when a softmax output feeds
//! categorical cross-entropy.

use crate::kernels::{self, Kernels};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig, Relu};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};

/// The widest hidden layer a saved model may have (the tutorial's is 512).
pub const MAX_WIDTH: usize = 1 << 16;
/// The most hidden layers a saved model may have (the tutorial's has 2).
pub const MAX_LAYERS: usize = 64;
/// The most parameters a saved model may have: 1 GiB of f32 (the tutorial's has 669,706).
pub const MAX_PARAMS: usize = 1 << 28;

/// The model's shape. Saved as JSON beside each model file so that what is loaded is exactly
/// what was trained.
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    /// Inputs per sample: a flattened 28×28 image.
    #[config(default = 784)]
    pub inputs: usize,
    /// Width of each hidden `Dense(relu)` layer.
    pub hidden: Vec<usize>,
    /// Outputs: one per digit.
    #[config(default = 10)]
    pub classes: usize,
}

impl MlpConfig {
    /// The tutorial's network: two hidden layers of 512.
    pub fn tutorial() -> Self {
        Self::new(vec![512, 512])
    }

    /// `(inputs, outputs)` of each dense layer, in order.
    pub fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let widths: Vec<usize> = std::iter::once(self.inputs)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
            .collect();
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Trainable parameters: weights and biases of every layer (669,706 for the tutorial's).
    pub fn num_params(&self) -> usize {
        self.layer_sizes().iter().map(|(i, o)| i * o + o).sum()
    }

    /// Why this shape is not one to build, if it is not: a hand-made `model.json` could ask
    /// for layers that cannot be allocated (784 × 10¹¹ weights), which would abort the process
    /// rather than fail. MNIST's 784 inputs and 10 classes, at most [`MAX_LAYERS`] hidden layers
    /// of 1 to [`MAX_WIDTH`] units, at most [`MAX_PARAMS`] parameters in all.
    pub fn fault(&self) -> Option<String> {
        use crate::data::idx::{CLASSES, PIXELS};
        if self.inputs != PIXELS {
            return Some(format!("inputs is {}: MNIST has {PIXELS}", self.inputs));
        }
        if self.classes != CLASSES {
            return Some(format!("classes is {}: MNIST has {CLASSES}", self.classes));
        }
        if self.hidden.len() > MAX_LAYERS {
            return Some(format!(
                "hidden has {} layers: at most {MAX_LAYERS}",
                self.hidden.len()
            ));
        }
        if let Some(width) = self.hidden.iter().find(|w| !(1..=MAX_WIDTH).contains(*w)) {
            return Some(format!(
                "a hidden width is {width}: each is 1 to {MAX_WIDTH} units"
            ));
        }
        let params: u128 = self
            .layer_sizes()
            .iter()
            .map(|&(i, o)| i as u128 * o as u128 + o as u128)
            .sum();
        (params > MAX_PARAMS as u128).then(|| {
            format!(
                "{} has {params} parameters: at most {MAX_PARAMS}",
                self.describe()
            )
        })
    }

    /// The layer widths, `784-512-512-10`.
    pub fn describe(&self) -> String {
        std::iter::once(self.inputs)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// A freshly initialised model on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        let layers = self
            .layer_sizes()
            .into_iter()
            .map(|(inputs, outputs)| {
                let mut layer = LinearConfig::new(inputs, outputs)
                    .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                    .init(device);
                // Burn initialises the bias with the weight's initializer; Keras uses zeros.
                layer.bias = Some(Param::from_tensor(Tensor::zeros([outputs], device)));
                layer
            })
            .collect();
        Mlp {
            layers,
            activation: Relu::new(),
            dropout: 0.0,
            kernels: if kernels::supported(device) {
                Kernels::Fused
            } else {
                Kernels::Burn
            },
        }
    }
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self::tutorial()
    }
}

/// The multilayer perceptron: dense layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The dense layers in order; weights are `[inputs, outputs]`.
    pub layers: Vec<Linear>,
    activation: Relu,
    /// Keras's `Dropout(rate)` after each hidden layer, in training only; not saved (a saved
    /// model predicts without it, as Keras's does).
    #[module(skip)]
    dropout: f64,
    /// How the layers and the loss are computed; not a parameter, so not saved.
    #[module(skip)]
    kernels: Kernels,
}

impl Mlp {
    /// The same model computed with `kernels` (by default the fused ones where the device has
    /// them).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The same model with Keras's `Dropout(rate)` after each hidden layer while training
    /// (rate in `[0, 1)`; 0: none, the tutorial's).
    pub fn with_dropout(mut self, rate: f64) -> Self {
        self.dropout = rate;
        self
    }

    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Logits `[batch, 10]` for images `[batch, 784]`: inference, every unit kept (Keras's
    /// `training=False`).
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.forward_with(images, None)
    }

    /// Logits as a training step computes them (Keras's `training=True`): with dropout, each
    /// hidden layer's output through a mask drawn from `dropout_key` (see [`dropout_mask`]).
    /// Without a key, or at rate 0, the same as [`Self::forward`].
    pub fn forward_training(&self, images: Tensor<2>, dropout_key: Option<u64>) -> Tensor<2> {
        self.forward_with(images, dropout_key.filter(|_| self.dropout > 0.0))
    }

    fn forward_with(&self, images: Tensor<2>, dropout_key: Option<u64>) -> Tensor<2> {
        let fused = self.kernels.fused_on(&images.device());
        let last = self.layers.len().saturating_sub(1);
        let mut x = images;
        for (i, layer) in self.layers.iter().enumerate() {
            let relu = i < last;
            x = match (&layer.bias, fused) {
                (Some(bias), true) => kernels::dense(x, layer.weight.val(), bias.val(), relu),
                _ => {
                    let z = layer.forward(x);
                    if relu { self.activation.forward(z) } else { z }
                }
            };
            if let Some(key) = dropout_key.filter(|_| relu) {
                // After the fused layer too: a product with a constant, in Burn's operations.
                let [rows, cols] = x.dims();
                let mask = dropout_mask(key, i, [rows, cols], self.dropout);
                let mask = Tensor::from_data(TensorData::new(mask, [rows, cols]), &x.device());
                x = x * mask;
            }
        }
        x
    }

    /// Class probabilities `[batch, 10]`: the tutorial's softmax output.
    pub fn probabilities(&self, images: Tensor<2>) -> Tensor<2> {
        softmax(self.forward(images), 1)
    }

    /// Per-sample categorical cross-entropy of the logits against one-hot targets, computed as
    /// the model's layers are.
    pub fn loss(&self, logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
        categorical_crossentropy(logits, one_hot, self.kernels)
    }

    /// Keras's `model.summary()`: each layer with its output shape and parameter count, counted
    /// from the module's own tensors, and the totals (669,706 for the tutorial's model).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let rule = |c: char| c.to_string().repeat(65);
        let mut out = String::new();
        let _ = writeln!(out, "Model: \"mlp\"");
        let _ = writeln!(out, "{}", rule('_'));
        let _ = writeln!(
            out,
            " {:<32}{:<20}{:>12}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(out, "{}", rule('='));
        let last = self.layers.len().saturating_sub(1);
        let mut total = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let [_, outputs] = layer.weight.val().dims();
            let params =
                layer.weight.num_params() + layer.bias.as_ref().map_or(0, |bias| bias.num_params());
            total += params;
            let activation = if i < last { "ReLU" } else { "Softmax" };
            let _ = writeln!(
                out,
                " {:<32}{:<20}{:>12}",
                format!("layers.{i} (Linear + {activation})"),
                format!("(None, {outputs})"),
                thousands(params)
            );
        }
        let _ = writeln!(out, "{}", rule('='));
        // f32 parameters; Keras prints MiB as "MB".
        let megabytes = (total * 4) as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            out,
            "Total params: {} ({megabytes:.2} MB)",
            thousands(total)
        );
        let _ = writeln!(
            out,
            "Trainable params: {} ({megabytes:.2} MB)",
            thousands(total)
        );
        let _ = writeln!(out, "Non-trainable params: 0 (0.00 B)");
        let _ = writeln!(out, "{}", rule('_'));
        out
    }
}

/// Keras's inverted dropout as a mask to multiply by: each of `rows × cols` values is 0 with
/// probability `rate` and `1 / (1 − rate)` (computed in f64, rounded once to f32) otherwise, so
/// `x·mask` is TensorFlow's `x·scale·keep` bit for bit and keeps the expected sum. Drawn from
/// `key` and the layer's index alone, so the same batch of the same epoch gets the same masks
/// on every backend and after a resume.
pub fn dropout_mask(key: u64, layer: usize, [rows, cols]: [usize; 2], rate: f64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let scale = (1.0 / (1.0 - rate)) as f32;
    let stream = key ^ (layer as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
    let mut rng = rand::rngs::StdRng::seed_from_u64(stream);
    // Kept where a uniform draw in [0, 1) is at least the rate, as TensorFlow's `>= rate`.
    (0..rows * cols)
        .map(|_| {
            if rng.random::<f64>() >= rate {
                scale
            } else {
                0.0
            }
        })
        .collect()
}

/// `669706` → `669,706`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Categorical cross-entropy of each sample, `[batch]`, from logits and one-hot targets:
/// `-Σ y·log_softmax(z)`, stable for any logits.
pub fn categorical_crossentropy(
    logits: Tensor<2>,
    one_hot: Tensor<2>,
    kernels: Kernels,
) -> Tensor<1> {
    if kernels.fused_on(&logits.device()) {
        return kernels::softmax_cross_entropy(logits, one_hot);
    }
    let [batch, _] = logits.dims();
    (log_softmax(logits, 1) * one_hot)
        .sum_dim(1)
        .neg()
        .reshape([batch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn device() -> Device {
        Backend::Ndarray.device(0).unwrap()
    }

    #[test]
    fn the_tutorial_model_has_669_706_parameters() {
        let config = MlpConfig::tutorial();
        assert_eq!(config.num_params(), 669_706);
        let model = config.init(&device());
        assert_eq!(model.num_params(), 669_706);
        assert_eq!(
            config.layer_sizes(),
            vec![(784, 512), (512, 512), (512, 10)]
        );
    }

    #[test]
    fn the_summary_lists_each_layer_and_the_keras_total() {
        let summary = MlpConfig::tutorial().init(&device()).summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines[0], "Model: \"mlp\"");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["Layer", "(type)", "Output", "Shape", "Param", "#"]
        );
        let rows: Vec<Vec<&str>> = lines[4..7]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                [
                    "layers.0", "(Linear", "+", "ReLU)", "(None,", "512)", "401,920"
                ],
                [
                    "layers.1", "(Linear", "+", "ReLU)", "(None,", "512)", "262,656"
                ],
                [
                    "layers.2", "(Linear", "+", "Softmax)", "(None,", "10)", "5,130"
                ],
            ]
        );
        assert!(
            summary.contains("\nTotal params: 669,706 (2.55 MB)\n"),
            "{summary}"
        );
        assert!(summary.contains("\nTrainable params: 669,706 (2.55 MB)\n"));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(MlpConfig::tutorial().describe(), "784-512-512-10");
    }

    #[test]
    fn probabilities_are_the_softmax_of_the_layers_computed_by_hand() {
        let device = device();
        device.seed(3);
        let model = MlpConfig::tutorial().init(&device);
        // Three inputs: one dense, one mostly zeros like an MNIST image (the fused kernels'
        // sparse path), one of zeros (the biases alone).
        let pixels: Vec<f32> = (0..3 * 784)
            .map(|i| match i / 784 {
                0 => ((i * 37) % 101) as f32 / 100.0,
                1 if i % 5 == 0 => ((i * 11) % 13) as f32 / 12.0,
                _ => 0.0,
            })
            .collect();
        let images = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(pixels.clone(), [3, 784]),
            &device,
        );
        // The same layers, in f64 loops over the weights, with biases made non-zero first.
        let model = model.map(&mut BiasesOf(0.01));
        let mut x: Vec<Vec<f64>> = pixels
            .chunks(784)
            .map(|r| r.iter().map(|&p| p.into()).collect())
            .collect();
        let last = model.layers.len() - 1;
        for (l, layer) in model.layers.iter().enumerate() {
            let [k, n] = layer.weight.val().dims();
            let w = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
            let b = bias_of(layer);
            x = x
                .iter()
                .map(|row| {
                    (0..n)
                        .map(|j| {
                            let z = f64::from(b[j])
                                + (0..k)
                                    .map(|p| row[p] * f64::from(w[p * n + j]))
                                    .sum::<f64>();
                            if l < last { z.max(0.0) } else { z }
                        })
                        .collect()
                })
                .collect();
        }
        for kernels in Kernels::ALL {
            let model = model.clone().with_kernels(kernels);
            let probs = model.probabilities(images.clone());
            assert_eq!(probs.dims(), [3, 10]);
            let got = probs.into_data().try_to_vec::<f32>().unwrap();
            for (i, logits) in x.iter().enumerate() {
                let max = logits.iter().copied().fold(f64::MIN, f64::max);
                let sum: f64 = logits.iter().map(|z| (z - max).exp()).sum();
                for (j, z) in logits.iter().enumerate() {
                    let want = (z - max).exp() / sum;
                    let at = f64::from(got[i * 10 + j]);
                    assert!(
                        (at - want).abs() < 1e-5,
                        "{kernels} [{i}, {j}]: {at} vs {want}"
                    );
                }
            }
        }
    }

    /// Keras's inverted dropout: about `rate` of the units zeroed, the rest scaled by
    /// `1 / (1 − rate)` exactly; the same key gives the same mask, another key or layer
    /// another. The fraction is checked to five binomial standard deviations.
    #[test]
    fn dropout_masks_zero_about_rate_and_scale_the_rest() {
        let shape = [64, 512];
        let n = (shape[0] * shape[1]) as f64;
        for rate in [0.1, 0.2, 0.5, 0.8] {
            for key in [0u64, 42, u64::MAX] {
                let mask = dropout_mask(key, 0, shape, rate);
                let scale = (1.0 / (1.0 - rate)) as f32;
                assert!(mask.iter().all(|&m| m == 0.0 || m == scale), "{rate}");
                let zeros = mask.iter().filter(|&&m| m == 0.0).count() as f64;
                let sd = (n * rate * (1.0 - rate)).sqrt();
                assert!(
                    (zeros - n * rate).abs() < 5.0 * sd,
                    "rate {rate}, key {key}: {zeros} of {n} zeroed"
                );
                assert_eq!(mask, dropout_mask(key, 0, shape, rate));
                assert_ne!(mask, dropout_mask(key, 1, shape, rate));
                assert_ne!(mask, dropout_mask(key ^ 1, 0, shape, rate));
            }
        }
        assert!(dropout_mask(7, 0, shape, 0.0).iter().all(|&m| m == 1.0));
    }

    /// Dropout is the identity at inference (and in a training pass without a key), and in
    /// training it multiplies each hidden layer's ReLU output by its mask: the logits equal
    /// the layers computed by hand in f64 with the masks, on both kernels.
    #[test]
    fn dropout_is_identity_at_eval_and_masks_each_hidden_layer_in_training() {
        let device = device();
        device.seed(5);
        let config = MlpConfig {
            inputs: 6,
            hidden: vec![16, 8],
            classes: 3,
        };
        let model = config.init(&device).map(&mut BiasesOf(0.01));
        let pixels: Vec<f32> = (0..4 * 6).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
        let images = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(pixels.clone(), [4, 6]),
            &device,
        );
        let (rate, key) = (0.5, 1234u64);
        let floats = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        for kernels in Kernels::ALL {
            let plain = model.clone().with_kernels(kernels);
            let dropped = plain.clone().with_dropout(rate);
            let eval = floats(plain.forward(images.clone()));
            assert_eq!(floats(dropped.forward(images.clone())), eval, "{kernels}");
            assert_eq!(
                floats(dropped.forward_training(images.clone(), None)),
                eval,
                "{kernels}"
            );
            assert_eq!(
                floats(plain.forward_training(images.clone(), Some(key))),
                eval,
                "{kernels}: rate 0"
            );
            let trained = floats(dropped.forward_training(images.clone(), Some(key)));
            assert_ne!(trained, eval, "{kernels}");
            // By hand, in f64.
            let mut x: Vec<Vec<f64>> = pixels
                .chunks(6)
                .map(|r| r.iter().map(|&p| p.into()).collect())
                .collect();
            let last = dropped.layers.len() - 1;
            for (l, layer) in dropped.layers.iter().enumerate() {
                let [k, n] = layer.weight.val().dims();
                let w = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
                let b = bias_of(layer);
                let mask = (l < last).then(|| dropout_mask(key, l, [4, n], rate));
                x = x
                    .iter()
                    .enumerate()
                    .map(|(r, row)| {
                        (0..n)
                            .map(|j| {
                                let z = f64::from(b[j])
                                    + (0..k)
                                        .map(|p| row[p] * f64::from(w[p * n + j]))
                                        .sum::<f64>();
                                match &mask {
                                    Some(mask) => z.max(0.0) * f64::from(mask[r * n + j]),
                                    None => z,
                                }
                            })
                            .collect()
                    })
                    .collect();
            }
            for (i, (got, want)) in trained.iter().zip(x.concat()).enumerate() {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "{kernels} [{i}]: {got} vs {want}"
                );
            }
        }
    }

    fn bias_of(layer: &Linear) -> Vec<f32> {
        let bias = layer
            .bias
            .as_ref()
            .expect("the tutorial's layers have biases");
        bias.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// Sets every bias to `value · (index + 1)`.
    struct BiasesOf(f32);

    impl burn::module::ModuleMapper for BiasesOf {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D != 1 {
                return param;
            }
            let value = self.0;
            param.map(|t| {
                let n = t.dims()[0];
                let values: Vec<f32> = (0..n).map(|i| value * (i + 1) as f32).collect();
                Tensor::<1>::from_data(values.as_slice(), &t.device()).reshape(t.dims())
            })
        }
    }

    #[test]
    fn weights_are_glorot_uniform_and_biases_zero() {
        let device = device();
        device.seed(7);
        let model = MlpConfig::tutorial().init(&device);
        for layer in &model.layers {
            let [fan_in, fan_out] = layer.weight.val().dims();
            let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
            let w = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
            let (min, max) = w
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            assert!(
                min >= -limit && max <= limit,
                "{min} {max} outside ±{limit}"
            );
            // Uniform on ±limit: the extremes come close to the bounds and the mean is near 0.
            assert!(
                min < -0.99 * limit && max > 0.99 * limit,
                "{min} {max} vs ±{limit}"
            );
            // The mean of n uniform draws on ±limit has standard deviation limit/√(3n): allow
            // five of them, so the check holds for any seed (and any other test's draws).
            let mean = w.iter().sum::<f32>() / w.len() as f32;
            let bound = 5.0 * limit / (3.0 * w.len() as f32).sqrt();
            assert!(mean.abs() < bound, "mean {mean}, bound {bound}");
            assert!(bias_of(layer).iter().all(|&b| b == 0.0));
        }
    }

    #[test]
    fn crossentropy_matches_hand_computed_values() {
        let device = device();
        for kernels in Kernels::ALL {
            let logits = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &device);
            let one_hot = Tensor::<2>::from_data([[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]], &device);
            let loss = categorical_crossentropy(logits, one_hot, kernels)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            // -log(e^3 / (e^1 + e^2 + e^3)) and -log(1/3).
            let expected0 = -(3f32.exp() / (1f32.exp() + 2f32.exp() + 3f32.exp())).ln();
            assert!((loss[0] - expected0).abs() < 1e-6, "{kernels}");
            assert!((loss[1] - 3f32.ln()).abs() < 1e-6, "{kernels}");
            // Large logits stay finite.
            let big = Tensor::<2>::from_data([[1000.0f32, -1000.0]], &device);
            let target = Tensor::<2>::from_data([[0.0f32, 1.0]], &device);
            let loss = categorical_crossentropy(big, target, kernels)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(loss, vec![2000.0], "{kernels}");
        }
    }
}
