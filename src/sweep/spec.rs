//! The sweep spec: a TOML file with a `[sweep]` section (what to vary, and how) on top of a
//! base training config, expanded into numbered trials, each a whole validated [`TrainConfig`].
//!
//! ```toml
//! [sweep]
//! name = "widths"
//! method = "grid"                 # or "random", with count = N
//! config = "config/train.toml"    # the base config, relative to this file (optional)
//! halving = { min_epochs = 1, eta = 2 }   # successive halving (optional)
//! [sweep.grid]
//! hidden = [[128, 128], [256, 256]]
//! learning_rate = [1e-3, 3e-4]
//! [base.train]                    # the base config's keys changed for every trial (optional)
//! limit_train = 2000
//! ```

use super::SweepError;
use crate::config::{PLAIN_NAME, TrainConfig, is_plain_name, read_toml};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The config key a sweep setting named `name` sets: a `train` flag's name
/// ([`crate::config::setting_keys`], read from the flags themselves), or `section.key` as is.
fn setting_key(name: &str) -> Option<String> {
    match crate::config::setting_keys()
        .iter()
        .find(|(flag, _)| flag == name)
    {
        Some((_, key)) => Some(key.clone()),
        None => name.contains('.').then(|| name.to_string()),
    }
}

/// The flag names a sweep may vary, for messages (not those the sweep sets itself).
fn setting_names() -> String {
    crate::config::setting_keys()
        .iter()
        .filter(|(_, key)| !RESERVED.contains(&key.as_str()))
        .map(|(flag, _)| flag.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys a sweep sets itself.
const RESERVED: [&str; 2] = ["run.name", "run.artifact_dir"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    sweep: SweepSection,
    #[serde(default)]
    base: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepSection {
    name: String,
    method: Method,
    count: Option<usize>,
    #[serde(default)]
    seed: u64,
    config: Option<PathBuf>,
    halving: Option<Halving>,
    grid: Option<toml::Table>,
    random: Option<toml::Table>,
}

/// How the trials are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every combination of the listed values.
    Grid,
    /// `count` draws from the given ranges and choices.
    Random,
}

/// Successive halving: every trial trains `min_epochs`, the best 1/`eta` go on for `eta` times
/// as many, and so on until the full epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    pub min_epochs: usize,
    pub eta: usize,
}

impl Halving {
    /// Whether it makes rungs for trials of `epochs` epochs: the key at fault (`eta`,
    /// `min_epochs`) and why.
    pub fn check(&self, epochs: usize) -> Result<(), (&'static str, String)> {
        if self.eta < 2 {
            return Err(("eta", format!("must be at least 2 (got {})", self.eta)));
        }
        if self.min_epochs == 0 {
            return Err(("min_epochs", "must be at least 1 (got 0)".into()));
        }
        if self.min_epochs >= epochs {
            return Err((
                "min_epochs",
                format!(
                    "must be below the trials' epochs ({epochs}) (got {})",
                    self.min_epochs
                ),
            ));
        }
        Ok(())
    }
}

/// One trial: its name and the values the sweep gave it, by config key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub name: String,
    pub settings: toml::Table,
}

/// The sweep as resolved, saved as `sweep.toml` in its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    pub name: String,
    pub method: Method,
    pub seed: u64,
    /// The epochs each trial is planned for (all the same under halving).
    pub epochs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halving: Option<Halving>,
    /// The config keys the sweep varies, as the spec names them.
    pub varied: Vec<String>,
    pub trials: Vec<Trial>,
}

impl Resolved {
    /// Checks what a `sweep.toml` says, as a file someone may have edited by hand: the key at
    /// fault and why, in one line. Every value the workers and `status` compute with is
    /// checked here, so that none of them can loop, panic or index out of range.
    pub fn check(&self) -> Result<(), String> {
        if !is_plain_name(&self.name) {
            return Err(format!("name: {PLAIN_NAME} (got {:?})", self.name));
        }
        if self.epochs == 0 {
            return Err("epochs: must be at least 1 (got 0)".into());
        }
        if self.trials.is_empty() {
            return Err("trials: empty: a sweep has at least one trial".into());
        }
        for (index, trial) in self.trials.iter().enumerate() {
            if trial.name != trial_name(index) {
                return Err(format!(
                    "trials[{index}].name: must be {:?} (got {:?})",
                    trial_name(index),
                    trial.name
                ));
            }
        }
        if let Some(h) = self.halving {
            h.check(self.epochs)
                .map_err(|(key, fault)| format!("halving.{key}: {fault}"))?;
        }
        Ok(())
    }
}

/// A spec expanded: what `sweep.toml` says, and each trial's config in trial order.
pub struct Expanded {
    pub resolved: Resolved,
    pub configs: Vec<TrainConfig>,
}

/// One varied setting: the key as written under `[sweep.grid]`/`[sweep.random]`, the config
/// key it sets, and what it takes.
struct Param {
    spec_key: String,
    target: String,
    values: Values,
}

enum Values {
    Choice(Vec<toml::Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    IntUniform(i64, i64),
}

/// The trial's name: `trial-000`, `trial-001`, …
pub fn trial_name(index: usize) -> String {
    format!("trial-{index:03}")
}

/// Reads and expands the spec at `path`; `artifact_dir` overrides the base config's.
pub fn expand(path: &Path, artifact_dir: Option<&Path>) -> Result<Expanded, SweepError> {
    let bad = |message: String| SweepError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let spec: SpecFile = read_toml(&text).map_err(|e| bad(e.to_string()))?;
    let s = &spec.sweep;
    check_name(&s.name).map_err(&bad)?;
    let mut base = base_table(path, s.config.as_deref())?;
    merge(&mut base, &spec.base);
    if let Some(dir) = artifact_dir {
        set(
            &mut base,
            "run.artifact_dir",
            dir.display().to_string().into(),
        );
    }
    let params = params_of(s).map_err(&bad)?;
    let picks = match s.method {
        Method::Grid => grid(&params),
        Method::Random => random(&params, s.count.unwrap_or(0), s.seed),
    };
    let mut configs = Vec::with_capacity(picks.len());
    let mut trials = Vec::with_capacity(picks.len());
    for (index, pick) in picks.into_iter().enumerate() {
        let name = trial_name(index);
        let config = trial_config(&base, &params, &pick, &name).map_err(&bad)?;
        let settings = params
            .iter()
            .zip(&pick)
            .map(|(p, v)| (p.target.clone(), v.clone()))
            .collect();
        trials.push(Trial { name, settings });
        configs.push(config);
    }
    let epochs = check_epochs(s, &configs).map_err(&bad)?;
    Ok(Expanded {
        resolved: Resolved {
            name: s.name.clone(),
            method: s.method,
            seed: s.seed,
            epochs,
            halving: s.halving,
            varied: params.iter().map(|p| p.target.clone()).collect(),
            trials,
        },
        configs,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(format!("sweep.name: {PLAIN_NAME} (got {name:?})"))
    }
}

/// The base config as a TOML table: `sweep.config` (relative to the spec) or the defaults.
fn base_table(spec: &Path, config: Option<&Path>) -> Result<toml::Table, SweepError> {
    let config = match config {
        Some(file) => {
            let file = spec.parent().unwrap_or(Path::new(".")).join(file);
            TrainConfig::from_file(&file)?
        }
        None => TrainConfig::default(),
    };
    // A config always serializes, and what it serializes to is a table.
    Ok(toml::from_str(&config.to_toml()).unwrap_or_default())
}

/// `base` with every key of `over` set, section by section.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Sets the dotted `key` (`section.key`) of `table`.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (section, leaf) = key.split_once('.').unwrap_or(("", key));
    let slot = if section.is_empty() {
        table
    } else {
        match table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => inner,
            other => {
                *other = toml::Value::Table(toml::Table::new());
                match other {
                    toml::Value::Table(inner) => inner,
                    _ => unreachable!("just made a table"),
                }
            }
        }
    };
    slot.insert(leaf.to_string(), value);
}

/// The varied settings of the spec, checked.
fn params_of(s: &SweepSection) -> Result<Vec<Param>, String> {
    let (section, table) = match (s.method, &s.grid, &s.random) {
        (Method::Grid, Some(grid), None) => ("sweep.grid", grid),
        (Method::Random, None, Some(random)) => ("sweep.random", random),
        (Method::Grid, _, Some(_)) => {
            return Err("sweep.random: only for method = \"random\"".into());
        }
        (Method::Random, Some(_), _) => {
            return Err("sweep.grid: only for method = \"grid\"".into());
        }
        (Method::Grid, None, None) => return Err("sweep.grid: missing".into()),
        (Method::Random, None, None) => return Err("sweep.random: missing".into()),
    };
    match (s.method, s.count) {
        (Method::Grid, Some(_)) => return Err("sweep.count: only for method = \"random\"".into()),
        (Method::Random, None) => {
            return Err("sweep.count: missing: method = \"random\" draws count trials".into());
        }
        (Method::Random, Some(0)) => return Err("sweep.count: must be at least 1 (got 0)".into()),
        _ => {}
    }
    let mut params = Vec::new();
    flatten(section, "", table, s.method, &mut params)?;
    if params.is_empty() {
        return Err(format!(
            "{section}: empty: name at least one setting and its values"
        ));
    }
    Ok(params)
}

/// Collects the settings of `table`, whose keys are settings or (as tables) config sections.
fn flatten(
    section: &str,
    prefix: &str,
    table: &toml::Table,
    method: Method,
    params: &mut Vec<Param>,
) -> Result<(), String> {
    for (key, value) in table {
        let spec_key = format!("{prefix}{key}");
        let is_section = matches!(value, toml::Value::Table(t) if method == Method::Grid
            || distribution(t).is_none());
        if let (true, toml::Value::Table(inner)) = (is_section, value) {
            if !prefix.is_empty() {
                return Err(format!(
                    "{section}.{spec_key}: expected values, got a table"
                ));
            }
            flatten(section, &format!("{key}."), inner, method, params)?;
            continue;
        }
        let Some(target) = setting_key(&spec_key) else {
            return Err(format!(
                "{section}.{spec_key}: unknown setting (one of {}, or section.key of the config)",
                setting_names()
            ));
        };
        if RESERVED.contains(&target.as_str()) {
            return Err(format!("{section}.{spec_key}: set by the sweep itself"));
        }
        let values =
            values_of(value, method).map_err(|reason| format!("{section}.{spec_key}: {reason}"))?;
        params.push(Param {
            spec_key: format!("{section}.{spec_key}"),
            target,
            values,
        });
    }
    Ok(())
}

/// The distribution a random setting's table names, if it names exactly one.
fn distribution(table: &toml::Table) -> Option<&str> {
    let mut keys = table.keys();
    let key = keys.next()?;
    let known = ["choice", "uniform", "log_uniform", "int_uniform"].contains(&key.as_str());
    (known && keys.next().is_none()).then_some(key.as_str())
}

fn values_of(value: &toml::Value, method: Method) -> Result<Values, String> {
    let list = |value: &toml::Value| match value {
        toml::Value::Array(values) if values.is_empty() => {
            Err("empty list: give at least one value".to_string())
        }
        toml::Value::Array(values) => Ok(values.clone()),
        other => Err(format!("expected a list of values (got {other})")),
    };
    let toml::Value::Table(table) = value else {
        return list(value).map(Values::Choice);
    };
    if method == Method::Grid {
        return Err("expected a list of values, got a table".into());
    }
    let Some(kind) = distribution(table) else {
        return Err(
            "expected a list, or one of {choice, uniform, log_uniform, int_uniform}".into(),
        );
    };
    let range = &table[kind];
    if kind == "choice" {
        return list(range).map(Values::Choice);
    }
    let pair = match range.as_array().map(Vec::as_slice) {
        Some([low, high]) => Some((low, high)),
        _ => None,
    };
    let float = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    let bad = || format!("{kind} needs [low, high] with low < high (got {range})");
    match kind {
        "int_uniform" => match pair.map(|(l, h)| (l.as_integer(), h.as_integer())) {
            Some((Some(low), Some(high))) if low <= high => Ok(Values::IntUniform(low, high)),
            _ => Err(format!(
                "int_uniform needs [low, high], whole numbers with low <= high (got {range})"
            )),
        },
        _ => match pair.map(|(l, h)| (float(l), float(h))) {
            Some((Some(low), Some(high))) if low.is_finite() && high.is_finite() && low < high => {
                if kind == "log_uniform" && low <= 0.0 {
                    return Err(format!(
                        "log_uniform needs [low, high] with 0 < low < high (got {range})"
                    ));
                }
                Ok(if kind == "uniform" {
                    Values::Uniform(low, high)
                } else {
                    Values::LogUniform(low, high)
                })
            }
            _ => Err(bad()),
        },
    }
}

/// Every combination, the first setting (in key order) varying slowest.
fn grid(params: &[Param]) -> Vec<Vec<toml::Value>> {
    let mut picks = vec![Vec::new()];
    for param in params {
        let Values::Choice(values) = &param.values else {
            continue; // a grid holds lists only (checked in `values_of`)
        };
        picks = picks
            .into_iter()
            .flat_map(|pick| {
                values.iter().map(move |v| {
                    let mut next = pick.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect();
    }
    picks
}

/// `count` draws, trial by trial and setting by setting in key order, from one generator
/// seeded with `seed`: the same spec draws the same trials.
fn random(params: &[Param], count: usize, seed: u64) -> Vec<Vec<toml::Value>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            params
                .iter()
                .map(|param| match &param.values {
                    Values::Choice(values) => values[rng.random_range(0..values.len())].clone(),
                    Values::Uniform(low, high) => rng.random_range(*low..*high).into(),
                    Values::LogUniform(low, high) => {
                        rng.random_range(low.ln()..high.ln()).exp().into()
                    }
                    Values::IntUniform(low, high) => rng.random_range(*low..=*high).into(),
                })
                .collect()
        })
        .collect()
}

/// The config of one trial, read back as `train` reads a file and validated as `train` does.
fn trial_config(
    base: &toml::Table,
    params: &[Param],
    pick: &[toml::Value],
    name: &str,
) -> Result<TrainConfig, String> {
    let mut table = base.clone();
    for (param, value) in params.iter().zip(pick) {
        set(&mut table, &param.target, value.clone());
    }
    set(&mut table, "run.name", name.into());
    let text = toml::to_string(&table).map_err(|e| format!("{name}: {e}"))?;
    let mut config = TrainConfig::from_toml(&text).map_err(|e| {
        // A fault in a varied key is the spec's line that sets it; others are the base's.
        let blamed = params
            .iter()
            .find(|p| e.key.as_deref().is_some_and(|k| k.starts_with(&p.target)));
        match blamed {
            Some(p) => format!("{}: {}", p.spec_key, e.message),
            None => format!("base config: {e}"),
        }
    })?;
    config.validate().map_err(|e| {
        let value = params
            .iter()
            .zip(pick)
            .map(|(p, v)| format!("{} = {v}", p.target))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{name} ({value}): {e}")
    })?;
    config.run.kernels = Some(config.kernels());
    Ok(config)
}

/// The epochs of the trials; under halving, one count for all, above `min_epochs`.
fn check_epochs(s: &SweepSection, configs: &[TrainConfig]) -> Result<usize, String> {
    let most = configs.iter().map(|c| c.train.epochs).max().unwrap_or(0);
    if let Some(h) = s.halving {
        if configs.iter().any(|c| c.train.epochs != most) {
            return Err(
                "sweep.halving: the trials must plan the same epochs (halving sets their \
                 budgets); do not vary epochs"
                    .into(),
            );
        }
        h.check(most)
            .map_err(|(key, fault)| format!("sweep.halving.{key}: {fault}"))?;
    }
    Ok(most)
}

/// The rungs of a sweep of `trials` trials planned for `epochs` epochs: how many trials each
/// trains and to which epoch. Without halving, one rung: every trial, every epoch.
pub fn rungs(trials: usize, epochs: usize, halving: Option<Halving>) -> Vec<Rung> {
    let Some(Halving { min_epochs, eta }) = halving else {
        return vec![Rung {
            trials,
            budget: epochs,
        }];
    };
    // Checked when read (`Halving::check`); bounded here too, so that no value loops.
    let (eta, min_epochs) = (eta.max(2), min_epochs.max(1));
    let mut rungs = Vec::new();
    let (mut count, mut budget) = (trials, min_epochs);
    while budget < epochs && count > 1 {
        rungs.push(Rung {
            trials: count,
            budget,
        });
        count = (count / eta).max(1);
        budget = budget.saturating_mul(eta);
    }
    rungs.push(Rung {
        trials: count,
        budget: epochs,
    });
    rungs
}

/// One rung of successive halving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// How many trials train in it.
    pub trials: usize,
    /// The epoch they train to.
    pub budget: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_rungs_keep_one_in_eta_until_one_trial_has_every_epoch() {
        let h = Some(Halving {
            min_epochs: 1,
            eta: 2,
        });
        let r = |trials, budget| Rung { trials, budget };
        assert_eq!(rungs(8, 5, h), vec![r(8, 1), r(4, 2), r(2, 4), r(1, 5)]);
        assert_eq!(rungs(4, 3, h), vec![r(4, 1), r(2, 2), r(1, 3)]);
        assert_eq!(rungs(4, 2, h), vec![r(4, 1), r(2, 2)]);
        assert_eq!(rungs(3, 9, None), vec![r(3, 9)]);
    }

    #[test]
    fn grid_varies_the_first_key_slowest() {
        let params = vec![
            Param {
                spec_key: "a".into(),
                target: "a".into(),
                values: Values::Choice(vec![1.into(), 2.into()]),
            },
            Param {
                spec_key: "b".into(),
                target: "b".into(),
                values: Values::Choice(vec![3.into(), 4.into(), 5.into()]),
            },
        ];
        let picks: Vec<Vec<i64>> = grid(&params)
            .into_iter()
            .map(|p| p.iter().map(|v| v.as_integer().unwrap()).collect())
            .collect();
        assert_eq!(
            picks,
            [[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]].map(Vec::from)
        );
    }

    #[test]
    fn random_draws_stay_in_their_ranges_and_repeat_with_the_seed() {
        let params = vec![
            Param {
                spec_key: "lr".into(),
                target: "lr".into(),
                values: Values::LogUniform(1e-4, 1e-2),
            },
            Param {
                spec_key: "n".into(),
                target: "n".into(),
                values: Values::IntUniform(16, 18),
            },
        ];
        let draws = random(&params, 50, 7);
        assert_eq!(draws, random(&params, 50, 7));
        assert_ne!(draws, random(&params, 50, 8));
        for draw in &draws {
            let lr = draw[0].as_float().unwrap();
            assert!((1e-4..1e-2).contains(&lr), "{lr}");
            assert!((16..=18).contains(&draw[1].as_integer().unwrap()));
        }
        let ints: std::collections::BTreeSet<i64> =
            draws.iter().map(|d| d[1].as_integer().unwrap()).collect();
        assert_eq!(ints.into_iter().collect::<Vec<_>>(), vec![16, 17, 18]);
    }
}
