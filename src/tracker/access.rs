//! Which torrents the tracker serves: everything, only a listed set
//! (`allow`), or everything but a listed set (`deny`).
//!
//! The rules are an immutable value: a reload builds a new one aside and
//! the tracker swaps it in atomically (`Tracker::set_access`), so a reload
//! never pauses announces or drops a packet.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::DefaultHashBuilder;
use serde::Deserialize;

use super::ledger::{Account, Passkey};
use super::list_overlay::ListOverlay;
use super::refusal::Refusal;
use super::site::SiteDirectory;
use crate::protocol::{Event, InfoHash, PeerId};

/// What a list does: nothing, let only its entries in, or keep them out.
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
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Who and what is served: the info-hash list, bans, the client filter and
/// private mode's passkeys or site directory. Built aside and swapped in
/// whole (`Tracker::set_access`).
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    /// What the info-hash list does.
    pub mode: AccessMode,
    hashes: HashSet<InfoHash, DefaultHashBuilder>,
    bans: IpBans,
    clients: ClientFilter,
    /// Private mode: the registered passkeys (None: private mode off).
    passkeys: Option<HashSet<Vec<u8>, DefaultHashBuilder>>,
    /// Private mode on a site's database: its users and torrents (kept
    /// across reloads of the files; the database thread updates it).
    site: Option<Arc<SiteDirectory>>,
    /// The management API's changes to the list files (kept across
    /// reloads: `carry_api_changes`).
    api: Arc<ApiChanges>,
}

/// What the management API changed in the list files, over them.
#[derive(Debug, Default)]
pub struct ApiChanges {
    /// Info hashes put on or taken off `access.list`.
    pub hashes: ListOverlay<[u8; 20]>,
    /// Passkeys put in or taken out of `private.passkeys`.
    pub passkeys: ListOverlay<Passkey>,
    /// Passkey-file mode: the passkey the API gave each user id (a file
    /// has no ids), so `DELETE /api/users/{id}` knows which to take out.
    pub user_keys: std::sync::Mutex<hashbrown::HashMap<u64, Passkey>>,
}

/// Clients (by peer_id prefix, e.g. `-TR`, `-qB`) that are served.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    /// What the prefixes do.
    pub mode: AccessMode,
    /// peer_id prefixes, as bytes.
    pub prefixes: Vec<Vec<u8>>,
}

impl ClientFilter {
    /// Whether a client with `peer_id` is served.
    pub fn permits(&self, peer_id: &PeerId) -> bool {
        let listed = || self.prefixes.iter().any(|p| peer_id.0.starts_with(p));
        match self.mode {
            AccessMode::Off => true,
            AccessMode::Allow => listed(),
            AccessMode::Deny => !listed(),
        }
    }
}

impl AccessRules {
    /// Rules with an info-hash list in `mode` and nothing else.
    pub fn new(mode: AccessMode, hashes: HashSet<InfoHash, DefaultHashBuilder>) -> Self {
        AccessRules {
            mode,
            hashes,
            ..AccessRules::default()
        }
    }

    /// The same rules with these bans.
    pub fn with_bans(mut self, bans: IpBans) -> Self {
        self.bans = bans;
        self
    }

    /// The same rules with this client filter.
    pub fn with_clients(mut self, clients: ClientFilter) -> Self {
        self.clients = clients;
        self
    }

    /// Turn private mode on with these passkeys.
    pub fn with_passkeys(mut self, passkeys: HashSet<Vec<u8>, DefaultHashBuilder>) -> Self {
        self.passkeys = Some(passkeys);
        self
    }

    /// Turn private mode on with a site's users and torrents.
    pub fn with_site(mut self, site: Option<Arc<SiteDirectory>>) -> Self {
        self.site = site;
        self
    }

    /// The site directory in force (database mode).
    pub fn site(&self) -> Option<&Arc<SiteDirectory>> {
        self.site.as_ref()
    }

    /// The management API's changes to the lists.
    pub fn api_changes(&self) -> &Arc<ApiChanges> {
        &self.api
    }

    /// Whether private mode reads a passkey file (not a database).
    pub fn passkey_file(&self) -> bool {
        self.site.is_none() && self.passkeys.is_some()
    }

    /// These rules, freshly read from the files, with the API's changes of
    /// `old`: each change stays in force until the file changes its mind
    /// about that entry (its membership differs between the two reads) or
    /// says the same as the change (which then has nothing left to say),
    /// and every list change goes when `access.mode` changed. Returns the
    /// rules and how many changes went.
    pub fn carry_api_changes(mut self, old: &AccessRules) -> (Self, usize) {
        self.api = old.api.clone();
        let mode_changed = self.mode != old.mode;
        let mut gone = self.api.hashes.prune(|h, listed| {
            let h = InfoHash(*h);
            let now = self.hashes.contains(&h);
            mode_changed || old.hashes.contains(&h) != now || listed == now
        });
        let in_file = |keys: &Option<HashSet<Vec<u8>, DefaultHashBuilder>>, k: &Passkey| {
            keys.as_ref()
                .is_some_and(|keys| keys.contains(k.as_slice()))
        };
        gone += self.api.passkeys.prune(|k, listed| {
            let now = in_file(&self.passkeys, k);
            in_file(&old.passkeys, k) != now || listed == now
        });
        (self, gone)
    }

    /// Whether `info_hash` is on the list: the API's word, else the file's.
    fn listed(&self, info_hash: &InfoHash) -> bool {
        (self.api.hashes.listed(&info_hash.0)).unwrap_or_else(|| self.hashes.contains(info_hash))
    }

    /// Passkey-file mode: whether `passkey` is served.
    fn key_listed(&self, keys: &HashSet<Vec<u8>, DefaultHashBuilder>, passkey: &[u8]) -> bool {
        (self.api.passkeys.listed(passkey)).unwrap_or_else(|| keys.contains(passkey))
    }

    /// Private mode: every announce needs a passkey.
    pub fn private(&self) -> bool {
        self.passkeys.is_some() || self.site.is_some()
    }

    /// Whether a request carrying `passkey` (from the URL path, or BEP 41
    /// URLData over UDP) is served: always when private mode is off (a key
    /// in the path is then ignored), else only with a registered key.
    pub fn permits_passkey(&self, passkey: Option<&[u8]>) -> bool {
        match (&self.site, &self.passkeys) {
            (Some(site), _) => passkey.is_some_and(|k| site.user(k).is_some()),
            (None, None) => true,
            (None, Some(keys)) => passkey.is_some_and(|k| self.key_listed(keys, k)),
        }
    }

    /// Private mode's admission of an announce by `passkey` at unix second
    /// `unix`: who it credits (None when private mode is off), or why it is
    /// refused.
    pub fn admit(
        &self,
        passkey: Option<&[u8]>,
        info_hash: &InfoHash,
        left: u64,
        event: Event,
        unix: u64,
    ) -> Result<Option<Account>, Refusal> {
        match (&self.site, &self.passkeys) {
            (Some(site), _) => site.admit(passkey, info_hash, left, event, unix).map(Some),
            (None, None) => Ok(None),
            (None, Some(keys)) => match passkey {
                Some(k) if self.key_listed(keys, k) => Ok(Some(Account::UNIT)),
                _ => Err(Refusal::UnknownPasskey),
            },
        }
    }

    /// Whether `ip` is banned (it then gets nothing at all).
    pub fn banned(&self, ip: IpAddr) -> bool {
        self.bans.contains(ip)
    }

    /// Whether a client with this peer id is served.
    pub fn permits_client(&self, peer_id: &PeerId) -> bool {
        self.clients.permits(peer_id)
    }

    /// How many ban entries (addresses and ranges).
    pub fn ban_count(&self) -> usize {
        self.bans.len()
    }

    /// Whether announces for `info_hash` are served.
    pub fn permits(&self, info_hash: &InfoHash) -> bool {
        match self.mode {
            AccessMode::Off => true,
            AccessMode::Allow => self.listed(info_hash),
            AccessMode::Deny => !self.listed(info_hash),
        }
    }

    /// How many info hashes the list holds.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Banned addresses and CIDR ranges. Kept as one set of masked networks per
/// prefix length that occurs, so a lookup is one hash probe per distinct
/// prefix length (a handful), whatever the list's size.
#[derive(Debug, Clone, Default)]
pub struct IpBans {
    v4: Vec<(u8, HashSet<u32, DefaultHashBuilder>)>,
    v6: Vec<(u8, HashSet<u128, DefaultHashBuilder>)>,
}

fn mask4(ip: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        ip & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask6(ip: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        ip & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl IpBans {
    /// Whether nothing is banned.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// How many entries (addresses and ranges).
    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, s)| s.len()).sum::<usize>()
            + self.v6.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// Whether `ip` is banned (by address or range).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|(p, set)| set.contains(&mask4(a, *p)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|(p, set)| set.contains(&mask6(a, *p)))
            }
        }
    }

    fn insert(&mut self, ip: IpAddr, prefix: u8) {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                // A mapped IPv6 range counts in IPv4 prefix bits.
                let prefix = if ip.is_ipv6() {
                    prefix.saturating_sub(96)
                } else {
                    prefix
                };
                let net = mask4(u32::from(a), prefix);
                match self.v4.iter_mut().find(|(p, _)| *p == prefix) {
                    Some((_, set)) => drop(set.insert(net)),
                    None => self.v4.push((prefix, [net].into_iter().collect())),
                }
            }
            IpAddr::V6(a) => {
                let net = mask6(u128::from(a), prefix);
                match self.v6.iter_mut().find(|(p, _)| *p == prefix) {
                    Some((_, set)) => drop(set.insert(net)),
                    None => self.v6.push((prefix, [net].into_iter().collect())),
                }
            }
        }
    }
}

/// The meaningful lines of a list file: `#` comments stripped, blank lines
/// skipped, each with its 1-based line number for error messages.
fn list_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.split('#').next().unwrap_or("").trim();
        (!line.is_empty()).then_some((i + 1, line))
    })
}

/// Refuse a list of more than `max` entries (before parsing it, so a huge
/// list costs no memory beyond its text); the error names the first line
/// past the bound.
pub fn check_entries(text: &str, max: usize) -> Result<(), ListError> {
    match list_lines(text).nth(max) {
        Some((line, _)) => Err(ListError {
            line,
            message: format!("more than {max} entries (access.max_list_entries)"),
        }),
        None => Ok(()),
    }
}

/// Parse a ban list: one IP address or CIDR range (IPv4 or IPv6) per
/// line; `#` comments and blank lines allowed.
pub fn parse_ban_list(text: &str) -> Result<IpBans, ListError> {
    let mut bans = IpBans::default();
    for (number, line) in list_lines(text) {
        let err = |message: String| ListError {
            line: number,
            message,
        };
        let (addr, prefix) = match line.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (line, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| err(format!("not an IP address: {addr:?}")))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(err(format!("not a prefix length up to {max}: {p:?}"))),
            },
        };
        bans.insert(ip, prefix);
    }
    Ok(bans)
}

/// Parse a passkey list: one key per line, 16 to 64 ASCII letters and
/// digits; `#` comments and blank lines allowed.
pub fn parse_passkeys(text: &str) -> Result<HashSet<Vec<u8>, DefaultHashBuilder>, ListError> {
    let mut keys = HashSet::with_hasher(DefaultHashBuilder::default());
    for (number, line) in list_lines(text) {
        if !(16..=64).contains(&line.len()) || !line.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ListError {
                line: number,
                message: "a passkey is 16 to 64 letters and digits".into(),
            });
        }
        keys.insert(line.as_bytes().to_vec());
    }
    Ok(keys)
}

/// The passkey in a tracker URL path `/<passkey>/announce` (or `/scrape`),
/// as a BEP 41 URLData option carries it (a query string may follow).
pub fn passkey_in_path(path: &[u8]) -> Option<&[u8]> {
    let path = path.split(|&b| b == b'?').next()?;
    let rest = path.strip_prefix(b"/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (key, tail) = (&rest[..slash], &rest[slash + 1..]);
    (!key.is_empty() && (tail == b"announce" || tail == b"scrape")).then_some(key)
}

/// Parse an info-hash list: one hash per line as 40 hex digits (either
/// case); `#` starts a comment; blank lines are allowed.
pub fn parse_hash_list(text: &str) -> Result<HashSet<InfoHash, DefaultHashBuilder>, ListError> {
    let mut set = HashSet::with_hasher(DefaultHashBuilder::default());
    for (number, line) in list_lines(text) {
        let err = |message: String| ListError {
            line: number,
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
        let two = format!("# c\n{A}\n\n{A}\n");
        assert!(check_entries(&two, 2).is_ok());
        let e = check_entries(&two, 1).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("more than 1 entries"), "{}", e.message);
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
    fn bans_by_address_and_range() {
        let bans = parse_ban_list(
            "# bad neighbours\n10.0.0.0/8\n192.0.2.7\n2001:db8::/32 # docs\n::ffff:198.51.100.0/120\n",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(bans.contains(ip("10.200.3.4")));
        assert!(bans.contains(ip("::ffff:10.1.1.1")), "mapped IPv4 is IPv4");
        assert!(bans.contains(ip("192.0.2.7")) && !bans.contains(ip("192.0.2.8")));
        assert!(bans.contains(ip("2001:db8:ffff::1")) && !bans.contains(ip("2001:db9::1")));
        assert!(
            bans.contains(ip("198.51.100.77")),
            "a mapped range bans IPv4"
        );
        assert!(!bans.contains(ip("127.0.0.1")));
        assert_eq!(bans.len(), 4);
        let e = parse_ban_list("1.2.3.4\n1.2.3.0/33\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_ban_list("\nnope\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_ban_list("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn client_filter_by_peer_id_prefix() {
        let id = |s: &[u8]| {
            let mut p = [b'x'; 20];
            p[..s.len()].copy_from_slice(s);
            PeerId(p)
        };
        let deny = ClientFilter {
            mode: AccessMode::Deny,
            prefixes: vec![b"-XL".to_vec()],
        };
        assert!(!deny.permits(&id(b"-XL0019-")) && deny.permits(&id(b"-qB4500-")));
        let allow = ClientFilter {
            mode: AccessMode::Allow,
            prefixes: vec![b"-TR".to_vec(), b"-qB".to_vec()],
        };
        assert!(allow.permits(&id(b"-qB4500-")) && !allow.permits(&id(b"-UT3500-")));
        assert!(ClientFilter::default().permits(&id(b"anything")));
    }

    #[test]
    fn passkeys_and_paths() {
        let keys = parse_passkeys("# users\nabcdef0123456789\n\nZZZZZZZZZZZZZZZZZZZZ\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(parse_passkeys("short\n").unwrap_err().line, 1);
        assert_eq!(
            parse_passkeys(&format!("abcdef0123456789\n{}\n", "a".repeat(65)))
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(parse_passkeys("abcdef01234567-9\n").unwrap_err().line, 1);
        let rules = AccessRules::default().with_passkeys(keys);
        assert!(rules.permits_passkey(Some(b"abcdef0123456789")));
        assert!(!rules.permits_passkey(Some(b"abcdef0123456780")));
        assert!(!rules.permits_passkey(None));
        assert!(AccessRules::default().permits_passkey(None));
        assert_eq!(
            passkey_in_path(b"/abcdef0123456789/announce"),
            Some(&b"abcdef0123456789"[..])
        );
        assert_eq!(passkey_in_path(b"/k3y/announce?x=1"), Some(&b"k3y"[..]));
        assert_eq!(passkey_in_path(b"/announce"), None);
        assert_eq!(passkey_in_path(b"//announce"), None);
        assert_eq!(passkey_in_path(b"/a/b/announce"), None);
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
