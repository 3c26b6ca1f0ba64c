//! The syntax of a Redis URL (`limits.redis_url`, or the secret `limits.redis_url_env` names),
//! and the CA file trusted for one over TLS (`limits.redis_ca_file`).
//!
//! It lives with the configuration because it is a property of what was written: `orgate check`
//! reports it at its key path, before anything connects. The Redis limits backend asks the same
//! questions of the URL and file it is given, so the two cannot disagree.

use rustls_pki_types::CertificateDer;

/// Whether `url` is a Redis URL this build can connect to (`redis://`, `valkey://`, `unix://`,
/// and over TLS `rediss://`, `valkeys://`). The error never repeats the URL, which may hold a
/// password.
pub(crate) fn check_redis_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(drop).map_err(|e| {
        format!(
            "is not a Redis URL like redis[s]://[user:password@]host[:port][/db]: {}",
            e.detail().unwrap_or("cannot parse it")
        )
    })
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls_url(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// The client for `url`, trusting `ca` (from `limits.redis_ca_file`, read by
/// [`super::read_ca_file`]) besides the system roots when given (TLS only). The error never
/// repeats the URL.
pub(crate) fn redis_client(
    url: &str,
    ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<redis::Client, String> {
    let client = match ca {
        Some(ca) if is_tls_url(url) => {
            // The crate trusts the certificates it is given, as PEM, *instead of* the system
            // roots.
            let system = rustls_native_certs::load_native_certs().certs;
            let pem = pem_of(ca.iter().chain(&system));
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        _ => redis::Client::open(url),
    };
    client.map_err(|e| e.detail().unwrap_or("invalid").to_owned())
}

/// Certificates written as PEM, as the crate reads its roots. The system's roots (what the
/// crate trusts without a CA file) that cannot be read are left out, as the crate leaves them
/// out.
fn pem_of<'c>(certs: impl Iterator<Item = &'c CertificateDer<'static>>) -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::new();
    for cert in certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        assert!(check_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_redis_url("redis://:hunter2@redis:6379").is_ok());
        assert!(check_redis_url("rediss://:hunter2@redis:6379").is_ok());
        assert!(check_redis_url("valkeys://user:hunter2@redis:6379/1").is_ok());
        assert!(is_tls_url("rediss://redis") && !is_tls_url("redis://redis"));
        let why = check_redis_url("http://:hunter2@redis").unwrap_err();
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn a_ca_is_trusted_beside_the_system_roots_written_back_as_pem() {
        use rustls_pki_types::pem::PemObject;
        let ca = rcgen::generate_simple_self_signed(vec!["redis".into()]).unwrap();
        let ca = vec![ca.cert.der().clone()];
        assert!(redis_client("rediss://:pw@redis:6380", Some(ca.clone())).is_ok());
        let system = rustls_native_certs::load_native_certs().certs;
        let pem = pem_of(ca.iter().chain(&system));
        let read: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), 1 + system.len());
        assert_eq!(read[0], ca[0], "the CA file's certificate, byte for byte");
    }
}
