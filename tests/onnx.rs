//! `export --format onnx` end to end, on a tiny run trained here on real MNIST (2 epochs on
//! 2,000 images): the file decodes back, with the crate that wrote it, to the tutorial's graph
//! holding the checkpoint's very weights, and a forward pass computed here from the decoded
//! graph gives `predict`'s probabilities. ONNX Runtime itself runs the file in
//! scripts/test-onnx.sh (CI), which `cargo test` does not need.

mod common;

use common::{mnist_mlp, real_mnist, run_ok, shared_temp_dir, snapshot, stderr, stdout};
use mnist_mlp::backend::Backend;
use mnist_mlp::data::idx::{CLASSES, PIXELS};
use mnist_mlp::inspection::onnx::proto::{self, DimensionValue as Dim, ModelProto, ValueInfoProto};
use mnist_mlp::inspection::{onnx, predict};
use mnist_mlp::run_dir::RunDir;
use mnist_mlp::saved::{self, Weights};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The home directory holding `artifacts/runs/tiny`, trained once for all tests here.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = shared_temp_dir();
        common::train_tiny(&home, "tiny", 2000);
        home
    })
}

fn run() -> RunDir {
    RunDir::open(home().join("artifacts/runs/tiny"))
}

/// Exports `tiny` with `args` to `out` (under the home) and decodes the file.
fn export(out: &str, args: &[&str]) -> (String, ModelProto) {
    let output = run_ok(
        mnist_mlp(home())
            .args(["export", "tiny", "--format", "onnx", "--out", out])
            .args(args),
    );
    let bytes = std::fs::read(home().join(out)).unwrap();
    (
        stdout(&output),
        ModelProto::decode(bytes.as_slice()).unwrap(),
    )
}

/// `[N, width]` f32, N the named batch dimension.
fn assert_batch_of(info: &ValueInfoProto, name: &str, width: i64) {
    assert_eq!(info.name, name);
    let tensor = info.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
    assert_eq!(tensor.elem_type, proto::FLOAT);
    let shape = tensor.shape.as_ref().unwrap();
    let dims: Vec<Option<Dim>> = shape.dim.iter().map(|d| d.value.clone()).collect();
    assert_eq!(
        dims,
        [Some(Dim::DimParam("N".into())), Some(Dim::DimValue(width))]
    );
}

#[test]
fn the_file_decodes_to_the_mlp_with_the_checkpoint_s_weights() {
    let (out, model) = export("epoch1.onnx", &["--checkpoint", "1"]);
    assert!(
        out.starts_with(
            "Exported artifacts/runs/tiny/checkpoint/model-1.bpk (epoch 1) to epoch1.onnx ("
        ),
        "{out}"
    );
    assert!(out.contains("  ONNX opset 13: pixels f32 [N, 784] → probabilities f32 [N, 10], logits f32 [N, 10]; initializers:\n"), "{out}");
    assert!(
        out.contains("  layers.0.weight  f32 [784, 512]\n  layers.0.bias    f32 [512]\n"),
        "{out}"
    );

    assert_eq!(model.ir_version, 7);
    let opsets: Vec<(&str, i64)> = model
        .opset_import
        .iter()
        .map(|o| (o.domain.as_str(), o.version))
        .collect();
    assert_eq!(opsets, [("", 13)]);
    assert_eq!(model.producer_name, "mnist-mlp");
    assert_eq!(model.producer_version, env!("CARGO_PKG_VERSION"));
    let history = run().read_history().unwrap();
    let metadata: Vec<(&str, &str)> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let (val_accuracy, val_loss) = (
        history.val_accuracy[0].to_string(),
        history.val_loss[0].to_string(),
    );
    assert_eq!(
        metadata,
        [
            ("run", "tiny"),
            ("epoch", "1"),
            ("val_accuracy", val_accuracy.as_str()),
            ("val_loss", val_loss.as_str())
        ]
    );

    let graph = model.graph.as_ref().unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]);
    assert_eq!(graph.input.len(), 1);
    assert_batch_of(&graph.input[0], "pixels", 784);
    assert_eq!(graph.output.len(), 2);
    assert_batch_of(&graph.output[0], "probabilities", 10);
    assert_batch_of(&graph.output[1], "logits", 10);
    let softmax = graph.node.last().unwrap();
    assert_eq!(softmax.output, ["probabilities"]);
    assert_eq!(
        softmax
            .attribute
            .iter()
            .map(|a| (a.name.as_str(), a.r#type, a.i))
            .collect::<Vec<_>>(),
        [("axis", proto::ATTRIBUTE_INT, 1)]
    );
    assert_eq!(graph.node[4].output, ["logits"]);
    // Gemm's transB is left at 0: B is Burn's [in, out] weight as it stands.
    assert!(graph.node[0].attribute.is_empty(), "{:?}", graph.node[0]);

    // Every initializer is the checkpoint's tensor, value for value.
    let device = Backend::Ndarray.device(0).unwrap();
    let saved = saved::load(&run(), Some(Weights::Epoch(1)), &device).unwrap();
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.2.weight",
            "layers.2.bias"
        ]
    );
    for (i, layer) in saved.model.layers.iter().enumerate() {
        let weight = &graph.initializer[2 * i];
        let dims = layer.weight.val().dims();
        assert_eq!(weight.dims, [dims[0] as i64, dims[1] as i64]);
        assert_eq!(weight.data_type, proto::FLOAT);
        let burn: Vec<f32> = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(weight.float_data, burn);
        let bias = &graph.initializer[2 * i + 1];
        assert_eq!(bias.dims, [dims[1] as i64]);
        let burn: Vec<f32> = layer
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(bias.float_data, burn);
    }
}

/// The graph run by hand, node by node, on `images` (`[n, 784]` pixels in 0–1): Gemm as
/// `x·B + C`, Relu, Softmax over axis 1. Returns every value by name.
fn run_graph(model: &ModelProto, images: Vec<f32>, n: usize) -> HashMap<String, Vec<f32>> {
    let graph = model.graph.as_ref().unwrap();
    let mut values: HashMap<String, Vec<f32>> = HashMap::from([("pixels".into(), images)]);
    let dims: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    for t in &graph.initializer {
        values.insert(t.name.clone(), t.float_data.clone());
    }
    for node in &graph.node {
        let x = &values[&node.input[0]];
        let y = match node.op_type.as_str() {
            "Gemm" => {
                let b = &values[&node.input[1]];
                let c = &values[&node.input[2]];
                let (k, m) = (
                    dims[&*node.input[1]][0] as usize,
                    dims[&*node.input[1]][1] as usize,
                );
                assert_eq!(x.len(), n * k);
                let mut y = Vec::with_capacity(n * m);
                for row in x.chunks_exact(k) {
                    for o in 0..m {
                        let dot: f32 = (0..k).map(|i| row[i] * b[i * m + o]).sum();
                        y.push(dot + c[o]);
                    }
                }
                y
            }
            "Relu" => x.iter().map(|v| v.max(0.0)).collect(),
            "Softmax" => x
                .chunks_exact(x.len() / n)
                .flat_map(|row| {
                    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
                    let sum: f32 = exp.iter().sum();
                    exp.into_iter().map(move |e| e / sum)
                })
                .collect(),
            op => panic!("unexpected op {op}"),
        };
        values.insert(node.output[0].clone(), y);
    }
    values
}

#[test]
fn the_graph_computed_by_hand_gives_predict_s_probabilities() {
    // The default weights: the final model of the finished run.
    let (_, model) = export("final.onnx", &[]);
    let epoch = model
        .metadata_props
        .iter()
        .find(|p| p.key == "epoch")
        .unwrap();
    assert_eq!(epoch.value, "2");

    let mnist = real_mnist();
    let n = 8;
    let images: Vec<[u8; PIXELS]> = (0..n).map(|i| *mnist.valid.image(i)).collect();
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|image| image.iter().map(|&p| f32::from(p) / 255.0))
        .collect();
    let values = run_graph(&model, pixels, n);

    let device = Backend::Ndarray.device(0).unwrap();
    let saved = saved::load(&run(), None, &device).unwrap();
    assert_eq!(saved.epoch, 2);
    let expected = predict::classify(&saved.model, &images, &device).unwrap();
    let probabilities = &values[onnx::PROBABILITIES];
    assert_eq!(probabilities.len(), n * CLASSES);
    for (row, expected) in probabilities.chunks_exact(CLASSES).zip(&expected) {
        for (p, e) in row.iter().zip(expected) {
            assert!(
                (p - e).abs() <= 1e-5,
                "{row:?} against predict's {expected:?}"
            );
        }
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // A trained model, so the check is not one of uniform outputs: most of these are right.
    let right = probabilities
        .chunks_exact(CLASSES)
        .enumerate()
        .filter(|(i, row)| {
            let best = (0..CLASSES)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            best == usize::from(mnist.valid.label(*i))
        })
        .count();
    assert!(right >= n / 2, "{right} of {n}");
}

/// `args` must fail with exit 2 and one line starting with `expected`, leaving `dir` as it was.
fn fails_in(dir: &Path, args: &[&str], expected: &str) {
    let before = snapshot(dir);
    let output = mnist_mlp(dir).args(args).output().unwrap();
    let err = stderr(&output);
    assert!(err.starts_with(expected), "{args:?}: {err}");
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stdout(&output), "");
    assert_eq!(snapshot(dir), before, "{args:?} changed the tree");
}

#[test]
fn bad_formats_unwritable_outs_and_runs_without_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let run = home().join("artifacts/runs/tiny");
    let run = run.to_str().unwrap();
    // A file already at --out stays as it was when the export fails.
    std::fs::write(dir.join("model.onnx"), "an earlier export").unwrap();
    std::fs::create_dir(dir.join("a-directory")).unwrap();

    let output = mnist_mlp(dir)
        .args(["export", run, "--format", "keras", "--out", "model.onnx"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert!(
        err.starts_with("error: invalid value 'keras' for '--format <FORMAT>'\n  [possible values: safetensors, onnx]"),
        "{err}"
    );
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("model.onnx")).unwrap(),
        "an earlier export"
    );

    for format in ["onnx", "safetensors"] {
        let missing = format!("missing/model.{format}");
        fails_in(
            dir,
            &["export", run, "--format", format, "--out", &missing],
            &format!("error: {missing}: cannot write: No such file or directory"),
        );
        fails_in(
            dir,
            &["export", run, "--format", format, "--out", "a-directory"],
            "error: a-directory: cannot write: Is a directory",
        );
        fails_in(
            dir,
            &["export", run, "--format", format, "--out", "model.onnx/x"],
            "error: model.onnx/x: cannot write: Not a directory",
        );
    }

    // A run whose weights are gone: its records without model.bpk and checkpoint/.
    let bare = dir.join("bare");
    std::fs::create_dir(&bare).unwrap();
    for entry in ["config.toml", "run.json", "history.json", "model.json"] {
        std::fs::copy(Path::new(run).join(entry), bare.join(entry)).unwrap();
    }
    fails_in(
        dir,
        &["export", "bare", "--out", "model.onnx", "--force"],
        "error: bare: no checkpoint on disk (the run saved none)\n",
    );
    fails_in(
        dir,
        &[
            "export",
            "bare",
            "--format",
            "onnx",
            "--checkpoint",
            "final",
            "--out",
            "model.onnx",
            "--force",
        ],
        "error: bare/model.bpk: missing (the run did not finish; use --checkpoint last or an epoch)\n",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("model.onnx")).unwrap(),
        "an earlier export"
    );
}

/// Without `--format` the extension names the format; a disagreement, or an extension that
/// names none, is refused; a file already at `--out` is replaced only with `--force`.
#[test]
fn export_takes_its_format_from_the_extension_and_replaces_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let run = home().join("artifacts/runs/tiny");
    let run = run.to_str().unwrap();

    // `.onnx` is an ONNX graph, `.SafeTensors` (any case) safetensors: each decodes as such.
    run_ok(mnist_mlp(dir).args(["export", run, "--out", "m.onnx"]));
    let model = ModelProto::decode(std::fs::read(dir.join("m.onnx")).unwrap().as_slice()).unwrap();
    assert_eq!(model.graph.unwrap().input[0].name, "pixels");
    run_ok(mnist_mlp(dir).args(["export", run, "--out", "m.SafeTensors"]));
    let bytes = std::fs::read(dir.join("m.SafeTensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("0.weight").unwrap().shape(), [512, 784]);
    // The format given and the extension agreeing is as good as either alone.
    run_ok(mnist_mlp(dir).args(["export", run, "--format", "onnx", "--out", "n.onnx"]));
    assert_eq!(
        std::fs::read(dir.join("n.onnx")).unwrap(),
        std::fs::read(dir.join("m.onnx")).unwrap()
    );

    fails_in(
        dir,
        &["export", run, "--out", "model.bin"],
        "error: model.bin: cannot tell the format from the extension; pass --format safetensors or --format onnx\n",
    );
    fails_in(
        dir,
        &["export", run, "--format", "safetensors", "--out", "x.onnx"],
        "error: x.onnx: --format safetensors does not match the extension .onnx; name the file .safetensors or pass --format onnx\n",
    );
    fails_in(
        dir,
        &["export", run, "--format", "onnx", "--out", "x.safetensors"],
        "error: x.safetensors: --format onnx does not match the extension .safetensors; name the file .onnx or pass --format safetensors\n",
    );
    // No extension at all, with --format: written as asked.
    run_ok(mnist_mlp(dir).args(["export", run, "--format", "onnx", "--out", "plain"]));
    assert_eq!(
        std::fs::read(dir.join("plain")).unwrap(),
        std::fs::read(dir.join("m.onnx")).unwrap()
    );

    // A file in the way stays as it was, by either format; --force replaces it.
    std::fs::write(dir.join("m.onnx"), "an earlier export").unwrap();
    fails_in(
        dir,
        &["export", run, "--out", "m.onnx", "--checkpoint", "1"],
        "error: m.onnx: already exists; pass --force to replace it\n",
    );
    fails_in(
        dir,
        &["export", run, "--format", "onnx", "--out", "plain"],
        "error: plain: already exists; pass --force to replace it\n",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("m.onnx")).unwrap(),
        "an earlier export"
    );
    run_ok(mnist_mlp(dir).args(["export", run, "--out", "m.onnx", "--force"]));
    assert_eq!(
        std::fs::read(dir.join("m.onnx")).unwrap(),
        std::fs::read(dir.join("n.onnx")).unwrap()
    );
}

/// `eval --probabilities`, the reference scripts/check_onnx.py compares ONNX Runtime with: one
/// row per scored image, in order, each the model's softmax, their argmax eval's accuracy.
#[test]
fn eval_writes_each_image_s_probabilities() {
    let output = run_ok(
        mnist_mlp(home())
            .args(["eval", "tiny", "--json", "--probabilities", "probs.csv"])
            .arg("--data-dir")
            .arg(common::mnist_dir()),
    );
    let evaluation: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let csv = std::fs::read_to_string(home().join("probs.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "index,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9");
    let rows: Vec<Vec<f32>> = lines
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells[0], i.to_string());
            cells[1..].iter().map(|c| c.parse().unwrap()).collect()
        })
        .collect();
    assert_eq!(rows.len() as u64, evaluation["images"].as_u64().unwrap());
    assert_eq!(rows.len(), 1000);

    let mnist = real_mnist();
    let right = rows
        .iter()
        .enumerate()
        .filter(|(i, row)| {
            assert_eq!(row.len(), CLASSES);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            // The first largest, as eval's argmax picks it.
            let best = (0..CLASSES).fold(0, |best, c| if row[c] > row[best] { c } else { best });
            best == usize::from(mnist.valid.label(*i))
        })
        .count();
    assert_eq!(right as u64, evaluation["correct"].as_u64().unwrap());

    let device = Backend::Ndarray.device(0).unwrap();
    let saved = saved::load(&run(), None, &device).unwrap();
    let images: Vec<[u8; PIXELS]> = (0..8).map(|i| *mnist.valid.image(i)).collect();
    let expected = predict::classify(&saved.model, &images, &device).unwrap();
    for (row, expected) in rows.iter().zip(&expected) {
        for (p, e) in row.iter().zip(expected) {
            assert!(
                (p - e).abs() <= 1e-6,
                "{row:?} against predict's {expected:?}"
            );
        }
    }
}
