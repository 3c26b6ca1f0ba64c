//! The last few provider merges of a policy, by the `provider` text the client sent.
//!
//! A client sends the same `provider` object (its SDK's settings) with every request, and the
//! quiet merge is a pure function of that text, the compiled policy and whether the request
//! can reach tier endpoints. Remembering its outcome spares a request the parse, the merge
//! and the write (~18k instructions and ~25 allocations, a sixth of the gateway's own work
//! per request). Only quiet merges that let the request through are remembered: explained
//! ones render details, and refusals are rare and explain themselves.
//!
//! Lock-free: each slot is an `ArcSwapOption`, read without a shared write; a miss replaces
//! the slots in turn. A policy that is rebuilt (a reload) starts with an empty memo.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde_json::value::RawValue;

use super::action::Action;

/// How many `provider` texts a policy remembers: a few client configurations per key.
const SLOTS: usize = 4;

/// A longer `provider` text is merged afresh each time rather than kept.
const MAX_TEXT: usize = 1024;

/// What the quiet merge made of one client `provider`.
pub(crate) struct Remembered {
    /// The raw text the client sent (`None`: no `provider`).
    client: Option<Box<str>>,
    tier_endpoints: bool,
    /// The written `provider`; `None`: the client's stands as sent.
    pub(crate) provider: Option<Box<RawValue>>,
    pub(crate) only: Vec<String>,
    pub(crate) ignore: Vec<String>,
    /// The rewrites, as the quiet merge records them (rule, no detail).
    pub(crate) actions: Vec<Action>,
}

/// Without the client's text: a policy's debug output holds no request content.
impl fmt::Debug for Remembered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remembered")
            .field("client_bytes", &self.client.as_deref().map(str::len))
            .field("tier_endpoints", &self.tier_endpoints)
            .field("rewrites", &self.actions.len())
            .finish_non_exhaustive()
    }
}

/// A merge's outcome as [`MergeMemo::remember`] takes it, borrowed: it is copied only when kept.
pub(crate) struct MergeOutcome<'a> {
    pub(crate) provider: Option<&'a RawValue>,
    pub(crate) only: &'a [String],
    pub(crate) ignore: &'a [String],
    pub(crate) actions: &'a [Action],
}

#[derive(Debug, Default)]
pub(crate) struct MergeMemo {
    slots: [ArcSwapOption<Remembered>; SLOTS],
    next: AtomicUsize,
}

impl MergeMemo {
    /// `read` applied to what was remembered for this `provider` text, if anything.
    pub(crate) fn recall<T>(
        &self,
        client: Option<&str>,
        tier_endpoints: bool,
        read: impl FnOnce(&Remembered) -> T,
    ) -> Option<T> {
        for slot in &self.slots {
            let guard = slot.load();
            if let Some(remembered) = guard.as_deref() {
                if remembered.tier_endpoints == tier_endpoints
                    && remembered.client.as_deref() == client
                {
                    return Some(read(remembered));
                }
            }
        }
        None
    }

    /// Keeps `outcome` for `client` (unless that text is too long to keep), in place of the
    /// oldest.
    pub(crate) fn remember(
        &self,
        client: Option<&str>,
        tier_endpoints: bool,
        outcome: MergeOutcome,
    ) {
        if client.map_or(0, str::len) > MAX_TEXT {
            return;
        }
        let remembered = Remembered {
            client: client.map(Box::from),
            tier_endpoints,
            provider: outcome.provider.map(ToOwned::to_owned),
            only: outcome.only.to_vec(),
            ignore: outcome.ignore.to_vec(),
            actions: outcome.actions.to_vec(),
        };
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % SLOTS;
        self.slots[slot].store(Some(Arc::new(remembered)));
    }
}

/// A copy of a policy starts with nothing remembered.
impl Clone for MergeMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_client_text() {
        let memo = MergeMemo::default();
        let outcome = MergeOutcome {
            provider: None,
            only: &[],
            ignore: &[],
            actions: &[],
        };
        memo.remember(Some(r#"{"sort":"secret-ish"}"#), false, outcome);
        let printed = format!("{memo:?}");
        assert!(printed.contains("client_bytes: Some(21)"), "{printed}");
        assert!(!printed.contains("secret-ish"), "{printed}");
        assert_eq!(
            memo.recall(Some(r#"{"sort":"secret-ish"}"#), false, |_| ()),
            Some(())
        );
        assert_eq!(
            memo.recall(Some(r#"{"sort":"secret-ish"}"#), true, |_| ()),
            None
        );
    }
}
