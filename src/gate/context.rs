//! The request's home: who is calling, through which door, on which config, and what it holds
//! while it runs.
//!
//! [`admit`](super::admit) builds the context; the pipeline fills in what the body says (the
//! model, whether it streams), then shares it (`Arc`) with the response: its body's accounting
//! and, when the access log runs, the log line read it. The concurrency permit and the in-flight
//! gauge are the context's own, so a request holds its slot until the last of those is done,
//! whatever layers the router is served with.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use http::{HeaderMap, HeaderValue};

use crate::auth::Client;
use crate::doors::Door;
use crate::limits::{Admission, Permit, RateLimitHeaders, UsageAccount};
use crate::metrics::{GaugeGuard, Metrics};
use crate::state::Snapshot;

/// One admitted request (or one refused by a limit, which holds no permit).
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// When the gate saw the request: the gateway's own time is counted from here.
    pub started: Instant,
    /// `x-request-id` as it goes upstream: the client's, or the one the access log gave it.
    pub request_id: Option<HeaderValue>,
    pub door: Door,
    pub client: Arc<Client>,
    /// The config the request runs on from start to end, even if a reload comes meanwhile.
    pub snapshot: Arc<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// The model tried first, after the policy's rewrites, once the body has been read.
    pub model: Option<String>,
    /// The client asked for an event stream.
    pub stream: bool,
    /// Where the response's usage is charged (token limit, spend budgets), if anywhere.
    pub account: Option<UsageAccount>,
    /// Written on every response of the admitted request.
    rate_limit_headers: RateLimitHeaders,
    /// The concurrency slot; dropping the context releases it.
    _permit: Permit,
    /// Counts the request in `orgate_inflight_requests` while the context lives.
    _inflight: GaugeGuard,
}

impl RequestContext {
    /// The context of `client`'s request, before its limits are checked: no slot, no account.
    pub(super) fn new(
        client: Arc<Client>,
        snapshot: Arc<Snapshot>,
        metrics: Arc<Metrics>,
        door: Door,
        headers: &HeaderMap,
    ) -> Self {
        let inflight = metrics.inflight(&client.id);
        Self {
            started: Instant::now(),
            request_id: headers.get("x-request-id").cloned(),
            door,
            client,
            snapshot,
            metrics,
            model: None,
            stream: false,
            account: None,
            rate_limit_headers: RateLimitHeaders::default(),
            _permit: Permit::unlimited(),
            _inflight: inflight,
        }
    }

    /// Takes what the limits gave the request: its slot, its account, its headers.
    pub(super) fn hold(&mut self, admission: Admission) {
        self._permit = admission.permit;
        self.account = admission.account;
        self.rate_limit_headers = admission.headers;
    }

    /// The key id: safe for logs and metrics.
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.client.id
    }

    /// `response`, answered for this request: see [`respond_shared`](Self::respond_shared).
    pub(crate) fn respond(self, response: Response) -> Response {
        Arc::new(self).respond_shared(response)
    }

    /// `response` with the rate-limit headers and the context itself, for the access log. The
    /// context lives on with whoever else holds it (a response body that is still streaming).
    pub(crate) fn respond_shared(self: Arc<Self>, mut response: Response) -> Response {
        self.rate_limit_headers.write_to(response.headers_mut());
        response.extensions_mut().insert(self);
        response
    }
}
