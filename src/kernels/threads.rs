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

    /// CPU time of the calling thread, in seconds.
    #[cfg(target_os = "linux")]
    fn thread_cpu_seconds() -> f64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: fills in the plain struct it is given.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
            0
        );
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    }

    /// The scheduler's state of this process's thread `tid`: `R` running or runnable, `S`
    /// asleep (waiting), ... (`/proc/self/task/TID/stat`, the field after the name).
    #[cfg(target_os = "linux")]
    fn state_of(tid: i32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').expect("the name in parentheses") + 1..];
        after_name.trim_start().chars().next().unwrap()
    }

    /// While the training thread works alone (Burn's serial bookkeeping, stretched to 0.3 s of
    /// CPU time), the pool's other workers stay runnable only where each has a core: past the
    /// cores they sleep. Checked by the threads' scheduler state, sampled as the work goes: a
    /// worker spinning on `sched_yield` is runnable whether or not it gets a CPU, so a busy
    /// machine changes neither case (its CPU time would: on a loaded machine `sched_yield`
    /// hands the core to others, and a spinning worker used 1–100 ms in 0.3 s). The spinning
    /// case shows that the samples see a spinning worker; on one core there is none to see.
    #[cfg(target_os = "linux")]
    #[test]
    fn idle_workers_sleep_past_the_cores() {
        const WORK: f64 = 0.3;
        let cores = available_cores();
        for threads in [2, cores + 2] {
            let runnable = run_on_threads(threads, true, || {
                let me = rayon::current_thread_index();
                // The other workers' thread ids; the sleeping ones wake for this and sleep again.
                let tids: Vec<i32> = rayon::broadcast(|context| {
                    // SAFETY: gettid has no preconditions.
                    (Some(context.index()) != me).then(|| unsafe { libc::gettid() })
                })
                .into_iter()
                .flatten()
                .collect();
                let mut runnable = vec![0usize; tids.len()];
                let mut samples = 0;
                let start = thread_cpu_seconds();
                let mut next = WORK / 3.0;
                while thread_cpu_seconds() - start < WORK {
                    std::hint::black_box((0..1000u32).sum::<u32>());
                    // From a third of the work on (rayon's workers yield a few dozen times
                    // before they sleep), every 5 ms of CPU time.
                    if thread_cpu_seconds() - start >= next {
                        next += 0.005;
                        samples += 1;
                        for (count, &tid) in runnable.iter_mut().zip(&tids) {
                            *count += usize::from(state_of(tid) == 'R');
                        }
                    }
                }
                (runnable, samples)
            })
            .unwrap();
            let (runnable, samples) = runnable;
            assert_eq!(runnable.len(), threads - 1);
            assert!(samples >= 30, "{samples} samples");
            let case = format!("{threads} threads on {cores} cores: {runnable:?} of {samples}");
            // Stated here, not through `spin_pays`, so that a wrong rule fails.
            if threads <= cores {
                assert!(
                    runnable.iter().all(|&r| r * 2 >= samples),
                    "{case}: an awake worker was asleep"
                );
            } else {
                assert!(
                    runnable.iter().all(|&r| r * 10 <= samples),
                    "{case}: an idle worker stayed runnable"
                );
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
