//! The sweeps of the JSON API (docs/serve.md): the sweeps under `<artifact_dir>/sweeps/`, and
//! one sweep's trials as `sweep status` ranks them, with their curves. Where each trial stands is
//! the sweep module's own reckoning ([`sweep::ranked`]); this only checks the files it reads
//! first, as for runs, and writes JSON.

use super::api::{ApiError, App};
use crate::sweep::{self, Sweep, Trial, TrialState};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

impl App {
    /// The sweep called `name`, its `sweep.toml` and every file its trials' states are read
    /// from read beneath the artifact directory (as run files are: [`super::files`]).
    fn sweep(&self, name: &str) -> Result<Sweep, ApiError> {
        self.sweep_dir(name)?;
        Ok(Sweep::named(
            &self.artifact_dir,
            name,
            self.inside.reader(),
        )?)
    }

    /// `GET /api/sweeps`: every sweep, by name, with its trials counted by state and its best
    /// trial; one that cannot be read is `{"name", "status": "unreadable", "error"}`.
    pub fn sweeps(&self) -> Result<Value, ApiError> {
        let rows = Sweep::list(&self.artifact_dir)?
            .into_iter()
            .map(|name| {
                let row = self.sweep(&name).and_then(|sweep| {
                    let ranked = sweep::ranked(&sweep)?;
                    Ok(sweep_row(&sweep, &ranked))
                });
                row.unwrap_or_else(|e| {
                    json!({
                        "name": name,
                        "status": "unreadable",
                        "error": self.relative(&e.message),
                    })
                })
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `GET /api/sweeps/{name}`: the sweep as in the list, its varied keys and rungs, and every
    /// trial, best first as `sweep status` sorts them, with its settings, epochs, last metrics,
    /// state and history.
    pub fn sweep_detail(&self, name: &str) -> Result<Value, ApiError> {
        let sweep = self.sweep(name)?;
        let ranked = sweep::ranked(&sweep)?;
        let trials: Vec<Value> = ranked
            .iter()
            .map(|(trial, state)| trial_row(&sweep, trial, state))
            .collect();
        let rungs: Vec<Value> = sweep
            .rungs()
            .iter()
            .map(|rung| json!({"trials": rung.trials, "epochs": rung.budget}))
            .collect();
        Ok(json!({
            "sweep": sweep_row(&sweep, &ranked),
            "varied": sweep.resolved.varied,
            "rungs": rungs,
            "trials": trials,
        }))
    }
}

/// A sweep as the list shows it.
fn sweep_row(sweep: &Sweep, ranked: &[(&Trial, TrialState)]) -> Value {
    let r = &sweep.resolved;
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, state) in ranked {
        *states.entry(state.state.as_str()).or_default() += 1;
    }
    // Ranked: the first with an epoch is the best.
    let best = ranked
        .iter()
        .find_map(|(trial, state)| state.history.last().map(|m| (trial, m.val_accuracy)));
    json!({
        "name": r.name,
        "method": r.method,
        "epochs": r.epochs,
        "halving": r.halving,
        "trials": r.trials.len(),
        "states": states,
        "live": ranked.iter().any(|(_, s)| s.info.as_ref().is_some_and(|i| i.is_live())),
        "best_trial": best.map(|(trial, _)| &trial.name),
        "best_val_accuracy": best.map(|(_, v)| v),
    })
}

/// One trial: what `sweep status` shows of it, its rung, whether it has a run page (`run`), and
/// its history for the curves.
fn trial_row(sweep: &Sweep, trial: &Trial, state: &TrialState) -> Value {
    let settings: Map<String, Value> = sweep
        .resolved
        .varied
        .iter()
        .filter_map(|key| {
            let value = serde_json::to_value(trial.settings.get(key)?).ok()?;
            Some((key.clone(), value))
        })
        .collect();
    let last = state.history.last();
    json!({
        "name": trial.name,
        "settings": settings,
        "epochs_done": state.history.epochs(),
        "epochs_planned": state.epochs_planned(sweep),
        "loss": last.map(|m| m.loss),
        "accuracy": last.map(|m| m.accuracy),
        "val_loss": last.map(|m| m.val_loss),
        "val_accuracy": last.map(|m| m.val_accuracy),
        "state": state.state,
        "rung": state.rung,
        "live": state.info.as_ref().is_some_and(|i| i.is_live()),
        "run": state.info.is_some(),
        "history": state.history,
    })
}
