//! The order in which the `Learner` sees the data: batches of `batch_size`, the training set
//! reshuffled every epoch as Keras's `fit(shuffle=True)` does.
//!
//! Custom because Burn's own data loader draws each epoch's order from one running random
//! generator, so a training resumed at epoch k would not see the order an uninterrupted run
//! sees. Here the order of epoch `e` is a function of `(seed, e)` alone; the batches are made by
//! the batcher, as in Burn's loader. With augmentation on, each training image is first
//! redrawn as [`Augment`] makes it for `(seed, epoch, index)`, the batch's images in parallel.

use crate::augment::Augment;
use crate::batcher::{DigitRef, MnistBatch, MnistBatcher};
use crate::data::MnistDataset;
use crate::data::idx::PIXELS;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Dataset, Progress};
use burn::data::dataset::DatasetError;
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A Burn [`DataLoader`] over MNIST.
#[derive(Clone)]
pub struct MnistLoader {
    dataset: MnistDataset,
    range: Range<usize>,
    batch_size: usize,
    shuffle: Option<u64>,
    /// The augmentation and its seed, for training loaders that augment.
    augment: Option<(Augment, u64)>,
    /// The seed batches' dropout keys come from, for training loaders.
    dropout: Option<u64>,
    /// Epochs started so far; shared by the copies Burn makes with `to_device`.
    epochs_started: Arc<AtomicUsize>,
    device: Device,
}

impl MnistLoader {
    /// Batches `dataset` in order.
    pub fn new(dataset: MnistDataset, batch_size: usize, device: Device) -> Self {
        let range = 0..dataset.len();
        Self {
            dataset,
            range,
            batch_size,
            shuffle: None,
            augment: None,
            dropout: None,
            epochs_started: Arc::new(AtomicUsize::new(0)),
            device,
        }
    }

    /// Reshuffles every epoch, from `seed`.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Augments every image as `augment` draws it from `(seed, epoch, index)`; an `augment`
    /// that is off changes nothing.
    pub fn augmented(mut self, augment: &Augment, seed: u64) -> Self {
        self.augment = augment.enabled.then(|| (augment.clone(), seed));
        self
    }

    /// Gives every batch a dropout key drawn from `(seed, epoch, batch)` (see
    /// [`MnistBatch::dropout_key`]).
    pub fn dropout_keyed(mut self, seed: u64) -> Self {
        self.dropout = Some(seed);
        self
    }

    /// The dropout key of batch `batch` (0-based) of epoch `epoch` (0-based).
    fn dropout_key(seed: u64, epoch: usize, batch: usize) -> u64 {
        // Distinct from the shuffling's stream: a different odd multiplier and the batch mixed in.
        let mut rng = StdRng::seed_from_u64(
            seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
                ^ (batch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        rng.next_u64()
    }

    /// The next `iter()` is epoch `done + 1` (for a run resumed after `done` epochs).
    pub fn starting_after(mut self, done: usize) -> Self {
        self.epochs_started = Arc::new(AtomicUsize::new(done));
        self
    }

    /// The order of the items in epoch `epoch` (0-based).
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = self.range.clone().collect();
        if let Some(seed) = self.shuffle {
            // Mix the epoch into the seed so that each epoch's stream is independent.
            let stream = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            order.shuffle(&mut StdRng::seed_from_u64(stream));
        }
        order
    }
}

impl DataLoader<MnistBatch> for MnistLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<MnistBatch> + 'a> {
        let epoch = self.epochs_started.fetch_add(1, Ordering::SeqCst);
        Box::new(MnistIter {
            loader: self,
            order: self.order(epoch),
            position: 0,
            epoch,
            batches: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.range.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<MnistBatch>> {
        let mut loader = self.clone();
        loader.device = device.clone();
        Arc::new(loader)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<MnistBatch>> {
        let mut loader = self.clone();
        let first = self.range.start;
        loader.range = (first + start).min(self.range.end)..(first + end).min(self.range.end);
        loader.epochs_started =
            Arc::new(AtomicUsize::new(self.epochs_started.load(Ordering::SeqCst)));
        Arc::new(loader)
    }
}

struct MnistIter<'a> {
    loader: &'a MnistLoader,
    order: Vec<usize>,
    position: usize,
    epoch: usize,
    /// Batches made so far this epoch.
    batches: usize,
}

impl Iterator for MnistIter<'_> {
    type Item = Result<MnistBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.next_batch()?;
        let key = (self.loader.dropout)
            .map(|seed| MnistLoader::dropout_key(seed, self.epoch, self.batches));
        self.batches += 1;
        Some(batch.map(|batch| MnistBatch {
            dropout_key: key,
            ..batch
        }))
    }
}

impl MnistIter<'_> {
    /// The next batch as the batcher makes it.
    fn next_batch(&mut self) -> Option<Result<MnistBatch, DatasetError>> {
        let end = (self.position + self.loader.batch_size).min(self.order.len());
        let indices = self
            .order
            .get(self.position..end)
            .filter(|i| !i.is_empty())?;
        self.position = end;
        // The order only holds indices of the dataset's range, so `of` cannot go out of it.
        let split = self.loader.dataset.split();
        let device = &self.loader.device;
        let Some((augment, seed)) = &self.loader.augment else {
            let items = indices.iter().map(|&i| DigitRef::of(split, i)).collect();
            return Some(Ok(MnistBatcher.batch(items, device)));
        };
        let images: Vec<[u8; PIXELS]> = indices
            .par_iter()
            .map(|&i| augment.apply(split.image(i), split.label(i), *seed, self.epoch, i))
            .collect();
        let items = indices
            .iter()
            .zip(&images)
            .map(|(&i, image)| DigitRef {
                image,
                label: split.label(i),
            })
            .collect();
        Some(Ok(MnistBatcher.batch(items, device)))
    }
}

impl DataLoaderIterator<MnistBatch> for MnistIter<'_> {
    fn progress(&self) -> Progress {
        Progress::new(self.position, self.order.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::data::MnistSplit;
    use crate::data::idx::PIXELS;

    fn loader_of(n: usize) -> MnistLoader {
        let pixels: Vec<u8> = (0..n * PIXELS).map(|i| (i / PIXELS) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let split = MnistSplit::new(pixels, labels).unwrap();
        let device = Backend::Ndarray.device(0).unwrap();
        MnistLoader::new(MnistDataset::new(Arc::new(split)), 4, device)
    }

    #[test]
    fn every_item_once_per_epoch_in_batches() {
        let loader = loader_of(10).shuffled(42);
        let sizes: Vec<usize> = loader
            .iter()
            .map(|b| b.unwrap().targets.dims()[0])
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        for epoch in 0..3 {
            let mut order = loader.order(epoch);
            order.sort_unstable();
            assert_eq!(order, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn each_epoch_has_its_own_order_and_resuming_repeats_it() {
        let loader = loader_of(50).shuffled(42);
        assert_ne!(loader.order(0), loader.order(1));
        assert_ne!(loader.order(0), (0..50).collect::<Vec<_>>());
        let first_pixels = |l: &MnistLoader| {
            let batch = l.iter().next().unwrap().unwrap();
            batch.images.into_data().try_to_vec::<f32>().unwrap()
        };
        let fresh = loader.clone().starting_after(0);
        first_pixels(&fresh);
        let second_epoch = first_pixels(&fresh);
        let resumed = loader.clone().starting_after(1);
        assert_eq!(first_pixels(&resumed), second_epoch);
        // Unshuffled loaders keep the file order.
        assert_eq!(loader_of(5).order(3), vec![0, 1, 2, 3, 4]);
    }
}
