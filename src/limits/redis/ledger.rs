//! Where every charge goes on its way to Redis: the [`Journal`], its file in
//! `limits.state_dir`, and the task that hands it to Redis.
//!
//! Every charge is journalled first (queued without a lock, recorded by whoever next reads the
//! journal: the task, `persist`, `drain`) and applied by one task, one batch (one atomic script
//! call) at a time, so a charge Redis cannot take now is kept, not lost: while Redis is away the
//! task retries every [`RETRY`] (sooner when charges come, at most one attempt per [`SAVE_GAP`])
//! and the journal grows, within its bound; when Redis answers again the journal drains. With
//! `state_dir`, the journal is written to `redis-journal.json` after each failed attempt, every
//! few seconds and at shutdown (`persist`), so a restart during an outage keeps it too (a crash
//! loses at most the last [`SAVE_GAP`]'s charges); it is loaded at start and drained like any
//! other. One file per replica: replicas must not share a `state_dir`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use super::connection::Connection;
use super::journal::{Batch, Charge, Journal, Saved, Window, BOUND};
use super::keys::KeyNames;
use crate::limits::spend::unix_secs;
use crate::metrics::Metrics;

const FILE_NAME: &str = "redis-journal.json";
/// How soon a failed batch is tried again when no new charge comes first.
const RETRY: Duration = Duration::from_millis(500);
/// While Redis is away, the least time between two attempts (each followed by a save with
/// `state_dir`): a crash loses at most the charges of this long.
const SAVE_GAP: Duration = Duration::from_millis(100);
/// How long Redis remembers the last batch a writer applied: far longer than any retry of a
/// running process (a saved batch keeps the writer of the process that formed it).
const MARK_TTL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug)]
pub(super) struct Ledger {
    /// Where a response's charge goes: a lock-free queue, so that the response path never
    /// waits for the journal's lock. The task (and `persist`, `drain`) move its charges into
    /// the journal before they read it.
    incoming: UnboundedSender<Pending>,
    journal: Mutex<Book>,
    /// Wakes the task: a charge arrived.
    wake: Arc<Notify>,
    /// The connection batches go to; a reload naming another Redis swaps it.
    connection: ArcSwap<Connection>,
    file: Option<PathBuf>,
    /// Changed since last written to `file`.
    dirty: AtomicBool,
    /// Charges waited for Redis since the journal was last empty: what drains is "replayed".
    behind: AtomicBool,
    /// Charges are being dropped at the bound (warned once per overflow).
    overflowing: AtomicBool,
    started: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Ledger {
    /// The ledger for `connection`, holding what `state_dir`'s journal file held. Its task
    /// starts now if there is a runtime, else with the first charge.
    pub(super) fn new(connection: Arc<Connection>, state_dir: &str) -> Arc<Self> {
        let writer = new_writer_id();
        let file = (!state_dir.is_empty()).then(|| Path::new(state_dir).join(FILE_NAME));
        let journal = match file.as_deref().and_then(load) {
            Some(saved) => Journal::restore(writer, BOUND, saved),
            None => Journal::new(writer, BOUND),
        };
        let metrics = Arc::clone(connection.metrics());
        let held = journal.len();
        if held > 0 {
            tracing::info!(
                entries = held,
                "limits journal loaded: charges Redis has not taken yet are applied when it answers"
            );
        }
        metrics.limits_journal_entries(held);
        let (incoming, pending) = unbounded_channel();
        let ledger = Arc::new(Self {
            incoming,
            journal: Mutex::new(Book { journal, pending }),
            wake: Arc::new(Notify::new()),
            connection: ArcSwap::new(connection),
            file,
            dirty: AtomicBool::new(false),
            behind: AtomicBool::new(held > 0),
            overflowing: AtomicBool::new(false),
            started: AtomicBool::new(false),
            metrics,
        });
        ledger.start();
        ledger
    }

    /// Batches go to `connection` from now on.
    pub(super) fn use_connection(&self, connection: Arc<Connection>) {
        self.connection.store(connection);
        self.wake.notify_one();
    }

    /// The journal, with every charge made until now recorded in it. Taken by the task,
    /// `persist` and `drain`, never on a response's path.
    fn journal(&self) -> MutexGuard<'_, Book> {
        // Every critical section leaves the journal whole: a panic elsewhere cannot spoil it.
        let mut book = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (recorded, dropped) = book.take_pending();
        if recorded > 0 {
            self.metrics.limits_journal_entries(book.journal.len());
        }
        if dropped > 0 {
            self.metrics.limits_journal_dropped(dropped);
            if !self.overflowing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    bound = BOUND,
                    "limits journal full: charges to new (key, window) entries are dropped \
                     (counted in orgate_limits_journal_dropped_total) until Redis takes it"
                );
            }
        }
        book
    }

    /// Queues a charge of `key` for the journal and wakes the task. Never waits for Redis nor
    /// for a lock.
    pub(super) fn charge(
        self: &Arc<Self>,
        key: &Arc<str>,
        tokens: u64,
        per_minute: u64,
        micros: u64,
    ) {
        let charge = Pending {
            key: Arc::clone(key),
            tokens,
            per_minute,
            micros,
            at: unix_secs(SystemTime::now()),
        };
        // The receiver lives as long as the ledger: sending cannot fail while `self` does.
        let _ = self.incoming.send(charge);
        self.dirty.store(true, Ordering::Relaxed);
        self.start();
        self.wake.notify_one();
    }

    /// Starts the task once, if there is a runtime to run it.
    fn start(self: &Arc<Self>) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.started.swap(true, Ordering::Relaxed) {
            runtime.spawn(run(Arc::downgrade(self), Arc::clone(&self.wake)));
        }
    }

    /// Sends the pending batch once. `Some(true)`: Redis has it; `Some(false)`: it failed;
    /// `None`: nothing to send.
    async fn flush(&self) -> Option<bool> {
        let batch = self.journal().journal.batch().cloned()?;
        let connection = self.connection.load_full();
        let mark = format!("orgate:journal:{}", batch.writer);
        let mut invocation = connection.invocation();
        invocation
            .key(&mark)
            .arg("replay")
            .arg(batch.seq)
            .arg(super::connection::millis(MARK_TTL));
        for (slot, amount) in &batch.entries {
            let names = KeyNames::new(&slot.key);
            let (kind, key) = match slot.window {
                Window::Minute(_) => ("m", names.tokens),
                Window::Day(_) => ("d", names.spend),
            };
            invocation
                .key(key)
                .arg(kind)
                .arg(amount.amount)
                .arg(amount.per_minute)
                .arg(amount.at);
        }
        match connection.run::<i64>(&invocation).await {
            Ok(_) => {
                self.applied(&batch);
                Some(true)
            }
            Err(e) => {
                tracing::debug!(error = %e, entries = batch.entries.len(), "journal batch not applied yet");
                self.behind.store(true, Ordering::Relaxed);
                Some(false)
            }
        }
    }

    /// Sends what is journalled until it is all in Redis, Redis fails, or `within` passes:
    /// the last charges of a shutdown. Whether nothing is left.
    pub(super) async fn drain(&self, within: Duration) -> bool {
        let drained = async {
            loop {
                match self.flush().await {
                    Some(true) => {}
                    Some(false) => return false,
                    None => return true,
                }
            }
        };
        tokio::time::timeout(within, drained).await.unwrap_or(false)
    }

    fn applied(&self, batch: &Batch) {
        let (entries, held) = {
            let mut journal = self.journal();
            (
                journal.journal.applied(&batch.writer, batch.seq),
                journal.journal.len(),
            )
        };
        self.dirty.store(true, Ordering::Relaxed);
        self.metrics.limits_journal_entries(held);
        if self.behind.load(Ordering::Relaxed) {
            self.metrics.limits_journal_replayed(entries);
            if held == 0 {
                self.behind.store(false, Ordering::Relaxed);
                tracing::info!(
                    "limits journal drained: every charge made while Redis was away is applied"
                );
            }
        }
        if held == 0 {
            self.overflowing.store(false, Ordering::Relaxed);
        }
    }

    /// Writes the journal to `state_dir` if it changed (atomically: a temporary file, then a
    /// rename). Without `state_dir`, nothing.
    pub(super) fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let saved = self.journal().journal.saved();
        save(path, &saved).inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))
    }
}

/// A charge waiting in the queue for the journal.
#[derive(Debug)]
struct Pending {
    key: Arc<str>,
    tokens: u64,
    per_minute: u64,
    micros: u64,
    /// Unix seconds: when the response reported it, not when the task took it.
    at: u64,
}

/// The journal and the queue's receiving end, under one lock.
#[derive(Debug)]
pub(super) struct Book {
    pub(super) journal: Journal,
    pending: UnboundedReceiver<Pending>,
}

impl Book {
    /// Records every queued charge; how many, and how many the bound dropped.
    fn take_pending(&mut self) -> (usize, u64) {
        let (mut recorded, mut dropped) = (0, 0);
        while let Ok(charge) = self.pending.try_recv() {
            recorded += 1;
            dropped += self.journal.record(Charge {
                key: &charge.key,
                tokens: charge.tokens,
                per_minute: charge.per_minute,
                micros: charge.micros,
                at: charge.at,
            });
        }
        (recorded, dropped)
    }
}

/// The task: sends batches while there are any, waits for a charge (or [`RETRY`] after a
/// failure) when there are not. Ends once the ledger is gone.
async fn run(ledger: Weak<Ledger>, wake: Arc<Notify>) {
    loop {
        let wait = {
            let Some(ledger) = ledger.upgrade() else {
                return;
            };
            match ledger.flush().await {
                Some(true) => continue,
                Some(false) => {
                    // Off the runtime's threads: the write ends with an fsync.
                    let saving = Arc::clone(&ledger);
                    match tokio::task::spawn_blocking(move || saving.persist()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "cannot save the limits journal"),
                        Err(e) => tracing::error!(error = %e, "the limits journal's save failed"),
                    }
                    // At most one attempt (and one save) per SAVE_GAP while Redis is away,
                    // however fast charges come.
                    tokio::time::sleep(SAVE_GAP).await;
                    RETRY - SAVE_GAP
                }
                // Idle: the ledger may be dropped meanwhile; look again now and then.
                None => Duration::from_secs(5),
            }
        };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

/// A random id per process start: a new process never reuses a batch number of an old one.
fn new_writer_id() -> String {
    let mut seed = [0u8; 8];
    // A failed read leaves zeros; the time still tells processes apart.
    let _ = getrandom::fill(&mut seed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}{:x}", hex::encode(seed), nanos & 0xffff_ffff)
}

/// The saved journal; `None` when there is none or it cannot be read (logged).
fn load(path: &Path) -> Option<Saved> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .inspect_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "the limits journal file is unreadable: starting without it");
            })
            .ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the limits journal file: starting without it");
            None
        }
    }
}

fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    crate::limits::store::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_journal_survives_a_restart_through_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().to_str().unwrap();
        let metrics = Arc::new(Metrics::new());
        // Nothing listens on port 1: every batch fails and stays.
        let connection = || {
            Arc::new(
                Connection::new(
                    "redis://127.0.0.1:1".into(),
                    "",
                    Duration::from_millis(50),
                    Arc::clone(&metrics),
                )
                .unwrap(),
            )
        };
        let ledger = Ledger::new(connection(), state_dir);
        let alice = Arc::from("alice");
        ledger.charge(&alice, 100, 1000, 2_500_000);
        ledger.charge(&alice, 0, 1000, 500_000);
        ledger.persist().unwrap();
        drop(ledger);
        let restored = Ledger::new(connection(), state_dir);
        let mut book = restored.journal();
        let journal = &mut book.journal;
        let batch = journal.batch().unwrap();
        let day = batch
            .entries
            .iter()
            .find(|(slot, _)| matches!(slot.window, Window::Day(_)))
            .unwrap();
        assert_eq!(day.1.amount, 3_000_000, "both charges, coalesced");
        assert_eq!(journal.len(), 2);
    }
}
