//! Request rate: a GCRA cell per request, with governor's lock-free direct limiter.
//!
//! "`requests_per_minute` with `burst`" means a bucket that holds `burst` requests and refills at
//! `requests_per_minute`: one request every `60s / rpm` on average, and up to `burst` back to
//! back after a quiet spell. Over any span of time `d`, at most `burst + rpm × d / 60s` requests
//! get in. The same limiter with a one-second period serves `global_requests_per_second`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::headers::LimitStatus;

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One request-rate bucket: a key's, or the gateway-wide one.
#[derive(Debug)]
pub(crate) struct RequestRate<C: Clock> {
    limiter: Limiter<C>,
    quota: Quota,
    /// The configured rate per `period` and burst, for messages and for reload's comparison.
    rate: u64,
    configured_burst: u64,
}

/// The period a rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Second,
    Minute,
}

/// A refused cell: how long until one fits again, and the headers' view of the bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateRefused {
    pub(crate) wait: Duration,
    pub(crate) status: LimitStatus,
}

impl<C: Clock> RequestRate<C> {
    /// `rate` per `period` with room for `burst`; `None` when `rate` is 0 (unlimited).
    /// Rates beyond `u32::MAX` are capped there (governor counts cells in `u32`). A burst of 0
    /// with a rate is refused by validation; here it means no bursting (1).
    pub(crate) fn new(rate: u64, configured_burst: u64, period: Period, clock: C) -> Option<Self> {
        let cells = NonZeroU32::new(saturate_u32(rate))?;
        let burst = NonZeroU32::new(saturate_u32(configured_burst)).unwrap_or(NonZeroU32::MIN);
        let quota = match period {
            Period::Second => Quota::per_second(cells),
            Period::Minute => Quota::per_minute(cells),
        }
        .allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock)
                .with_middleware::<StateInformationMiddleware>(),
            quota,
            rate,
            configured_burst,
        })
    }

    /// Takes one cell if the bucket has one. A taken cell cannot be given back.
    pub(crate) fn take(&self) -> Result<LimitStatus, RateRefused> {
        let burst = self.quota.burst_size().get();
        let interval = self.quota.replenish_interval();
        match self.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // The snapshot hides the exact arrival time; a full bucket is at most
                // `burst - remaining` intervals away, which overstates it by less than one.
                let reset = interval * burst.saturating_sub(remaining);
                Ok(self.status(u64::from(remaining), reset))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                // When the next cell fits, the bucket is still `burst - 1` cells from full.
                let reset = wait + interval * burst.saturating_sub(1);
                Err(RateRefused {
                    wait,
                    status: self.status(0, reset),
                })
            }
        }
    }

    fn status(&self, remaining: u64, reset: Duration) -> LimitStatus {
        LimitStatus {
            limit: u64::from(self.quota.burst_size().get()),
            remaining,
            reset,
        }
    }

    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    pub(crate) fn burst(&self) -> u32 {
        self.quota.burst_size().get()
    }

    /// `(rate, burst)` as configured: a reload keeps this limiter when they are unchanged.
    pub(crate) fn settings(&self) -> (u64, u64) {
        (self.rate, self.configured_burst)
    }

    /// Time between two cells at the sustained rate.
    #[cfg(test)]
    pub(crate) fn interval(&self) -> Duration {
        self.quota.replenish_interval()
    }
}

fn saturate_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    fn per_minute(rpm: u64, burst: u64) -> (RequestRate<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = RequestRate::new(rpm, burst, Period::Minute, clock.clone()).unwrap();
        (rate, clock)
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(RequestRate::new(0, 10, Period::Minute, FakeRelativeClock::default()).is_none());
    }

    #[test]
    fn a_burst_then_one_every_interval() {
        let (rate, clock) = per_minute(3, 3);
        assert_eq!(rate.interval(), Duration::from_secs(20));
        let first = rate.take().unwrap();
        assert_eq!((first.limit, first.remaining), (3, 2));
        assert_eq!(first.reset, Duration::from_secs(20));
        rate.take().unwrap();
        let last = rate.take().unwrap();
        assert_eq!((last.remaining, last.reset), (0, Duration::from_secs(60)));

        let refused = rate.take().unwrap_err();
        assert_eq!(refused.wait, Duration::from_secs(20));
        assert_eq!(refused.status.remaining, 0);
        assert_eq!(refused.status.reset, Duration::from_secs(60));

        clock.advance(Duration::from_secs(19));
        assert_eq!(rate.take().unwrap_err().wait, Duration::from_secs(1));
        clock.advance(Duration::from_secs(1));
        assert!(rate.take().is_ok());
        assert!(rate.take().is_err());
    }

    #[test]
    fn a_burst_larger_than_the_rate() {
        let (rate, _clock) = per_minute(1, 5);
        for left in (0..5).rev() {
            assert_eq!(rate.take().unwrap().remaining, left);
        }
        assert_eq!(rate.take().unwrap_err().wait, Duration::from_secs(60));
    }

    #[test]
    fn a_zero_burst_means_no_bursting() {
        let (rate, _clock) = per_minute(60, 0);
        assert!(rate.take().is_ok());
        assert_eq!(rate.take().unwrap_err().wait, Duration::from_secs(1));
        assert_eq!(rate.settings(), (60, 0));
    }

    #[test]
    fn per_second_with_its_own_burst() {
        let clock = FakeRelativeClock::default();
        let rate = RequestRate::new(100, 100, Period::Second, clock.clone()).unwrap();
        assert!((0..100).all(|_| rate.take().is_ok()));
        assert_eq!(rate.take().unwrap_err().wait, Duration::from_millis(10));
    }

    /// The same bucket written the obvious way: free time that refills up to `burst` cells.
    struct Model {
        free_ns: u128,
        capacity_ns: u128,
        cell_ns: u128,
    }

    impl Model {
        fn arrive(&mut self, gap_ns: u64) -> bool {
            self.free_ns = (self.free_ns + u128::from(gap_ns)).min(self.capacity_ns);
            let room = self.free_ns >= self.cell_ns;
            if room {
                self.free_ns -= self.cell_ns;
            }
            room
        }
    }

    fn gap() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), 0u64..1_000_000_000, 0u64..120_000_000_000,]
    }

    proptest! {
        /// Over any sequence of arrivals: no more than `burst + rate × elapsed` get in, and a
        /// request is let in exactly when the plainly written bucket has room for it.
        #[test]
        fn admits_exactly_what_the_bucket_holds(
            rpm in 1u64..10_000,
            burst in 1u64..100,
            gaps in proptest::collection::vec(gap(), 1..200),
        ) {
            let (rate, clock) = per_minute(rpm, burst);
            let cell_ns = rate.interval().as_nanos();
            let mut model = Model {
                free_ns: cell_ns * u128::from(burst),
                capacity_ns: cell_ns * u128::from(burst),
                cell_ns,
            };
            let (mut elapsed_ns, mut admitted) = (0u128, 0u128);
            for (i, gap) in gaps.into_iter().enumerate() {
                // The first arrival starts the clock: elapsed counts from it.
                let gap = if i == 0 { 0 } else { gap };
                clock.advance(Duration::from_nanos(gap));
                elapsed_ns += u128::from(gap);
                let got = rate.take();
                prop_assert_eq!(got.is_ok(), model.arrive(gap));
                if let Ok(status) = got {
                    admitted += 1;
                    prop_assert!(status.remaining < burst);
                } else if let Err(refused) = got {
                    prop_assert!(refused.wait > Duration::ZERO);
                    prop_assert!(refused.wait.as_nanos() <= cell_ns);
                }
                prop_assert!(admitted <= u128::from(burst) + elapsed_ns / cell_ns);
            }
        }
    }
}
