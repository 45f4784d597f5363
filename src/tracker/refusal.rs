//! Why an announce is refused, in the tracker's own terms: the access
//! rules, the passkey and the site's directory, and the ledger's peer cap
//! all say no with a `Refusal`, and each frontend says so on its wire (a
//! BEP 15 error packet, a bencoded failure reason). Its own module, below
//! every rule that refuses, so none of them depends on the announce path.
#![forbid(unsafe_code)]

/// Why an announce was refused. Each frontend says so on its wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The access list does not let this torrent in (permanent).
    TorrentNotAllowed,
    /// The client filter does not let this client software in (permanent).
    ClientNotAllowed,
    /// Private mode and no registered passkey (permanent).
    UnknownPasskey,
    /// Private mode on a site's database: the torrent is not registered,
    /// or disabled (permanent).
    UnregisteredTorrent,
    /// The user may not download (`can_leech = 0`; permanent).
    LeechingNotAllowed,
    /// A new peer of a user who already has `max_peers_per_user_torrent`
    /// in the torrent (until one of them stops or expires).
    PeerLimit,
    /// The site's users and torrents are not loaded yet (temporary).
    SiteUnavailable,
}

impl Refusal {
    /// What the client is told (error packet or `failure reason`).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TorrentNotAllowed => "torrent not allowed on this tracker",
            Refusal::ClientNotAllowed => "client software not allowed on this tracker",
            Refusal::UnknownPasskey => "unknown passkey",
            Refusal::UnregisteredTorrent => "torrent not registered with this tracker",
            Refusal::LeechingNotAllowed => "your account may not download",
            Refusal::PeerLimit => "too many peers of your account in this torrent",
            Refusal::SiteUnavailable => "tracker is starting, try again shortly",
        }
    }

    /// BEP 31 `retry in`, in minutes; None: never.
    pub fn retry_minutes(self) -> Option<u32> {
        match self {
            Refusal::PeerLimit => Some(5),
            Refusal::SiteUnavailable => Some(1),
            _ => None,
        }
    }
}
