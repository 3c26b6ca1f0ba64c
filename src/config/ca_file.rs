//! A PEM bundle of certificates to trust (`upstream.ca_file`).
//!
//! Read by validation, so that `orgate check` reports a bad file at its key path, and by the
//! upstream client that trusts it: the two read it the same way.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The certificates in the PEM file at `path`: at least one, every one readable. The error
/// says what is wrong with the file, not what is in it.
pub(crate) fn read_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path:?} is not a PEM bundle of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{path:?} holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")"
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_read_and_a_bad_one_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
            .unwrap()
            .cert
            .pem();
        let two = write("two.pem", &format!("{cert}\n{cert}"));
        assert_eq!(read_ca_file(&two).unwrap().len(), 2);

        let empty = write("empty.pem", "not a certificate\n");
        assert!(read_ca_file(&empty)
            .unwrap_err()
            .contains("holds no certificate"));
        let broken = write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        assert!(read_ca_file(&broken)
            .unwrap_err()
            .contains("is not a PEM bundle"));
        let missing = dir.path().join("missing.pem");
        assert!(read_ca_file(missing.to_str().unwrap())
            .unwrap_err()
            .contains("cannot read"));
    }
}
