//! Tokens per minute: an overdraft bucket, debited after the response with the usage it reports.
//!
//! The bucket holds one minute of tokens (`tokens_per_minute`) and refills continuously. It is a
//! GCRA kept in one `AtomicU64`: the time (ns since `start`) at which the bucket is full again.
//! Debiting `n` tokens moves that time `n × 60s / tpm` later, from now if the bucket was full,
//! so a large response can overdraw it. A request is let in while the bucket has room for at
//! least one token; an overdrawn key waits until it has.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};

use futures_util::future::BoxFuture;

use super::headers::LimitStatus;
pub(crate) use super::spend::Spent;

const MINUTE_NS: u64 = 60_000_000_000;

/// Where what a response used is charged: tokens against the token limit, cost against the
/// spend budgets. In memory here; a shared store implements the same.
pub(crate) trait ChargeUsage: Send + Sync + fmt::Debug {
    fn charge(&self, tokens: u64, cost_usd: f64);
    /// What the key spent in the current day and month (`GET /key`); `None` when the store
    /// cannot say.
    fn spent(&self) -> BoxFuture<'_, Option<Spent>>;
}

/// A cheap, cloneable handle on one key's token and spend budgets. It does not hold a
/// concurrency slot, so the stream code can charge whenever the usage arrives, even after the
/// permit was released.
#[derive(Debug, Clone)]
pub struct UsageAccount(Arc<dyn ChargeUsage>);

impl UsageAccount {
    pub(crate) fn new(budget: Arc<dyn ChargeUsage>) -> Self {
        Self(budget)
    }

    /// Charges what a response used (`Usage::tokens` and `Usage::cost`, or an estimate).
    pub fn charge(&self, tokens: u64, cost_usd: f64) {
        self.0.charge(tokens, cost_usd);
    }

    /// What the key spent in the current UTC day and month, if the store can say.
    pub(crate) async fn spent(&self) -> Option<Spent> {
        self.0.spent().await
    }
}

/// One key's tokens-per-minute bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket<C: Clock> {
    /// When the bucket is full again, in ns since `start`; at or before now means full.
    full_at: AtomicU64,
    per_minute: u64,
    clock: C,
    start: C::Instant,
}

/// No room for a token: how long until there is, and the headers' view of the bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokensRefused {
    pub(crate) wait: Duration,
    pub(crate) status: LimitStatus,
}

impl<C: Clock> TokenBucket<C> {
    /// `None` when `per_minute` is 0 (unlimited).
    pub(crate) fn new(per_minute: u64, clock: C) -> Option<Self> {
        if per_minute == 0 {
            return None;
        }
        let start = clock.now();
        Some(Self {
            full_at: AtomicU64::new(0),
            per_minute,
            clock,
            start,
        })
    }

    pub(crate) fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// Whether a request may start: the bucket has room for at least one token. Takes nothing.
    pub(crate) fn room(&self) -> Result<LimitStatus, TokensRefused> {
        let now = self.now_ns();
        let used = self.full_at.load(Ordering::Relaxed).saturating_sub(now);
        let status = self.status(used);
        let allowed = MINUTE_NS - self.cost(1);
        if used <= allowed {
            Ok(status)
        } else {
            Err(TokensRefused {
                wait: Duration::from_nanos(used - allowed),
                status,
            })
        }
    }

    /// Takes `tokens` out of the bucket, overdrawing it if need be.
    pub(crate) fn take(&self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let cost = self.cost(tokens);
        let now = self.now_ns();
        // A CAS loop rather than a lock: concurrent debits of one key all land.
        let _ = self
            .full_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |full_at| {
                Some(full_at.max(now).saturating_add(cost))
            });
    }

    /// The bucket's time for `tokens`, rounded up: `tokens × 60s / tpm`.
    fn cost(&self, tokens: u64) -> u64 {
        let ns = (u128::from(tokens) * u128::from(MINUTE_NS)).div_ceil(u128::from(self.per_minute));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    fn status(&self, used: u64) -> LimitStatus {
        let free = MINUTE_NS.saturating_sub(used);
        let remaining = u128::from(free) * u128::from(self.per_minute) / u128::from(MINUTE_NS);
        LimitStatus {
            limit: self.per_minute,
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset: Duration::from_nanos(used),
        }
    }

    fn now_ns(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }
}

impl<C: Clock> TokenBucket<C> {
    /// Debits what a response used; may overdraw the bucket.
    pub(crate) fn debit(&self, tokens: u64) {
        self.take(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    /// An account that charges only this bucket.
    #[derive(Debug)]
    struct TokensOnly(Arc<TokenBucket<FakeRelativeClock>>);

    impl ChargeUsage for TokensOnly {
        fn charge(&self, tokens: u64, _: f64) {
            self.0.debit(tokens);
        }
        fn spent(&self) -> BoxFuture<'_, Option<Spent>> {
            Box::pin(std::future::ready(None))
        }
    }

    fn bucket(per_minute: u64) -> (Arc<TokenBucket<FakeRelativeClock>>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let bucket = TokenBucket::new(per_minute, clock.clone()).unwrap();
        (Arc::new(bucket), clock)
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(TokenBucket::new(0, FakeRelativeClock::default()).is_none());
    }

    #[test]
    fn an_overdrawn_bucket_refuses_until_it_refills() {
        let (bucket, clock) = bucket(600); // 10 tokens a second
        let status = bucket.room().unwrap();
        assert_eq!((status.limit, status.remaining), (600, 600));
        assert_eq!(status.reset, Duration::ZERO);

        bucket.take(500);
        let status = bucket.room().unwrap();
        assert_eq!(status.remaining, 100);
        assert_eq!(status.reset, Duration::from_secs(50));

        // 600 more: 400 over the bucket, i.e. 40s of debt beyond a full minute.
        bucket.take(600);
        let refused = bucket.room().unwrap_err();
        assert_eq!(refused.status.remaining, 0);
        assert_eq!(refused.wait, Duration::from_millis(50_100));

        clock.advance(Duration::from_millis(50_099));
        assert!(bucket.room().is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(bucket.room().unwrap().remaining, 1);
    }

    #[test]
    fn the_account_debits_the_bucket() {
        let (bucket, _clock) = bucket(60);
        let account = UsageAccount::new(Arc::new(TokensOnly(bucket.clone())));
        account.clone().charge(30, 0.0);
        assert_eq!(bucket.room().unwrap().remaining, 30);
    }

    #[test]
    fn concurrent_debits_all_land() {
        let (bucket, _clock) = bucket(1_000_000);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| bucket.take(100)));
            }
        });
        assert_eq!(bucket.room().unwrap().remaining, 600_000);
    }

    /// The same bucket written the obvious way: free time that refills up to a minute and that
    /// debits can push below zero.
    struct Model {
        free_ns: i128,
        per_minute: u64,
    }

    impl Model {
        fn cost(&self, tokens: u64) -> i128 {
            let ns =
                (u128::from(tokens) * u128::from(MINUTE_NS)).div_ceil(u128::from(self.per_minute));
            i128::try_from(ns).unwrap()
        }
        fn advance(&mut self, ns: u64) {
            self.free_ns = (self.free_ns + i128::from(ns)).min(i128::from(MINUTE_NS));
        }
        fn has_room(&self) -> bool {
            self.free_ns >= self.cost(1)
        }
        fn take(&mut self, tokens: u64) {
            self.free_ns -= self.cost(tokens);
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// About `tokens` worth of refill, give or take a few nanoseconds, so that waits land
        /// near the edges where a bucket has just enough room or just not.
        Wait {
            tokens: u64,
            jitter_ns: u64,
        },
        Request {
            tokens: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..3_000, 0u64..3).prop_map(|(tokens, jitter_ns)| Step::Wait { tokens, jitter_ns }),
            (0u64..3_000).prop_map(|tokens| Step::Request { tokens }),
        ]
    }

    proptest! {
        /// Requests that debit what they used once let in: the bucket lets one in exactly when
        /// the plainly written bucket has room for a token, and at every admission the tokens
        /// debited so far stay below one minute's worth plus the refill since the start.
        #[test]
        fn lets_in_exactly_when_there_is_room(
            per_minute in 1u64..5_000,
            steps in proptest::collection::vec(step(), 1..100),
        ) {
            let (bucket, clock) = bucket(per_minute);
            let mut model = Model { free_ns: i128::from(MINUTE_NS), per_minute };
            let (mut elapsed_ns, mut debited) = (0u128, 0u128);
            for step in steps {
                match step {
                    Step::Wait { tokens, jitter_ns } => {
                        let ns = (tokens * MINUTE_NS / per_minute).saturating_sub(1) + jitter_ns;
                        clock.advance(Duration::from_nanos(ns));
                        model.advance(ns);
                        elapsed_ns += u128::from(ns);
                    }
                    Step::Request { tokens } => {
                        let admitted = bucket.room().is_ok();
                        prop_assert_eq!(admitted, model.has_room());
                        if admitted {
                            let refill = elapsed_ns * u128::from(per_minute) / u128::from(MINUTE_NS);
                            prop_assert!(debited < u128::from(per_minute) + refill);
                            bucket.take(tokens);
                            model.take(tokens);
                            debited += u128::from(tokens);
                        }
                    }
                }
            }
        }
    }
}
