//! Requests in flight per key: a semaphore whose permit lives as long as the response body.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` requests of one key in flight, streams included. Never waits: a request that
/// finds no free slot is refused at once.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
    max: u64,
}

impl InFlight {
    /// `None` when `max` is 0 (unlimited). Values beyond tokio's maximum are capped there.
    pub(crate) fn new(max: u64) -> Option<Self> {
        if max == 0 {
            return None;
        }
        let permits = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Some(Self {
            slots: Arc::new(Semaphore::new(permits)),
            max,
        })
    }

    /// A slot, released when the permit is dropped; `None` when all are taken.
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Free slots right now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_means_unlimited() {
        assert!(InFlight::new(0).is_none());
    }

    #[test]
    fn slots_come_back_on_drop() {
        let in_flight = InFlight::new(2).unwrap();
        let a = in_flight.try_enter().unwrap();
        let b = in_flight.try_enter().unwrap();
        assert!(in_flight.try_enter().is_none());
        drop(a);
        let c = in_flight.try_enter().unwrap();
        drop((b, c));
        assert_eq!(in_flight.free(), 2);
    }

    proptest! {
        /// Over any sequence of enters and leaves: never more than `max` held, a free slot is
        /// never refused, and every slot comes back once all permits are dropped.
        #[test]
        fn never_more_than_max_in_flight(
            max in 1u64..8,
            ops in proptest::collection::vec(any::<(bool, prop::sample::Index)>(), 0..200),
        ) {
            let in_flight = InFlight::new(max).unwrap();
            let mut held = Vec::new();
            for (enter, which) in ops {
                if enter {
                    let got = in_flight.try_enter();
                    prop_assert_eq!(got.is_some(), (held.len() as u64) < max);
                    held.extend(got);
                } else if !held.is_empty() {
                    drop(held.swap_remove(which.index(held.len())));
                }
                prop_assert!(held.len() as u64 <= max);
                prop_assert_eq!(in_flight.free() + held.len(), max as usize);
            }
            drop(held);
            prop_assert_eq!(in_flight.free(), max as usize);
        }
    }
}
