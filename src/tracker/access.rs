//! Which torrents the tracker serves: everything, only a listed set
//! (`allow`), or everything but a listed set (`deny`).
//!
//! The rules are an immutable value: a reload builds a new one aside and
//! the tracker swaps it in atomically (`Tracker::set_access`), so a reload
//! never pauses announces or drops a packet.

use std::collections::HashSet;

use hashbrown::DefaultHashBuilder;
use serde::Deserialize;

use crate::protocol::InfoHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Every torrent is served.
    #[default]
    Off,
    /// Only listed torrents are served.
    Allow,
    /// Listed torrents are refused.
    Deny,
}

/// A malformed line of a list file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ListError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    pub mode: AccessMode,
    hashes: HashSet<InfoHash, DefaultHashBuilder>,
}

impl AccessRules {
    pub fn new(mode: AccessMode, hashes: HashSet<InfoHash, DefaultHashBuilder>) -> Self {
        AccessRules { mode, hashes }
    }

    /// Whether announces for `info_hash` are served.
    pub fn permits(&self, info_hash: &InfoHash) -> bool {
        match self.mode {
            AccessMode::Off => true,
            AccessMode::Allow => self.hashes.contains(info_hash),
            AccessMode::Deny => !self.hashes.contains(info_hash),
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Parse an info-hash list: one hash per line as 40 hex digits (either
/// case); `#` starts a comment; blank lines are allowed.
pub fn parse_hash_list(text: &str) -> Result<HashSet<InfoHash, DefaultHashBuilder>, ListError> {
    let mut set = HashSet::with_hasher(DefaultHashBuilder::default());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| ListError {
            line: i + 1,
            message,
        };
        if !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(format!("not a hex info hash: {line:?}")));
        }
        if line.len() != 40 {
            return Err(err(format!(
                "expected 40 hex digits, found {}: {line:?}",
                line.len()
            )));
        }
        let mut hash = [0u8; 20];
        for (j, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&line[2 * j..2 * j + 2], 16)
                .map_err(|_| err(format!("not a hex info hash: {line:?}")))?;
        }
        set.insert(InfoHash(hash));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789ABCDEF01234567";

    #[test]
    fn comments_blank_lines_and_either_case() {
        let text = format!(
            "# torrents we carry\n\n{A}   # a comment\n  {}\n",
            A.to_lowercase()
        );
        let set = parse_hash_list(&text).unwrap();
        assert_eq!(set.len(), 1, "the same hash in two cases");
        let h = InfoHash([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
        ]);
        assert!(set.contains(&h));
        assert!(parse_hash_list("").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let e = parse_hash_list(&format!("{A}\n\nnot-a-hash\n")).unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_hash_list(&format!("{A}\n{}zz\n", &A[..38])).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: not a hex"), "{e}");
        let e = parse_hash_list(&format!("{A}0\n")).unwrap_err();
        assert!(e.message.contains("found 41"), "{e}");
        // Multi-byte characters are refused, never sliced through.
        for bad in [format!("é{}", &A[..38]), format!("a{}é", &A[..37])] {
            let e = parse_hash_list(&bad).unwrap_err();
            assert_eq!(e.line, 1);
        }
    }

    #[test]
    fn modes() {
        let listed = InfoHash([1; 20]);
        let other = InfoHash([2; 20]);
        let set: HashSet<_, _> = [listed]
            .into_iter()
            .collect::<HashSet<_, DefaultHashBuilder>>();
        let allow = AccessRules::new(AccessMode::Allow, set.clone());
        assert!(allow.permits(&listed) && !allow.permits(&other));
        let deny = AccessRules::new(AccessMode::Deny, set.clone());
        assert!(!deny.permits(&listed) && deny.permits(&other));
        let off = AccessRules::new(AccessMode::Off, set);
        assert!(off.permits(&listed) && off.permits(&other));
    }
}
