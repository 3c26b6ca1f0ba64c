//! The I/O threads: one single-threaded tokio runtime per thread, each serving the connections
//! it is handed from the first byte to close.
//!
//! A connection never changes thread, and neither does anything it starts: its upstream
//! connections (each thread has its own pool, see [`current`]), its timers, its response body.
//! A work-stealing runtime moved those between threads and spent much of a request's CPU on
//! the cross-thread wake-ups (BENCHMARKS.md has the measurement). This is the shape nginx's
//! workers and pingora's runtimes have:
//! no stealing, work balanced per connection instead, by handing each new one to the thread
//! serving the fewest.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the I/O thread running this code, or `None` outside them (the acceptor, tests).
pub(crate) fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Work for an I/O thread: called on that thread, inside its runtime (so sockets it registers
/// belong to that thread's reactor); the future it returns is spawned there.
pub(crate) type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The running I/O threads. Dropping this closes their queues: each thread then drops its
/// runtime, cutting whatever is still open on it, and exits.
#[derive(Debug)]
pub struct Workers {
    lanes: Vec<Lane>,
}

#[derive(Debug)]
struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs handed to this thread that have not finished (open connections).
    open: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `count` threads (at least one), named `orgate-io-N`.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut lanes = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, queue) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            let finished = open.clone();
            std::thread::Builder::new()
                .name(format!("orgate-io-{index}"))
                .spawn(move || {
                    CURRENT.with(|current| current.set(Some(index)));
                    runtime.block_on(run(queue, finished));
                })?;
            lanes.push(Lane { jobs, open });
        }
        Ok(Self { lanes })
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Hands `job` to the thread with the fewest unfinished jobs (the lowest index on a tie).
    /// Connections differ in length (a request, a ten-minute stream), so counting open ones
    /// balances better than taking turns.
    pub fn dispatch(&self, job: Job) {
        let Some(lane) = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.open.load(Ordering::Relaxed))
        else {
            return;
        };
        lane.open.fetch_add(1, Ordering::Relaxed);
        if lane.jobs.send(job).is_err() {
            // Only if the thread is gone, which nothing but the process ending does.
            lane.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("an I/O thread has stopped; connection dropped");
        }
    }

    /// Unfinished jobs per thread, for tests and diagnostics.
    pub fn open_per_thread(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|lane| lane.open.load(Ordering::Relaxed))
            .collect()
    }
}

/// An I/O thread's loop: spawn each job, until the queue closes.
async fn run(mut queue: mpsc::UnboundedReceiver<Job>, open: Arc<AtomicUsize>) {
    while let Some(job) = queue.recv().await {
        let work = job();
        let open = open.clone();
        tokio::spawn(async move {
            let _done = Finished(open);
            work.await;
        });
    }
}

/// Counts a job as finished when its task ends, however it ends (done, cancelled, panicked).
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `T` for each I/O thread and one more shared by every other thread (the acceptor, tests):
/// for things that belong to the runtime that made them, like an upstream connection pool,
/// whose tasks would otherwise wake another thread on every use.
#[derive(Debug)]
pub struct PerThread<T>(Box<[T]>);

impl<T> PerThread<T> {
    /// `make` is called once per slot: `io_threads` + 1 times; the first error is returned.
    pub fn try_new<E>(
        io_threads: usize,
        mut make: impl FnMut() -> Result<T, E>,
    ) -> Result<Self, E> {
        (0..=io_threads)
            .map(|_| make())
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The calling thread's: its I/O thread's, or the shared last one. An I/O thread beyond
    /// the slots (a reload changed `server.workers`, which takes effect at restart) shares the
    /// last one too.
    pub fn get(&self) -> &T {
        let last = self.0.len() - 1;
        &self.0[current().map_or(last, |i| i.min(last))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(f: impl Future<Output = ()> + Send + 'static) -> Job {
        Box::new(move || Box::pin(f))
    }

    /// Polls `condition` until it holds or two seconds pass.
    async fn eventually(condition: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        condition()
    }

    #[tokio::test]
    async fn jobs_run_on_the_io_threads_and_go_to_the_least_loaded() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let (ran_on, mut ran) = mpsc::unbounded_channel();
        let (release, hold) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let ran_on = ran_on.clone();
            let mut hold = hold.clone();
            workers.dispatch(job(async move {
                ran_on.send(current()).unwrap();
                let _ = hold.wait_for(|released| *released).await;
            }));
        }
        let mut threads = Vec::new();
        for _ in 0..4 {
            threads.push(ran.recv().await.unwrap());
        }
        // Each went to the thread with fewer open jobs: two each.
        threads.sort();
        assert_eq!(threads, [Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(workers.open_per_thread(), [2, 2]);
        release.send(true).unwrap();
        assert!(eventually(|| workers.open_per_thread() == [0, 0]).await);
        assert_eq!(
            current(),
            None,
            "the test's own thread is not an I/O thread"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_counted_finished_and_the_thread_keeps_serving() {
        let workers = Workers::start(1).unwrap();
        workers.dispatch(job(async { panic!("a bug in one connection") }));
        assert!(eventually(|| workers.open_per_thread() == [0]).await);
        let (done, finished) = tokio::sync::oneshot::channel();
        workers.dispatch(job(async move {
            let _ = done.send(current());
        }));
        assert_eq!(finished.await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn each_io_thread_gets_its_own_slot_and_others_share_the_last() {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slot = || Ok::<_, std::convert::Infallible>(next.fetch_add(1, Ordering::Relaxed));
        let slots = Arc::new(PerThread::try_new(2, slot).unwrap());
        assert_eq!(*slots.get(), 2, "outside the I/O threads: the last slot");
        let workers = Workers::start(3).unwrap();
        let (seen, mut got) = mpsc::unbounded_channel();
        // Jobs held open until the end, so that each goes to a thread with none.
        let (_release, hold) = tokio::sync::watch::channel(());
        for _ in 0..3 {
            let (slots, seen, mut hold) = (slots.clone(), seen.clone(), hold.clone());
            workers.dispatch(job(async move {
                seen.send((current(), *slots.get())).unwrap();
                let _ = hold.changed().await;
            }));
        }
        let mut pairs = Vec::new();
        for _ in 0..3 {
            pairs.push(got.recv().await.unwrap());
        }
        pairs.sort();
        // Thread 2 has no slot of its own (3 threads, 2 slots + 1): it shares the last.
        assert_eq!(pairs, [(Some(0), 0), (Some(1), 1), (Some(2), 2)]);
    }
}
