//! An HTTPS client for the tests: rustls, trusting exactly one
//! certificate (self-signed by rcgen in the test) for "localhost".
#![allow(dead_code)]

use std::net::SocketAddr;

/// A TLS client that trusts exactly `cert_pem`.
pub fn tls_client(addr: SocketAddr, cert_pem: &str) -> std::io::Result<TlsStream> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let sock = std::net::TcpStream::connect(addr)?;
    // Turns a missing reply into a failure instead of a hang.
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    // Finish the handshake now, so a certificate problem shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;
