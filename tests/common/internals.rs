//! Every way the tests reach into the library past its public entry (`orgate::serve`): key
//! hashing, the state a config builds, the router. When `src/` moves or renames one of these,
//! this file is the one to change.

use std::sync::Arc;

use orgate::config::Config;
pub use orgate::internals::Snapshot;
pub use orgate::AppState;

/// The Redis limits backend's script (`limits.backend = "redis"`), for its calendar.
pub const REDIS_SCRIPT: &str = include_str!("../../src/limits/redis/redis.lua");

/// The `hash` field of a key's config entry (`sha256:…`) for the client key `key`.
pub fn hash_field(key: &str) -> String {
    orgate::key_hash_field(key)
}

/// The snapshot `config` builds (rules, limits, the upstream client), with a metrics registry
/// of its own.
pub fn snapshot(config: Config) -> Snapshot {
    let metrics = Arc::new(orgate::internals::Metrics::new());
    Snapshot::build(config, &metrics).unwrap()
}

/// `previous` rebuilt for `config`, as a reload rebuilds it.
pub fn rebuild(config: Config, previous: &Snapshot) -> Snapshot {
    Snapshot::rebuild(config, previous).unwrap()
}

/// Whether two snapshots share one upstream client (and so its connection pools).
pub fn same_upstream(a: &Snapshot, b: &Snapshot) -> bool {
    Arc::ptr_eq(&a.upstream, &b.upstream)
}

/// The gateway's state for `config` and its router, without a listener: for `oneshot`.
pub fn router(config: Config) -> (AppState, axum::Router) {
    let metrics = Arc::new(orgate::internals::Metrics::new());
    let snapshot = Snapshot::build(config, &metrics).unwrap();
    let state = AppState::new(snapshot, metrics);
    (state.clone(), orgate::router(state))
}
