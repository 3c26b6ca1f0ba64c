//! The syntax of a Redis URL (`limits.redis_url`, or the secret `limits.redis_url_env` names),
//! and the CA file trusted for one over TLS (`limits.redis_ca_file`).
//!
//! It lives with the configuration because it is a property of what was written: `orgate check`
//! reports it at its key path, before anything connects. The Redis limits backend asks the same
//! questions of the URL and file it is given, so the two cannot disagree.

use rustls_pki_types::pem::PemObject;
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

/// The PEM in `path`, once it is known to hold at least one certificate the TLS client reads.
pub(crate) fn read_ca_file(path: &str) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| format!("{path} is not PEM the TLS client can read: {e}"))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(format!(
            "{path} holds no certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(pem)
}

/// The client for `url`, trusting `ca_pem` besides the system roots when given (TLS only).
/// The error never repeats the URL.
pub(crate) fn redis_client(url: &str, ca_pem: Option<Vec<u8>>) -> Result<redis::Client, String> {
    let client = match ca_pem {
        Some(mut pem) if is_tls_url(url) => {
            // The crate trusts the certificates it is given *instead of* the system roots.
            pem.extend(system_roots_pem());
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

/// The system's trusted roots (what the crate trusts without a CA file), as PEM; the ones that
/// cannot be read are left out, as the crate leaves them out.
fn system_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
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
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let path = path.to_str().unwrap();
        assert!(read_ca_file(path).unwrap_err().contains("cannot read"));
        std::fs::write(path, "not a certificate\n").unwrap();
        assert!(read_ca_file(path).unwrap_err().contains("no certificate"));
        let ca = rcgen::generate_simple_self_signed(vec!["redis".into()]).unwrap();
        std::fs::write(path, ca.cert.pem()).unwrap();
        let pem = read_ca_file(path).unwrap();
        assert!(redis_client("rediss://:pw@redis:6380", Some(pem)).is_ok());
        // The system roots, written back, read as the CA file is.
        let roots = system_roots_pem();
        let read = CertificateDer::pem_slice_iter(&roots)
            .filter(Result::is_ok)
            .count();
        assert_eq!(read, rustls_native_certs::load_native_certs().certs.len());
    }
}
