//! `sweep work`: claim a trial, train it to its rung's epoch budget, repeat until no trial is
//! left. Rung by rung under successive halving: a rung's survivors are known once every trial
//! of it has settled, so workers wait for the rung's last trials before going on.

use super::claims::{self, Claim};
use super::{Sweep, SweepError, TrialState, describe, trial_name};
use crate::fsutil::{Reader, Refused};
use crate::run_dir::{EpochMetrics, History, RunDirError, RunInfo, RunStatus};
use crate::saved;
use crate::training::{self, Dashboard};
use std::path::PathBuf;
use std::time::Duration;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    /// Train exactly this trial (then, under halving, go on as any worker); `index_source`
    /// says where it came from, for messages.
    pub index: Option<usize>,
    pub index_source: &'static str,
    /// Where MNIST is read from, instead of what the trials' configs say.
    pub data_dir: Option<PathBuf>,
    pub dashboard: Dashboard,
    /// A claim from another host whose heartbeat is older than this is taken over.
    pub stale_after: Duration,
    /// How often a worker waiting for a rung's last trials looks again.
    pub poll: Duration,
}

/// A line for the worker's output: `Out` for stdout (the metrics, `name=value`), `Note` for
/// stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Out(String),
    Note(String),
}

/// How a worker ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkReport {
    /// The trials it trained (to their rung's budget), in order.
    pub trained: Vec<String>,
    /// Stopped by Ctrl-C: the trial it was training is left for another worker.
    pub interrupted: bool,
}

/// The trial index the scheduler gives this process: `flag` (`--index`), else
/// `SLURM_ARRAY_TASK_ID` (Slurm job arrays), else `JOB_COMPLETION_INDEX` (Kubernetes Indexed
/// Jobs); with its source, for messages.
pub fn index_from_env(flag: Option<usize>) -> Result<Option<(usize, &'static str)>, SweepError> {
    if let Some(index) = flag {
        return Ok(Some((index, "--index")));
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(value) = std::env::var(var) {
            let index = value
                .trim()
                .parse()
                .map_err(|_| SweepError::IndexEnv { var, value })?;
            return Ok(Some((index, var)));
        }
    }
    Ok(None)
}

/// Works on `sweep` until no trial is left for this worker, passing its output to `out`.
pub fn work(
    sweep: &Sweep,
    options: &WorkOptions,
    out: &mut dyn FnMut(Line),
) -> Result<WorkReport, SweepError> {
    let mut worker = Worker {
        sweep,
        options,
        out,
        report: WorkReport::default(),
    };
    if let Some(index) = options.index {
        let go_on = worker.index(index)?;
        if !go_on || worker.report.interrupted {
            return Ok(worker.report);
        }
    }
    worker.every_rung()?;
    Ok(worker.report)
}

struct Worker<'a> {
    sweep: &'a Sweep,
    options: &'a WorkOptions,
    out: &'a mut dyn FnMut(Line),
    report: WorkReport,
}

/// What a worker found claiming.
enum Claimed {
    Held(usize, claims::Held),
    /// Nothing claimable: every trial of the rung is settled or held by a live worker.
    Nothing,
}

impl Worker<'_> {
    /// `--index`: trains trial `index` in rung 0. Returns whether to go on as any worker
    /// (under halving, whose later rungs need every worker).
    fn index(&mut self, index: usize) -> Result<bool, SweepError> {
        let trials = self.sweep.resolved.trials.len();
        if index >= trials {
            return Err(SweepError::Index {
                given: self.options.index_source,
                index,
                trials,
            });
        }
        let halving = self.sweep.resolved.halving.is_some();
        let trial = trial_name(index);
        let budget = self.sweep.rungs()[0].budget;
        let dir = claims::rung_dir(self.sweep.path(), 0);
        let newest = claims::newest(&dir, &trial)?;
        if let Some(owner) = newest.as_ref().filter(|c| !self.stale(c)) {
            let by = owner
                .owner
                .as_ref()
                .map(|o| o.describe())
                .unwrap_or_else(|| "another worker".into());
            self.note(format!("{trial}: already claimed by {by}"));
            return Ok(halving);
        }
        if self.settled(index, budget)? {
            self.note(format!(
                "{trial}: already finished {budget} epochs; nothing to do"
            ));
            return Ok(halving);
        }
        let generation = newest.map_or(0, |c| c.generation + 1);
        match claims::try_claim(&dir, &trial, generation)? {
            Some(held) => self.train(0, index, held)?,
            None => self.note(format!("{trial}: claimed by another worker just now")),
        }
        Ok(halving)
    }

    /// Every rung in turn, claiming its trials until none is left.
    fn every_rung(&mut self) -> Result<(), SweepError> {
        let rungs = self.sweep.rungs();
        for (rung, plan) in rungs.iter().enumerate() {
            let last = rung + 1 == rungs.len();
            loop {
                let states = trial_states(self.sweep)?;
                let Some(members) = members(self.sweep, &states, rung) else {
                    std::thread::sleep(self.options.poll);
                    continue;
                };
                match self.claim(rung, &members, plan.budget)? {
                    Claimed::Held(index, held) => {
                        self.train(rung, index, held)?;
                        if self.report.interrupted {
                            return Ok(());
                        }
                    }
                    Claimed::Nothing if last => return Ok(()),
                    Claimed::Nothing => {
                        if self.all_settled(&members, plan.budget)? {
                            break;
                        }
                        // Others hold the rung's last trials: its survivors are not known yet.
                        std::thread::sleep(self.options.poll);
                    }
                }
            }
        }
        Ok(())
    }

    /// The first trial of `members` that is neither settled nor held by a live worker.
    fn claim(
        &mut self,
        rung: usize,
        members: &[usize],
        budget: usize,
    ) -> Result<Claimed, SweepError> {
        let dir = claims::rung_dir(self.sweep.path(), rung);
        for &index in members {
            let trial = trial_name(index);
            // The claim is read before the run: an owner that is gone has written its last.
            let newest = claims::newest(&dir, &trial)?;
            if newest.as_ref().is_some_and(|c| !self.stale(c)) {
                continue;
            }
            if self.settled(index, budget)? || self.busy(index)? {
                continue;
            }
            let generation = newest.map_or(0, |c| c.generation + 1);
            if let Some(held) = claims::try_claim(&dir, &trial, generation)? {
                return Ok(Claimed::Held(index, held));
            }
        }
        Ok(Claimed::Nothing)
    }

    fn stale(&self, claim: &Claim) -> bool {
        claim.is_stale(self.options.stale_after)
    }

    fn settled(&self, index: usize, budget: usize) -> Result<bool, SweepError> {
        let run = self.sweep.run(&trial_name(index));
        Ok(read_info(&run)?
            .is_some_and(|info| is_settled(&info, budget, self.sweep.resolved.epochs)))
    }

    /// A live process is training the trial (past this rung's claim: a survivor another
    /// worker took on to the next rung, or its owner between its last checkpoint and its
    /// record): not this worker's to take, whatever the claims of this rung say.
    fn busy(&self, index: usize) -> Result<bool, SweepError> {
        let run = self.sweep.run(&trial_name(index));
        Ok(read_info(&run)?.is_some_and(|info| info.is_live_within(self.options.stale_after)))
    }

    fn all_settled(&self, members: &[usize], budget: usize) -> Result<bool, SweepError> {
        for &index in members {
            if !self.settled(index, budget)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Trains trial `index` (claimed) to `budget` epochs: from the start, or resumed from its
    /// last complete checkpoint when a run of it is there.
    fn train(&mut self, rung: usize, index: usize, held: claims::Held) -> Result<(), SweepError> {
        let trial = trial_name(index);
        let budget = self.sweep.rungs()[rung].budget;
        let run = self.sweep.run(&trial);
        let info = read_info(&run)?;
        let (dashboard, data_dir) = (self.options.dashboard, self.options.data_dir.clone());
        let trained = match &info {
            // Settled between the look and the claim.
            Some(info) if is_settled(info, budget, self.sweep.resolved.epochs) => return Ok(()),
            Some(info) => {
                self.note(format!(
                    "{trial}: resuming after epoch {}, to epoch {budget}",
                    info.epochs_done
                ));
                training::resume_until(
                    &run,
                    data_dir,
                    dashboard,
                    Some(budget),
                    self.options.stale_after,
                )
            }
            None => {
                // A worker killed before its run recorded anything leaves at most an empty
                // directory: the claim makes it this worker's to clear.
                if run.path().exists() {
                    std::fs::remove_dir_all(run.path()).map_err(|source| SweepError::Io {
                        path: run.path().to_path_buf(),
                        source,
                    })?;
                }
                let mut config = self.sweep.trial_config(&trial)?;
                if data_dir.is_some() {
                    config.data.dir = data_dir;
                }
                training::train_until(&config, dashboard, Some(budget))
            }
        };
        drop(held);
        let outcome = match trained {
            Ok(outcome) => outcome,
            // Another worker began it between the look and the claim: it is theirs.
            Err(training::TrainError::StillRunning { pid, .. }) => {
                self.note(format!(
                    "{trial}: being trained by process {pid}; leaving it"
                ));
                return Ok(());
            }
            // A trial that diverged is a result of the sweep, not the end of the worker.
            Err(error @ training::TrainError::Failed { .. }) => {
                self.note(format!("{trial}: failed: {error}"));
                self.report.trained.push(trial);
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let done = outcome.info.epochs_done;
        if done < budget.min(outcome.info.epochs_planned) {
            self.note(format!(
                "{trial}: interrupted after {done} epochs; another worker will resume it"
            ));
            self.report.interrupted = true;
            return Ok(());
        }
        self.report.trained.push(trial.clone());
        let last = outcome.history.last();
        if outcome.info.status == RunStatus::Finished {
            self.out(format!("# {trial}: finished {done} epochs"));
            if let Some(m) = last {
                self.metrics(&m);
            }
        } else {
            self.note(format!(
                "{trial}: rung {rung} done: {done}/{} epochs, val_accuracy {}",
                outcome.info.epochs_planned,
                last.map_or(f64::NAN, |m| m.val_accuracy)
            ));
        }
        Ok(())
    }

    /// The final metrics as `name=value` lines, the format Katib's stdout collector reads.
    fn metrics(&mut self, m: &EpochMetrics) {
        for (name, value) in [
            ("loss", m.loss),
            ("accuracy", m.accuracy),
            ("val_loss", m.val_loss),
            ("val_accuracy", m.val_accuracy),
        ] {
            self.out(format!("{name}={value}"));
        }
    }

    fn out(&mut self, line: String) {
        (self.out)(Line::Out(line));
    }

    fn note(&mut self, line: String) {
        (self.out)(Line::Note(line));
    }
}

/// A trial is settled at `budget` when it failed, or has trained that far (a process may still
/// be on it: see [`Worker::busy`]); at the last epoch, only a finished run (whose final model
/// is saved) is.
fn is_settled(info: &RunInfo, budget: usize, epochs: usize) -> bool {
    match info.status {
        RunStatus::Failed => true,
        RunStatus::Finished => true,
        _ if budget >= epochs => false,
        // Its epochs of this rung are done, whether or not a process is on it still (its
        // owner recording them, or a worker taking it on to the next rung).
        _ => info.epochs_done >= budget,
    }
}

fn read_info(run: &crate::run_dir::RunDir) -> Result<Option<RunInfo>, SweepError> {
    if *run.reader() == Reader::Plain && !run.info_path().is_file() {
        return Ok(None);
    }
    // Beneath the artifact directory the file is opened once: not there is no run yet.
    match run.read_info() {
        Err(RunDirError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        read => Ok(Some(read?)),
    }
}

/// Every trial's record, in trial order.
pub(super) fn trial_states(sweep: &Sweep) -> Result<Vec<TrialState>, SweepError> {
    let mut states: Vec<TrialState> = Vec::new();
    for trial in &sweep.resolved.trials {
        let run = sweep.run(&trial.name);
        let info = read_info(&run)?;
        let mut history = match &info {
            Some(_) => match saved::read_history_or_empty(&run) {
                Ok(history) => history,
                // A file refused (a FIFO, a symlink) is said, not taken for no epochs.
                Err(RunDirError::Read { source, path }) if Refused::of(&source).is_some() => {
                    return Err(RunDirError::Read { source, path }.into());
                }
                Err(_) => History::default(),
            },
            None => History::default(),
        };
        history.truncate(info.as_ref().map_or(0, |i| i.epochs_done));
        let claims = claims::rung_dir(sweep.path(), 0);
        let claimed = claims::newest_by(sweep.reader(), &claims, &trial.name)?.is_some();
        states.push(TrialState {
            name: trial.name.clone(),
            state: describe(info.as_ref(), claimed, None, sweep.stale_after()),
            info,
            history,
            rung: 0,
        });
    }
    // The rungs each trial was chosen for, and which were left behind.
    let rungs = sweep.rungs();
    for rung in 1..rungs.len() {
        let Some(chosen) = members(sweep, &states, rung) else {
            break;
        };
        let before = members(sweep, &states, rung - 1).unwrap_or_default();
        for index in before {
            let state = &mut states[index];
            if chosen.contains(&index) {
                state.rung = rung;
            } else {
                state.state = describe(
                    state.info.as_ref(),
                    true,
                    Some(rung - 1),
                    sweep.stale_after(),
                );
            }
        }
    }
    Ok(states)
}

/// The trials of `rung`: every trial in rung 0; in each later one, the best of the one before
/// by val_accuracy at its budget (ties to the lower number), once all of those have settled.
fn members(sweep: &Sweep, states: &[TrialState], rung: usize) -> Option<Vec<usize>> {
    let rungs = sweep.rungs();
    let epochs = sweep.resolved.epochs;
    let mut chosen: Vec<usize> = (0..states.len()).collect();
    for next in 1..=rung {
        let budget = rungs[next - 1].budget;
        let mut scored = Vec::new();
        for &index in &chosen {
            let info = states[index].info.as_ref()?;
            if !is_settled(info, budget, epochs) {
                return None;
            }
            if info.status == RunStatus::Failed {
                continue;
            }
            let score = states[index]
                .history
                .get(budget - 1)
                .map_or(f64::NEG_INFINITY, |m| m.val_accuracy);
            scored.push((index, score));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        chosen = scored
            .into_iter()
            .take(rungs[next].trials)
            .map(|(i, _)| i)
            .collect();
        chosen.sort_unstable();
    }
    Some(chosen)
}
