//! Everything a request touches, built once from the config at start-up.
//!
//! A request loads the current [`Snapshot`] once and keeps that `Arc` until its response body
//! ends, so a later reload never changes the rules of a request already in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::sync::Notify;

use crate::auth::{Client, KeyStore};
use crate::config::{parse_key_hash, Config, RoutePattern, ANONYMOUS};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::policy::CompiledPolicy;
use crate::upstream::Upstream;

/// Why the gateway cannot start with this config.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The shared state behind every handler.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    snapshot: ArcSwap<Snapshot>,
    /// Outlives snapshots: a reload keeps the counts.
    metrics: Arc<Metrics>,
    /// Cleared when shutdown starts: `/readyz` answers 503 from then on.
    ready: AtomicBool,
    /// Told of every snapshot swapped in, for the background work that reads the config.
    reloaded: Notify,
}

impl AppState {
    /// `metrics` must be the registry `snapshot` was built with (`Snapshot::build`).
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            ready: AtomicBool::new(true),
            reloaded: Notify::new(),
        }))
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.snapshot.load_full()
    }

    /// Swaps in a new snapshot for new requests.
    pub fn replace(&self, snapshot: Snapshot) {
        self.0.snapshot.store(Arc::new(snapshot));
        self.0.reloaded.notify_one();
    }

    /// Completes at the next [`replace`](Self::replace), or at once if one happened since the
    /// last call. For one waiter: a second would miss reloads the first took.
    pub async fn reloaded(&self) {
        self.0.reloaded.notified().await;
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self) {
        self.0.ready.store(false, Ordering::Relaxed);
    }
}

/// One config, compiled.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub keys: KeyStore,
    /// Shared with the next snapshot when a reload leaves `[upstream]` alone: the warm
    /// connection pools stay.
    pub upstream: Arc<Upstream>,
    /// Per-key limiter state; carried over for unchanged keys on reload.
    pub limits: Limits,
    /// `[routes] allow`, parsed.
    pub routes: Vec<RoutePattern>,
    /// `Bearer <upstream key>` from `upstream.api_key_env`, for the gateway's own requests.
    pub default_upstream_auth: HeaderValue,
}

impl Snapshot {
    /// Model ids the config names exactly (alias targets, allow patterns without wildcards):
    /// they get metric labels of their own.
    pub fn configured_models(&self) -> Vec<String> {
        let mut models = Vec::new();
        for policy in std::iter::once(&self.config.policy).chain(self.config.policies.values()) {
            models.extend(policy.aliases.values().cloned());
            models.extend(
                policy
                    .models
                    .allow
                    .iter()
                    .filter(|p| !p.contains(['*', '?', '[', '{']))
                    .cloned(),
            );
        }
        models
    }

    /// The snapshot for `config`; the limits backend counts its failures in `metrics` (the
    /// registry the gateway serves; `AppState::new` takes the same one).
    pub fn build(config: Config, metrics: &Arc<Metrics>) -> Result<Self, StartupError> {
        let limits = Limits::build(&config, metrics).map_err(StartupError::Config)?;
        Self::build_with(config, limits, None)
    }

    /// A snapshot for a reloaded `config` that keeps `previous`'s limiter state for every key
    /// whose limits did not change (and the Redis backend's connection), and its upstream
    /// client if `[upstream]` did not change.
    pub fn rebuild(config: Config, previous: &Snapshot) -> Result<Self, StartupError> {
        let limits = previous
            .limits
            .carry_over(&config)
            .map_err(StartupError::Config)?;
        let same_upstream = config.upstream == previous.config.upstream
            && config.server.workers == previous.config.server.workers;
        let upstream = same_upstream.then(|| previous.upstream.clone());
        Self::build_with(config, limits, upstream)
    }

    fn build_with(
        config: Config,
        limits: Limits,
        upstream: Option<Arc<Upstream>>,
    ) -> Result<Self, StartupError> {
        let upstream_auth = |var: &str, used_by: &str| -> Result<HeaderValue, StartupError> {
            let key = config.secrets.get(var).ok_or_else(|| {
                StartupError::Config(format!(
                    "{used_by}: the upstream key is missing: set {var} (or {var}_FILE to a file holding it)"
                ))
            })?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    StartupError::Config(format!(
                        "{var}: the upstream key holds characters a header cannot carry"
                    ))
                })?;
            value.set_sensitive(true);
            Ok(value)
        };
        let default_auth = upstream_auth(&config.upstream.api_key_env, "upstream.api_key_env")?;
        // One compiled policy per name (and the org's alone), shared by the keys that use it.
        let mut policies: std::collections::HashMap<Option<String>, Arc<CompiledPolicy>> =
            Default::default();
        let mut policy_for = |name: Option<&str>| -> Result<Arc<CompiledPolicy>, StartupError> {
            let name = name.map(str::to_owned);
            if let Some(compiled) = policies.get(&name) {
                return Ok(compiled.clone());
            }
            let compiled = Arc::new(
                CompiledPolicy::for_key(&config, name.as_deref())
                    .map_err(|e| StartupError::Config(e.to_string()))?,
            );
            policies.insert(name, compiled.clone());
            Ok(compiled)
        };
        let org_policy = policy_for(None)?;

        let mut keys = Vec::with_capacity(config.auth.keys.len());
        for (i, key) in config.auth.keys.iter().enumerate() {
            let digest = parse_key_hash(&key.hash)
                .map_err(|why| StartupError::Config(format!("auth.keys[{i}].hash: {why}")))?;
            let auth = match &key.upstream_key_env {
                Some(var) => upstream_auth(var, &format!("auth.keys[{i}].upstream_key_env"))?,
                None => default_auth.clone(),
            };
            keys.push((
                digest,
                Arc::new(Client {
                    id: key.id.as_str().into(),
                    policy: policy_for(key.policy.as_deref())?,
                    upstream_auth: auth,
                }),
            ));
        }
        let anonymous = (keys.is_empty() || config.auth.allow_anonymous).then(|| {
            Arc::new(Client {
                id: ANONYMOUS.into(),
                policy: org_policy.clone(),
                upstream_auth: default_auth.clone(),
            })
        });
        let upstream = match upstream {
            Some(upstream) => upstream,
            None => Arc::new(
                Upstream::new(&config.upstream, config.server.io_threads())
                    .map_err(StartupError::Config)?,
            ),
        };
        let mut routes = Vec::with_capacity(config.routes.allow.len());
        for (i, entry) in config.routes.allow.iter().enumerate() {
            routes.push(
                RoutePattern::parse(entry)
                    .map_err(|why| StartupError::Config(format!("routes.allow[{i}]: {why}")))?,
            );
        }
        Ok(Self {
            keys: KeyStore::new(keys, anonymous),
            routes,
            upstream,
            limits,
            default_upstream_auth: default_auth,
            config,
        })
    }
}
