//! Keras's training callbacks as settings, and their decisions as pure functions of the values
//! an epoch-by-epoch history recorded: `EarlyStopping`, `ReduceLROnPlateau`, and which
//! checkpoints to keep (keep the last N, keep the best).
//!
//! Pure so that a resumed run replays them over its history and decides what the uninterrupted
//! run decided, and so that tests can check them against Keras's rules exactly. Epochs are
//! 1-based here, as in the run directory.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The value a callback watches: one of the four a history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Monitor {
    Loss,
    Accuracy,
    #[default]
    ValLoss,
    ValAccuracy,
}

impl Monitor {
    /// The history key, as Keras names it.
    pub fn key(self) -> &'static str {
        match self {
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
        }
    }
}

/// Keras's `mode`: whether the monitored value should go down (`min`) or up (`max`); `auto`
/// takes it from the metric (accuracy up, loss down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Auto,
    Min,
    Max,
}

impl Mode {
    fn higher_is_better(self, monitor: Monitor) -> bool {
        match self {
            Mode::Min => false,
            Mode::Max => true,
            Mode::Auto => matches!(monitor, Monitor::Accuracy | Monitor::ValAccuracy),
        }
    }
}

/// Keras's `EarlyStopping` callback, with its defaults; off unless `enabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStopping {
    pub enabled: bool,
    pub monitor: Monitor,
    /// A change smaller than this is no improvement (its sign is ignored, as Keras does).
    pub min_delta: f64,
    /// Epochs without improvement before training stops.
    pub patience: usize,
    pub mode: Mode,
    /// Training stops unless the value beats this within `patience` epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The final model gets the weights of the best epoch, not the last one.
    pub restore_best_weights: bool,
    /// Epochs to train before watching (warm-up), as Keras's `start_from_epoch`.
    pub start_from_epoch: usize,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            enabled: false,
            monitor: Monitor::ValLoss,
            min_delta: 0.0,
            patience: 0,
            mode: Mode::Auto,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
        }
    }
}

/// What early stopping decided over a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EarlyStop {
    /// The epoch after which training stops, if it does.
    pub stopped_after: Option<usize>,
    /// The best epoch so far (the weights `restore_best_weights` restores); `None` before any
    /// epoch was watched.
    pub best: Option<usize>,
}

impl EarlyStopping {
    pub fn is_off(&self) -> bool {
        !self.enabled
    }

    /// Keras's `on_epoch_end`, run over `values` (the monitored value of epochs 1, 2, …): the
    /// first epoch it stops after, and the best epoch up to there.
    pub fn decide(&self, values: &[f64]) -> EarlyStop {
        let higher = self.mode.higher_is_better(self.monitor);
        let better = |current: f64, reference: Option<f64>| {
            improves(higher, self.min_delta, current, reference)
        };
        let mut decision = EarlyStop::default();
        let mut best: Option<f64> = None;
        let mut wait = 0;
        for (epoch, &current) in values.iter().enumerate() {
            if epoch < self.start_from_epoch {
                continue;
            }
            wait += 1;
            if better(current, best) {
                best = Some(current);
                decision.best = Some(epoch + 1);
                // Only a value that beats the baseline too restarts the wait.
                if self.baseline.is_none() || better(current, self.baseline) {
                    wait = 0;
                }
                continue;
            }
            if wait >= self.patience && epoch > 0 {
                decision.stopped_after = Some(epoch + 1);
                break;
            }
        }
        decision
    }
}

/// Keras's `_is_improvement`: `current` beats `reference` by more than `min_delta` in the good
/// direction; anything beats no reference.
fn improves(higher: bool, min_delta: f64, current: f64, reference: Option<f64>) -> bool {
    let Some(reference) = reference else {
        return true;
    };
    if higher {
        current - min_delta.abs() > reference
    } else {
        current + min_delta.abs() < reference
    }
}

/// Keras's `ReduceLROnPlateau` callback, with its defaults; off unless `enabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReduceLrOnPlateau {
    pub enabled: bool,
    pub monitor: Monitor,
    /// The rate is multiplied by this on a plateau (below 1).
    pub factor: f64,
    /// Epochs without improvement before the rate is reduced.
    pub patience: usize,
    pub mode: Mode,
    /// A change smaller than this is no improvement.
    pub min_delta: f64,
    /// Epochs after a reduction before watching again.
    pub cooldown: usize,
    /// The rate is never reduced below this.
    pub min_lr: f64,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        Self {
            enabled: false,
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 10,
            mode: Mode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

impl ReduceLrOnPlateau {
    pub fn is_off(&self) -> bool {
        !self.enabled
    }

    /// Keras's `on_epoch_end`, run over `values` (the monitored value of epochs 1, 2, …),
    /// starting at rate `initial`: the rate of every epoch, `values.len() + 1` of them (the last
    /// is the next epoch's). Keras keeps the rate in a float32 variable, so it is rounded to
    /// f32 as it is set.
    pub fn rates(&self, initial: f64, values: &[f64]) -> Vec<f64> {
        let higher = self.mode.higher_is_better(self.monitor);
        let mut rate = initial;
        let mut rates = vec![rate];
        let mut best: Option<f64> = None;
        let (mut wait, mut cooldown) = (0, 0);
        for &current in values {
            if cooldown > 0 {
                cooldown -= 1;
                wait = 0;
            }
            if improves(higher, self.min_delta, current, best) {
                best = Some(current);
                wait = 0;
            } else if cooldown == 0 {
                wait += 1;
                if wait >= self.patience && rate > f64::from(self.min_lr as f32) {
                    rate = f64::from((rate * self.factor).max(self.min_lr) as f32);
                    cooldown = self.cooldown;
                    wait = 0;
                }
            }
            rates.push(rate);
        }
        rates
    }
}

/// Which checkpoints a run keeps (Keras's `ModelCheckpoint(save_best_only=...)`, and a
/// keep-last-N rule); by default all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Keep the whole checkpoint (model, optimizer, scheduler) of the last N epochs: what
    /// `--resume` continues from. `None`: every epoch's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Also keep the model weights of the best epoch (highest val_accuracy): what
    /// `--checkpoint best` loads.
    pub keep_best: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: None,
            keep_best: true,
        }
    }
}

/// The checkpoints a rule keeps among epochs `1..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// Epochs whose whole checkpoint stays.
    pub whole: BTreeSet<usize>,
    /// Epochs of which only the model weights stay.
    pub model_only: BTreeSet<usize>,
}

impl Retention {
    pub fn keeps_all(&self) -> bool {
        self.keep_last.is_none()
    }

    /// What the rule keeps of epochs `1..=last`, `best` being the epochs whose weights must
    /// stay (the best val_accuracy, when `keep_best`, and whatever the caller still needs);
    /// `None` when it keeps everything. Epochs after `last` are not the rule's to judge.
    pub fn keep(&self, last: usize, best: &[usize]) -> Option<Keep> {
        let n = self.keep_last?;
        let whole: BTreeSet<usize> = (last.saturating_sub(n) + 1..=last).collect();
        let model_only = best
            .iter()
            .copied()
            .filter(|e| (1..=last).contains(e) && !whole.contains(e))
            .collect();
        Some(Keep { whole, model_only })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopping(monitor: Monitor, patience: usize) -> EarlyStopping {
        EarlyStopping {
            enabled: true,
            monitor,
            patience,
            ..EarlyStopping::default()
        }
    }

    /// The tutorial's own val_loss (seed 42): best at epoch 3, then rising.
    const TUTORIAL_VAL_LOSS: [f64; 5] = [0.1056, 0.0952, 0.0894, 0.0963, 0.1033];

    #[test]
    fn early_stopping_follows_keras() {
        // patience 0: stops at the first epoch that does not improve.
        let d = stopping(Monitor::ValLoss, 0).decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(4),
                best: Some(3)
            }
        );
        // patience 1 is the same: Keras counts the epoch without improvement first.
        let d = stopping(Monitor::ValLoss, 1).decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(4),
                best: Some(3)
            }
        );
        // patience 2: one more epoch.
        let d = stopping(Monitor::ValLoss, 2).decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(5),
                best: Some(3)
            }
        );
        // patience 3: never runs out within five epochs.
        let d = stopping(Monitor::ValLoss, 3).decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: None,
                best: Some(3)
            }
        );
        // min_delta: epoch 3's gain of 0.0058 is too small for 0.006 (sign ignored).
        let d = EarlyStopping {
            min_delta: -0.006,
            ..stopping(Monitor::ValLoss, 0)
        }
        .decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(3),
                best: Some(2)
            }
        );
        // auto mode: accuracy must go up; equal is no improvement.
        let acc = [0.96, 0.97, 0.97, 0.975];
        let d = stopping(Monitor::ValAccuracy, 0).decide(&acc);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(3),
                best: Some(2)
            }
        );
        // mode min on accuracy turns it round.
        let d = EarlyStopping {
            mode: Mode::Min,
            ..stopping(Monitor::ValAccuracy, 0)
        }
        .decide(&acc);
        assert_eq!(d.stopped_after, Some(2));
        // The first epoch never stops training, even with patience 0 and no improvement
        // possible.
        assert_eq!(
            stopping(Monitor::Loss, 0).decide(&[1.0]).stopped_after,
            None
        );
        // start_from_epoch: the first epochs are not watched at all.
        let d = EarlyStopping {
            start_from_epoch: 3,
            ..stopping(Monitor::ValLoss, 0)
        }
        .decide(&TUTORIAL_VAL_LOSS);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(5),
                best: Some(4)
            }
        );
    }

    #[test]
    fn a_baseline_must_be_beaten_within_patience() {
        let losses = [0.5, 0.4, 0.3, 0.2, 0.1];
        // Improving, but not below 0.25 until epoch 4: the wait keeps counting from epoch 1.
        let with = |baseline, patience| {
            EarlyStopping {
                baseline: Some(baseline),
                ..stopping(Monitor::Loss, patience)
            }
            .decide(&losses)
        };
        assert_eq!(with(0.25, 2).stopped_after, None);
        assert_eq!(
            with(0.25, 1),
            EarlyStop {
                stopped_after: None,
                best: Some(5)
            }
        );
        // A gain that does not beat the baseline does not restart the wait: with a plateau
        // after it, training stops an epoch sooner than without the baseline.
        let stuck = [0.5, 0.45, 0.45, 0.45, 0.45];
        let d = EarlyStopping {
            baseline: Some(0.1),
            ..stopping(Monitor::Loss, 2)
        }
        .decide(&stuck);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(3),
                best: Some(2)
            }
        );
        let d = stopping(Monitor::Loss, 2).decide(&stuck);
        assert_eq!(
            d,
            EarlyStop {
                stopped_after: Some(4),
                best: Some(2)
            }
        );
    }

    #[test]
    fn reduce_lr_on_plateau_follows_keras() {
        let plateau = ReduceLrOnPlateau {
            enabled: true,
            patience: 1,
            factor: 0.5,
            min_delta: 0.0,
            ..ReduceLrOnPlateau::default()
        };
        let r = plateau.rates(0.001, &TUTORIAL_VAL_LOSS);
        let half = f64::from((0.001f64 * 0.5) as f32);
        let quarter = f64::from((half * 0.5) as f32);
        assert_eq!(r, vec![0.001, 0.001, 0.001, 0.001, half, quarter]);
        // cooldown: after a reduction, the wait starts again only once it has counted down
        // (Keras counts it down before it looks, so cooldown 1 skips no epoch).
        let r = ReduceLrOnPlateau {
            cooldown: 2,
            ..plateau.clone()
        }
        .rates(0.001, &[1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(r, vec![0.001, 0.001, half, half, quarter, quarter]);
        // min_lr: never below it, and no reduction once there.
        let r = ReduceLrOnPlateau {
            min_lr: 0.0008,
            ..plateau.clone()
        }
        .rates(0.001, &[1.0, 1.0, 1.0]);
        let floor = f64::from(0.0008f32);
        assert_eq!(r, vec![0.001, 0.001, floor, floor]);
        // Keras's default min_delta (1e-4) makes a tiny gain a plateau.
        let r = ReduceLrOnPlateau {
            patience: 0,
            ..ReduceLrOnPlateau::default()
        }
        .rates(0.01, &[1.0, 0.99995]);
        assert_eq!(r, vec![0.01, 0.01, f64::from((0.01f64 * 0.1) as f32)]);
    }

    #[test]
    fn retention_keeps_exactly_what_its_rule_names() {
        let all = Retention::default();
        assert_eq!(all.keep(5, &[2]), None);
        let last2 = Retention {
            keep_last: Some(2),
            keep_best: true,
        };
        let keep = last2.keep(5, &[2]).unwrap();
        assert_eq!(keep.whole, BTreeSet::from([4, 5]));
        assert_eq!(keep.model_only, BTreeSet::from([2]));
        // A best epoch among the last ones is kept whole, once.
        let keep = last2.keep(5, &[5]).unwrap();
        assert_eq!(
            (keep.whole, keep.model_only),
            (BTreeSet::from([4, 5]), BTreeSet::new())
        );
        // Fewer epochs than N: all of them.
        assert_eq!(last2.keep(1, &[1]).unwrap().whole, BTreeSet::from([1]));
    }
}
