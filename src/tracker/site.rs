//! Private mode on a site's database: the users and torrents the site
//! registered (the rows of `rt_users` and `rt_torrents`), as the announce
//! path asks about them.
//!
//! The database thread (`net/database`) fills the directory at start and
//! applies the rows that changed every `sync_interval`; workers only read
//! it. Each map is split in shards behind read-write locks, so a worker
//! waits at most for the insertion of one row into one shard, never for
//! the database. Disabled rows are not kept: a lookup that finds nothing
//! means "not served".

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};

use super::ledger::{Account, Passkey};
use super::refusal::Refusal;
use super::sharded_map::ShardedMap;

mod api;
mod freeleech;
use crate::protocol::{Event, InfoHash};
pub use api::ApiRefusal;
pub use freeleech::{Freeleech, Grant, NO_END, RowsApplied};

/// Factors above this are taken as this (a typo must not mint terabytes).
pub const MAX_FACTOR: f64 = 100.0;

/// One row of `rt_users`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// `rt_users.id`.
    pub id: u64,
    /// The passkey clients put in their announce URL.
    pub passkey: Vec<u8>,
    /// False: refused (a ban), the key withdrawn.
    pub enabled: bool,
    /// False: served only as a seeder.
    pub can_leech: bool,
    /// Download multiplier (0: personal freeleech).
    pub download_factor: f64,
    /// Upload multiplier.
    pub upload_factor: f64,
    /// When the row last changed, unix seconds (`updated_at`; 0: unknown,
    /// older than any change the management API made).
    pub updated: f64,
}

/// One row of `rt_torrents`.
#[derive(Debug, Clone, PartialEq)]
pub struct TorrentRow {
    /// `rt_torrents.id`.
    pub id: u64,
    /// The info hash (20 bytes when valid).
    pub info_hash: Vec<u8>,
    /// False: refused (deleted, not yet approved).
    pub enabled: bool,
    /// Download multiplier (0: freeleech).
    pub download_factor: f64,
    /// Upload multiplier (2: double upload).
    pub upload_factor: f64,
    /// When the row last changed, as `UserRow::updated`.
    pub updated: f64,
}

/// A served user, as the announce path needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct User {
    /// `rt_users.id`.
    pub id: u64,
    /// False: served only as a seeder.
    pub can_leech: bool,
    /// Download multiplier.
    pub download_factor: f64,
    /// Upload multiplier.
    pub upload_factor: f64,
}

/// A served torrent, as the announce path needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Torrent {
    /// `rt_torrents.id`.
    pub id: u64,
    /// Download multiplier.
    pub download_factor: f64,
    /// Upload multiplier.
    pub upload_factor: f64,
}

/// A row the directory could not take, with why (logged by the thread
/// that read it; the row is skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A user's passkey is not one a client could send.
    #[error("rt_users id {id}: a passkey is 16 to 64 letters and digits")]
    Passkey {
        /// The row's id.
        id: u64,
    },
    /// A torrent's info hash is not 20 bytes.
    #[error("rt_torrents id {id}: info_hash is not 20 bytes")]
    InfoHash {
        /// The row's id.
        id: u64,
    },
}

/// A factor as the directory keeps it: finite, 0 to `MAX_FACTOR`.
fn factor(f: f64) -> f64 {
    if f.is_finite() {
        f.clamp(0.0, MAX_FACTOR)
    } else {
        1.0
    }
}

/// Which key each served row is under, so a row whose passkey or info hash
/// changed leaves its old key, and a full re-read drops rows that are gone.
/// Only the database thread touches it.
#[derive(Default)]
struct Keys {
    users: HashMap<u64, Passkey, DefaultHashBuilder>,
    torrents: HashMap<u64, [u8; 20], DefaultHashBuilder>,
    /// When the management API last changed each member (unix seconds): a
    /// row the site changed before that is not applied over it.
    api: HashMap<Member, f64, DefaultHashBuilder>,
}

impl Keys {
    /// Whether the API changed `member` after `updated` (the row is then
    /// older than what is in force); a row as new forgets the API's change.
    fn superseded(&mut self, member: Member, updated: f64) -> bool {
        match self.api.get(&member) {
            Some(&t) if updated < t => true,
            Some(&t) if updated > t => {
                self.api.remove(&member);
                false
            }
            _ => false,
        }
    }
}

/// The users and torrents a private site serves.
pub struct SiteDirectory {
    users: ShardedMap<Passkey, User>,
    torrents: ShardedMap<[u8; 20], Torrent>,
    keys: Mutex<Keys>,
    /// Set once the first full read is in: until then every announce is
    /// told to come back soon rather than refused for good.
    loaded: AtomicBool,
    /// Freeleech tokens and personal freeleech.
    freeleech: Freeleech,
}

impl Default for SiteDirectory {
    fn default() -> Self {
        SiteDirectory {
            users: ShardedMap::default(),
            torrents: ShardedMap::default(),
            keys: Mutex::default(),
            loaded: AtomicBool::new(false),
            freeleech: Freeleech::default(),
        }
    }
}

impl std::fmt::Debug for SiteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (users, torrents) = self.counts();
        f.debug_struct("SiteDirectory")
            .field("users", &users)
            .field("torrents", &torrents)
            .field("loaded", &self.loaded())
            .finish()
    }
}

impl SiteDirectory {
    /// The user `passkey` names, if served.
    pub fn user(&self, passkey: &[u8]) -> Option<User> {
        self.users.get(passkey)
    }

    /// The torrent `info_hash` names, if served.
    pub fn torrent(&self, info_hash: &InfoHash) -> Option<Torrent> {
        self.torrents.get(&info_hash.0)
    }

    /// Whether the first read of the site's tables has completed (until then
    /// announces are told to retry).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Freeleech tokens and personal freeleech.
    pub fn freeleech(&self) -> &Freeleech {
        &self.freeleech
    }

    /// Served users and torrents.
    pub fn counts(&self) -> (usize, usize) {
        (self.users.len(), self.torrents.len())
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply changed `rt_users` rows: enabled ones are served (under their
    /// current passkey), disabled ones no longer. Returns the rows refused.
    pub fn apply_users(&self, rows: impl IntoIterator<Item = UserRow>) -> Vec<RowError> {
        let mut errors = Vec::new();
        let mut keys = self.keys();
        for row in rows {
            if keys.superseded(Member::User(row.id), row.updated) {
                continue;
            }
            let Some(passkey) = valid_passkey(&row.passkey) else {
                // Whatever key the id served before is withdrawn: a site
                // that blanks a passkey means to revoke it.
                self.withdraw(&mut keys, Member::User(row.id));
                errors.push(RowError::Passkey { id: row.id });
                continue;
            };
            // The old key goes only if it is another (a row read again
            // must never be missing for a moment: that refuses for good).
            match keys.users.remove(&row.id) {
                Some(old) if old != passkey || !row.enabled => {
                    self.users.remove_if(&old, |u| u.id == row.id);
                }
                _ => {}
            }
            if row.enabled {
                let user = User {
                    id: row.id,
                    can_leech: row.can_leech,
                    download_factor: factor(row.download_factor),
                    upload_factor: factor(row.upload_factor),
                };
                self.users.insert(passkey.clone(), user);
                keys.users.insert(row.id, passkey);
            }
        }
        errors
    }

    /// A row of `member`'s id, changed at `updated` (unix seconds), that
    /// did not decode or validate: the key it served before is no longer
    /// served, unless the management API changed it after that.
    pub fn withdraw_member(&self, member: Member, updated: f64) {
        let mut keys = self.keys();
        if !keys.superseded(member, updated) {
            self.withdraw(&mut keys, member);
        }
    }

    fn withdraw(&self, keys: &mut Keys, member: Member) {
        match member {
            Member::User(id) => {
                if let Some(old) = keys.users.remove(&id) {
                    self.users.remove_if(&old, |u| u.id == id);
                }
            }
            Member::Torrent(id) => {
                if let Some(old) = keys.torrents.remove(&id) {
                    self.torrents.remove_if(&old, |t| t.id == id);
                }
            }
        }
    }

    /// Apply changed `rt_torrents` rows, as `apply_users`.
    pub fn apply_torrents(&self, rows: impl IntoIterator<Item = TorrentRow>) -> Vec<RowError> {
        let mut errors = Vec::new();
        let mut keys = self.keys();
        for row in rows {
            if keys.superseded(Member::Torrent(row.id), row.updated) {
                continue;
            }
            let Ok(hash) = <[u8; 20]>::try_from(row.info_hash.as_slice()) else {
                self.withdraw(&mut keys, Member::Torrent(row.id));
                errors.push(RowError::InfoHash { id: row.id });
                continue;
            };
            match keys.torrents.remove(&row.id) {
                Some(old) if old != hash || !row.enabled => {
                    self.torrents.remove_if(&old, |t| t.id == row.id);
                }
                _ => {}
            }
            if row.enabled {
                let torrent = Torrent {
                    id: row.id,
                    download_factor: factor(row.download_factor),
                    upload_factor: factor(row.upload_factor),
                };
                self.torrents.insert(hash, torrent);
                keys.torrents.insert(row.id, hash);
            }
        }
        errors
    }

    /// After a full read of both tables: stop serving every row the read
    /// did not return (deleted, or disabled) unless the management API put
    /// it there, and count as loaded.
    pub fn retain_only(&self, users: &HashSet<u64>, torrents: &HashSet<u64>) {
        let mut keys = self.keys();
        let Keys {
            users: user_keys,
            torrents: torrent_keys,
            api,
        } = &mut *keys;
        user_keys.retain(|id, k| {
            let keep = users.contains(id) || api.contains_key(&Member::User(*id));
            if !keep {
                self.users.remove_if(k, |u| u.id == *id);
            }
            keep
        });
        torrent_keys.retain(|id, h| {
            let keep = torrents.contains(id) || api.contains_key(&Member::Torrent(*id));
            if !keep {
                self.torrents.remove_if(h, |t| t.id == *id);
            }
            keep
        });
        self.loaded.store(true, Ordering::Release);
    }

    /// Private mode's admission of an announce at unix second `unix`: a
    /// served user, a served torrent, and leeching only for users who may.
    /// Returns who is credited, at which factors (download × 0 under a
    /// freeleech grant).
    pub fn admit(
        &self,
        passkey: Option<&[u8]>,
        info_hash: &InfoHash,
        left: u64,
        event: Event,
        unix: u64,
    ) -> Result<Account, Refusal> {
        if !self.loaded() {
            return Err(Refusal::SiteUnavailable);
        }
        let user = passkey
            .and_then(|k| self.user(k))
            .ok_or(Refusal::UnknownPasskey)?;
        let torrent = self
            .torrent(info_hash)
            .ok_or(Refusal::UnregisteredTorrent)?;
        if left > 0 && !user.can_leech && event != Event::Stopped {
            return Err(Refusal::LeechingNotAllowed);
        }
        let free = self.freeleech.free(user.id, torrent.id, unix);
        Ok(Account {
            user_id: user.id,
            torrent_id: torrent.id,
            upload_factor: user.upload_factor * torrent.upload_factor,
            download_factor: if free {
                0.0
            } else {
                user.download_factor * torrent.download_factor
            },
        })
    }
}

/// A row of `rt_users` or `rt_torrents`, by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    /// A user, by `rt_users.id`.
    User(u64),
    /// A torrent, by `rt_torrents.id`.
    Torrent(u64),
}

/// A passkey as the site may register it: 16 to 64 letters and digits.
pub fn valid_passkey(key: &[u8]) -> Option<Passkey> {
    let ok = (16..=64).contains(&key.len()) && key.iter().all(u8::is_ascii_alphanumeric);
    ok.then(|| Passkey::try_from(key).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"abcdef0123456789";

    fn user(id: u64, passkey: &[u8], enabled: bool) -> UserRow {
        UserRow {
            id,
            passkey: passkey.to_vec(),
            enabled,
            can_leech: true,
            download_factor: 1.0,
            upload_factor: 1.0,
            updated: 0.0,
        }
    }

    fn torrent(id: u64, hash: u8, enabled: bool) -> TorrentRow {
        TorrentRow {
            id,
            info_hash: vec![hash; 20],
            enabled,
            download_factor: 0.0,
            upload_factor: 2.0,
            updated: 0.0,
        }
    }

    fn loaded(users: Vec<UserRow>, torrents: Vec<TorrentRow>) -> SiteDirectory {
        let d = SiteDirectory::default();
        let ids = |v: Vec<u64>| v.into_iter().collect::<HashSet<u64>>();
        let (u, t) = (
            ids(users.iter().map(|r| r.id).collect()),
            ids(torrents.iter().map(|r| r.id).collect()),
        );
        assert!(d.apply_users(users).is_empty());
        assert!(d.apply_torrents(torrents).is_empty());
        d.retain_only(&u, &t);
        d
    }

    #[test]
    fn admits_served_users_on_served_torrents_with_both_factors() {
        let d = SiteDirectory::default();
        let h = InfoHash([7; 20]);
        assert_eq!(
            d.admit(Some(KEY), &h, 0, Event::None, 0),
            Err(Refusal::SiteUnavailable),
            "nothing is refused for good before the first read"
        );
        let mut u = user(1, KEY, true);
        u.upload_factor = 1.5;
        let d = loaded(vec![u], vec![torrent(9, 7, true)]);
        let a = d.admit(Some(KEY), &h, 10, Event::Started, 0).unwrap();
        assert_eq!((a.user_id, a.torrent_id), (1, 9));
        assert_eq!((a.upload_factor, a.download_factor), (3.0, 0.0));
        assert_eq!(
            d.admit(Some(b"0000000000000000"), &h, 0, Event::None, 0),
            Err(Refusal::UnknownPasskey)
        );
        assert_eq!(
            d.admit(None, &h, 0, Event::None, 0),
            Err(Refusal::UnknownPasskey)
        );
        assert_eq!(
            d.admit(Some(KEY), &InfoHash([8; 20]), 0, Event::None, 0),
            Err(Refusal::UnregisteredTorrent)
        );
    }

    #[test]
    fn a_user_who_may_not_leech_may_seed_and_stop() {
        let mut u = user(1, KEY, true);
        u.can_leech = false;
        let d = loaded(vec![u], vec![torrent(9, 7, true)]);
        let h = InfoHash([7; 20]);
        assert_eq!(
            d.admit(Some(KEY), &h, 5, Event::Started, 0),
            Err(Refusal::LeechingNotAllowed)
        );
        assert!(d.admit(Some(KEY), &h, 0, Event::None, 0).is_ok());
        assert!(d.admit(Some(KEY), &h, 5, Event::Stopped, 0).is_ok());
    }

    #[test]
    fn changed_rows_move_disable_and_full_reads_drop_the_missing() {
        let d = loaded(vec![user(1, KEY, true)], vec![torrent(9, 7, true)]);
        let new_key = b"ZZZZ0123456789ZZ";
        d.apply_users([user(1, new_key, true)]);
        assert!(d.user(KEY).is_none(), "the old passkey is no longer served");
        assert_eq!(d.user(new_key).unwrap().id, 1);
        d.apply_torrents([torrent(9, 7, false)]);
        assert!(d.torrent(&InfoHash([7; 20])).is_none());
        d.apply_users([user(2, KEY, true)]);
        assert_eq!(d.counts(), (2, 0));
        d.retain_only(&[2].into_iter().collect(), &HashSet::new());
        assert!(d.user(new_key).is_none() && d.user(KEY).is_some());
        // Two users swap passkeys in one read.
        let other = b"YYYY0123456789YY";
        d.apply_users([user(5, other, true)]);
        d.apply_users([user(2, other, true), user(5, KEY, true)]);
        assert_eq!((d.user(other).unwrap().id, d.user(KEY).unwrap().id), (2, 5));
        let errors = d.apply_users([user(3, b"short", true)]);
        assert_eq!(errors, vec![RowError::Passkey { id: 3 }]);
        let mut bad = torrent(4, 1, true);
        bad.info_hash.pop();
        assert_eq!(d.apply_torrents([bad]), vec![RowError::InfoHash { id: 4 }]);
    }

    #[test]
    fn a_bad_row_withdraws_what_its_id_served() {
        let d = loaded(vec![user(1, KEY, true)], vec![torrent(9, 7, true)]);
        assert_eq!(
            d.apply_users([user(1, b"", true)]),
            vec![RowError::Passkey { id: 1 }]
        );
        assert!(d.user(KEY).is_none(), "an emptied passkey is not served");
        let mut bad = torrent(9, 7, true);
        bad.info_hash.truncate(19);
        d.apply_torrents([bad]);
        assert!(d.torrent(&InfoHash([7; 20])).is_none());
        // A row that did not decode at all, known by its id only.
        d.apply_users([user(2, KEY, true)]);
        d.withdraw_member(Member::User(2), 0.0);
        assert!(d.user(KEY).is_none());
        assert_eq!(d.counts(), (0, 0));
    }

    #[test]
    fn factors_are_bounded() {
        let mut u = user(1, KEY, true);
        (u.upload_factor, u.download_factor) = (f64::NAN, -3.0);
        let mut t = torrent(9, 7, true);
        t.upload_factor = 1e9;
        let d = loaded(vec![u], vec![t]);
        let a = d
            .admit(Some(KEY), &InfoHash([7; 20]), 0, Event::None, 0)
            .unwrap();
        assert_eq!((a.upload_factor, a.download_factor), (MAX_FACTOR, 0.0));
    }
}
