//! The names of the Redis keys the limits live in, as `redis.lua` lists them.
//!
//! Built once per key id (when the backend is built), so a request formats no key name. A key
//! id's own keys share its `{id}` hash tag; the global rate's key is apart, so the backend runs
//! on one Redis or Valkey server (its primary), not on a Redis Cluster.

/// The gateway-wide request rate's key.
pub(super) const GLOBAL_RATE_KEY: &str = "orgate:global:rate";

/// One key id's Redis keys.
#[derive(Debug)]
pub(super) struct KeyNames {
    /// The request rate's GCRA arrival time.
    pub(super) rate: String,
    /// When the token bucket is full again.
    pub(super) tokens: String,
    /// The concurrency leases: a sorted set scored by expiry.
    pub(super) leases: String,
    /// The prefix the script builds the spend counters' names on (they depend on its clock).
    pub(super) spend: String,
}

impl KeyNames {
    pub(super) fn new(id: &str) -> Self {
        let base = format!("orgate:{{{id}}}");
        Self {
            rate: format!("{base}:rate"),
            tokens: format!("{base}:tokens"),
            leases: format!("{base}:leases"),
            spend: format!("{base}:spend"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_share_the_ids_hash_tag() {
        let names = KeyNames::new("alice");
        assert_eq!(names.rate, "orgate:{alice}:rate");
        assert_eq!(names.leases, "orgate:{alice}:leases");
        assert_eq!(names.spend, "orgate:{alice}:spend");
    }
}
