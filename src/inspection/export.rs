//! `export RUN --format safetensors|onnx`: a run's model for other frameworks.
//!
//! `safetensors` holds the weights for PyTorch. The names and layout are those of `torch.nn.Sequential(Linear(784, 512), ReLU(), Linear(512, 512), ReLU(),
//! Linear(512, 10))`'s `state_dict()`: `0.weight` `[512, 784]`, `0.bias` `[512]`, `2.weight`,
//! `2.bias`, `4.weight`, `4.bias`, all f32. PyTorch's `Linear` keeps its weight as
//! `[out, in]`; Burn's as `[in, out]`, so the weights are transposed.
//!
//! `onnx` holds the whole model, softmax included, for any ONNX runtime ([`onnx`]).

use super::{InspectError, onnx};
use crate::fsutil::write_atomic;
use crate::model::Mlp;
use crate::run_dir::RunDir;
use crate::saved::{self, Weights};
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

/// The formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The weights, with PyTorch's `nn.Linear` names and layout.
    Safetensors,
    /// The whole model, softmax included, as an ONNX graph (see [`onnx`]).
    Onnx,
}

impl Format {
    /// The file extension that names the format (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Onnx => "onnx",
        }
    }

    /// The format `path`'s extension names (`.onnx`, `.safetensors`, any case), if any.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?;
        [Format::Safetensors, Format::Onnx]
            .into_iter()
            .find(|f| extension.eq_ignore_ascii_case(f.extension()))
    }
}

/// The format to write `out` in: `given` (`--format`) when the extension agrees or names no
/// format, else the one the extension names. A file named `.onnx` holding safetensors (or
/// the reverse) is refused: whoever opens it next goes by its name.
pub fn choose_format(given: Option<Format>, out: &Path) -> Result<Format, InspectError> {
    let refused = |message: String| InspectError::Refused {
        path: out.to_path_buf(),
        message,
    };
    match (given, Format::from_extension(out)) {
        (Some(given), Some(named)) if given != named => Err(refused(format!(
            "--format {} does not match the extension .{}; name the file .{} or pass --format {}",
            given.extension(),
            named.extension(),
            given.extension(),
            named.extension()
        ))),
        (Some(format), _) | (None, Some(format)) => Ok(format),
        (None, None) => Err(refused(
            "cannot tell the format from the extension; pass --format safetensors or --format onnx"
                .to_string(),
        )),
    }
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
    pub format: Format,
    pub out: PathBuf,
    pub tensors: Vec<Exported>,
    pub bytes: usize,
}

/// Writes `which` weights of `run` (the final model, else the last checkpoint, when `None`) to
/// `out` in `format`, atomically: on any error nothing is left at `out`. A file already at
/// `out` is replaced only when `force`; without it, it is refused before anything is read.
pub fn export(
    run: &RunDir,
    which: Option<Weights>,
    format: Format,
    out: &Path,
    force: bool,
) -> Result<Export, InspectError> {
    // A directory is left to the write to refuse (it cannot be replaced, force or not).
    let taken = std::fs::symlink_metadata(out).is_ok_and(|m| !m.is_dir());
    if taken && !force {
        return Err(InspectError::Refused {
            path: out.to_path_buf(),
            message: "already exists; pass --force to replace it".to_string(),
        });
    }
    // Reading tensors needs no accelerator: the CPU backend is in every build.
    let device = crate::backend::Backend::Ndarray.device(0)?;
    let saved = saved::load(run, which, &device)?;
    let layers = dense_layers(&saved.model)?;
    let failed = |message: String| InspectError::Export {
        path: out.to_path_buf(),
        message,
    };
    let (bytes, tensors) = match format {
        Format::Safetensors => safetensors_bytes(run, saved.epoch, &layers).map_err(failed)?,
        Format::Onnx => {
            let metadata = onnx_metadata(run, saved.epoch)?;
            let model = onnx::model(&layers, &metadata);
            let tensors = layers
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    [
                        Exported {
                            name: onnx::weight_name(i),
                            shape: vec![l.inputs, l.outputs],
                        },
                        Exported {
                            name: onnx::bias_name(i),
                            shape: vec![l.outputs],
                        },
                    ]
                })
                .collect();
            (onnx::encode(&model), tensors)
        }
    };
    write_atomic(out, &bytes).map_err(InspectError::Out)?;
    Ok(Export {
        weights: saved.path,
        epoch: saved.epoch,
        format,
        out: out.to_path_buf(),
        tensors,
        bytes: bytes.len(),
    })
}

/// Each layer's weight (`[in, out]`, as Burn keeps it) and bias (zeros when it has none).
fn dense_layers(model: &Mlp) -> Result<Vec<onnx::Dense>, InspectError> {
    let to_vec = |tensor: burn::tensor::Tensor<1>| {
        tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| InspectError::Compute(format!("{e:?}")))
    };
    model
        .layers
        .iter()
        .map(|layer| {
            let [inputs, outputs] = layer.weight.val().dims();
            let weight = to_vec(layer.weight.val().reshape([inputs * outputs]))?;
            let bias = match &layer.bias {
                Some(bias) => to_vec(bias.val())?,
                None => vec![0.0; outputs],
            };
            Ok(onnx::Dense {
                inputs,
                outputs,
                weight,
                bias,
            })
        })
        .collect()
}

/// The safetensors file and its tensors, in the order PyTorch's Sequential numbers them: Linear
/// at 0, 2, 4; the ReLUs at 1, 3 have no parameters. Each weight is transposed to PyTorch's
/// `[out, in]`.
fn safetensors_bytes(
    run: &RunDir,
    epoch: usize,
    layers: &[onnx::Dense],
) -> Result<(Vec<u8>, Vec<Exported>), String> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let (inputs, outputs) = (layer.inputs, layer.outputs);
        let transposed: Vec<f32> = (0..outputs)
            .flat_map(|o| (0..inputs).map(move |k| layer.weight[k * outputs + o]))
            .collect();
        tensors.push((
            format!("{}.weight", 2 * i),
            vec![outputs, inputs],
            le_bytes(&transposed),
        ));
        tensors.push((
            format!("{}.bias", 2 * i),
            vec![outputs],
            le_bytes(&layer.bias),
        ));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "source".to_string(),
            format!("mnist-mlp {} epoch {epoch}", run.name()),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
    let tensors = tensors
        .into_iter()
        .map(|(name, shape, _)| Exported { name, shape })
        .collect();
    Ok((bytes, tensors))
}

/// The ONNX model's `metadata_props`: which run and epoch, and what training measured for it.
fn onnx_metadata(run: &RunDir, epoch: usize) -> Result<Vec<(&'static str, String)>, InspectError> {
    let history = super::report::recorded_history(run, &run.read_info()?)?;
    let mut metadata = vec![("run", run.name()), ("epoch", epoch.to_string())];
    if let Some(metrics) = epoch.checked_sub(1).and_then(|i| history.get(i)) {
        metadata.push(("val_accuracy", metrics.val_accuracy.to_string()));
        metadata.push(("val_loss", metrics.val_loss.to_string()));
    }
    Ok(metadata)
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
        if self.format == Format::Onnx {
            let _ = writeln!(
                out,
                "  ONNX opset {}: {} f32 [{b}, {}] → {} f32 [{b}, {}], {} f32 [{b}, {}]; initializers:",
                onnx::OPSET,
                onnx::INPUT,
                self.tensors.first().map_or(0, |t| t.shape[0]),
                onnx::PROBABILITIES,
                self.tensors.last().map_or(0, |t| t.shape[0]),
                onnx::LOGITS,
                self.tensors.last().map_or(0, |t| t.shape[0]),
                b = onnx::BATCH,
            );
        }
        let width = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0) + 1;
        for t in &self.tensors {
            let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
            let _ = writeln!(out, "  {:<width$} f32 [{}]", t.name, shape.join(", "));
        }
        out
    }
}
