//! `export RUN --format safetensors`: a run's weights for PyTorch. The names and layout are
//! those of `torch.nn.Sequential(Linear(784, 512), ReLU(), Linear(512, 512), ReLU(),
//! Linear(512, 10))`'s `state_dict()`: `0.weight` `[512, 784]`, `0.bias` `[512]`, `2.weight`,
//! `2.bias`, `4.weight`, `4.bias`, all f32. PyTorch's `Linear` keeps its weight as
//! `[out, in]`; Burn's as `[in, out]`, so the weights are transposed.

use super::InspectError;
use crate::fsutil::write_atomic;
use crate::run_dir::RunDir;
use crate::saved::{self, Weights};
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

/// The formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
}

/// One exported tensor: its name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Export {
    pub weights: PathBuf,
    pub epoch: usize,
    pub out: PathBuf,
    pub tensors: Vec<Exported>,
    pub bytes: usize,
}

/// Writes `which` weights of `run` (the final model, else the last checkpoint, when `None`) to
/// `out`, atomically.
pub fn export(
    run: &RunDir,
    which: Option<Weights>,
    format: Format,
    out: &Path,
) -> Result<Export, InspectError> {
    let Format::Safetensors = format;
    // Reading tensors needs no accelerator: the CPU backend is in every build.
    let device = crate::backend::Backend::Ndarray.device(0)?;
    let saved = saved::load(run, which, &device)?;
    let compute = |e: burn::tensor::DataError| InspectError::Compute(format!("{e:?}"));

    // (name, shape, little-endian f32 bytes), in the order PyTorch's Sequential numbers them:
    // Linear at 0, 2, 4; the ReLUs at 1, 3 have no parameters.
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, layer) in saved.model.layers.iter().enumerate() {
        let [inputs, outputs] = layer.weight.val().dims();
        let weight = layer
            .weight
            .val()
            .transpose()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(compute)?;
        tensors.push((
            format!("{}.weight", 2 * i),
            vec![outputs, inputs],
            le_bytes(&weight),
        ));
        let bias = match &layer.bias {
            Some(bias) => bias
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(compute)?,
            None => vec![0.0; outputs],
        };
        tensors.push((format!("{}.bias", 2 * i), vec![outputs], le_bytes(&bias)));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| InspectError::Export {
                    path: out.to_path_buf(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "source".to_string(),
            format!("mnist-mlp {} epoch {}", run.name(), saved.epoch),
        ),
    ]);
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| InspectError::Export {
            path: out.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(out, &bytes)?;
    Ok(Export {
        weights: saved.path,
        epoch: saved.epoch,
        out: out.to_path_buf(),
        tensors: tensors
            .into_iter()
            .map(|(name, shape, _)| Exported { name, shape })
            .collect(),
        bytes: bytes.len(),
    })
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Export {
    /// What `export` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "Exported {} (epoch {}) to {} ({} bytes):\n",
            self.weights.display(),
            self.epoch,
            self.out.display(),
            self.bytes
        );
        for t in &self.tensors {
            let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
            let _ = writeln!(out, "  {:<9} f32 [{}]", t.name, shape.join(", "));
        }
        out
    }
}
