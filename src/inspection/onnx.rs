//! The tutorial's model as an ONNX graph, for `export --format onnx`: any ONNX runtime (ONNX
//! Runtime in Python, C#, Java, on phones or in a web page) runs it without Burn or PyTorch.
//!
//! ```text
//! pixels [N, 784] ─ Gemm(layers.0) ─ Relu ─ Gemm(layers.1) ─ Relu ─ Gemm(layers.2) ─┬─ logits [N, 10]
//!                                                                     Softmax(axis 1) ─┴─ probabilities [N, 10]
//! ```
//!
//! `Gemm` computes `A·B + C`: Burn's `Linear` keeps its weight as `[in, out]`, which is `B`
//! as it stands (`transB = 0`), so the weights go in untransposed. The messages are ONNX's
//! ([`proto`]), encoded by prost; this module only fills them in.

pub mod proto;

use prost::Message;
use proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};

/// The operator set the graph is written against: the first with today's `Softmax` (one axis,
/// not "flatten from axis"), which every maintained runtime reads.
pub const OPSET: i64 = 13;
/// The IR version that goes with opset 13 (ONNX 1.8); a newer one would shut out older runtimes.
pub const IR_VERSION: i64 = 7;
/// The graph's input: the batcher's pixels, `[N, 784]` f32 in 0–1.
pub const INPUT: &str = "pixels";
/// The graph's outputs: the tutorial's softmax, then the last layer before it.
pub const PROBABILITIES: &str = "probabilities";
pub const LOGITS: &str = "logits";
/// The name of the batch dimension, which the runtime fills in per call.
pub const BATCH: &str = "N";

/// One dense layer's parameters as the checkpoint holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    /// `[inputs, outputs]`, row-major (Burn's layout).
    pub weight: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
}

/// Names of a layer's initializers: those of the parameters in Burn's record.
pub fn weight_name(layer: usize) -> String {
    format!("layers.{layer}.weight")
}

pub fn bias_name(layer: usize) -> String {
    format!("layers.{layer}.bias")
}

/// The model: `layers` in order, ReLU between them, softmax after the last; `metadata` goes
/// into the model's `metadata_props`, in order.
pub fn model(layers: &[Dense], metadata: &[(&str, String)]) -> ModelProto {
    let classes = layers.last().map_or(0, |l| l.outputs);
    let features = layers.first().map_or(0, |l| l.inputs);
    let mut graph = GraphProto {
        name: "mnist_mlp".into(),
        input: vec![value_info(
            INPUT,
            features,
            "28×28 grey pixels, row by row, 0 (background) to 1 (ink): the IDX bytes / 255",
        )],
        output: vec![
            value_info(
                PROBABILITIES,
                classes,
                "the ten digits' probabilities (softmax)",
            ),
            value_info(
                LOGITS,
                classes,
                "the last layer's output, before the softmax",
            ),
        ],
        ..Default::default()
    };
    let mut x = INPUT.to_string();
    for (i, layer) in layers.iter().enumerate() {
        let last = i + 1 == layers.len();
        graph.initializer.push(tensor(
            weight_name(i),
            &[layer.inputs, layer.outputs],
            &layer.weight,
        ));
        graph
            .initializer
            .push(tensor(bias_name(i), &[layer.outputs], &layer.bias));
        let z = if last {
            LOGITS.to_string()
        } else {
            format!("dense_{i}")
        };
        graph.node.push(node(
            &format!("dense_{i}"),
            "Gemm",
            &[&x, &weight_name(i), &bias_name(i)],
            &z,
            Vec::new(),
        ));
        x = z;
        if !last {
            let a = format!("relu_{i}");
            graph.node.push(node(&a, "Relu", &[&x], &a, Vec::new()));
            x = a;
        }
    }
    graph.node.push(node(
        "softmax",
        "Softmax",
        &[&x],
        PROBABILITIES,
        vec![int_attribute("axis", 1)],
    ));
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "mnist-mlp".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "The Keras MNIST tutorial's MLP, trained with mnist-mlp (Burn)".into(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: (*key).to_string(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// The model's protobuf bytes (the `.onnx` file).
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// A float tensor `[N, width]`.
fn value_info(name: &str, width: usize, doc: &str) -> ValueInfoProto {
    let dim = |value| Dimension { value: Some(value) };
    let shape = TensorShapeProto {
        dim: vec![
            dim(DimensionValue::DimParam(BATCH.into())),
            dim(DimensionValue::DimValue(width as i64)),
        ],
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: proto::FLOAT,
                shape: Some(shape),
            }),
        }),
        doc_string: doc.into(),
    }
}

fn tensor(name: String, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name,
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: proto::FLOAT,
        float_data: values.to_vec(),
    }
}

fn node(
    name: &str,
    op_type: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op_type.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        domain: String::new(),
        attribute,
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: proto::ATTRIBUTE_INT,
        i: value,
    }
}
