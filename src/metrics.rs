//! The Prometheus registry and every series orgate exports (`GET /metrics`).
//!
//! One registry per gateway (not a process-wide recorder), so several gateways in one process,
//! as in the tests, keep their own counts. Labels are bounded: `key` is a configured key id,
//! `model` is a known model id or `other`, the rest are fixed vocabularies. No series carries a
//! key or anything a client can make up.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of `GET /metrics`.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What grouped models are called.
pub(crate) const OTHER_MODEL: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    key: Arc<str>,
    route: &'static str,
    model: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabel {
    key: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    key: Arc<str>,
    model: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyModel {
    key: Arc<str>,
    model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLimit {
    key: Arc<str>,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleAction {
    rule: Arc<str>,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyProviderLabels {
    key: Arc<str>,
    provider: Arc<str>,
}

/// Token counts from one usage report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenCounts {
    pub prompt: u64,
    pub completion: u64,
    pub reasoning: u64,
    pub cached: u64,
    pub cost_usd: f64,
}

/// Every series, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteStatus>,
    ttfb: HistogramFamily<RouteLabel>,
    overhead: HistogramFamily<RouteLabel>,
    inflight: Family<KeyLabel, Gauge>,
    streams: Family<KeyLabel, Gauge>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<KeyModel, Counter<f64, AtomicU64>>,
    ratelimited: Family<KeyLimit, Counter>,
    policy_actions: Family<RuleAction, Counter>,
    upstream_errors: Family<KindLabel, Counter>,
    provider_violations: Family<KeyProviderLabels, Counter>,
    reloads: Family<KindLabel, Counter>,
    limits_backend_errors: Family<KindLabel, Counter>,
    limits_backend_fallbacks: Family<DecisionLabel, Counter>,
    /// 1 while the limits backend (Redis) answers, 0 after a timeout or a lost connection.
    limits_backend_up: Gauge,
    limits_backend_round_trip: Histogram,
    limits_journal_entries: Gauge,
    limits_journal_replayed: Counter,
    limits_journal_dropped: Counter,
    /// Model ids worth a label of their own: from config and the upstream's model list.
    known_models: ArcSwap<HashSet<Arc<str>>>,
    /// The label of every model not in `known_models`, allocated once.
    other_model: Arc<str>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request times: milliseconds to minutes.
fn request_seconds() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

/// The gateway's own time: microseconds.
fn overhead_seconds() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    ])
}

/// Round trips to the limits store: tens of microseconds (a local Redis) to its timeout.
fn store_seconds() -> Histogram {
    Histogram::new([
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orgate");
        let requests = Family::default();
        let duration: HistogramFamily<RouteStatus> = Family::new_with_constructor(request_seconds);
        let ttfb: HistogramFamily<RouteLabel> = Family::new_with_constructor(request_seconds);
        let overhead: HistogramFamily<RouteLabel> = Family::new_with_constructor(overhead_seconds);
        let inflight = Family::default();
        let streams = Family::default();
        let tokens = Family::default();
        let cost = Family::default();
        let ratelimited = Family::default();
        let policy_actions = Family::default();
        let upstream_errors = Family::default();
        let provider_violations = Family::default();
        let reloads = Family::default();
        let limits_backend_errors = Family::default();
        let limits_backend_fallbacks = Family::default();
        let limits_backend_up = Gauge::default();
        let limits_backend_round_trip = store_seconds();
        let limits_journal_entries = Gauge::default();
        let limits_journal_replayed = Counter::default();
        let limits_journal_dropped = Counter::default();
        registry.register(
            "requests",
            "Requests answered, by key, route, model and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "upstream_ttfb_seconds",
            "Time until the upstream's response headers",
            ttfb.clone(),
        );
        registry.register(
            "overhead_seconds",
            "The gateway's own time per request: time to our response headers minus time waiting for the upstream's",
            overhead.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests in flight, streams included, by key",
            inflight.clone(),
        );
        registry.register(
            "inflight_streams",
            "Event streams in flight, by key",
            streams.clone(),
        );
        registry.register(
            "tokens",
            "Tokens reported by the upstream's usage, by key, model and kind",
            tokens.clone(),
        );
        registry.register(
            "cost_usd",
            "Cost in USD reported by the upstream's usage, by key and model",
            cost.clone(),
        );
        registry.register(
            "ratelimited",
            "Requests refused by a limit, by key and limit",
            ratelimited.clone(),
        );
        registry.register(
            "policy_actions",
            "Policy rewrites and refusals, by rule",
            policy_actions.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures and retries, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "provider_policy_violations",
            "Responses served by a provider the request's policy excluded, by key and provider",
            provider_violations.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by outcome (applied, refused)",
            reloads.clone(),
        );
        registry.register(
            "limits_backend_errors",
            "Failed calls to the shared limits backend (Redis), by kind: timeout, connection, reply",
            limits_backend_errors.clone(),
        );
        registry.register(
            "limits_backend_fallbacks",
            "Requests decided by limits.on_backend_error because the limits backend was unavailable, by decision: allow, deny",
            limits_backend_fallbacks.clone(),
        );
        registry.register(
            "limits_backend_up",
            "1 while the shared limits backend (Redis) answers, 0 while it is unreachable",
            limits_backend_up.clone(),
        );
        registry.register(
            "limits_backend_round_trip_seconds",
            "Time of each successful call to the shared limits backend (Redis)",
            limits_backend_round_trip.clone(),
        );
        registry.register(
            "limits_journal_entries",
            "Charges (key, window entries) waiting in this replica's journal for Redis",
            limits_journal_entries.clone(),
        );
        registry.register(
            "limits_journal_replayed",
            "Journal entries applied to Redis after waiting for it",
            limits_journal_replayed.clone(),
        );
        registry.register(
            "limits_journal_dropped",
            "Charges dropped because the journal was at its bound while Redis was away",
            limits_journal_dropped.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            ttfb,
            overhead,
            inflight,
            streams,
            tokens,
            cost,
            ratelimited,
            policy_actions,
            upstream_errors,
            provider_violations,
            reloads,
            limits_backend_errors,
            limits_backend_fallbacks,
            limits_backend_up,
            limits_backend_round_trip,
            limits_journal_entries,
            limits_journal_replayed,
            limits_journal_dropped,
            known_models: ArcSwap::from_pointee(HashSet::new()),
            other_model: Arc::from(OTHER_MODEL),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Adds model ids that get a label of their own.
    pub fn learn_models<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, models: I) {
        let mut set: HashSet<Arc<str>> = (**self.known_models.load()).clone();
        set.extend(models.into_iter().map(|m| Arc::from(m.as_ref())));
        self.known_models.store(Arc::new(set));
    }

    /// `model` if it is known, else `other`: a client cannot create series at will.
    pub fn model_label(&self, model: Option<&str>) -> Arc<str> {
        let known = self.known_models.load();
        match model.and_then(|m| known.get(m)) {
            Some(m) => m.clone(),
            None => self.other_model.clone(),
        }
    }

    pub fn request_done(
        &self,
        key: &Arc<str>,
        route: &'static str,
        model: Option<&str>,
        status: u16,
        total: Duration,
    ) {
        let model = self.model_label(model);
        self.requests
            .get_or_create(&RequestLabels {
                key: key.clone(),
                route,
                model,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteStatus { route, status })
            .observe(total.as_secs_f64());
    }

    /// Upstream time to headers, and the gateway's own share of the time to our headers.
    pub fn upstream_answered(
        &self,
        route: &'static str,
        ttfb: Duration,
        time_to_our_headers: Duration,
    ) {
        self.ttfb
            .get_or_create(&RouteLabel { route })
            .observe(ttfb.as_secs_f64());
        let own = time_to_our_headers.saturating_sub(ttfb);
        self.overhead
            .get_or_create(&RouteLabel { route })
            .observe(own.as_secs_f64());
    }

    /// Counts a request in flight for `key` until the guard drops.
    pub fn inflight(&self, key: &Arc<str>) -> GaugeGuard {
        GaugeGuard::new(
            self.inflight
                .get_or_create_owned(&KeyLabel { key: key.clone() }),
        )
    }

    /// Counts an event stream in flight for `key` until the guard drops.
    pub fn stream(&self, key: &Arc<str>) -> GaugeGuard {
        GaugeGuard::new(
            self.streams
                .get_or_create_owned(&KeyLabel { key: key.clone() }),
        )
    }

    pub fn usage(&self, key: &Arc<str>, model: Option<&str>, counts: &TokenCounts) {
        let model = self.model_label(model);
        for (kind, n) in [
            ("prompt", counts.prompt),
            ("completion", counts.completion),
            ("reasoning", counts.reasoning),
            ("cached", counts.cached),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    key: key.clone(),
                    model: model.clone(),
                    kind,
                })
                .inc_by(n);
        }
        if counts.cost_usd.is_finite() && counts.cost_usd > 0.0 {
            self.cost
                .get_or_create(&KeyModel {
                    key: key.clone(),
                    model,
                })
                .inc_by(counts.cost_usd);
        }
    }

    /// `limit`: requests, concurrency, tokens, budget or global.
    pub fn ratelimited(&self, key: &Arc<str>, limit: &'static str) {
        self.ratelimited
            .get_or_create(&KeyLimit {
                key: key.clone(),
                limit,
            })
            .inc();
    }

    /// `action`: rewrite or deny. `rule` is a config path (`policy.provider.only`).
    pub fn policy_action(&self, rule: &Arc<str>, action: &'static str) {
        self.policy_actions
            .get_or_create(&RuleAction {
                rule: rule.clone(),
                action,
            })
            .inc();
    }

    /// `kind`: connect, timeout, reset, status_5xx or retry.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn provider_violation(&self, key: &Arc<str>, provider: &str) {
        // Provider names come from the upstream, not the client, and are few.
        let provider: Arc<str> = Arc::from(provider);
        self.provider_violations
            .get_or_create(&KeyProviderLabels {
                key: key.clone(),
                provider,
            })
            .inc();
    }

    /// A call to the limits backend failed. `kind`: timeout, connection or reply.
    pub fn limits_backend_error(&self, kind: &'static str) {
        self.limits_backend_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A request decided without the limits backend. `decision`: allow or deny.
    pub fn limits_backend_fallback(&self, decision: &'static str) {
        self.limits_backend_fallbacks
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub(crate) fn limits_backend_up(&self, up: bool) {
        self.limits_backend_up.set(i64::from(up));
    }

    pub(crate) fn limits_backend_round_trip(&self, took: std::time::Duration) {
        self.limits_backend_round_trip.observe(took.as_secs_f64());
    }

    pub(crate) fn limits_journal_entries(&self, entries: usize) {
        self.limits_journal_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    pub(crate) fn limits_journal_replayed(&self, entries: usize) {
        self.limits_journal_replayed
            .inc_by(u64::try_from(entries).unwrap_or(u64::MAX));
    }

    pub(crate) fn limits_journal_dropped(&self, charges: u64) {
        self.limits_journal_dropped.inc_by(charges);
    }

    /// `outcome`: applied or refused.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads
            .get_or_create(&KindLabel { kind: outcome })
            .inc();
    }
}

/// Increments a gauge now and decrements it on drop.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_prometheus_names_and_bound_models() {
        let metrics = Metrics::new();
        metrics.learn_models(["openai/gpt-4o"]);
        let key: Arc<str> = Arc::from("alice");
        metrics.request_done(
            &key,
            "chat",
            Some("openai/gpt-4o"),
            200,
            Duration::from_millis(20),
        );
        metrics.request_done(
            &key,
            "chat",
            Some("made-up/model-123"),
            200,
            Duration::from_millis(20),
        );
        metrics.usage(
            &key,
            Some("openai/gpt-4o"),
            &TokenCounts {
                prompt: 10,
                completion: 4,
                cost_usd: 0.5,
                ..Default::default()
            },
        );
        let guard = metrics.inflight(&key);
        let text = metrics.render();
        assert!(text.contains(r#"orgate_requests_total{key="alice",route="chat",model="openai/gpt-4o",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"model="other""#));
        assert!(!text.contains("made-up"));
        assert!(text.contains(
            r#"orgate_tokens_total{key="alice",model="openai/gpt-4o",kind="prompt"} 10"#
        ));
        assert!(text.contains(r#"orgate_cost_usd_total{key="alice",model="openai/gpt-4o"} 0.5"#));
        assert!(text.contains(r#"orgate_inflight_requests{key="alice"} 1"#));
        drop(guard);
        assert!(metrics
            .render()
            .contains(r#"orgate_inflight_requests{key="alice"} 0"#));
        assert!(text.contains("orgate_request_duration_seconds_bucket"));
    }
}
