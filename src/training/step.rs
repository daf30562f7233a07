//! What one training or validation step computes, for Burn's `Learner`.

use crate::batcher::MnistBatch;
use crate::model::Mlp;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

impl Mlp {
    /// Logits and per-sample categorical cross-entropy of a batch.
    ///
    /// The output carries the per-sample losses, not their mean, so Burn's loss metric weighs
    /// each batch by its size, as Keras averages over samples (the last validation batch of
    /// 10,000 at 32 holds only 16).
    pub fn forward_classification(&self, batch: MnistBatch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        let losses = self.loss(logits.clone(), batch.one_hot);
        ClassificationOutput::new(losses, logits, batch.targets)
    }
}

impl TrainStep for Mlp {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.forward_classification(batch);
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
