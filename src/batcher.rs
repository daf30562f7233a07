//! The dataset adapter, as the tutorial prepares its arrays: each image flattened to 784 values
//! and divided by 255 (`x_train.reshape(60000, 784).astype('float32') / 255`), each label one-hot
//! encoded (`to_categorical(y_train, 10)`), one batch at a time.

use crate::data::idx::{CLASSES, PIXELS};
use crate::data::{MnistItem, MnistSplit};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A batch ready for the model.
#[derive(Debug, Clone)]
pub struct MnistBatch {
    /// `[batch, 784]` pixels in `[0, 1]`.
    pub images: Tensor<2>,
    /// `[batch, 10]` one-hot targets, what categorical cross-entropy is computed against.
    pub one_hot: Tensor<2>,
    /// `[batch]` class indices, what the accuracy metric compares predictions with.
    pub targets: Tensor<1, Int>,
}

/// Burn's [`Batcher`] for MNIST: flatten, normalize, one-hot.
#[derive(Debug, Clone, Copy, Default)]
pub struct MnistBatcher;

/// Pixels of `items`, flattened and divided by 255 in f32, as Keras's `astype('float32') / 255`.
pub fn normalize(items: &[MnistItem]) -> Vec<f32> {
    let mut x = Vec::with_capacity(items.len() * PIXELS);
    for item in items {
        x.extend(item.image.iter().map(|&p| f32::from(p) / 255.0));
    }
    x
}

/// Labels of `items` as one-hot rows of 10, as Keras's `to_categorical`.
pub fn one_hot(items: &[MnistItem]) -> Vec<f32> {
    let mut y = vec![0.0f32; items.len() * CLASSES];
    for (row, item) in y.chunks_exact_mut(CLASSES).zip(items) {
        row[usize::from(item.label)] = 1.0;
    }
    y
}

impl Batcher<MnistItem, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        let targets = items.iter().map(|item| i64::from(item.label)).collect();
        MnistBatch::new(normalize(&items), one_hot(&items), targets, device)
    }
}

/// The batch of images `indices` of `split`, built straight from its u8 buffer (what the data
/// loader uses): each tensor's values are written once, with no per-item copies. The same values
/// as [`MnistBatcher`] gives for those items. Panics if an index is out of range.
pub fn batch_of(split: &MnistSplit, indices: &[usize], device: &Device) -> MnistBatch {
    let n = indices.len();
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut one_hot = vec![0.0f32; n * CLASSES];
    let mut targets = Vec::with_capacity(n);
    for (row, &index) in one_hot.chunks_exact_mut(CLASSES).zip(indices) {
        images.extend(split.image(index).iter().map(|&p| f32::from(p) / 255.0));
        let label = split.label(index);
        row[usize::from(label)] = 1.0;
        targets.push(i64::from(label));
    }
    MnistBatch::new(images, one_hot, targets, device)
}

impl MnistBatch {
    fn new(images: Vec<f32>, one_hot: Vec<f32>, targets: Vec<i64>, device: &Device) -> Self {
        let n = targets.len();
        Self {
            images: Tensor::from_data(TensorData::new(images, [n, PIXELS]), device),
            one_hot: Tensor::from_data(TensorData::new(one_hot, [n, CLASSES]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn item(fill: u8, label: u8) -> MnistItem {
        MnistItem {
            image: [fill; PIXELS],
            label,
        }
    }

    #[test]
    fn pixels_are_flattened_and_divided_by_255() {
        let mut first = item(0, 3);
        first.image[1] = 255;
        first.image[783] = 128;
        let x = normalize(&[first, item(51, 7)]);
        assert_eq!(x.len(), 2 * 784);
        assert_eq!(x[0], 0.0);
        assert_eq!(x[1], 1.0);
        assert_eq!(x[783], 128.0f32 / 255.0f32);
        assert_eq!(x[784], 0.2);
    }

    #[test]
    fn labels_are_one_hot() {
        let y = one_hot(&[item(0, 3), item(0, 0), item(0, 9)]);
        let mut expected = vec![0.0; 30];
        expected[3] = 1.0;
        expected[10] = 1.0;
        expected[29] = 1.0;
        assert_eq!(y, expected);
    }

    #[test]
    fn batches_from_the_split_equal_batches_of_its_items() {
        let pixels: Vec<u8> = (0..5 * PIXELS).map(|i| (i * 7 % 256) as u8).collect();
        let split = MnistSplit::new(pixels, vec![4, 0, 9, 1, 4]).unwrap();
        let device = Backend::Ndarray.device(0).unwrap();
        let indices = [3, 0, 4];
        let items = indices
            .iter()
            .map(|&i| MnistItem {
                image: *split.image(i),
                label: split.label(i),
            })
            .collect();
        let direct = batch_of(&split, &indices, &device);
        let batched = MnistBatcher.batch(items, &device);
        let floats = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(
            floats(direct.images.clone())[..PIXELS],
            normalize_one(&split, 3)
        );
        assert_eq!(floats(direct.images), floats(batched.images));
        assert_eq!(floats(direct.one_hot), floats(batched.one_hot));
        let ints = |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(ints(direct.targets.clone()), vec![1, 4, 4]);
        assert_eq!(ints(direct.targets), ints(batched.targets));
    }

    fn normalize_one(split: &MnistSplit, index: usize) -> Vec<f32> {
        split
            .image(index)
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect()
    }

    #[test]
    fn the_batch_tensors_hold_the_same_values() {
        let device = Backend::Ndarray.device(0).unwrap();
        let batch = MnistBatcher.batch(vec![item(255, 2), item(0, 5)], &device);
        assert_eq!(batch.images.dims(), [2, 784]);
        assert_eq!(batch.one_hot.dims(), [2, 10]);
        let images = batch.images.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(images[..784], [1.0; 784]);
        assert_eq!(images[784..], [0.0; 784]);
        let one_hot = batch.one_hot.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(one_hot[2], 1.0);
        assert_eq!(one_hot[15], 1.0);
        assert_eq!(one_hot.iter().sum::<f32>(), 2.0);
        let targets = batch
            .targets
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(targets, vec![2, 5]);
    }
}
