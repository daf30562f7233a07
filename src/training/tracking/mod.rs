//! PLACEHOLDER until issue-35tb's plumbing is merged: the trait as TRACKING_SPEC.md fixes it.

pub mod mlflow;

/// What a tracker is told when a training starts (new or resumed) or a recorded run is replayed.
pub struct TrackedRun<'a> {
    pub run: &'a crate::run_dir::RunDir,
    pub info: &'a crate::run_dir::RunInfo,
    pub config: &'a crate::config::TrainConfig,
    pub history: &'a crate::run_dir::History,
}

/// A place a run is also logged to.
pub trait Tracker: Send {
    fn start(&mut self, run: &TrackedRun<'_>);
    fn step(&mut self, _step: u64, _loss: f64) {}
    fn epoch(&mut self, epoch: usize, metrics: &crate::run_dir::EpochMetrics, learning_rate: f64);
    fn finish(&mut self, status: crate::run_dir::RunStatus, run: &crate::run_dir::RunDir);
    fn fault(&self) -> Option<String> {
        None
    }
}
