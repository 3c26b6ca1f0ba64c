//! The limit values that apply to one key: a key's own overrides laid over `[limits]`.

use crate::config::{Config, KeyConfig, LimitsConfig};

/// The effective limits of one key id (or of `anonymous`). `0` means unlimited, as in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KeyLimits {
    pub(crate) requests_per_minute: u64,
    /// Requests that may arrive back to back after a quiet spell; only meaningful with a rate.
    pub(crate) burst: u64,
    pub(crate) max_concurrent: u64,
    pub(crate) tokens_per_minute: u64,
    /// Spend budgets in USD per UTC day and month; 0 = none.
    pub(crate) usd_per_day: f64,
    pub(crate) usd_per_month: f64,
}

impl KeyLimits {
    /// The limits for anonymous use: `[limits]` as written.
    pub(crate) fn defaults(limits: &LimitsConfig) -> Self {
        Self {
            requests_per_minute: limits.requests_per_minute,
            burst: limits.burst,
            max_concurrent: limits.max_concurrent,
            tokens_per_minute: limits.tokens_per_minute,
            usd_per_day: limits.usd_per_day,
            usd_per_month: limits.usd_per_month,
        }
    }

    /// A key's limits: each value it sets overrides the one in `[limits]`.
    pub(crate) fn for_key(key: &KeyConfig, limits: &LimitsConfig) -> Self {
        let defaults = Self::defaults(limits);
        Self {
            requests_per_minute: key
                .requests_per_minute
                .unwrap_or(defaults.requests_per_minute),
            burst: key.burst.unwrap_or(defaults.burst),
            max_concurrent: key.max_concurrent.unwrap_or(defaults.max_concurrent),
            tokens_per_minute: key.tokens_per_minute.unwrap_or(defaults.tokens_per_minute),
            usd_per_day: key.usd_per_day.unwrap_or(defaults.usd_per_day),
            usd_per_month: key.usd_per_month.unwrap_or(defaults.usd_per_month),
        }
    }

    /// The limits of the key id `key_id` in `config` (`anonymous`, or an id it does not have:
    /// `[limits]`).
    pub(crate) fn of(config: &Config, key_id: &str) -> Self {
        match config.auth.keys.iter().find(|key| key.id == key_id) {
            Some(key) => Self::for_key(key, &config.limits),
            None => Self::defaults(&config.limits),
        }
    }

    /// The part that decides the request-rate limiter; reload keeps the limiter when it is equal.
    pub(crate) fn rate(&self) -> (u64, u64) {
        (self.requests_per_minute, self.burst)
    }

    /// Whether any spend budget applies.
    pub(crate) fn has_budget(&self) -> bool {
        self.usd_per_day > 0.0 || self.usd_per_month > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_overrides_only_what_it_sets() {
        let limits = LimitsConfig {
            requests_per_minute: 600,
            burst: 60,
            max_concurrent: 64,
            tokens_per_minute: 0,
            ..LimitsConfig::default()
        };
        let key = KeyConfig {
            id: "alice".into(),
            burst: Some(5),
            tokens_per_minute: Some(1000),
            ..KeyConfig::default()
        };
        let got = KeyLimits::for_key(&key, &limits);
        assert_eq!(
            got,
            KeyLimits {
                usd_per_day: 0.0,
                usd_per_month: 0.0,
                requests_per_minute: 600,
                burst: 5,
                max_concurrent: 64,
                tokens_per_minute: 1000
            }
        );
        assert_eq!(KeyLimits::defaults(&limits).burst, 60);
    }
}
