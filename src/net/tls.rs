//! HTTPS: rustls between the io_uring HTTP worker's socket buffers and its
//! plaintext request/response buffers. rustls does no I/O of its own here
//! (`read_tls` / `write_tls` over byte slices), so the worker's ring moves
//! ciphertext exactly as it moves plaintext for HTTP.
//!
//! The certificate and key are PEM files (`[tls] cert`, `key`). They are
//! read into a `ServerConfig` behind an `ArcSwap`: a SIGHUP builds a new one
//! aside and swaps it in; connections already open keep the one they began
//! with, new ones get the new certificate. Nothing is dropped.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::storage::operator_file::{SMALL_FILE_LIMIT, read_bounded};

/// The certificate in force, shared by every HTTP worker.
pub type TlsConfig = Arc<ArcSwap<rustls::ServerConfig>>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("tls.key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("tls: the certificate and key do not go together: {0}")]
    Mismatch(rustls::Error),
}

/// Read a PEM certificate chain and private key into a server config.
pub fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
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

/// Feed ciphertext received from the socket. An error is a TLS protocol
/// failure: the alert for the peer is queued, send it and close.
pub fn receive(tls: &mut ServerConnection, mut data: &[u8]) -> Result<(), rustls::Error> {
    while !data.is_empty() {
        match tls.read_tls(&mut data) {
            Ok(_) => {}
            // rustls holds as much as it will buffer: the plaintext must be
            // read first, which a client flooding requests never allows.
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        }
        tls.process_new_packets()?;
    }
    Ok(())
}

/// Move decrypted bytes into `buf`; returns how many, and whether the peer
/// closed its side (close_notify or a broken stream).
pub fn pull(tls: &mut ServerConnection, buf: &mut [u8]) -> (usize, bool) {
    let mut n = 0;
    while n < buf.len() {
        match tls.reader().read(&mut buf[n..]) {
            Ok(0) => return (n, true),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return (n, true),
        }
    }
    (n, false)
}

/// Encrypt `plain` (and a close_notify if `closing`) into `out`, which the
/// worker then sends as is, with anything rustls has to say on its own
/// (handshake messages, alerts).
pub fn push(tls: &mut ServerConnection, mut plain: &[u8], closing: bool, out: &mut Vec<u8>) {
    loop {
        if !drain(tls, out) {
            return;
        }
        if plain.is_empty() {
            break;
        }
        // rustls takes plaintext up to its buffer limit (64 KiB) at a
        // time: encrypt in turns with draining, or the rest is lost.
        match tls.writer().write(plain) {
            Ok(0) | Err(_) => return,
            Ok(n) => plain = &plain[n..],
        }
    }
    if closing {
        tls.send_close_notify();
        drain(tls, out);
    }
}

/// Move every record rustls has ready into `out`; false if it failed.
fn drain(tls: &mut ServerConnection, out: &mut Vec<u8>) -> bool {
    while tls.wants_write() {
        if tls.write_tls(out).is_err() {
            return false;
        }
    }
    true
}
