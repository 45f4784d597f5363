//! `[admin]`: the management API's listener and its bearer token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::storage::operator_file::{SMALL_FILE_LIMIT, read_bounded};

/// The shortest token `admin.token_file` may hold.
pub const MIN_ADMIN_TOKEN: usize = 32;

/// `[admin]`: the management API (docs/API.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where it listens (none: no API).
    pub listen: Option<SocketAddr>,
    /// The file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// HTTPS: PEM certificate chain (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: PEM private key (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
}

/// The bearer token every API request must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token of these bytes (tests, and `admin_token`).
    pub fn new(bytes: Vec<u8>) -> AdminToken {
        AdminToken(bytes)
    }

    /// Whether `offered` is the token, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let mut diff = u8::from(offered.len() != self.0.len());
        for (i, b) in self.0.iter().enumerate() {
            diff |= b ^ offered.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl AdminConfig {
    /// `listen` needs `token_file`.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let (Some(listen), None) = (self.listen, &self.token_file) {
            return Err(invalid(
                "admin.listen",
                format!("\"{listen}\""),
                "needs admin.token_file, the file of the bearer token",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let (key, path) = match (&self.tls_cert, &self.tls_key) {
                (Some(p), None) => ("admin.tls_cert", p),
                (None, Some(p)) => ("admin.tls_key", p),
                _ => unreachable!("exactly one is set"),
            };
            return Err(invalid(
                key,
                format!("{path:?}"),
                "needs both admin.tls_cert and admin.tls_key (PEM files)",
            ));
        }
        Ok(())
    }

    /// The bearer token (`None` without a listener): the file's bytes
    /// without trailing white space, at least `MIN_ADMIN_TOKEN` of them,
    /// in a file no group or other user may read.
    pub fn token(&self) -> Result<Option<AdminToken>, ConfigError> {
        let (Some(_), Some(path)) = (self.listen, &self.token_file) else {
            return Ok(None);
        };
        let bad = |problem: String| invalid("admin.token_file", format!("{path:?}"), &problem);
        let bytes = read_bounded(path, SMALL_FILE_LIMIT, "token files are at most 1 MiB")
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mode = std::fs::metadata(path).map_or(0, |m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions())
        });
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            )));
        }
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < MIN_ADMIN_TOKEN {
            return Err(bad(format!(
                "holds {end} bytes; it needs at least {MIN_ADMIN_TOKEN} (e.g. head -c 32 /dev/urandom | base64)"
            )));
        }
        let token = &bytes[..end];
        if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(bad(
                "must be printable ASCII without spaces, as an HTTP header carries it \
                 (e.g. head -c 32 /dev/urandom | base64)"
                    .into(),
            ));
        }
        Ok(Some(AdminToken(token.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself() {
        let t = AdminToken::new(b"0123456789abcdef0123456789abcdef".to_vec());
        assert!(t.matches(b"0123456789abcdef0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdef0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcdef0123456789abcde"));
        assert!(!t.matches(b"0123456789abcdef0123456789abcdef0"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn a_listener_without_a_token_file_is_refused_by_key() {
        let e =
            crate::config::Config::from_toml("[admin]\nlisten = \"127.0.0.1:9001\"\n", "t.toml")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("admin.listen") && e.contains("token_file"),
            "{e}"
        );
    }

    #[test]
    fn the_token_file_must_be_long_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rt-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let config = AdminConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token_file: Some(path.clone()),
            ..AdminConfig::default()
        };
        std::fs::write(&path, "x".repeat(40) + "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = config.token().unwrap_err().to_string();
        assert!(
            e.contains("admin.token_file") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            config
                .token()
                .unwrap()
                .unwrap()
                .matches("x".repeat(40).as_bytes())
        );
        std::fs::write(&path, [&[0xffu8; 40][..], b"\n"].concat()).unwrap();
        let e = config.token().unwrap_err().to_string();
        assert!(e.contains("printable ASCII"), "{e}");
        std::fs::write(&path, "short\n").unwrap();
        let e = config.token().unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
