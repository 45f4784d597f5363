//! The management API's changes to the directory: a user or torrent put
//! or withdrawn at once, and remembered with the time of the change so a
//! database read of an older row does not undo it (`Keys::superseded`:
//! the newer `updated_at` wins).

use super::{Keys, Member, RowError, SiteDirectory, TorrentRow, UserRow};
use crate::tracker::ledger::Passkey;
use crate::tracker::list_overlay::{MAX_API_ENTRIES, OverlayFull};

/// Why the directory did not take an API change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiRefusal {
    /// The row is not one the directory can serve.
    #[error("{0}")]
    Row(#[from] RowError),
    /// The API's remembered changes are at their bound.
    #[error("{0}")]
    Full(#[from] OverlayFull),
}

impl Keys {
    /// Remember that the API changed `member` at `at` (unix seconds). The
    /// latest change's time, even if the clock stepped back: the row the
    /// API applies next carries it, and must not be skipped.
    fn api_changed(&mut self, member: Member, at: f64) -> Result<(), OverlayFull> {
        if !self.api.contains_key(&member) && self.api.len() >= MAX_API_ENTRIES {
            return Err(OverlayFull);
        }
        self.api.insert(member, at);
        Ok(())
    }
}

impl SiteDirectory {
    /// Put a user as the API sent it (`row.updated`: now), in force at
    /// once; a database row changed before now will not undo it.
    pub fn put_user(&self, row: UserRow) -> Result<(), ApiRefusal> {
        if super::valid_passkey(&row.passkey).is_none() {
            return Err(RowError::Passkey { id: row.id }.into());
        }
        self.keys().api_changed(Member::User(row.id), row.updated)?;
        self.apply_users([row]);
        Ok(())
    }

    /// Put a torrent as the API sent it, as `put_user`.
    pub fn put_torrent(&self, row: TorrentRow) -> Result<(), ApiRefusal> {
        if row.info_hash.len() != 20 {
            return Err(RowError::InfoHash { id: row.id }.into());
        }
        self.keys()
            .api_changed(Member::Torrent(row.id), row.updated)?;
        self.apply_torrents([row]);
        Ok(())
    }

    /// Stop serving user `id` at once (unix time `at`); returns the passkey
    /// it had, or `None` if it was not served.
    pub fn delete_user(&self, id: u64, at: f64) -> Result<Option<Passkey>, OverlayFull> {
        let mut keys = self.keys();
        let Some(passkey) = keys.users.get(&id).cloned() else {
            return Ok(None);
        };
        keys.api_changed(Member::User(id), at)?;
        self.withdraw(&mut keys, Member::User(id));
        Ok(Some(passkey))
    }

    /// Stop serving torrent `id` at once; returns its info hash, or `None`
    /// if it was not served.
    pub fn delete_torrent(&self, id: u64, at: f64) -> Result<Option<[u8; 20]>, OverlayFull> {
        let mut keys = self.keys();
        let Some(hash) = keys.torrents.get(&id).copied() else {
            return Ok(None);
        };
        keys.api_changed(Member::Torrent(id), at)?;
        self.withdraw(&mut keys, Member::Torrent(id));
        Ok(Some(hash))
    }

    /// Forget the API's changes made before `before` (unix seconds): once
    /// no incremental read can return a row older than a change, the
    /// database is the truth again (a full read applies what it says).
    /// Returns how many went.
    pub fn forget_api_changes(&self, before: f64) -> usize {
        let mut keys = self.keys();
        let n = keys.api.len();
        keys.api.retain(|_, t| *t >= before);
        n - keys.api.len()
    }

    /// The passkey user `id` is served under.
    pub fn passkey_of(&self, id: u64) -> Option<Passkey> {
        self.keys().users.get(&id).cloned()
    }

    /// The info hash torrent `id` is served under.
    pub fn info_hash_of(&self, id: u64) -> Option<[u8; 20]> {
        self.keys().torrents.get(&id).copied()
    }

    /// Whether torrent `id` is served.
    pub fn torrent_served(&self, id: u64) -> bool {
        self.keys().torrents.contains_key(&id)
    }

    /// The id of the torrent `info_hash` names, if served.
    pub fn torrent_id(&self, info_hash: &[u8; 20]) -> Option<u64> {
        self.torrents.get(info_hash).map(|t| t.id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KEY: &[u8] = b"abcdef0123456789";

    fn user(id: u64, enabled: bool, updated: f64) -> UserRow {
        UserRow {
            id,
            passkey: KEY.to_vec(),
            enabled,
            can_leech: true,
            download_factor: 1.0,
            upload_factor: 1.0,
            updated,
        }
    }

    #[test]
    fn the_newer_change_wins_between_the_api_and_the_site_s_rows() {
        let d = SiteDirectory::default();
        d.put_user(user(1, true, 100.0)).unwrap();
        d.apply_users([user(1, false, 99.0)]);
        assert!(d.user(KEY).is_some(), "an older row does not undo the API");
        d.retain_only(&HashSet::new(), &HashSet::new());
        assert!(d.user(KEY).is_some(), "nor does a full read without it");
        d.apply_users([user(1, false, 100.5)]);
        assert!(d.user(KEY).is_none(), "a newer row wins");
        d.apply_users([user(1, true, 50.0)]);
        assert!(d.user(KEY).is_some(), "and the API's change is forgotten");
        assert_eq!(
            d.delete_user(1, 200.0),
            Ok(Some(Passkey::try_from(KEY).unwrap()))
        );
        assert_eq!(d.delete_user(1, 201.0), Ok(None));
        d.apply_users([user(1, true, 150.0)]);
        assert!(d.user(KEY).is_none(), "a deleted user stays deleted");
        let mut bad = user(2, true, 1.0);
        bad.passkey = b"short".to_vec();
        assert_eq!(
            d.put_user(bad),
            Err(ApiRefusal::Row(RowError::Passkey { id: 2 }))
        );
    }
}
