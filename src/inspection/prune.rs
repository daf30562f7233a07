//! `runs prune`: frees disk by deleting the checkpoints each run's retention rule
//! (`[checkpoints]`, or the command's own) does not keep. A live run is never touched: its
//! training applies the rule itself as it goes.

use super::InspectError;
use super::report::{human_size, recorded_history};
use crate::callbacks::Retention;
use crate::run_dir::{RunDir, RunStatus};
use crate::table::{Align, Table};
use crate::training::retention;

/// What `runs prune` was asked: rules over each run's own, and whether to delete.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    pub keep_last: Option<usize>,
    pub keep_best: Option<bool>,
    /// Say what would go; delete nothing.
    pub dry_run: bool,
}

/// Prunes `runs`; one row per run: what it kept or freed, or why it was left alone.
pub fn prune(runs: &[RunDir], options: PruneOptions) -> Result<String, InspectError> {
    if options.keep_last == Some(0) {
        return Err(crate::config::ConfigError::Invalid {
            key: "--keep-last",
            value: "0".into(),
            reason: "must be at least 1: resuming needs the last checkpoint",
        }
        .into());
    }
    let mut table = Table::new(&[
        ("run", Align::Left),
        ("rule", Align::Left),
        ("files", Align::Right),
        ("freed", Align::Right),
        ("note", Align::Left),
    ]);
    let (mut files, mut bytes) = (0, 0);
    for run in runs {
        let row = match prune_one(run, options) {
            Ok(Outcome::Pruned { rule, pruned }) => {
                files += pruned.files.len();
                bytes += pruned.bytes;
                vec![
                    rule,
                    pruned.files.len().to_string(),
                    human_size(pruned.bytes),
                    String::new(),
                ]
            }
            Ok(Outcome::Left(why)) => vec!["-".into(), "0".into(), "-".into(), why],
            Err(e) if e.is_bad_input() => {
                vec![
                    "-".into(),
                    "0".into(),
                    "-".into(),
                    format!("unreadable: {e}"),
                ]
            }
            Err(e) => return Err(e),
        };
        table.row([vec![run.name()], row].concat());
    }
    let verb = if options.dry_run {
        "would free"
    } else {
        "freed"
    };
    Ok(format!(
        "{}{verb} {} in {files} files\n",
        table.render(0),
        human_size(bytes)
    ))
}

enum Outcome {
    Pruned {
        rule: String,
        pruned: retention::Pruned,
    },
    Left(String),
}

fn prune_one(run: &RunDir, options: PruneOptions) -> Result<Outcome, InspectError> {
    let info = run.read_info()?;
    if info.is_live() {
        return Ok(Outcome::Left(format!(
            "left alone: still training (process {})",
            info.owner.pid
        )));
    }
    let config = run.read_config()?;
    let rule = Retention {
        keep_last: options.keep_last.or(config.checkpoints.keep_last),
        keep_best: options.keep_best.unwrap_or(config.checkpoints.keep_best),
    };
    let Some(n) = rule.keep_last else {
        return Ok(Outcome::Left(
            "keeps every checkpoint (no keep_last)".into(),
        ));
    };
    let history = recorded_history(run, &info)?;
    // A run that may still be resumed may still restore its best weights at the end.
    let stopping = (info.status != RunStatus::Finished).then_some(&config.early_stopping);
    let last = info.epochs_done;
    let pruned = if options.dry_run {
        retention::plan(run, &history, last, &rule, stopping)?
    } else {
        retention::prune(run, &history, last, &rule, stopping)?
    };
    let best = if rule.keep_best { " + best" } else { "" };
    Ok(Outcome::Pruned {
        rule: format!("last {n}{best}"),
        pruned,
    })
}
