//! HTTPS: the certificate set-up. rustls does no I/O of its own
//! (`read_tls` / `write_tls` over byte slices: `engine::http_conn` drives
//! it), so the worker's ring moves ciphertext exactly as it moves
//! plaintext for HTTP.
//!
//! The certificate and key are PEM files (`[tls] cert`, `key`). They are
//! read into a `ServerConfig` behind an `ArcSwap`: a SIGHUP builds a new one
//! aside and swaps it in; connections already open keep the one they began
//! with, new ones get the new certificate. Nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::storage::operator_file::{SMALL_FILE_LIMIT, read_bounded};

/// The certificate in force, shared by every HTTP worker.
pub type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

/// Why the certificate or key cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain cannot be read or parsed.
    #[error("{key} {path}: {reason}")]
    Cert {
        /// The config key that names it (`tls.cert`, `admin.tls_cert`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The private key cannot be read or parsed.
    #[error("{key} {path}: {reason}")]
    Key {
        /// The config key that names it (`tls.key`, `admin.tls_key`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refuses the pair.
    #[error("tls: the certificate and key do not go together: {0}")]
    Mismatch(rustls::Error),
}

/// Read `[tls]`'s PEM certificate chain and private key into a server
/// config.
pub fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    load_as(cert, key, ("tls.cert", "tls.key"))
}

/// `load`, errors naming the config keys `names` (certificate, key).
pub fn load_as(
    cert: &Path,
    key: &Path,
    names: (&'static str, &'static str),
) -> Result<rustls::ServerConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        key: names.0,
        path: cert.to_path_buf(),
        reason,
    };
    let limit = "PEM files are at most 1 MiB";
    let cert_pem =
        read_bounded(cert, SMALL_FILE_LIMIT, limit).map_err(|e| cert_err(e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let key_err = |reason: String| TlsError::Key {
        key: names.1,
        path: key.to_path_buf(),
        reason,
    };
    let key_pem = read_bounded(key, SMALL_FILE_LIMIT, limit).map_err(|e| key_err(e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsError::Mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
