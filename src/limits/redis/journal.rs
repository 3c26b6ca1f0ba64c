//! The charges Redis has not taken yet: a bounded journal, coalesced per key id and window,
//! handed to Redis in batches that each apply once.
//!
//! Pure bookkeeping, no I/O (the `ledger` does that), so its promises are tested on their own:
//! - coalescing: tokens per (key id, UTC minute), spend per (key id, UTC day). Both are exact:
//!   the script charges a day's micro-dollars to that day and its month, and a minute's tokens
//!   to the bucket at the latest second they were charged.
//! - the bound: at most [`BOUND`] (key id, window) entries. A charge to an entry already held
//!   always lands; one that needs a new entry beyond the bound is dropped and counted (the
//!   oldest are kept: they are the ones furthest behind).
//! - applied once: a batch carries its writer's id and a sequence number; the script applies a
//!   batch only if its number is above the last one it applied for that writer, so a batch
//!   sent again after a lost reply is not counted twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most (key id, window) entries kept; about 100 bytes each in memory.
pub(super) const BOUND: usize = 100_000;
/// The most entries one batch (one atomic script call) takes.
pub(super) const BATCH: usize = 4096;

/// Where a charge lands: a key id's token bucket in one minute, or its spend in one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct Slot {
    pub(super) key: String,
    pub(super) window: Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Window {
    /// Tokens, by UTC minute (Unix seconds / 60).
    Minute(u64),
    /// Micro-dollars, by UTC day (Unix seconds / 86400).
    Day(u64),
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Amount {
    /// Tokens (a minute) or micro-dollars (a day).
    pub(super) amount: u64,
    /// The key's `tokens_per_minute` when last charged (a minute's entry; 0 for a day's).
    pub(super) per_minute: u64,
    /// The latest Unix second charged into it.
    pub(super) at: u64,
}

/// One atomic step for the script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Batch {
    /// The process that formed it (random per process start, so numbers never repeat).
    pub(super) writer: String,
    /// Above the writer's previous batch.
    pub(super) seq: u64,
    pub(super) entries: Vec<(Slot, Amount)>,
}

/// A charge, as the account hands it over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Charge<'a> {
    pub(super) key: &'a str,
    pub(super) tokens: u64,
    pub(super) per_minute: u64,
    pub(super) micros: u64,
    /// Unix seconds.
    pub(super) at: u64,
}

#[derive(Debug)]
pub(super) struct Journal {
    writer: String,
    next_seq: u64,
    /// Sent (perhaps more than once) and not yet confirmed.
    batch: Option<Batch>,
    /// Not sent yet.
    open: BTreeMap<Slot, Amount>,
    bound: usize,
}

/// The journal as saved in `limits.state_dir`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Saved {
    version: u32,
    batch: Option<Batch>,
    open: Vec<(Slot, Amount)>,
}

impl Journal {
    pub(super) fn new(writer: String, bound: usize) -> Self {
        Self {
            writer,
            next_seq: 1,
            batch: None,
            open: BTreeMap::new(),
            bound,
        }
    }

    /// A journal holding what `saved` held; new batches are this `writer`'s. A saved batch
    /// keeps its own writer and number, so sending it again cannot double it.
    pub(super) fn restore(writer: String, bound: usize, saved: Saved) -> Self {
        let mut journal = Self::new(writer, bound);
        journal.batch = saved.batch;
        journal.open = saved.open.into_iter().collect();
        journal
    }

    pub(super) fn saved(&self) -> Saved {
        Saved {
            version: 1,
            batch: self.batch.clone(),
            open: self.open.iter().map(|(s, a)| (s.clone(), *a)).collect(),
        }
    }

    /// Entries held, sent or not.
    pub(super) fn len(&self) -> usize {
        self.open.len() + self.batch.as_ref().map_or(0, |b| b.entries.len())
    }

    /// Adds `charge`; returns how many of its parts (tokens, spend) were dropped at the bound.
    pub(super) fn record(&mut self, charge: Charge<'_>) -> u64 {
        let mut dropped = 0;
        if charge.tokens > 0 && charge.per_minute > 0 {
            let window = Window::Minute(charge.at / 60);
            dropped += u64::from(!self.add(
                charge.key,
                window,
                charge.tokens,
                charge.per_minute,
                charge.at,
            ));
        }
        if charge.micros > 0 {
            let window = Window::Day(charge.at / 86_400);
            dropped += u64::from(!self.add(charge.key, window, charge.micros, 0, charge.at));
        }
        dropped
    }

    /// Whether it landed.
    fn add(&mut self, key: &str, window: Window, amount: u64, per_minute: u64, at: u64) -> bool {
        let slot = Slot {
            key: key.to_owned(),
            window,
        };
        if let Some(held) = self.open.get_mut(&slot) {
            held.amount = held.amount.saturating_add(amount);
            held.per_minute = per_minute;
            held.at = held.at.max(at);
            return true;
        }
        if self.len() >= self.bound {
            return false;
        }
        self.open.insert(
            slot,
            Amount {
                amount,
                per_minute,
                at,
            },
        );
        true
    }

    /// The batch to send: the one not yet confirmed, else the next [`BATCH`] open entries.
    pub(super) fn batch(&mut self) -> Option<&Batch> {
        if self.batch.is_none() && !self.open.is_empty() {
            let mut entries = Vec::with_capacity(self.open.len().min(BATCH));
            while entries.len() < BATCH {
                let Some(entry) = self.open.pop_first() else {
                    break;
                };
                entries.push(entry);
            }
            self.batch = Some(Batch {
                writer: self.writer.clone(),
                seq: self.next_seq,
                entries,
            });
            self.next_seq += 1;
        }
        self.batch.as_ref()
    }

    /// Redis has the batch `(writer, seq)` (applied now or before): forgets it; returns how
    /// many entries it held.
    pub(super) fn applied(&mut self, writer: &str, seq: u64) -> usize {
        match &self.batch {
            Some(b) if b.writer == writer && b.seq == seq => {
                self.batch.take().map_or(0, |b| b.entries.len())
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn charge(key: &str, tokens: u64, micros: u64, at: u64) -> Charge<'_> {
        Charge {
            key,
            tokens,
            per_minute: 1000,
            micros,
            at,
        }
    }

    /// What the script does with batches: per writer, the last number applied; per slot, the
    /// sum.
    #[derive(Default)]
    struct Server {
        last: HashMap<String, u64>,
        totals: BTreeMap<Slot, u64>,
    }

    impl Server {
        fn apply(&mut self, batch: &Batch) {
            let last = self.last.entry(batch.writer.clone()).or_default();
            if batch.seq <= *last {
                return;
            }
            *last = batch.seq;
            for (slot, amount) in &batch.entries {
                *self.totals.entry(slot.clone()).or_default() += amount.amount;
            }
        }
    }

    fn direct(charges: &[(u8, u64, u64, u64)]) -> BTreeMap<Slot, u64> {
        let mut totals = BTreeMap::new();
        for &(key, tokens, micros, at) in charges {
            let key = format!("k{key}");
            if tokens > 0 {
                *totals
                    .entry(Slot {
                        key: key.clone(),
                        window: Window::Minute(at / 60),
                    })
                    .or_default() += tokens;
            }
            if micros > 0 {
                *totals
                    .entry(Slot {
                        key,
                        window: Window::Day(at / 86_400),
                    })
                    .or_default() += micros;
            }
        }
        totals
    }

    #[derive(Debug, Clone, Copy)]
    enum Flush {
        /// Sent and confirmed.
        Ok,
        /// Applied by the server, the reply lost.
        ReplyLost,
        /// Never reached the server.
        Failed,
        /// The process restarted from its saved journal.
        Restart,
    }

    fn flush() -> impl Strategy<Value = Flush> {
        prop_oneof![
            Just(Flush::Ok),
            Just(Flush::ReplyLost),
            Just(Flush::Failed),
            Just(Flush::Restart)
        ]
    }

    proptest! {
        /// Whatever fails in between (lost replies, unreachable server, restarts from the
        /// saved journal), what the server ends with equals the charges applied directly:
        /// nothing lost, nothing doubled.
        #[test]
        fn replaying_equals_charging_directly(
            steps in prop::collection::vec(
                (prop::collection::vec((0u8..4, 0u64..500, 0u64..5_000, 0u64..400_000), 0..6), flush()),
                0..40,
            )
        ) {
            let mut journal = Journal::new("w0".into(), BOUND);
            let mut server = Server::default();
            let mut all = Vec::new();
            let mut restarts = 0;
            for (charges, outcome) in steps {
                for &(key, tokens, micros, at) in &charges {
                    let key = format!("k{key}");
                    prop_assert_eq!(journal.record(charge(&key, tokens, micros, at)), 0);
                }
                all.extend(charges);
                match outcome {
                    Flush::Ok | Flush::ReplyLost => {
                        if let Some(batch) = journal.batch().cloned() {
                            server.apply(&batch);
                            if matches!(outcome, Flush::Ok) {
                                journal.applied(&batch.writer, batch.seq);
                            }
                        }
                    }
                    Flush::Failed => { journal.batch(); }
                    Flush::Restart => {
                        restarts += 1;
                        let json = serde_json::to_vec(&journal.saved()).unwrap();
                        let saved: Saved = serde_json::from_slice(&json).unwrap();
                        journal = Journal::restore(format!("w{restarts}"), BOUND, saved);
                    }
                }
            }
            while let Some(batch) = journal.batch().cloned() {
                server.apply(&batch);
                journal.applied(&batch.writer, batch.seq);
            }
            prop_assert_eq!(journal.len(), 0);
            prop_assert_eq!(server.totals, direct(&all));
        }
    }

    #[test]
    fn charges_to_held_entries_land_beyond_the_bound_new_ones_are_counted() {
        let mut journal = Journal::new("w".into(), 2);
        assert_eq!(journal.record(charge("a", 10, 5, 0)), 0, "two entries");
        assert_eq!(journal.record(charge("a", 10, 5, 30)), 0, "the same two");
        assert_eq!(journal.record(charge("b", 10, 5, 0)), 2, "no room for b");
        assert_eq!(journal.record(charge("a", 10, 0, 61)), 1, "a new minute");
        assert_eq!(journal.len(), 2);
        let batch = journal.batch().unwrap().clone();
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.entries[0].1.amount, 20, "a's tokens, coalesced");
        assert_eq!(batch.entries[0].1.at, 30, "the latest second");
        assert_eq!(
            journal.record(charge("c", 0, 1, 0)),
            1,
            "sent but unconfirmed counts"
        );
        assert_eq!(journal.applied("w", batch.seq), 2);
        assert_eq!(journal.record(charge("c", 0, 1, 0)), 0, "room again");
    }

    #[test]
    fn batches_are_numbered_and_a_saved_one_keeps_its_writer() {
        let mut journal = Journal::new("w1".into(), BOUND);
        for i in 0..(BATCH as u64 + 1) {
            journal.record(charge("a", 1, 0, i * 60));
        }
        let first = journal.batch().unwrap().clone();
        assert_eq!((first.seq, first.entries.len()), (1, BATCH));
        assert_eq!(
            journal.batch().unwrap().seq,
            1,
            "unconfirmed: the same batch again"
        );
        let mut restored = Journal::restore("w2".into(), BOUND, journal.saved());
        assert_eq!(restored.batch().unwrap().writer, "w1");
        restored.applied("w1", 1);
        let second = restored.batch().unwrap();
        assert_eq!((second.writer.as_str(), second.entries.len()), ("w2", 1));
    }
}
