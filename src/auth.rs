//! Who is calling: client key extraction and hashed lookup.
//!
//! Keys are stored only as SHA-256 digests, and a request's key is hashed and looked up by its
//! digest. The key itself is never compared with anything, so no comparison can leak it: the
//! map's comparisons are of digests, and the most their timing could tell is how far the
//! digest of a key the caller chose matches a stored digest. Learning a whole stored digest
//! that way gets a caller no closer to a key that hashes to it (that is a preimage attack on
//! SHA-256), so a second, constant-time comparison of the same digests would add nothing.

use std::collections::HashMap;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::policy::CompiledPolicy;

/// An authenticated caller, as every later layer sees it.
#[derive(Debug)]
pub struct Client {
    /// The key's id from config (`anonymous` without one): safe for logs and metrics.
    pub id: Arc<str>,
    /// `[policy]`, with the key's named policy layered on it, compiled.
    pub policy: Arc<CompiledPolicy>,
    /// `Bearer <upstream key>`, marked sensitive so no header dump prints it.
    pub upstream_auth: HeaderValue,
}

/// The configured client keys, by digest.
#[derive(Debug, Default)]
pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Arc<Client>>,
    /// Who a request without credentials is, when that is allowed.
    anonymous: Option<Arc<Client>>,
    /// No keys configured: every request is anonymous, whatever it sends.
    open: bool,
}

impl KeyStore {
    pub fn new(keys: Vec<([u8; 32], Arc<Client>)>, anonymous: Option<Arc<Client>>) -> Self {
        let open = keys.is_empty();
        Self {
            by_digest: keys.into_iter().collect(),
            anonymous,
            open,
        }
    }

    /// The caller of a request with these headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Client>, GatewayError> {
        if self.open {
            return self.anonymous.clone().ok_or(GatewayError::MissingKey);
        }
        let Some(key) = presented_key(headers) else {
            return self.anonymous.clone().ok_or(GatewayError::MissingKey);
        };
        self.by_digest
            .get(&hash_key(key))
            .cloned()
            .ok_or(GatewayError::UnknownKey)
    }
}

/// The key a client presented: `Authorization: Bearer <key>`, else `x-api-key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = bytes[7..].trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    headers
        .get("x-api-key")
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
}

/// SHA-256 of a client key.
pub(crate) fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The value for a key's `hash` field: `sha256:<64 hex>`.
pub fn key_hash_field(key: &str) -> String {
    format!("sha256:{}", hex::encode(hash_key(key.as_bytes())))
}

/// A new random client key with `prefix`: 32 bytes of entropy, hex-encoded.
pub(crate) fn generate_key(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ANONYMOUS;

    fn client(id: &str) -> Arc<Client> {
        Arc::new(Client {
            id: id.into(),
            policy: Arc::new(CompiledPolicy::compile(&Default::default(), None).unwrap()),
            upstream_auth: HeaderValue::from_static("Bearer up"),
        })
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn finds_keys_by_either_header() {
        let store = KeyStore::new(vec![(hash_key(b"sk-alice"), client("alice"))], None);
        assert_eq!(
            &*store
                .authenticate(&headers("authorization", "Bearer sk-alice"))
                .unwrap()
                .id,
            "alice"
        );
        assert_eq!(
            &*store
                .authenticate(&headers("authorization", "bearer  sk-alice "))
                .unwrap()
                .id,
            "alice"
        );
        assert_eq!(
            &*store
                .authenticate(&headers("x-api-key", "sk-alice"))
                .unwrap()
                .id,
            "alice"
        );
        assert!(matches!(
            store.authenticate(&headers("x-api-key", "sk-bob")),
            Err(GatewayError::UnknownKey)
        ));
        assert!(matches!(
            store.authenticate(&HeaderMap::new()),
            Err(GatewayError::MissingKey)
        ));
        assert!(matches!(
            store.authenticate(&headers("authorization", "Basic abc")),
            Err(GatewayError::MissingKey)
        ));
    }

    #[test]
    fn anonymous_only_without_credentials() {
        let store = KeyStore::new(
            vec![(hash_key(b"sk-alice"), client("alice"))],
            Some(client(ANONYMOUS)),
        );
        assert_eq!(
            &*store.authenticate(&HeaderMap::new()).unwrap().id,
            ANONYMOUS
        );
        assert!(store.authenticate(&headers("x-api-key", "wrong")).is_err());
        let open = KeyStore::new(vec![], Some(client(ANONYMOUS)));
        assert_eq!(
            &*open
                .authenticate(&headers("x-api-key", "anything"))
                .unwrap()
                .id,
            ANONYMOUS
        );
    }

    #[test]
    fn hash_field_and_keygen() {
        assert_eq!(
            key_hash_field("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = generate_key("sk-orgate-").unwrap();
        assert!(key.starts_with("sk-orgate-") && key.len() == 10 + 64);
        assert_ne!(key, generate_key("sk-orgate-").unwrap());
    }
}
