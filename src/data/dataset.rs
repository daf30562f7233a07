//! MNIST in memory, as the tutorial's `(x_train, y_train), (x_valid, y_valid)`, and the Burn
//! [`Dataset`] over it. Images stay u8 (47 MB for the training set); conversion to f32 happens
//! one batch at a time in the [batcher](crate::batcher).

use super::idx::{self, IdxError, PIXELS};
use super::source::{self, FILES, Located, Origin, SourceError, Sources};
use burn::data::dataset::{Dataset, DatasetError};
use std::path::PathBuf;
use std::sync::Arc;

/// A fault while finding or reading MNIST.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Idx(#[from] IdxError),
    #[error("{}: {images} images, but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
}

impl DataError {
    /// Whether the fault is in the files the user supplied or pointed at.
    pub fn is_bad_input(&self) -> bool {
        match self {
            DataError::Source(e) => e.is_bad_input(),
            DataError::Idx(e) => e.is_bad_input(),
            DataError::CountMismatch { .. } => true,
        }
    }
}

/// One split: images of 28×28 u8 pixels (row-major, flattened) and their labels 0–9.
///
/// Invariant: `pixels.len() == 784 * labels.len()` and every label is below 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistSplit {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl MnistSplit {
    /// Builds a split; `None` unless `pixels` holds exactly 784 bytes per label and every label
    /// is a digit.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Option<Self> {
        (pixels.len() == PIXELS * labels.len() && labels.iter().all(|&l| l < 10))
            .then_some(Self { pixels, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index`, flattened to 784 pixels. Panics if `index >= len()`.
    pub fn image(&self, index: usize) -> &[u8; PIXELS] {
        let start = index * PIXELS;
        self.pixels[start..start + PIXELS]
            .try_into()
            .unwrap_or_else(|_| unreachable!("a slice of PIXELS bytes"))
    }

    /// Label of image `index`. Panics if `index >= len()`.
    pub fn label(&self, index: usize) -> u8 {
        self.labels[index]
    }

    /// All pixels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The first `n` images (all of them when `n >= len()`), for quick runs.
    pub fn first(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * PIXELS);
        self
    }

    /// Splits after the first `at` images (all in the first part when `at >= len()`): Keras's
    /// `validation_split` keeps the first part for training and validates on the rest.
    pub fn split_at(mut self, at: usize) -> (Self, Self) {
        let at = at.min(self.len());
        let rest = Self {
            pixels: self.pixels.split_off(at * PIXELS),
            labels: self.labels.split_off(at),
        };
        (self, rest)
    }

    /// How many images of each digit.
    pub fn label_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// Smallest and largest pixel value, `None` for an empty split.
    pub fn pixel_range(&self) -> Option<(u8, u8)> {
        let min = self.pixels.iter().min()?;
        let max = self.pixels.iter().max()?;
        Some((*min, *max))
    }
}

/// How one file's SHA-256 compares with the published MNIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub name: &'static str,
    pub path: PathBuf,
    pub sha256: String,
    pub matches_published: bool,
}

/// MNIST as the tutorial loads it: 60,000 training and 10,000 validation (test) images.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: MnistSplit,
    pub valid: MnistSplit,
    pub origin: Origin,
    pub checksums: Vec<Checksum>,
}

impl Mnist {
    /// Finds (or fetches) the four files and reads them, validating their format.
    pub fn load(sources: &Sources) -> Result<Self, DataError> {
        Self::read(source::locate(sources)?)
    }

    /// Reads four located files.
    pub fn read(located: Located) -> Result<Self, DataError> {
        let [x_train, y_train, x_valid, y_valid] = &located.paths;
        let files = [
            idx::read_images(x_train)?,
            idx::read_labels(y_train)?,
            idx::read_images(x_valid)?,
            idx::read_labels(y_valid)?,
        ];
        let checksums = FILES
            .iter()
            .zip(&files)
            .zip(&located.paths)
            .map(|((file, data), path)| Checksum {
                name: file.name,
                path: path.clone(),
                sha256: data.sha256.clone(),
                matches_published: data.sha256 == file.sha256,
            })
            .collect();
        let [x_train, y_train, x_valid, y_valid] = files;
        let split = |images: idx::IdxData, labels: idx::IdxData, i: usize| {
            let counts = (images.count, labels.count);
            MnistSplit::new(images.values, labels.values).ok_or_else(|| DataError::CountMismatch {
                images_path: located.paths[i].clone(),
                labels_path: located.paths[i + 1].clone(),
                images: counts.0,
                labels: counts.1,
            })
        };
        Ok(Self {
            train: split(x_train, y_train, 0)?,
            valid: split(x_valid, y_valid, 2)?,
            origin: located.origin,
            checksums,
        })
    }
}

/// One sample as the Burn data loader hands it to the batcher: the 784 pixels, still u8, and the
/// label. Plain data, no heap allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistItem {
    pub image: [u8; PIXELS],
    pub label: u8,
}

/// Burn's [`Dataset`] over a shared [`MnistSplit`].
#[derive(Debug, Clone)]
pub struct MnistDataset {
    split: Arc<MnistSplit>,
}

impl MnistDataset {
    pub fn new(split: Arc<MnistSplit>) -> Self {
        Self { split }
    }

    pub fn split(&self) -> &MnistSplit {
        &self.split
    }
}

impl Dataset<MnistItem> for MnistDataset {
    fn get(&self, index: usize) -> Result<MnistItem, DatasetError> {
        Ok(MnistItem {
            image: *self.split.image(index),
            label: self.split.label(index),
        })
    }

    fn len(&self) -> usize {
        self.split.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_keeps_its_invariant() {
        assert!(MnistSplit::new(vec![0; PIXELS * 2], vec![1, 2]).is_some());
        assert!(MnistSplit::new(vec![0; PIXELS * 2], vec![1]).is_none());
        assert!(MnistSplit::new(vec![0; PIXELS], vec![10]).is_none());
    }

    #[test]
    fn dataset_items_are_the_split_images() {
        let pixels: Vec<u8> = (0..PIXELS * 3).map(|i| (i / PIXELS) as u8 * 100).collect();
        let split = MnistSplit::new(pixels, vec![4, 5, 6]).unwrap();
        assert_eq!(split.label_counts()[5], 1);
        assert_eq!(split.pixel_range(), Some((0, 200)));
        let (head, tail) = split.clone().split_at(1);
        assert_eq!((head.labels(), tail.labels()), (&[4][..], &[5, 6][..]));
        assert!(tail.image(0).iter().all(|&p| p == 100));
        let dataset = MnistDataset::new(Arc::new(split.clone().first(2)));
        assert_eq!(dataset.len(), 2);
        let item = dataset.get(1).unwrap();
        assert_eq!(item.label, 5);
        assert!(item.image.iter().all(|&p| p == 100));
    }
}
