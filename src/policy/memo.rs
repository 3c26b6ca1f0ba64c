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

use super::action::Action;

/// How many `provider` texts a policy remembers: a few client configurations per key.
const SLOTS: usize = 4;

/// A longer `provider` text is merged afresh each time rather than kept.
const MAX_TEXT: usize = 1024;

/// What the quiet merge made of a client's `provider`, shared: a request that recalls it
/// takes references, not copies.
#[derive(Clone)]
pub(crate) struct Merge {
    /// The written `provider`, raw JSON; `None`: the client's stands as sent.
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) only: Arc<[String]>,
    pub(crate) ignore: Arc<[String]>,
    /// The rewrites, as the quiet merge records them (rule, no detail).
    pub(crate) actions: Arc<[Action]>,
}

/// One remembered merge, by what the client sent.
struct Remembered {
    /// The raw text the client sent (`None`: no `provider`).
    client: Option<Box<str>>,
    tier_endpoints: bool,
    merge: Merge,
}

/// Without the client's text: a policy's debug output holds no request content.
impl fmt::Debug for Remembered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remembered")
            .field("client_bytes", &self.client.as_deref().map(str::len))
            .field("tier_endpoints", &self.tier_endpoints)
            .field("rewrites", &self.merge.actions.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(crate) struct MergeMemo {
    slots: [ArcSwapOption<Remembered>; SLOTS],
    next: AtomicUsize,
}

impl MergeMemo {
    /// What was remembered for this `provider` text, if anything.
    pub(crate) fn recall(&self, client: Option<&str>, tier_endpoints: bool) -> Option<Merge> {
        self.slots.iter().find_map(|slot| {
            let guard = slot.load();
            guard
                .as_deref()
                .filter(|r| r.tier_endpoints == tier_endpoints && r.client.as_deref() == client)
                .map(|r| r.merge.clone())
        })
    }

    /// Keeps `merge` for `client` (unless that text is too long to keep), in place of the
    /// oldest.
    pub(crate) fn remember(&self, client: Option<&str>, tier_endpoints: bool, merge: &Merge) {
        if client.map_or(0, str::len) > MAX_TEXT {
            return;
        }
        let remembered = Remembered {
            client: client.map(Box::from),
            tier_endpoints,
            merge: merge.clone(),
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
        let merge = Merge {
            provider: None,
            only: Arc::from([]),
            ignore: Arc::from([]),
            actions: Arc::from([]),
        };
        memo.remember(Some(r#"{"sort":"secret-ish"}"#), false, &merge);
        let printed = format!("{memo:?}");
        assert!(printed.contains("client_bytes: Some(21)"), "{printed}");
        assert!(!printed.contains("secret-ish"), "{printed}");
        assert!(memo
            .recall(Some(r#"{"sort":"secret-ish"}"#), false)
            .is_some());
        assert!(memo
            .recall(Some(r#"{"sort":"secret-ish"}"#), true)
            .is_none());
    }
}
