//! What the management API asks of the ledger: a user's or a torrent's
//! live sessions (where their peers are listed, for the swarm), and ending
//! them when the site withdraws that user or torrent. Every walk is
//! bounded: one shard for a torrent, and for a user every shard in turn,
//! each locked only for its own walk.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Session, SessionKey, Shard, TransferLedger};
use crate::protocol::InfoHash;

/// Sessions one answer lists at most (a user's sessions are bounded by
/// `private.max_peers_per_user_torrent` per torrent, not in total).
pub const MAX_LISTED: usize = 10_000;

/// One live session, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSession {
    /// On which torrent.
    pub info_hash: InfoHash,
    /// The site's user id (0: a passkey file, or not announced since a
    /// restart).
    pub user_id: u64,
    /// Where its peer is listed (unspecified until it announced since a
    /// restart).
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Whether it last announced as a seeder.
    pub seeder: bool,
    /// Seconds since its last announce.
    pub age: u32,
    /// Its running upload total, as last reported.
    pub uploaded: u64,
    /// Its running download total, as last reported.
    pub downloaded: u64,
}

fn live(k: &SessionKey, s: &Session, now: u32) -> LiveSession {
    LiveSession {
        info_hash: k.info_hash,
        user_id: s.detail.user_id,
        ip: s.detail.ip,
        port: s.detail.port,
        seeder: s.seeder,
        age: now.saturating_sub(s.last_seen),
        uploaded: s.uploaded,
        downloaded: s.downloaded,
    }
}

/// A user's credits not yet written to the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingBytes {
    /// Credited upload.
    pub uploaded: u64,
    /// Credited download.
    pub downloaded: u64,
}

impl TransferLedger {
    /// The live sessions of `passkey` (at most `MAX_LISTED`; the bool says
    /// whether more were left out) and its pending credits.
    pub fn sessions_of(&self, passkey: &[u8], now: u32) -> (Vec<LiveSession>, bool, PendingBytes) {
        let (mut out, mut more, mut pending) = (Vec::new(), false, PendingBytes::default());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (k, s) in shard
                .sessions
                .iter()
                .filter(|(k, _)| k.passkey.as_slice() == passkey)
            {
                if out.len() == MAX_LISTED {
                    more = true;
                    break;
                }
                out.push(live(k, s, now));
            }
            for (_, c) in shard
                .pending
                .iter()
                .filter(|((k, _), _)| k.as_slice() == passkey)
            {
                pending.uploaded = pending.uploaded.saturating_add(c.uploaded);
                pending.downloaded = pending.downloaded.saturating_add(c.downloaded);
            }
        }
        (out, more, pending)
    }

    /// The live sessions on `info_hash` (at most `MAX_LISTED`).
    pub fn sessions_on(&self, info_hash: &InfoHash, now: u32) -> Vec<LiveSession> {
        let shard = self.shard(info_hash);
        let on = shard
            .sessions
            .iter()
            .filter(|(k, _)| k.info_hash == *info_hash);
        on.take(MAX_LISTED).map(|(k, s)| live(k, s, now)).collect()
    }

    /// End every session of `passkey` (a user the site withdrew), as if
    /// each had stopped: pending credits stay, to be written. Returns where
    /// their peers are listed, to take them out of the swarms: not an
    /// address another user's live session on that torrent announced from
    /// too (a shared seedbox), whose peer that is as much.
    pub fn end_sessions_of(&self, passkey: &[u8], now: u32) -> Vec<LiveSession> {
        let mut ended = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut here = Vec::new();
            end_where(
                &mut shard,
                |k| k.passkey.as_slice() == passkey,
                self,
                now,
                &mut here,
            );
            if here.is_empty() {
                continue;
            }
            let at = |s: &LiveSession| (s.info_hash, s.ip, s.port);
            let mine: HashSet<_> = here.iter().map(at).collect();
            let shared: HashSet<_> = (shard.sessions.iter())
                .map(|(k, s)| (k.info_hash, s.detail.ip, s.detail.port))
                .filter(|a| mine.contains(a))
                .collect();
            ended.extend(here.into_iter().filter(|s| !shared.contains(&at(s))));
        }
        ended
    }

    /// End every session on `info_hash` (a torrent the site withdrew);
    /// returns how many.
    pub fn end_sessions_on(&self, info_hash: &InfoHash, now: u32) -> usize {
        let mut ended = Vec::new();
        let mut shard = self.shard(info_hash);
        end_where(
            &mut shard,
            |k| k.info_hash == *info_hash,
            self,
            now,
            &mut ended,
        );
        ended.len()
    }
}

fn end_where(
    shard: &mut Shard,
    which: impl Fn(&SessionKey) -> bool,
    ledger: &TransferLedger,
    now: u32,
    ended: &mut Vec<LiveSession>,
) {
    let keys: Vec<SessionKey> = shard
        .sessions
        .keys()
        .filter(|k| which(k))
        .cloned()
        .collect();
    for k in keys {
        if let Some(s) = shard.sessions.get(&k) {
            ended.push(live(&k, s, now));
        }
        shard.remove_session(&k, &ledger.rules);
    }
}
