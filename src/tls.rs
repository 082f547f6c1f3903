//! TLS: the proxy listener's certificate and the CA files that upstream certificates are checked
//! against.
//!
//! The listener's certificate is served by `ListenerCert`, a rustls certificate resolver, rather
//! than loaded by pingora from the file names (which panics inside the server when a file is
//! bad): here a bad file is an error naming it, and the certificate sits behind an `ArcSwap` so
//! that a reload (SIGHUP) can swap in a renewed one without dropping the listener. Keys are
//! parsed with the `ring` provider, the one pingora installs. This module reads files; it never
//! logs key material.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::utils::tls::WrappedX509;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs::{read_certificates, CertError};
use crate::config::TlsFiles;
use crate::metrics::Metrics;

/// Why a certificate, key or CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: String },
    #[error("{path}: not a usable PEM certificate file: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("{path}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { path: String, reason: String },
    #[error("{cert} and {key} do not go together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

impl From<CertError> for TlsError {
    fn from(e: CertError) -> Self {
        match e {
            CertError::NoCertificate { path } => TlsError::NoCertificate { path },
            CertError::BadCertificate { path, reason } => TlsError::BadCertificate { path, reason },
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and its key, checking that they match.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(Path::new(&files.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| TlsError::BadKey {
        path: files.key_file.clone(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        reason: e.to_string(),
    })
}

/// The listener's certificate, replaceable while the listener runs.
#[derive(Debug)]
pub struct ListenerCert {
    current: ArcSwap<CertifiedKey>,
}

impl ListenerCert {
    /// Loads the certificate and key.
    pub fn load(files: &TlsFiles) -> Result<ListenerCert, TlsError> {
        Ok(ListenerCert {
            current: ArcSwap::from_pointee(load_certified_key(files)?),
        })
    }

    /// Loads the files again and, when they are usable, serves them to new connections.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        self.current.store(Arc::new(load_certified_key(files)?));
        Ok(())
    }

    /// When the certificate served now expires (its leaf's notAfter, Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        let key = self.current.load();
        let leaf = key.cert.first()?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// Publishes `not_after` as `oidc_gateway_tls_certificate_expiry_timestamp_seconds`.
    pub fn publish_expiry(&self, metrics: &Metrics) {
        if let Some(t) = self.not_after() {
            metrics
                .tls_certificate_expiry
                .with_label_values(&["proxy"])
                .set(t);
        }
    }
}

impl ResolvesServerCert for ListenerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A CA file's certificates in the form pingora's connector takes per upstream (`peer.options.ca`).
pub fn upstream_ca(certs: &[Vec<u8>]) -> Result<Arc<[WrappedX509]>, TlsError> {
    certs
        .iter()
        .map(|der| {
            // `try_new` (not pingora's `parse_x509`, which panics on bad DER).
            WrappedX509::try_new(der.clone(), |raw| {
                X509Certificate::from_der(raw).map(|(_, cert)| cert)
            })
            .map_err(|e| TlsError::BadCertificate {
                path: "CA file".to_owned(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_certificate_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        assert!(matches!(
            read_certificates(&empty),
            Err(CertError::NoCertificate { .. })
        ));
        assert!(read_certificates(&dir.path().join("missing.pem")).is_err());
        let files = TlsFiles {
            cert_file: empty.to_string_lossy().into_owned(),
            key_file: empty.to_string_lossy().into_owned(),
        };
        assert!(ListenerCert::load(&files).is_err());
        assert!(upstream_ca(&[b"garbage".to_vec()]).is_err());
    }
}
