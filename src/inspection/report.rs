//! `runs`, `inspect` and `summary`: what a run recorded, as tables.

use super::InspectError;
use crate::model::thousands;
use crate::run_dir::{CheckpointPart, History, RunDir, RunInfo};
use crate::saved;
use crate::table::{Align, Table};
use burn::module::Module;
use std::fmt::Write;
use std::path::Path;

/// The history a reader should trust: the epochs whose checkpoint is complete (`run.json`'s
/// `epochs_done`; `history.json` may hold more after a kill).
pub fn recorded_history(run: &RunDir, info: &RunInfo) -> Result<History, InspectError> {
    let mut history = saved::read_history_or_empty(run)?;
    history.truncate(info.epochs_done);
    Ok(history)
}

/// One run as `runs` lists it: its `run.json` and the history it recorded, or why they could
/// not be read.
pub struct RunSummary {
    pub run: RunDir,
    pub recorded: Result<(RunInfo, History), InspectError>,
}

/// Every run under `<artifact_dir>/runs/`, newest first (RFC 3339 UTC times sort as text);
/// unreadable ones last, so one broken run does not hide the others.
pub fn summaries(artifact_dir: &Path) -> Result<Vec<RunSummary>, InspectError> {
    Ok(summaries_of(RunDir::list(artifact_dir)?))
}

/// [`summaries`] of the given runs (`serve` leaves out those whose files it will not read).
pub fn summaries_of(runs: Vec<RunDir>) -> Vec<RunSummary> {
    let mut found: Vec<RunSummary> = runs
        .into_iter()
        .map(|run| {
            let recorded = run
                .read_info()
                .map_err(InspectError::from)
                .and_then(|info| {
                    let history = recorded_history(&run, &info)?;
                    Ok((info, history))
                });
            RunSummary { run, recorded }
        })
        .collect();
    let started = |s: &RunSummary| {
        s.recorded
            .as_ref()
            .map_or(String::new(), |(info, _)| info.started.clone())
    };
    found.sort_by_key(|s| std::cmp::Reverse(started(s)));
    found
}

/// `runs`: one row per run under `<artifact_dir>/runs/`, newest first. A run whose files cannot
/// be read still gets a row, saying why.
pub fn runs(artifact_dir: &Path) -> Result<String, InspectError> {
    let found = summaries(artifact_dir)?;
    if found.is_empty() {
        return Ok(format!(
            "no runs in {}\n",
            RunDir::runs_dir(artifact_dir).display()
        ));
    }
    let mut table = Table::new(&[
        ("run", Align::Left),
        ("started (UTC)", Align::Left),
        ("epochs", Align::Right),
        ("backend", Align::Left),
        ("loss", Align::Right),
        ("accuracy", Align::Right),
        ("val_loss", Align::Right),
        ("val_accuracy", Align::Right),
        ("best val_acc", Align::Right),
        ("best epoch", Align::Right),
        ("val on", Align::Left),
        ("status", Align::Left),
    ]);
    for summary in found {
        table.row(match &summary.recorded {
            Ok((info, history)) => run_row(&summary.run, info, history),
            Err(e) => {
                let mut cells = vec![summary.run.name()];
                cells.resize(11, "?".to_string());
                cells.push(format!("unreadable: {e}"));
                cells
            }
        });
    }
    Ok(table.render(0))
}

fn run_row(run: &RunDir, info: &RunInfo, history: &History) -> Vec<String> {
    let last = history.last();
    let metric = |f: fn(&crate::run_dir::EpochMetrics) -> f64| {
        last.as_ref()
            .map_or("-".to_string(), |m| format!("{:.4}", f(m)))
    };
    let best = history.best_epoch();
    vec![
        run.name(),
        info.started
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string(),
        format!("{}/{}", info.epochs_done, info.epochs_planned),
        info.backend.clone(),
        metric(|m| m.loss),
        metric(|m| m.accuracy),
        metric(|m| m.val_loss),
        metric(|m| m.val_accuracy),
        best.map_or("-".to_string(), |(_, v)| format!("{v:.4}")),
        best.map_or("-".to_string(), |(e, _)| e.to_string()),
        info.validated_on.short().to_string(),
        info.effective_status().to_string(),
    ]
}

/// `inspect RUN`: the run's facts, its effective config, the per-epoch history and the
/// checkpoints on disk with the best one marked.
pub fn inspect(run: &RunDir) -> Result<String, InspectError> {
    let info = run.read_info()?;
    let config = run.read_config()?;
    let history = recorded_history(run, &info)?;
    let mut out = facts(run, &info);
    let _ = writeln!(out, "\nConfig ({}):", run.config_path().display());
    for line in config.to_toml().lines() {
        let _ = writeln!(out, "{}", format!("  {line}").trim_end());
    }
    let _ = writeln!(out, "\nHistory ({}):", run.history_json_path().display());
    out.push_str(&history_table(&history, &info));
    let _ = writeln!(out, "\nCheckpoints ({}):", run.checkpoint_dir().display());
    out.push_str(&checkpoint_table(run, &history)?);
    let model = run.model_path();
    match std::fs::metadata(&model) {
        Ok(meta) => {
            let _ = writeln!(
                out,
                "\nFinal model: {} ({})",
                model.display(),
                human_size(meta.len())
            );
        }
        Err(_) => {
            let _ = writeln!(out, "\nFinal model: none (the run did not finish)");
        }
    }
    Ok(out)
}

/// The lines about the run itself: status, times, epochs, backend, data, error.
fn facts(run: &RunDir, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Run {} ({})", info.name, run.path().display());
    let _ = writeln!(out, "  status:   {}", info.effective_status());
    let _ = writeln!(
        out,
        "  started:  {}{}",
        info.started,
        info.ended
            .as_ref()
            .map(|e| format!(", ended {e}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  epochs:   {} of {} done",
        info.epochs_done, info.epochs_planned
    );
    let _ = writeln!(out, "  backend:  {} on {}", info.backend, info.device);
    if let Some(kernels) = info.kernels {
        let _ = writeln!(out, "  kernels:  {kernels}");
    }
    let _ = writeln!(
        out,
        "  data:     {} ({} training, {} validation images)",
        info.data,
        thousands(info.train_images),
        thousands(info.valid_images)
    );
    let _ = writeln!(
        out,
        "  val_*:    measured on {}; best = highest val_accuracy there",
        info.validated_on
    );
    if let Some(epoch) = info.stopped_early {
        let _ = writeln!(
            out,
            "  stopped:  early, after epoch {epoch} (EarlyStopping)"
        );
    }
    if let Some(epoch) = info.restored_epoch {
        let _ = writeln!(
            out,
            "  final:    the weights of epoch {epoch} (restore_best_weights)"
        );
    }
    if let Some(error) = &info.error {
        let _ = writeln!(out, "  error:    {error}");
    }
    out
}

/// One row per recorded epoch, with its time.
fn history_table(history: &History, info: &RunInfo) -> String {
    let mut epochs = Table::new(&[
        ("epoch", Align::Right),
        ("loss", Align::Right),
        ("accuracy", Align::Right),
        ("val_loss", Align::Right),
        ("val_accuracy", Align::Right),
        ("seconds", Align::Right),
    ]);
    for epoch in 0..history.epochs() {
        if let Some(m) = history.get(epoch) {
            epochs.row(vec![
                (epoch + 1).to_string(),
                format!("{:.4}", m.loss),
                format!("{:.4}", m.accuracy),
                format!("{:.4}", m.val_loss),
                format!("{:.4}", m.val_accuracy),
                info.epoch_seconds
                    .get(epoch)
                    .map_or("-".to_string(), |s| format!("{s:.1}")),
            ]);
        }
    }
    if epochs.is_empty() {
        "  no epoch finished\n".to_string()
    } else {
        epochs.render(2)
    }
}

/// One row per checkpoint on disk: the size of each part, its val_accuracy, best or incomplete.
fn checkpoint_table(run: &RunDir, history: &History) -> Result<String, InspectError> {
    let best = history.best_epoch();
    let mut checkpoints = Table::new(&[
        ("epoch", Align::Right),
        ("model", Align::Right),
        ("optimizer", Align::Right),
        ("scheduler", Align::Right),
        ("val_accuracy", Align::Right),
        ("", Align::Left),
    ]);
    let size = |bytes: Option<u64>| bytes.map_or("missing".to_string(), human_size);
    for checkpoint in run.checkpoints()? {
        let epoch = checkpoint.epoch;
        let val_accuracy = (epoch <= history.epochs())
            .then(|| history.get(epoch - 1))
            .flatten()
            .map_or("-".to_string(), |m| format!("{:.4}", m.val_accuracy));
        let mut notes = Vec::new();
        if best.is_some_and(|(b, _)| b == epoch) {
            notes.push("best");
        }
        if !checkpoint.is_complete() {
            notes.push("incomplete");
        }
        checkpoints.row(vec![
            epoch.to_string(),
            size(checkpoint.size(CheckpointPart::Model)),
            size(checkpoint.size(CheckpointPart::Optimizer)),
            size(checkpoint.size(CheckpointPart::Scheduler)),
            val_accuracy,
            notes.join(", "),
        ]);
    }
    Ok(if checkpoints.is_empty() {
        "  none\n".to_string()
    } else {
        checkpoints.render(2)
    })
}

/// `2679336` → `2.6 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// `summary [RUN]`: Keras's `model.summary()` of a run's model as trained (its weights loaded,
/// so the counts are those of the tensors on disk), or of the tutorial's model without a run.
pub fn summary(run: Option<&RunDir>) -> Result<String, InspectError> {
    // Counting parameters needs no accelerator: the CPU backend is in every build.
    let device = crate::backend::Backend::Ndarray.device(0)?;
    match run {
        None => Ok(crate::model::MlpConfig::tutorial().init(&device).summary()),
        Some(run) => {
            let saved = saved::load(run, None, &device)?;
            Ok(format!(
                "Weights: {} (epoch {})\n{}",
                saved.path.display(),
                saved.epoch,
                saved.model.summary()
            ))
        }
    }
}

/// One epoch's metrics, as the `--json` of `runs` and `inspect` give them (exact, unrounded).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochJson {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Wall time of the epoch, training and validation; absent when not recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// One run in `runs --json`: its facts and metrics, or `error` when its files are unreadable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunJson {
    pub name: String,
    pub path: std::path::PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs_done: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs_planned: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The last recorded epoch (null before the first).
    pub last: Option<EpochJson>,
    /// The first epoch with the highest val_accuracy (null before the first).
    pub best: Option<EpochJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn epoch_json(history: &History, info: &RunInfo, epoch: usize) -> Option<EpochJson> {
    let m = history.get(epoch.checked_sub(1)?)?;
    Some(EpochJson {
        epoch,
        loss: m.loss,
        accuracy: m.accuracy,
        val_loss: m.val_loss,
        val_accuracy: m.val_accuracy,
        seconds: info.epoch_seconds.get(epoch - 1).copied(),
    })
}

/// `runs --json`: `{"runs_dir": …, "runs": [RunJson, …]}`, newest first, as `runs` lists them.
pub fn runs_json(artifact_dir: &Path) -> Result<String, InspectError> {
    let runs: Vec<RunJson> = summaries(artifact_dir)?
        .into_iter()
        .map(|summary| match summary.recorded {
            Ok((info, history)) => RunJson {
                name: summary.run.name(),
                path: summary.run.path().to_path_buf(),
                status: Some(info.effective_status().to_string()),
                started: Some(info.started.clone()),
                ended: info.ended.clone(),
                epochs_done: Some(info.epochs_done),
                epochs_planned: Some(info.epochs_planned),
                backend: Some(info.backend.clone()),
                last: epoch_json(&history, &info, history.epochs()),
                best: history
                    .best_epoch()
                    .and_then(|(epoch, _)| epoch_json(&history, &info, epoch)),
                error: None,
            },
            Err(e) => RunJson {
                name: summary.run.name(),
                path: summary.run.path().to_path_buf(),
                status: None,
                started: None,
                ended: None,
                epochs_done: None,
                epochs_planned: None,
                backend: None,
                last: None,
                best: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    let value = serde_json::json!({
        "runs_dir": RunDir::runs_dir(artifact_dir),
        "runs": runs,
    });
    Ok(format!("{value:#}\n"))
}

/// `inspect RUN --json`: the run's facts (`run.json`, status as shown), its effective config,
/// its history with each epoch's seconds, the checkpoints on disk and the final model.
pub fn inspect_json(run: &RunDir) -> Result<String, InspectError> {
    let info = run.read_info()?;
    let config = run.read_config()?;
    let history = recorded_history(run, &info)?;
    let best = history.best_epoch().map(|(epoch, _)| epoch);
    let epochs: Vec<EpochJson> = (1..=history.epochs())
        .filter_map(|epoch| epoch_json(&history, &info, epoch))
        .collect();
    let checkpoints: Vec<serde_json::Value> = run
        .checkpoints()?
        .iter()
        .map(|c| {
            serde_json::json!({
                "epoch": c.epoch,
                "model_bytes": c.size(CheckpointPart::Model),
                "optimizer_bytes": c.size(CheckpointPart::Optimizer),
                "scheduler_bytes": c.size(CheckpointPart::Scheduler),
                "complete": c.is_complete(),
                "best": best == Some(c.epoch),
            })
        })
        .collect();
    let model = run.model_path();
    let final_model = std::fs::metadata(&model)
        .ok()
        .map(|meta| serde_json::json!({"path": model, "bytes": meta.len()}));
    let mut facts = serde_json::to_value(&info).unwrap_or_default();
    if let Some(facts) = facts.as_object_mut() {
        facts.insert("status".into(), info.effective_status().to_string().into());
    }
    let value = serde_json::json!({
        "path": run.path(),
        "run": facts,
        "config": serde_json::to_value(&config).unwrap_or_default(),
        "history": epochs,
        "checkpoints": checkpoints,
        "final_model": final_model,
    });
    Ok(format!("{value:#}\n"))
}

/// `summary [RUN] --json`: the weights read (null without a run), each layer with its output
/// width and parameter count, and the total, as `model.summary()` shows them.
pub fn summary_json(run: Option<&RunDir>) -> Result<String, InspectError> {
    let device = crate::backend::Backend::Ndarray.device(0)?;
    let (model, weights, epoch) = match run {
        None => (
            crate::model::MlpConfig::tutorial().init(&device),
            None,
            None,
        ),
        Some(run) => {
            let saved = saved::load(run, None, &device)?;
            (saved.model, Some(saved.path), Some(saved.epoch))
        }
    };
    let last = model.layers.len().saturating_sub(1);
    let layers: Vec<serde_json::Value> = model
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let [inputs, outputs] = layer.weight.val().dims();
            serde_json::json!({
                "name": format!("layers.{i}"),
                "inputs": inputs,
                "outputs": outputs,
                "activation": if i < last { "relu" } else { "softmax" },
                "params": layer.num_params(),
            })
        })
        .collect();
    let total = model.num_params();
    let value = serde_json::json!({
        "weights": weights,
        "epoch": epoch,
        "layers": layers,
        "total_params": total,
        "bytes": total * 4,
    });
    Ok(format!("{value:#}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(256), "256 B");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(2_679_336), "2.6 MiB");
    }
}
