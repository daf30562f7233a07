//! The fused kernels' threads: how many, and keeping them awake while a training runs.
//!
//! A training runs on a rayon pool of its own, of `run.threads` threads ([`default_threads`]
//! unless set), the training thread one of its workers: the products, the sparse kernels and
//! RMSprop split their work over the pool.
//!
//! A training step at batch 32 is a dozen parallel pieces of 50–500 µs each, with Burn's serial
//! bookkeeping between them. A worker that finds no work sleeps after a few tens of
//! microseconds, and waking it takes 50–200 µs on a virtual machine, as long as the piece
//! itself. So while a training runs, the pool's other workers run [`stay_awake`]: they take work
//! the moment it is queued, and yield their core to any other thread while there is none. Only
//! when every worker has a core of its own: with more threads than the CPUs this process may
//! use, an idle worker's spinning would take a core from one that has work (16 threads on 2
//! cores trained 1.8× slower), so they all sleep when idle, as rayon's workers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most threads `run.threads` may ask for.
pub const MAX_THREADS: usize = 1024;

/// The CPUs this process may use: the affinity mask and the container's CPU quota (cgroups)
/// included, as [`std::thread::available_parallelism`] counts them; 1 where it cannot tell.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The pool's size unless `run.threads` says: `RAYON_NUM_THREADS` when it is a number from 1 to
/// [`MAX_THREADS`] (rayon's own default reads it too), else [`available_cores`].
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .unwrap_or_else(available_cores)
}

/// A pool that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {threads} kernel threads: {source}")]
pub struct ThreadsError {
    threads: usize,
    source: rayon::ThreadPoolBuildError,
}

/// Runs `work` on a new rayon pool of `threads` threads (on one of its workers), the pool's other
/// workers kept awake meanwhile when `awake` and each has a core ([`available_cores`]).
pub fn run_on_threads<R: Send>(
    threads: usize,
    awake: bool,
    work: impl FnOnce() -> R + Send,
) -> Result<R, ThreadsError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("kernels-{i}"))
        .build()
        .map_err(|source| ThreadsError { threads, source })?;
    Ok(pool.install(|| {
        let _awake = (awake && spin_pays(threads, available_cores())).then(keep_awake);
        work()
    }))
}

/// Whether the idle workers of a pool of `threads` threads should stay awake on `cores` CPUs:
/// there is another worker, and each worker has a core of its own.
fn spin_pays(threads: usize, cores: usize) -> bool {
    (2..=cores).contains(&threads)
}

/// While held, the pool's other workers stay awake; dropping it lets them sleep again.
#[derive(Debug)]
pub struct Awake {
    stop: Arc<AtomicBool>,
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// On a worker of a rayon pool: keeps the pool's other workers awake while the result is held.
fn keep_awake() -> Awake {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let me = rayon::current_thread_index();
    // A broadcast gives each worker its own copy, which no other worker can take: this thread
    // must not run the loop itself (it would run it until the training ends, which would then
    // never happen), so its copy returns at once.
    rayon::spawn_broadcast(move |context| {
        if Some(context.index()) != me {
            stay_awake(&flag);
        }
    });
    Awake { stop }
}

/// Runs the pool's queued work as it comes, until `stop`.
fn stay_awake(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {}
            // Nothing queued: let another thread have this core for a moment rather than
            // spin on it, without sleeping.
            Some(rayon::Yield::Idle) => std::thread::yield_now(),
            // Not on a worker: no work to run.
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Idle workers spin only where each has a core: never alone, never past the cores.
    #[test]
    fn workers_spin_only_on_cores_of_their_own() {
        assert!(!spin_pays(1, 2));
        assert!(spin_pays(2, 2));
        assert!(!spin_pays(3, 2));
        assert!(!spin_pays(16, 2));
        assert!(spin_pays(16, 16));
        assert!(!spin_pays(2, 1));
    }

    /// The work runs on the pool, of the size asked for, whether kept awake or not.
    #[test]
    fn work_runs_on_a_pool_of_the_threads_asked_for() {
        for threads in [1, 2, 5] {
            for awake in [false, true] {
                let (index, count) = run_on_threads(threads, awake, || {
                    (rayon::current_thread_index(), rayon::current_num_threads())
                })
                .unwrap();
                assert!(index.is_some_and(|i| i < threads), "{threads}: {index:?}");
                assert_eq!(count, threads);
            }
        }
    }

    /// The awake worker runs the work the other worker queues, and returns once stopped.
    #[test]
    fn the_awake_worker_takes_queued_work_and_stops_when_told() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = mpsc::channel();
        let (start, started) = mpsc::channel();
        let flag = stop.clone();
        pool.spawn_broadcast(move |context| {
            if context.index() == 1 {
                start.send(()).unwrap();
                stay_awake(&flag);
                done.send(()).unwrap();
            }
        });
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the broadcast did not start");
        // Worker 1 is in `stay_awake` from here until `stop`, so whatever runs on it meanwhile
        // (the installed closure, or halves it took from worker 0) it took as queued work.
        let ran_on = pool.install(|| {
            let mut ran_on = vec![rayon::current_thread_index()];
            for _ in 0..200 {
                let (_, b) = rayon::join(
                    || std::thread::sleep(Duration::from_micros(200)),
                    rayon::current_thread_index,
                );
                ran_on.push(b);
            }
            ran_on
        });
        assert!(ran_on.contains(&Some(1)), "nothing ran on the awake worker");
        assert!(finished.try_recv().is_err(), "stopped before it was told");
        stop.store(true, Ordering::Release);
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the awake worker did not stop");
    }
}
