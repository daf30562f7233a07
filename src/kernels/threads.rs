//! Keeping the kernels' second thread awake while a training runs.
//!
//! A training step at batch 32 is a dozen parallel pieces (the products, the sparse kernels,
//! RMSprop) of 50–500 µs each, with Burn's serial bookkeeping between them. A thread outside
//! rayon's pool hands each piece to the pool and sleeps until it is done, and a worker that
//! finds no work sleeps after a few tens of microseconds: every piece then waits for two
//! wake-ups, 50–200 µs each on a virtual machine, as long as the piece itself. So, for the
//! length of a training, the thread that trains becomes one of rayon's workers (it splits work
//! onto its own queue and starts on it, instead of sleeping), and the other worker runs
//! [`stay_awake`]: it takes work the moment it is queued, and yields its core to any other
//! thread while there is none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// While held, rayon's other workers stay awake; dropping it lets them sleep again.
#[derive(Debug)]
pub struct Awake {
    stop: Arc<AtomicBool>,
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// On the process's main thread, before anything else has used rayon: makes this thread a
/// worker of rayon's global pool, and keeps the pool's other workers awake while the result is
/// held. `None`, and nothing changes, anywhere else: on another thread (a test harness, a
/// server), after the pool was built by another thread, with one thread.
pub fn keep_awake() -> Option<Awake> {
    if std::thread::current().name() != Some("main") {
        return None;
    }
    // Fails when the pool already exists; this thread is then a worker only if it built it.
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
    if rayon::current_thread_index().is_none() || rayon::current_num_threads() < 2 {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A broadcast gives each worker its own copy, which no other worker can take: this thread
    // must not pick up the loop itself (it would run it until the training ends, which would
    // then never happen), so its copy returns at once.
    rayon::spawn_broadcast(move |context| {
        if context.index() != 0 {
            stay_awake(&flag);
        }
    });
    Some(Awake { stop })
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

    /// Test threads are not the main thread: rayon is left as it is.
    #[test]
    fn only_the_main_thread_keeps_a_worker_awake() {
        assert!(keep_awake().is_none());
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
