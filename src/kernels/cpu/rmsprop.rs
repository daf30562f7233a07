//! Keras's RMSprop step in one pass.

// burn-ndarray is deprecated upstream; it is this project's CPU backend (see the README).
#![allow(deprecated)]

#[allow(unused_imports)]
use super::*;

/// Elements per task when the update is split over threads: large enough that a task's
/// scheduling cost is small against its work.
pub(super) const CHUNK: usize = 1 << 15;

/// Keras's RMSprop step, in one pass over the parameter, updating the running average in place
/// (the optimizer holds the only reference to it) and the parameter too when nothing else holds
/// it. Burn's `Learner` keeps its own handle on the model while the optimizer steps it, so in
/// training the parameter is shared; the gradient is not (Burn hands it over and drops it after
/// the step), so the new parameter is written over the gradient, element by element as each is
/// read: the same memory traffic as an update in place, where writing a third buffer costs a
/// fifth more and, measured alone, twice the time. Only when both are shared (a caller keeping
/// its gradient) does the new parameter go to a new buffer, written once, never zeroed first.
pub(in crate::kernels) fn rmsprop(
    w: NdArrayTensor,
    g: NdArrayTensor,
    v: NdArrayTensor,
    lr: f64,
    rho: f32,
    keep: f32,
    eps: f32,
) -> (NdArrayTensor, NdArrayTensor) {
    let shape = dims(&w);
    assert_eq!(shape, dims(&g), "gradient and parameter shapes differ");
    assert_eq!(
        shape,
        dims(&v),
        "running average and parameter shapes differ"
    );
    let mut v = writable(v);
    let vs = values_mut(&mut v);
    let rms = RmsProp {
        lr: lr as f32,
        rho,
        keep,
        eps,
    };
    let w = if is_writable(&w) {
        let mut w = w;
        let gs = values(&g);
        let ws = values_mut(&mut w);
        for_chunks(ws.len(), (ws, vs), |(w, v), range| {
            rms.in_place(w, v, &gs[range])
        });
        w
    } else if is_writable(&g) {
        let mut g = g;
        let ws = values(&w);
        let gs = values_mut(&mut g);
        for_chunks(gs.len(), (gs, vs), |(g, v), range| {
            rms.over_gradient(g, &ws[range], v)
        });
        g
    } else {
        let (ws, gs) = (values(&w), values(&g));
        let mut out = Vec::<f32>::with_capacity(ws.len());
        let spare = &mut out.spare_capacity_mut()[..ws.len()];
        for_chunks(ws.len(), (spare, vs), |(o, v), range| {
            rms.into_new(o, &ws[range.clone()], v, &gs[range])
        });
        // SAFETY: `into_new` wrote each of the first `ws.len()` elements (the chunks cover
        // `spare`, whose length the shape assertions above make that of `ws`, `vs` and `gs`).
        unsafe { out.set_len(ws.len()) };
        tensor(out, &shape)
    };
    (w, v)
}

/// Calls `step` on matching chunks of the two slices of `len` elements, with the range of
/// elements each chunk covers, on several threads when there are more than [`CHUNK`].
pub(super) fn for_chunks<A: Send, B: Send>(
    len: usize,
    (a, b): (&mut [A], &mut [B]),
    step: impl Fn((&mut [A], &mut [B]), std::ops::Range<usize>) + Sync,
) {
    assert!(
        a.len() == len && b.len() == len,
        "chunks of different lengths"
    );
    if len <= CHUNK {
        return step((a, b), 0..len);
    }
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(i, (a, b))| {
            let first = i * CHUNK;
            let range = first..first + a.len();
            step((a, b), range)
        });
}

/// The constants of one RMSprop step.
#[derive(Clone, Copy)]
pub(super) struct RmsProp {
    lr: f32,
    rho: f32,
    keep: f32,
    eps: f32,
}

impl RmsProp {
    /// The new weight, updating the running average: the same operations, in the same order,
    /// as `optim::KerasRmsProp` (no fused multiply-adds, so the same rounding too).
    #[inline(always)]
    pub(super) fn step(self, w: f32, v: &mut f32, g: f32) -> f32 {
        *v = flush_subnormal(self.rho * *v + self.keep * (g * g));
        w - (self.lr * g) / (*v + self.eps).sqrt()
    }

    #[inline(always)]
    pub(super) fn in_place_generic(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        for ((wi, vi), gi) in w.iter_mut().zip(v).zip(g) {
            *wi = self.step(*wi, vi, *gi);
        }
    }

    #[inline(always)]
    pub(super) fn over_gradient_generic(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        for ((gi, wi), vi) in g.iter_mut().zip(w).zip(v) {
            *gi = self.step(*wi, vi, *gi);
        }
    }

    #[inline(always)]
    pub(super) fn into_new_generic(
        self,
        out: &mut [MaybeUninit<f32>],
        w: &[f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        for (((oi, wi), vi), gi) in out.iter_mut().zip(w).zip(v).zip(g) {
            oi.write(self.step(*wi, vi, *gi));
        }
    }

    /// The same loops compiled for AVX2: twice as many lanes for the division and square root,
    /// which bound this loop, than the baseline x86-64 build's SSE2 (and 256-bit integer
    /// operations for [`flush_subnormal`]'s test of the exponent bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) fn in_place_avx2(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.in_place_generic(w, v, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) fn over_gradient_avx2(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        self.over_gradient_generic(g, w, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) fn into_new_avx2(
        self,
        out: &mut [MaybeUninit<f32>],
        w: &[f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        self.into_new_generic(out, w, v, g)
    }

    /// The same loops in AVX-512: twice the lanes again. Division and square root are exact
    /// in every width, so the results are the same bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) fn in_place_avx512(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.in_place_generic(w, v, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) fn over_gradient_avx512(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        self.over_gradient_generic(g, w, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) fn into_new_avx512(
        self,
        out: &mut [MaybeUninit<f32>],
        w: &[f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        self.into_new_generic(out, w, v, g)
    }

    /// `w` updated in place.
    pub(super) fn in_place(self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        by_level!(
            avx512: self.in_place_avx512(w, v, g),
            avx2: self.in_place_avx2(w, v, g),
            plain: self.in_place_generic(w, v, g),
        )
    }

    /// The new weights written over the gradient `g`.
    pub(super) fn over_gradient(self, g: &mut [f32], w: &[f32], v: &mut [f32]) {
        by_level!(
            avx512: self.over_gradient_avx512(g, w, v),
            avx2: self.over_gradient_avx2(g, w, v),
            plain: self.over_gradient_generic(g, w, v),
        )
    }

    /// The new weights written to `out`, one per element of `w`.
    pub(super) fn into_new(
        self,
        out: &mut [MaybeUninit<f32>],
        w: &[f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        by_level!(
            avx512: self.into_new_avx512(out, w, v, g),
            avx2: self.into_new_avx2(out, w, v, g),
            plain: self.into_new_generic(out, w, v, g),
        )
    }
}

/// `x`, or 0 when it is subnormal (below `f32::MIN_POSITIVE` in magnitude, not 0): Keras's
/// optimizer runs on TensorFlow, whose CPU kernels flush subnormal results to zero, so its running
/// average never holds one. Without the flush, a weight whose gradient stays 0 (a pixel that is
/// always blank) decays its average `v ← 0.9·v` into the subnormals, where it sticks (a few units
/// of the last place times 0.9 rounds back to itself), and every later step pays the CPU's slow
/// path for it: on an Intel Xeon the epoch grew from 3.1 to 3.9 s over five epochs. The test is on
/// the bits, so that the test itself does no floating-point arithmetic on a subnormal.
#[inline(always)]
pub(super) fn flush_subnormal(x: f32) -> f32 {
    if x.to_bits() & 0x7f80_0000 == 0 {
        0.0
    } else {
        x
    }
}
