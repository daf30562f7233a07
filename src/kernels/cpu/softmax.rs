//! Softmax cross-entropy from logits, and its gradient.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// Per-row cross-entropy `-Σ t·log_softmax(z)` and the row's `log_softmax(z)`, kept for the
/// backward pass.
pub(in crate::kernels) fn softmax_cross_entropy(
    logits: &NdArrayTensor,
    targets: &NdArrayTensor,
) -> (NdArrayTensor, NdArrayTensor) {
    let [m, c] = matrix_dims(logits);
    assert_eq!(
        matrix_dims(targets),
        [m, c],
        "targets must match the logits"
    );
    let z = values(logits);
    let t = values(targets);
    let mut log_p = vec![0.0f32; m * c];
    let mut loss = vec![0.0f32; m];
    for (((z, t), log_p), loss) in z
        .chunks_exact(c)
        .zip(t.chunks_exact(c))
        .zip(log_p.chunks_exact_mut(c))
        .zip(loss.iter_mut())
    {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = z.iter().map(|zi| (zi - max).exp()).sum::<f32>().ln();
        let mut sum = 0.0f32;
        for ((lp, zi), ti) in log_p.iter_mut().zip(z).zip(t) {
            *lp = zi - max - log_sum;
            sum += ti * *lp;
        }
        *loss = -sum;
    }
    (tensor(loss, &[m]), tensor(log_p, &[m, c]))
}

/// Gradients of [`softmax_cross_entropy`] with respect to the logits and to the targets, given
/// the saved `log_softmax`, the targets and the gradient `g` `[m]` of each row's loss.
pub(in crate::kernels) fn softmax_cross_entropy_backward(
    log_p: &NdArrayTensor,
    targets: &NdArrayTensor,
    g: &NdArrayTensor,
) -> (NdArrayTensor, NdArrayTensor) {
    let [m, c] = matrix_dims(log_p);
    let log_p = values(log_p);
    let t = values(targets);
    let g = values(g);
    let mut d_logits = vec![0.0f32; m * c];
    let mut d_targets = vec![0.0f32; m * c];
    for i in 0..m {
        let row = i * c..(i + 1) * c;
        let t_sum: f32 = t[row.clone()].iter().sum();
        for j in row {
            // d/dz_j of -Σ t·(z − lse) is Σt·softmax_j − t_j.
            d_logits[j] = g[i] * (t_sum * log_p[j].exp() - t[j]);
            d_targets[j] = -g[i] * log_p[j];
        }
    }
    (tensor(d_logits, &[m, c]), tensor(d_targets, &[m, c]))
}
