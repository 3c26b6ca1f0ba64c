//! The in-memory backend: one set of limiters per key id, built once into a map that is only
//! read afterwards. Every limiter is lock-free (governor's atomic GCRA, a tokio semaphore, an
//! atomic token bucket), so checks from many tasks never wait on each other.
//!
//! # Order and all-or-nothing
//! The limits are evaluated cheapest-to-undo first, so that a refused request takes as little
//! as possible from the limits it passed:
//! 1. spend budgets and tokens: only look (budget left? room for a token?), take nothing;
//! 2. concurrency: takes a slot, which is given back if a later limit refuses;
//! 3. the key's request rate: takes a cell, which governor cannot give back;
//! 4. the global request rate: takes a cell likewise.
//!
//! The key's rate comes before the global one on purpose: a client hammering past its own limit
//! is refused by its own bucket and never drains the gateway-wide one that other keys share.
//! The price is that a request refused by the global limit has used one of its key's cells.
//! A request that several limits would refuse is refused by the first in this order, and its
//! refusal carries the headers of the limits looked at so far: refused by tokens or by
//! concurrency, it has no requests trio, since reading the rate would have taken a cell.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::{BoxFuture, Either};
use governor::clock::{Clock, DefaultClock};

use super::admission::{Admission, Permit, Refusal};
use super::backend::{CheckFuture, LimitBackend};
use super::concurrency::InFlight;
use super::headers::RateLimitHeaders;
use super::rate::{Period, RequestRate};
use super::settings::KeyLimits;
use super::spend::Spending;
use super::store;
use super::tokens::{ChargeUsage, Spent, TokenBucket, UsageAccount};
use crate::config::Config;

/// The clocks the backend runs on: governor's (quanta) in the gateway, a fake one in tests.
pub(crate) trait LimitClock: Clock + Clone + fmt::Debug + Send + Sync + 'static {}

impl<C> LimitClock for C where C: Clock + Clone + fmt::Debug + Send + Sync + 'static {}

#[derive(Debug)]
pub(crate) struct MemoryBackend<C: LimitClock = DefaultClock> {
    /// Key id → its limiters; read-only once built.
    keys: HashMap<Box<str>, KeyState<C>>,
    anonymous: KeyState<C>,
    global: Option<Arc<RequestRate<C>>>,
    clock: C,
    /// `limits.state_dir`'s spend file, when spending must survive restarts.
    state_file: Option<PathBuf>,
}

/// One key's limiters; `None` where its limit is 0 (unlimited). Each part is shared (`Arc`) so
/// that a reload can hand it on to the next backend when its own values did not change.
#[derive(Debug)]
struct KeyState<C: LimitClock> {
    rate: Option<Arc<RequestRate<C>>>,
    in_flight: Option<InFlight>,
    tokens: Option<Arc<TokenBucket<C>>>,
    /// The spend budgets in USD per day and per month (0 = none of that period), when there
    /// is one; and what was spent, kept across reloads and, with `state_dir`, restarts,
    /// whatever the budgets become.
    budget: Option<(f64, f64)>,
    spending: Arc<Spending>,
    /// Where an admitted request's usage is charged, built once with the key: `None` when
    /// nothing would read the charge (no token limit, no budget, no `state_dir`).
    account: Option<UsageAccount>,
}

/// Where one key's usage is charged: its token bucket and its spending.
#[derive(Debug)]
struct Account<C: Clock> {
    tokens: Option<Arc<TokenBucket<C>>>,
    spending: Arc<Spending>,
}

impl<C: LimitClock> ChargeUsage for Account<C> {
    fn charge(&self, tokens: u64, cost_usd: f64) {
        if let Some(bucket) = &self.tokens {
            bucket.debit(tokens);
        }
        self.spending.charge(cost_usd, SystemTime::now());
    }

    fn spent(&self) -> BoxFuture<'_, Option<Spent>> {
        Box::pin(std::future::ready(Some(
            self.spending.spent(SystemTime::now()),
        )))
    }
}

impl MemoryBackend<DefaultClock> {
    pub(crate) fn new(config: &Config) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: LimitClock> MemoryBackend<C> {
    pub(crate) fn with_clock(config: &Config, clock: C) -> Self {
        Self::build(config, clock, None)
    }

    /// Builds the limiters for `config`, taking over those of `previous` whose values match.
    fn build(config: &Config, clock: C, previous: Option<&Self>) -> Self {
        let state_file = store::state_file(&config.limits.state_dir);
        let keeps_spending = state_file.is_some();
        // Spending from the last run, for keys this run has not seen yet.
        let saved = match (&state_file, previous) {
            (Some(path), None) => store::load(path),
            _ => HashMap::new(),
        };
        let spending_for = |id: &str, before: Option<&KeyState<C>>| match before {
            Some(before) => Arc::clone(&before.spending),
            None => Arc::new(
                saved
                    .get(id)
                    .map_or_else(Spending::default, store::SavedSpending::restore),
            ),
        };
        let keys = config
            .auth
            .keys
            .iter()
            .map(|key| {
                let limits = KeyLimits::for_key(key, &config.limits);
                let before = previous.and_then(|p| p.keys.get(key.id.as_str()));
                let spending = spending_for(&key.id, before);
                let state = KeyState::new(limits, &clock, before, spending, keeps_spending);
                (Box::from(key.id.as_str()), state)
            })
            .collect();
        let before = previous.map(|p| &p.anonymous);
        let anonymous = KeyState::new(
            KeyLimits::defaults(&config.limits),
            &clock,
            before,
            spending_for(crate::config::ANONYMOUS, before),
            keeps_spending,
        );
        let per_second = config.limits.global_requests_per_second;
        let global = match previous.and_then(|p| p.global.as_ref()) {
            Some(rate) if rate.settings() == (per_second, per_second) => Some(Arc::clone(rate)),
            // The global burst is one second's worth: a full second's requests at once.
            _ => RequestRate::new(per_second, per_second, Period::Second, clock.clone())
                .map(Arc::new),
        };
        Self {
            keys,
            anonymous,
            global,
            clock,
            state_file,
        }
    }
}

impl<C: LimitClock> KeyState<C> {
    /// `keeps_spending`: spending is saved across restarts, so it is charged even without a
    /// budget.
    fn new(
        limits: KeyLimits,
        clock: &C,
        before: Option<&Self>,
        spending: Arc<Spending>,
        keeps_spending: bool,
    ) -> Self {
        let before_rate = before.and_then(|b| b.rate.as_ref());
        let rate = match before_rate {
            Some(rate) if rate.settings() == limits.rate() => Some(Arc::clone(rate)),
            _ => RequestRate::new(
                limits.requests_per_minute,
                limits.burst,
                Period::Minute,
                clock.clone(),
            )
            .map(Arc::new),
        };
        let in_flight = match before.and_then(|b| b.in_flight.as_ref()) {
            Some(in_flight) if in_flight.max() == limits.max_concurrent => Some(in_flight.clone()),
            _ => InFlight::new(limits.max_concurrent),
        };
        let tokens = match before.and_then(|b| b.tokens.as_ref()) {
            Some(tokens) if tokens.per_minute() == limits.tokens_per_minute => {
                Some(Arc::clone(tokens))
            }
            _ => TokenBucket::new(limits.tokens_per_minute, clock.clone()).map(Arc::new),
        };
        let account = (tokens.is_some() || limits.has_budget() || keeps_spending).then(|| {
            UsageAccount::new(Arc::new(Account {
                tokens: tokens.clone(),
                spending: Arc::clone(&spending),
            }))
        });
        Self {
            rate,
            in_flight,
            tokens,
            budget: limits
                .has_budget()
                .then_some((limits.usd_per_day, limits.usd_per_month)),
            spending,
            account,
        }
    }
}

impl<C: LimitClock> LimitBackend for MemoryBackend<C> {
    fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a> {
        Either::Left(std::future::ready(self.check_now(key_id)))
    }

    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend> {
        Arc::new(Self::build(config, self.clock.clone(), Some(self)))
    }

    fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let keys = self
            .keys
            .iter()
            .map(|(id, state)| (id.as_ref(), state.spending.as_ref()));
        store::save(
            path,
            keys.chain([(crate::config::ANONYMOUS, self.anonymous.spending.as_ref())]),
        )
    }
}

impl<C: LimitClock> MemoryBackend<C> {
    /// The check itself: every limit is in memory, so the answer is immediate.
    fn check_now(&self, key_id: &str) -> Result<Admission, Refusal> {
        let key = self.keys.get(key_id).unwrap_or(&self.anonymous);
        let mut headers = RateLimitHeaders::default();

        if let Some((per_day, per_month)) = key.budget {
            if let Err(spent) = key.spending.check(per_day, per_month, SystemTime::now()) {
                return Err(Refusal::budget(
                    key_id,
                    spent.period.as_str(),
                    spent.budget_usd,
                    spent.retry_after,
                    headers,
                ));
            }
        }

        if let Some(bucket) = &key.tokens {
            match bucket.room() {
                Ok(status) => headers.tokens = Some(status),
                Err(refused) => {
                    headers.tokens = Some(refused.status);
                    return Err(Refusal::tokens(
                        key_id,
                        bucket.per_minute(),
                        refused.wait,
                        headers,
                    ));
                }
            }
        }

        // Dropped, and so given back, if a limit below refuses.
        let permit = match &key.in_flight {
            Some(in_flight) => match in_flight.try_enter() {
                Some(slot) => Permit::slot(slot),
                None => return Err(Refusal::concurrency(key_id, in_flight.max(), headers)),
            },
            None => Permit::unlimited(),
        };

        if let Some(rate) = &key.rate {
            match rate.take() {
                Ok(status) => headers.requests = Some(status),
                Err(refused) => {
                    headers.requests = Some(refused.status);
                    return Err(Refusal::requests(
                        key_id,
                        rate.rate(),
                        rate.burst(),
                        refused.wait,
                        headers,
                    ));
                }
            }
        }

        if let Some(global) = &self.global {
            if let Err(refused) = global.take() {
                return Err(Refusal::global(global.rate(), refused.wait, headers));
            }
        }

        Ok(Admission {
            permit,
            headers,
            account: key.account.clone(),
        })
    }
}
