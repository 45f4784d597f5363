//! The management API as a site's hooks and an operator's scripts use it:
//! a token file, the address the tracker logs, one JSON request per
//! connection.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tracker::{Started, addr_after};

pub const TOKEN: &str = "test-token-0123456789abcdefghijklmnopqrstuvwxyz";

/// A token file the tracker accepts (mode 600), in `dir`.
pub fn token_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The `[admin]` section of a test's config: an ephemeral port.
pub fn section(dir: &Path) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token_file(dir).display()
    )
}

/// The API's address, from the start-up log (HTTP or HTTPS).
pub fn addr(t: &Started) -> SocketAddr {
    addr_after(&t.early_log, "management API on http://")
        .or_else(|| addr_after(&t.early_log, "management API on https://"))
        .expect("admin address logged")
}

/// The request `call_as` sends.
pub fn request(token: Option<&str>, method: &str, path: &str, body: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A whole response's status and JSON body.
pub fn parse(reply: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8(reply.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// One request with the test's token: (status, JSON body).
pub fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    call_as(addr, Some(TOKEN), method, path, body)
}

/// One request with `token` (none: no Authorization header).
pub fn call_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    // Turns a missing reply into a failure instead of a hang.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request(token, method, path, body).as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    parse(&reply)
}
