//! Spend budgets: USD per UTC day and per UTC month, charged with the cost each response
//! reports (`usage.cost`).
//!
//! A key's spending is two counters, one per period, each a single `AtomicU64` packing the
//! period's index (days or months since 1970) with the micro-dollars spent in it: a charge in
//! a new period starts the count afresh, with no lock and no timer. A key whose spending reached
//! a budget is refused until the period rolls over (UTC).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bits for the micro-dollars spent in a period (up to ~17.5 million USD).
const SPENT_BITS: u32 = 44;
const SPENT_MASK: u64 = (1 << SPENT_BITS) - 1;
const DAY_SECS: u64 = 86_400;

/// A UTC calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Day,
    Month,
}

impl Period {
    /// The index of the period holding `secs` (Unix time): days or months since 1970.
    pub(crate) fn index(self, secs: u64) -> u64 {
        let days = secs / DAY_SECS;
        match self {
            Period::Day => days,
            Period::Month => {
                let (year, month, _) = civil_from_days(days as i64);
                (year - 1970) as u64 * 12 + (month - 1) as u64
            }
        }
    }

    /// Unix time at which the period after `index` starts.
    fn next_start(self, index: u64) -> u64 {
        match self {
            Period::Day => (index + 1) * DAY_SECS,
            Period::Month => {
                let next = index + 1;
                let (year, month) = (1970 + (next / 12) as i64, (next % 12) as u32 + 1);
                days_from_civil(year, month, 1) as u64 * DAY_SECS
            }
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// One period's spending: the period's index and the micro-dollars spent in it, packed.
#[derive(Debug, Default)]
pub(crate) struct SpendCounter(AtomicU64);

impl SpendCounter {
    fn unpack(word: u64) -> (u64, u64) {
        (word >> SPENT_BITS, word & SPENT_MASK)
    }

    fn pack(index: u64, spent: u64) -> u64 {
        (index << SPENT_BITS) | spent.min(SPENT_MASK)
    }

    /// Micro-dollars spent in period `index` (0 when the counter is of an earlier period).
    pub(crate) fn spent_in(&self, index: u64) -> u64 {
        let (at, spent) = Self::unpack(self.0.load(Ordering::Relaxed));
        if at == index {
            spent
        } else {
            0
        }
    }

    pub(crate) fn add(&self, index: u64, micros: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                let (at, spent) = Self::unpack(word);
                let base = if at == index { spent } else { 0 };
                Some(Self::pack(index, base.saturating_add(micros)))
            });
    }

    /// (period index, micro-dollars) for the state file.
    pub(crate) fn load(&self) -> (u64, u64) {
        Self::unpack(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn restore(index: u64, micros: u64) -> Self {
        Self(AtomicU64::new(Self::pack(index, micros)))
    }
}

/// What a key spent, per day and per month. Shared (`Arc`) across reloads: changing a budget
/// never forgets what was spent.
#[derive(Debug, Default)]
pub(crate) struct Spending {
    pub(crate) day: SpendCounter,
    pub(crate) month: SpendCounter,
}

/// USD spent in the current UTC day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spent {
    pub(crate) day_usd: f64,
    pub(crate) month_usd: f64,
}

/// A budget that is spent: which, its size, and how long until it renews.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BudgetSpent {
    pub(crate) period: Period,
    pub(crate) budget_usd: f64,
    pub(crate) retry_after: Duration,
}

impl Spending {
    /// Refuses when spending in the current day or month reached its budget (`0` = none).
    pub(crate) fn check(
        &self,
        per_day_usd: f64,
        per_month_usd: f64,
        now: SystemTime,
    ) -> Result<(), BudgetSpent> {
        let secs = unix_secs(now);
        for (period, budget, counter) in [
            (Period::Day, per_day_usd, &self.day),
            (Period::Month, per_month_usd, &self.month),
        ] {
            if budget <= 0.0 {
                continue;
            }
            let index = period.index(secs);
            if counter.spent_in(index) >= to_micros(budget) {
                let renews = period.next_start(index).saturating_sub(secs).max(1);
                return Err(BudgetSpent {
                    period,
                    budget_usd: budget,
                    retry_after: Duration::from_secs(renews),
                });
            }
        }
        Ok(())
    }

    /// What was spent in the day and the month holding `now`.
    pub(crate) fn spent(&self, now: SystemTime) -> Spent {
        let secs = unix_secs(now);
        Spent {
            day_usd: from_micros(self.day.spent_in(Period::Day.index(secs))),
            month_usd: from_micros(self.month.spent_in(Period::Month.index(secs))),
        }
    }

    pub(crate) fn charge(&self, cost_usd: f64, now: SystemTime) {
        let micros = to_micros(cost_usd);
        if micros == 0 {
            return;
        }
        let secs = unix_secs(now);
        self.day.add(Period::Day.index(secs), micros);
        self.month.add(Period::Month.index(secs), micros);
    }
}

pub(crate) fn from_micros(micros: u64) -> f64 {
    micros as f64 / 1e6
}

pub(crate) fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// USD → micro-dollars, rounding up so that tiny costs still count; negative or NaN is 0.
pub(crate) fn to_micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).ceil() as u64
    } else {
        0
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn calendar_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29), "a leap day");
    }

    #[test]
    fn a_spent_day_refuses_until_utc_midnight_and_then_renews() {
        let spending = Spending::default();
        let noon = 20_417 * DAY_SECS + 12 * 3600;
        spending.charge(3.0, at(noon));
        assert!(spending.check(5.0, 0.0, at(noon)).is_ok());
        spending.charge(2.5, at(noon + 60));
        let spent = spending.check(5.0, 0.0, at(noon + 120)).unwrap_err();
        assert_eq!(spent.period, Period::Day);
        assert_eq!(spent.retry_after, Duration::from_secs(12 * 3600 - 120));
        assert!(
            spending.check(5.0, 0.0, at(noon + 12 * 3600)).is_ok(),
            "a new UTC day"
        );
        // The month keeps counting across days.
        assert!(spending.check(0.0, 5.0, at(noon + 12 * 3600)).is_err());
    }

    #[test]
    fn a_spent_month_renews_on_the_first() {
        let spending = Spending::default();
        let nov_30 = days_from_civil(2026, 11, 30) as u64 * DAY_SECS;
        spending.charge(100.0, at(nov_30));
        let spent = spending.check(0.0, 50.0, at(nov_30 + 3600)).unwrap_err();
        assert_eq!(spent.retry_after, Duration::from_secs(23 * 3600));
        assert!(spending.check(0.0, 50.0, at(nov_30 + DAY_SECS)).is_ok());
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -100_000i64..200_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        /// Charges add up exactly within a period, whatever their order.
        #[test]
        fn charges_add_up(costs in proptest::collection::vec(0.0f64..10.0, 0..50)) {
            let spending = Spending::default();
            let now = at(20_000 * DAY_SECS);
            for c in &costs { spending.charge(*c, now); }
            let expected: u64 = costs.iter().map(|c| to_micros(*c)).sum();
            prop_assert_eq!(spending.day.spent_in(20_000), expected);
        }
    }
}
