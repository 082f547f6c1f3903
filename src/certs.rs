//! Reading PEM certificate files, each certificate checked to parse as X.509. A leaf: the
//! configuration reads CA files with it, `tls` the listener's certificate chain.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: String },
    #[error("{path}: not a usable PEM certificate file: {reason}")]
    BadCertificate { path: String, reason: String },
}

/// Reads every certificate of a PEM file, checking that each one parses as X.509.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::BadCertificate {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate { path: shown });
    }
    for cert in &certs {
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::BadCertificate {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}
