//! Checkpoint retention: deleting the checkpoint files a run's [`Retention`] rule does not keep,
//! as training goes and from `runs prune`.

use crate::callbacks::{EarlyStop, EarlyStopping, Monitor, Retention};
use crate::run_dir::{CheckpointPart, History, RunDir, RunDirError};
use std::path::PathBuf;

/// The monitored values of `history`, epoch by epoch.
pub fn series(history: &History, monitor: Monitor) -> &[f64] {
    match monitor {
        Monitor::Loss => &history.loss,
        Monitor::Accuracy => &history.accuracy,
        Monitor::ValLoss => &history.val_loss,
        Monitor::ValAccuracy => &history.val_accuracy,
    }
}

/// What early stopping decides over `history`.
pub fn early_stop(stopping: &EarlyStopping, history: &History) -> EarlyStop {
    stopping.decide(series(history, stopping.monitor))
}

/// The files a pruning removed (or, dry, would remove) and their bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// What `rule` removes from `run`'s checkpoints of epochs `1..=last` (`history` holding at
/// least those epochs): every part of an epoch it does not keep, and the optimizer and
/// scheduler of an epoch whose weights alone it keeps. `stopping`, while the run may still
/// restore its best weights, keeps that epoch's weights too. Nothing is deleted here.
pub fn plan(
    run: &RunDir,
    history: &History,
    last: usize,
    rule: &Retention,
    stopping: Option<&EarlyStopping>,
) -> Result<Pruned, RunDirError> {
    let mut recorded = history.clone();
    recorded.truncate(last);
    let mut best = Vec::new();
    if rule.keep_best
        && let Some((epoch, _)) = recorded.best_epoch()
    {
        best.push(epoch);
    }
    if let Some(stopping) = stopping.filter(|s| s.enabled && s.restore_best_weights) {
        best.extend(early_stop(stopping, &recorded).best);
    }
    let Some(keep) = rule.keep(last, &best) else {
        return Ok(Pruned::default());
    };
    let mut pruned = Pruned::default();
    for checkpoint in run.checkpoints()? {
        let epoch = checkpoint.epoch;
        if epoch > last || keep.whole.contains(&epoch) {
            continue;
        }
        for part in CheckpointPart::ALL {
            let weights_kept = part == CheckpointPart::Model && keep.model_only.contains(&epoch);
            if let Some(size) = checkpoint.size(part)
                && !weights_kept
            {
                pruned.files.push(run.checkpoint_path(part, epoch));
                pruned.bytes += size;
            }
        }
    }
    Ok(pruned)
}

/// Deletes what [`plan`] names; returns it.
pub fn prune(
    run: &RunDir,
    history: &History,
    last: usize,
    rule: &Retention,
    stopping: Option<&EarlyStopping>,
) -> Result<Pruned, RunDirError> {
    let pruned = plan(run, history, last, rule, stopping)?;
    for path in &pruned.files {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RunDirError::Remove {
                    path: path.clone(),
                    error: e,
                });
            }
            _ => {}
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::Monitor;
    use crate::run_dir::EpochMetrics;

    fn run_with(
        epochs: usize,
        val_accuracy: &[f64],
        val_loss: &[f64],
    ) -> (tempfile::TempDir, RunDir, History) {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "r").unwrap();
        let mut history = History::default();
        for epoch in 1..=epochs {
            for part in CheckpointPart::ALL {
                std::fs::write(run.checkpoint_path(part, epoch), vec![0; 10]).unwrap();
            }
            history.push(EpochMetrics {
                loss: 0.0,
                accuracy: 0.0,
                val_loss: val_loss[epoch - 1],
                val_accuracy: val_accuracy[epoch - 1],
            });
        }
        (dir, run, history)
    }

    /// Epoch by epoch, (model, optimizer, scheduler) on disk.
    fn on_disk(run: &RunDir) -> Vec<(usize, [bool; 3])> {
        run.checkpoints()
            .unwrap()
            .iter()
            .map(|c| (c.epoch, c.sizes.map(|s| s.is_some())))
            .collect()
    }

    #[test]
    fn retention_leaves_exactly_the_checkpoints_its_rule_names() {
        let acc = [0.90, 0.97, 0.95, 0.96, 0.94, 0.93];
        let loss = [0.3, 0.1, 0.2, 0.05, 0.2, 0.3];
        let whole = [true; 3];
        let weights = [true, false, false];

        // Last 2, and the best val_accuracy (epoch 2) as weights only.
        let (_dir, run, history) = run_with(6, &acc, &loss);
        let rule = Retention {
            keep_last: Some(2),
            keep_best: true,
        };
        let pruned = prune(&run, &history, 6, &rule, None).unwrap();
        assert_eq!(on_disk(&run), vec![(2, weights), (5, whole), (6, whole)]);
        assert_eq!((pruned.files.len(), pruned.bytes), (3 * 3 + 2, 110));
        // Pruning again removes nothing.
        assert_eq!(
            prune(&run, &history, 6, &rule, None).unwrap(),
            Pruned::default()
        );

        // Without keep_best, the last one only; epochs after `last` are not touched.
        let (_dir, run, history) = run_with(6, &acc, &loss);
        let rule = Retention {
            keep_last: Some(1),
            keep_best: false,
        };
        prune(&run, &history, 4, &rule, None).unwrap();
        assert_eq!(on_disk(&run), vec![(4, whole), (5, whole), (6, whole)]);

        // Early stopping's best epoch (lowest val_loss: 4) stays while it may be restored.
        let (_dir, run, history) = run_with(6, &acc, &loss);
        let stopping = EarlyStopping {
            enabled: true,
            monitor: Monitor::ValLoss,
            restore_best_weights: true,
            patience: 5,
            ..EarlyStopping::default()
        };
        prune(&run, &history, 6, &rule, Some(&stopping)).unwrap();
        assert_eq!(on_disk(&run), vec![(4, weights), (6, whole)]);

        // The default rule keeps everything.
        let (_dir, run, history) = run_with(3, &acc, &loss);
        prune(&run, &history, 3, &Retention::default(), Some(&stopping)).unwrap();
        assert_eq!(on_disk(&run).len(), 3);
    }
}
