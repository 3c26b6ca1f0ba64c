//! A request's concurrency slot, held in Redis as a lease: a member of the key id's lease set
//! (`orgate:{id}:leases`), scored by its expiry.
//!
//! A lease rather than a counter because a replica can die holding slots: its leases expire
//! after `limits.lease_ttl` and nothing is left to clean up. While the request is in flight its
//! [`Lease`] (inside the request's `Permit`) renews it every `lease_ttl / 3`; dropping it
//! removes it. A release that fails is lost; the lease then frees itself after `lease_ttl`.
//! A check that timed out may still run later on a slow Redis and take a lease nobody holds:
//! [`forget_late`] removes it right behind.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::connection::{millis, Connection};
use super::keys::KeyNames;

/// The ids of this process's leases: a random prefix per replica, then a counter.
pub(super) struct LeaseIds {
    replica: String,
    next: AtomicU64,
}

impl fmt::Debug for LeaseIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseIds")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl LeaseIds {
    pub(super) fn new() -> Self {
        let mut seed = [0u8; 6];
        // Lease ids only need to differ between replicas; a failed read still gives a counter.
        let _ = getrandom::fill(&mut seed);
        Self {
            replica: hex::encode(seed),
            next: AtomicU64::new(0),
        }
    }

    pub(super) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.replica)
    }
}

/// A request's concurrency lease: renewed while held, removed when dropped.
#[derive(Debug)]
pub(super) struct Lease {
    connection: Arc<Connection>,
    names: Arc<KeyNames>,
    id: Arc<str>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    /// Holds the lease `id` the check script just took, renewing it every `ttl / 3` (without
    /// a runtime, it is not renewed and expires after `ttl`).
    pub(super) fn hold(
        connection: Arc<Connection>,
        names: Arc<KeyNames>,
        id: String,
        ttl: Duration,
        max: u64,
    ) -> Self {
        let id: Arc<str> = Arc::from(id);
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (connection, names, id) =
                (Arc::clone(&connection), Arc::clone(&names), Arc::clone(&id));
            runtime.spawn(async move {
                let every = (ttl / 3).max(Duration::from_millis(1));
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if !renew(&connection, &names, &id, ttl, max).await {
                        tracing::debug!(lease = %id, "concurrency lease not renewed");
                    }
                }
            })
        });
        Self {
            connection,
            names,
            id,
            renewal,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        // Drop cannot wait: the release is its own task. Without a runtime (the process is
        // ending) the lease expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (connection, names, id) = (
                Arc::clone(&self.connection),
                Arc::clone(&self.names),
                Arc::clone(&self.id),
            );
            runtime.spawn(async move { release(&connection, &names, &id).await });
        }
    }
}

/// Extends a lease; `false` when it is lost (expired and its slot taken meanwhile).
async fn renew(
    connection: &Connection,
    names: &KeyNames,
    lease: &str,
    ttl: Duration,
    max: u64,
) -> bool {
    let mut invocation = connection.invocation();
    invocation
        .key(&names.leases)
        .arg("renew")
        .arg(lease)
        .arg(millis(ttl))
        .arg(max);
    matches!(connection.run::<i64>(&invocation).await, Ok(1))
}

async fn release(connection: &Connection, names: &KeyNames, lease: &str) {
    let mut command = redis::cmd("ZREM");
    command.arg(&names.leases).arg(lease);
    let _ = connection
        .guarded(async {
            let mut manager = connection.manager().await?;
            command.query_async::<()>(&mut manager).await
        })
        .await;
}

/// Removes `lease`, which a check that timed out may still take on a slow Redis, though nobody
/// holds it. Sent on the same connection, the removal runs after the check if the check runs
/// at all; should it fail too, the lease expires after `patience` (the lease TTL).
pub(super) fn forget_late(
    connection: &Arc<Connection>,
    names: &Arc<KeyNames>,
    lease: String,
    patience: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (connection, names) = (Arc::clone(connection), Arc::clone(names));
    runtime.spawn(async move {
        let mut command = redis::cmd("ZREM");
        command.arg(&names.leases).arg(&lease);
        let removal = async {
            let mut manager = connection.manager().await?;
            command.query_async::<()>(&mut manager).await
        };
        // Not `guarded`: it must go out now, cooling down or not, and may wait longer.
        let _ = tokio::time::timeout(patience, removal).await;
    });
}
