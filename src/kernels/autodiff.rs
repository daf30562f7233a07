//! The backward passes of the fused kernels, registered with Burn's autodiff graph.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

use super::{MlpKernels, cpu};
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, NdArray};
use std::sync::Arc;

/// What the dense backward pass needs: the input and its non-zeros when the forward pass found it
/// sparse (shared: Burn may clone the state), the weights, the output (for the ReLU mask).
#[derive(Debug, Clone)]
struct DenseState {
    x: NdArrayTensor,
    x_sparse: Option<Arc<cpu::Sparse>>,
    w: NdArrayTensor,
    y: NdArrayTensor,
    relu: bool,
}

#[derive(Debug)]
struct DenseBackward;

impl Backward<NdArray, 3> for DenseBackward {
    type State = DenseState;

    fn backward(self, ops: Ops<DenseState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let g = grads.consume::<NdArray>(&ops.node);
        let s = ops.state;
        let (dx, dw, db) = cpu::dense_backward(
            &s.x,
            s.x_sparse.as_deref(),
            &s.w,
            &s.y,
            g,
            s.relu,
            node_x.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<NdArray>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<NdArray>(node.id, dw);
        }
        if let Some(node) = node_b {
            grads.register::<NdArray>(node.id, db);
        }
    }
}

/// What the loss's backward pass needs: `log_softmax` of the logits and the targets.
#[derive(Debug, Clone)]
struct LossState {
    log_p: NdArrayTensor,
    targets: NdArrayTensor,
}

#[derive(Debug)]
struct SoftmaxCrossEntropyBackward;

impl Backward<NdArray, 2> for SoftmaxCrossEntropyBackward {
    type State = LossState;

    fn backward(self, ops: Ops<LossState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_logits, node_targets] = ops.parents;
        let g = grads.consume::<NdArray>(&ops.node);
        let (d_logits, d_targets) =
            cpu::softmax_cross_entropy_backward(&ops.state.log_p, &ops.state.targets, &g);
        if let Some(node) = node_logits {
            grads.register::<NdArray>(node.id, d_logits);
        }
        if let Some(node) = node_targets {
            grads.register::<NdArray>(node.id, d_targets);
        }
    }
}

impl<C: CheckpointStrategy> MlpKernels for Autodiff<NdArray, C> {
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let ((x, x_node), (w, w_node), (b, b_node)) =
            (x.into_parts(), w.into_parts(), b.into_parts());
        let (y, x_sparse) = cpu::dense(&x, &w, &b, relu);
        let prep = DenseBackward
            .prepare::<C>([x_node, w_node, b_node])
            // Compute bound: keep the saved inputs rather than recomputing them.
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let state = DenseState {
                    x,
                    x_sparse: x_sparse.map(Arc::new),
                    w,
                    y: y.clone(),
                    relu,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn softmax_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let ((logits, logits_node), (targets, targets_node)) =
            (logits.into_parts(), targets.into_parts());
        let (loss, log_p) = cpu::softmax_cross_entropy(&logits, &targets);
        let prep = SoftmaxCrossEntropyBackward
            .prepare::<C>([logits_node, targets_node])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => prep.finish(LossState { log_p, targets }, loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }

    fn rmsprop(
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lr: f64,
        rho: f32,
        keep: f32,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // Optimizer steps run outside the graph; on tracked tensors the update is not
        // differentiable, so only the values are used.
        let (w_new, v_new) = NdArray::rmsprop(
            w.into_primitive(),
            g.into_primitive(),
            v.into_primitive(),
            lr,
            rho,
            keep,
            eps,
        );
        (Self::from_inner(w_new), Self::from_inner(v_new))
    }
}
