//! What one training or validation step computes, for Burn's `Learner`.

use crate::batcher::MnistBatch;
use crate::model::Mlp;
use burn::tensor::{Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

impl Mlp {
    /// Logits and per-sample categorical cross-entropy of a batch.
    ///
    /// The output carries the per-sample losses, not their mean, so Burn's loss metric weighs
    /// each batch by its size, as Keras averages over samples (the last validation batch of
    /// 10,000 at 32 holds only 16).
    pub fn forward_classification(&self, batch: MnistBatch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        self.classification(logits, batch.one_hot, batch.targets)
    }

    /// The same through the training forward pass: with the model's dropout, masks drawn
    /// from the batch's key.
    fn forward_training_classification(&self, batch: MnistBatch) -> ClassificationOutput {
        let logits = self.forward_training(batch.images, batch.dropout_key);
        self.classification(logits, batch.one_hot, batch.targets)
    }

    fn classification(
        &self,
        logits: Tensor<2>,
        one_hot: Tensor<2>,
        targets: Tensor<1, Int>,
    ) -> ClassificationOutput {
        let losses = self.loss(logits.clone(), one_hot);
        ClassificationOutput::new(losses, logits, targets)
    }
}

impl TrainStep for Mlp {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.forward_training_classification(batch);
        // Keras minimises the batch mean of the loss.
        let grads = output.loss.clone().mean().backward();
        TrainOutput::new(self, grads, output)
    }
}

impl InferenceStep for Mlp {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}
