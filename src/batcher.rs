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
    /// What the model's dropout masks for this batch are drawn from: set by the training
    /// loader from `(seed, epoch, batch)`, so that a resumed run draws the masks an
    /// uninterrupted one does. `None` (every other batch): no dropout.
    pub dropout_key: Option<u64>,
}

/// Burn's [`Batcher`] for MNIST: flatten, normalize, one-hot. The one dataset adapter: the
/// training loader batches [`DigitRef`]s with it, `eval` and `predict` batch bare images, and
/// Burn's own loaders would batch [`MnistItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct MnistBatcher;

/// An image and its label, borrowed from the split that holds them, so that a batch copies
/// each pixel once, into its tensor.
#[derive(Debug, Clone, Copy)]
pub struct DigitRef<'a> {
    pub image: &'a [u8; PIXELS],
    pub label: u8,
}

impl<'a> DigitRef<'a> {
    /// Image `index` of `split`. Panics if it is out of range.
    pub fn of(split: &'a MnistSplit, index: usize) -> Self {
        Self {
            image: split.image(index),
            label: split.label(index),
        }
    }
}

/// Pixels flattened and divided by 255 in f32, as Keras's `astype('float32') / 255`: the one
/// place the tutorial's normalisation is written.
fn normalize<'a>(images: impl ExactSizeIterator<Item = &'a [u8; PIXELS]>) -> Vec<f32> {
    let mut x = Vec::with_capacity(images.len() * PIXELS);
    for image in images {
        x.extend(image.iter().map(|&p| f32::from(p) / 255.0));
    }
    x
}

/// The 8-bit image that [`normalize`] turns into `pixels` (values in 0..=1; others are clamped):
/// each rounded to the nearest of the 256 levels, so that `k / 255` gives back `k` and a picture
/// sent as numbers reaches the model exactly as the same picture as a file does.
pub fn levels(pixels: &[f64; PIXELS]) -> [u8; PIXELS] {
    let mut image = [0u8; PIXELS];
    for (level, &p) in image.iter_mut().zip(pixels) {
        *level = (p.clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    image
}

/// Labels as one-hot rows of 10, as Keras's `to_categorical`.
fn one_hot(labels: &[i64]) -> Vec<f32> {
    let mut y = vec![0.0f32; labels.len() * CLASSES];
    for (row, &label) in y.chunks_exact_mut(CLASSES).zip(labels) {
        row[label as usize] = 1.0;
    }
    y
}

impl Batcher<DigitRef<'_>, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<DigitRef<'_>>, device: &Device) -> MnistBatch {
        let targets: Vec<i64> = items.iter().map(|item| i64::from(item.label)).collect();
        let images = normalize(items.iter().map(|item| item.image));
        MnistBatch::new(images, one_hot(&targets), targets, device)
    }
}

impl Batcher<MnistItem, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        let refs = items
            .iter()
            .map(|item| DigitRef {
                image: &item.image,
                label: item.label,
            })
            .collect();
        self.batch(refs, device)
    }
}

/// Images without labels (pictures to classify, images to score): the `[n, 784]` model input.
impl<'a> Batcher<&'a [u8; PIXELS], Tensor<2>> for MnistBatcher {
    fn batch(&self, images: Vec<&'a [u8; PIXELS]>, device: &Device) -> Tensor<2> {
        let n = images.len();
        Tensor::from_data(
            TensorData::new(normalize(images.into_iter()), [n, PIXELS]),
            device,
        )
    }
}

impl MnistBatch {
    fn new(images: Vec<f32>, one_hot: Vec<f32>, targets: Vec<i64>, device: &Device) -> Self {
        let n = targets.len();
        Self {
            images: Tensor::from_data(TensorData::new(images, [n, PIXELS]), device),
            one_hot: Tensor::from_data(TensorData::new(one_hot, [n, CLASSES]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            dropout_key: None,
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

    fn floats(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn pixels_are_flattened_and_divided_by_255() {
        let mut first = [0u8; PIXELS];
        first[1] = 255;
        first[783] = 128;
        let x = normalize([&first, &[51; PIXELS]].into_iter());
        assert_eq!(x.len(), 2 * 784);
        assert_eq!(x[0], 0.0);
        assert_eq!(x[1], 1.0);
        assert_eq!(x[783], 128.0f32 / 255.0f32);
        assert_eq!(x[784], 0.2);
    }

    #[test]
    fn levels_undo_the_normalisation() {
        let image: [u8; PIXELS] = std::array::from_fn(|i| (i % 256) as u8);
        let unit: Vec<f64> = normalize([&image].into_iter())
            .into_iter()
            .map(f64::from)
            .collect();
        assert_eq!(levels(&unit.try_into().unwrap()), image);
        assert_eq!(levels(&[0.5; PIXELS])[0], 128);
        assert_eq!(levels(&[-1.0; PIXELS])[0], 0);
    }

    #[test]
    fn labels_are_one_hot() {
        let y = one_hot(&[3, 0, 9]);
        let mut expected = vec![0.0; 30];
        expected[3] = 1.0;
        expected[10] = 1.0;
        expected[29] = 1.0;
        assert_eq!(y, expected);
    }

    #[test]
    fn borrowed_owned_and_bare_images_batch_alike() {
        let pixels: Vec<u8> = (0..5 * PIXELS).map(|i| (i * 7 % 256) as u8).collect();
        let split = MnistSplit::new(pixels, vec![4, 0, 9, 1, 4]).unwrap();
        let device = Backend::Ndarray.device(0).unwrap();
        let indices = [3, 0, 4];
        let refs: Vec<DigitRef<'_>> = indices.iter().map(|&i| DigitRef::of(&split, i)).collect();
        let items = refs
            .iter()
            .map(|r| MnistItem {
                image: *r.image,
                label: r.label,
            })
            .collect();
        let borrowed: MnistBatch = MnistBatcher.batch(refs.clone(), &device);
        let owned: MnistBatch = MnistBatcher.batch(items, &device);
        let bare: Tensor<2> = MnistBatcher.batch(refs.iter().map(|r| r.image).collect(), &device);
        let first: Vec<f32> = split
            .image(3)
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        assert_eq!(floats(borrowed.images.clone())[..PIXELS], first);
        assert_eq!(floats(borrowed.images.clone()), floats(owned.images));
        assert_eq!(floats(borrowed.images), floats(bare));
        assert_eq!(floats(borrowed.one_hot), floats(owned.one_hot));
        let ints = |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(ints(borrowed.targets.clone()), vec![1, 4, 4]);
        assert_eq!(ints(borrowed.targets), ints(owned.targets));
    }

    #[test]
    fn the_batch_tensors_hold_the_same_values() {
        let device = Backend::Ndarray.device(0).unwrap();
        let batch: MnistBatch = MnistBatcher.batch(vec![item(255, 2), item(0, 5)], &device);
        assert_eq!(batch.images.dims(), [2, 784]);
        assert_eq!(batch.one_hot.dims(), [2, 10]);
        let images = floats(batch.images);
        assert_eq!(images[..784], [1.0; 784]);
        assert_eq!(images[784..], [0.0; 784]);
        let one_hot = floats(batch.one_hot);
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
