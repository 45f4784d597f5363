//! `PUT`/`DELETE /api/users/{id}` and `/api/torrents/{id}`: the site's
//! users and torrents changed at once. In database mode they go into the
//! site directory (remembered against older rows of the next sync); with a
//! passkey file a user is a passkey put in or taken out of the file's set.
//! A user or torrent that is no longer served loses its sessions and its
//! peers leave the swarms now, not at their timeout.

use serde_json::json;

use super::body::{self, Body};
use super::{AdminApi, Clock, Reply, path_id};
use crate::tracker::ledger::{LiveSession, Passkey};
use crate::tracker::list_overlay::MAX_API_ENTRIES;
use crate::tracker::peer_set::Origin;
use crate::tracker::site::{ApiRefusal, Torrent, TorrentRow, User, UserRow, valid_passkey};
use crate::tracker::swarm::PeerUpdate;
use crate::tracker::table::{Download, PeerAddr, PeerChange};

const USER_FIELDS: &[&str] = &[
    "passkey",
    "enabled",
    "can_leech",
    "download_factor",
    "upload_factor",
];
const PASSKEY_FILE_FIELDS: &[&str] = &["passkey", "enabled"];
const TORRENT_FIELDS: &[&str] = &["info_hash", "enabled", "download_factor", "upload_factor"];

fn refused(e: ApiRefusal, field: &str) -> Reply {
    match e {
        ApiRefusal::Row(e) => Reply::error(400, format!("{field}: {e}")),
        ApiRefusal::Full(e) => Reply::full(e),
    }
}

fn no_users() -> Reply {
    Reply::error(
        409,
        "private mode is off: there are no users ([private] enabled)",
    )
}

impl AdminApi {
    pub(super) fn put_user(&self, id: &str, raw: &[u8], clock: Clock) -> Reply {
        let rules = self.tracker.access();
        let id = match path_id("id", id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        if rules.passkey_file() {
            return self.put_file_user(id, raw, clock);
        }
        let Some(site) = rules.site() else {
            return no_users();
        };
        let old = site.passkey_of(id);
        let current = old.as_ref().and_then(|k| site.user(k));
        let row = match user_row(id, raw, clock, current) {
            Ok(row) => row,
            Err(e) => return Reply::error(400, e.0),
        };
        let (enabled, passkey) = (row.enabled, row.passkey.clone());
        if let Err(e) = site.put_user(row) {
            return refused(e, "passkey");
        }
        let withdrawn = old.filter(|old| !enabled || old.as_slice() != passkey);
        let removed = withdrawn.map_or(0, |k| self.end_user(&k, clock));
        tracing::info!("admin: user {id} put (enabled {enabled}); {removed} peers removed");
        Reply::ok(json!({ "id": id, "enabled": enabled, "peers_removed": removed }))
    }

    /// Passkey-file mode: the passkey is served (or refused) whatever the
    /// file says, until the file changes its mind about it.
    fn put_file_user(&self, id: u64, raw: &[u8], clock: Clock) -> Reply {
        let fields = Body::parse(raw, PASSKEY_FILE_FIELDS).and_then(|b| {
            let key = b.text("passkey")?.to_owned();
            Ok((key, b.flag("enabled", true)?))
        });
        let (key, enabled) = match fields {
            Ok(f) => f,
            Err(e) => return Reply::error(400, format!("{} (passkey-file mode)", e.0)),
        };
        let Some(passkey) = valid_passkey(key.as_bytes()) else {
            return Reply::error(400, "passkey: a passkey is 16 to 64 letters and digits");
        };
        let api = self.tracker.access().api_changes().clone();
        let old = {
            // The passkey first: a full overlay changes nothing at all.
            let mut ids = api.user_keys.lock().unwrap_or_else(|e| e.into_inner());
            if !ids.contains_key(&id) && ids.len() >= MAX_API_ENTRIES {
                return Reply::full("the API holds its most passkey-file users");
            }
            if let Err(e) = api.passkeys.set(passkey.clone(), enabled) {
                return Reply::full(e);
            }
            ids.insert(id, passkey.clone())
        };
        let mut removed = 0;
        if let Some(old) = old.filter(|old| *old != passkey) {
            let _ = api.passkeys.set(old.clone(), false);
            removed += self.end_user(&old, clock);
        }
        if !enabled {
            removed += self.end_user(&passkey, clock);
        }
        tracing::info!(
            "admin: user {id} put (enabled {enabled}, passkey file); {removed} peers removed"
        );
        Reply::ok(json!({ "id": id, "enabled": enabled, "peers_removed": removed }))
    }

    pub(super) fn delete_user(&self, id: &str, clock: Clock) -> Reply {
        let rules = self.tracker.access();
        let id = match path_id("id", id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let passkey = if let Some(site) = rules.site() {
            match site.delete_user(id, clock.unix) {
                Ok(key) => key,
                Err(e) => return Reply::full(e),
            }
        } else if rules.passkey_file() {
            let api = rules.api_changes();
            let key = (api.user_keys.lock().unwrap_or_else(|e| e.into_inner())).remove(&id);
            if let Some(k) = &key {
                let _ = api.passkeys.set(k.clone(), false);
            }
            key
        } else {
            return no_users();
        };
        let Some(passkey) = passkey else {
            return Reply::error(404, format!("user {id} is not served"));
        };
        let removed = self.end_user(&passkey, clock);
        tracing::info!("admin: user {id} deleted; {removed} peers removed");
        Reply::ok(json!({ "id": id, "deleted": true, "peers_removed": removed }))
    }

    pub(super) fn put_torrent(&self, id: &str, raw: &[u8], clock: Clock) -> Reply {
        let rules = self.tracker.access();
        let id = match path_id("id", id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let Some(site) = rules.site() else {
            return no_torrents();
        };
        let old = site.info_hash_of(id);
        let current = old.and_then(|h| site.torrent(&crate::protocol::InfoHash(h)));
        let row = match torrent_row(id, raw, clock, current) {
            Ok(row) => row,
            Err(e) => return Reply::error(400, e.0),
        };
        let (enabled, hash) = (row.enabled, row.info_hash.clone());
        if let Err(e) = site.put_torrent(row) {
            return refused(e, "info_hash");
        }
        let withdrawn = old.filter(|old| !enabled || old[..] != hash[..]);
        let removed = withdrawn.map_or(0, |h| self.drop_swarm(&h, clock));
        tracing::info!(
            "admin: torrent {id} put ({}, enabled {enabled}); {removed} peers removed",
            body::hex(&hash)
        );
        Reply::ok(json!({ "id": id, "enabled": enabled, "peers_removed": removed }))
    }

    pub(super) fn delete_torrent(&self, id: &str, clock: Clock) -> Reply {
        let rules = self.tracker.access();
        let id = match path_id("id", id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let Some(site) = rules.site() else {
            return no_torrents();
        };
        let hash = match site.delete_torrent(id, clock.unix) {
            Ok(Some(hash)) => hash,
            Ok(None) => return Reply::error(404, format!("torrent {id} is not served")),
            Err(e) => return Reply::full(e),
        };
        let removed = self.drop_swarm(&hash, clock);
        tracing::info!("admin: torrent {id} deleted; its swarm of {removed} peers dropped");
        Reply::ok(json!({ "id": id, "deleted": true, "peers_removed": removed }))
    }

    /// End `passkey`'s sessions and take their peers out of the swarms;
    /// returns how many peers went.
    fn end_user(&self, passkey: &Passkey, clock: Clock) -> usize {
        let ended = self.tracker.ledger().end_sessions_of(passkey, clock.now);
        ended.iter().filter(|s| self.remove_peer(s, clock)).count()
    }

    fn remove_peer(&self, s: &LiveSession, clock: Clock) -> bool {
        if s.port == 0 || s.ip.is_unspecified() {
            return false; // never listed, or not announced since a restart
        }
        let change = PeerChange {
            addr: PeerAddr::new(s.ip, s.port),
            update: PeerUpdate::Remove,
            now: clock.now,
            min_age: 0,
            origin: Origin::Local,
            download: Download::Never,
        };
        let table = self.tracker.table();
        let mut shard = table.lock(&s.info_hash);
        let (applied, ()) = shard.apply(&s.info_hash, &change, table.addr_hasher(), |_| ());
        applied.effect == crate::tracker::swarm::PeerEffect::Removed
    }

    /// Drop the swarm of `hash` and end its sessions; returns how many
    /// peers it had.
    pub(super) fn drop_swarm(&self, hash: &[u8; 20], clock: Clock) -> usize {
        let h = crate::protocol::InfoHash(*hash);
        self.tracker.ledger().end_sessions_on(&h, clock.now);
        self.tracker.table().lock(&h).drop_torrent(&h)
    }
}

fn no_torrents() -> Reply {
    Reply::error(
        409,
        "torrents are registered only with [private] database; a public tracker uses /api/allow/",
    )
}

/// The user a PUT makes: a field left out keeps the value served now
/// (`current`), or its default for a user not served.
fn user_row(
    id: u64,
    raw: &[u8],
    clock: Clock,
    current: Option<User>,
) -> Result<UserRow, body::FieldError> {
    let b = Body::parse(raw, USER_FIELDS)?;
    let c = current.unwrap_or(User {
        id,
        can_leech: true,
        download_factor: 1.0,
        upload_factor: 1.0,
    });
    Ok(UserRow {
        id,
        passkey: b.text("passkey")?.as_bytes().to_vec(),
        enabled: b.flag("enabled", true)?,
        can_leech: b.flag("can_leech", c.can_leech)?,
        download_factor: b.factor("download_factor", c.download_factor)?,
        upload_factor: b.factor("upload_factor", c.upload_factor)?,
        updated: clock.unix,
    })
}

/// The torrent a PUT makes, as `user_row`.
fn torrent_row(
    id: u64,
    raw: &[u8],
    clock: Clock,
    current: Option<Torrent>,
) -> Result<TorrentRow, body::FieldError> {
    let b = Body::parse(raw, TORRENT_FIELDS)?;
    let (down, up) = current.map_or((1.0, 1.0), |t| (t.download_factor, t.upload_factor));
    Ok(TorrentRow {
        id,
        info_hash: body::info_hash("info_hash", b.text("info_hash")?)?.to_vec(),
        enabled: b.flag("enabled", true)?,
        download_factor: b.factor("download_factor", down)?,
        upload_factor: b.factor("upload_factor", up)?,
        updated: clock.unix,
    })
}
