//! The database thread's half that reads: the site's users and torrents
//! into the `SiteDirectory`, every enabled row at start and on SIGHUP,
//! then the rows whose `updated_at` moved (from `LOOKBACK_SECONDS` before
//! the previous read, so a row committed late is not missed).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use mysql::prelude::Queryable;

use super::sql::{self, Table};
use super::{ROW_CHUNK, Worker};
use crate::clock::unix_now;
use crate::tracker::site::{Member, SiteDirectory, TorrentRow, UserRow};

/// Skipped rows logged one by one per read; the rest are counted only.
const LOGGED_ROWS: usize = 10;

impl Worker {
    /// Read changed rows of both tables (every enabled row with `all`,
    /// then drop what the read did not return).
    pub(super) fn read(&mut self, all: bool) -> Result<(), mysql::Error> {
        let mut seen = [Default::default(), Default::default()];
        // Taken before the watermark: the next read returns rows from
        // there, so a change is kept for a whole window past it.
        let started = crate::clock::unix_ms() as f64 / 1000.0;
        let mark: Option<String> = self.connected()?.query_first(sql::watermark_query())?;
        let since = if all { None } else { self.watermark.clone() };
        for (i, table) in [Table::Users, Table::Torrents].into_iter().enumerate() {
            seen[i] = self.read_table(table, since.as_deref())?;
        }
        self.watermark = mark;
        // An API change holds against rows older than it while a read can
        // still return one: the lookback and two syncs, then it is the
        // database's word again.
        let window =
            f64::from(sql::LOOKBACK_SECONDS) + 2.0 * self.setup.sync_interval.as_secs_f64();
        self.setup.site.forget_api_changes(started - window);
        self.read_freeleech()?;
        if all {
            self.setup.site.retain_only(&seen[0], &seen[1]);
            let (users, torrents) = self.setup.site.counts();
            tracing::info!("database: {users} users and {torrents} torrents served");
        }
        self.stats.last_sync.store(unix_now(), Ordering::Relaxed);
        Ok(())
    }

    /// Stream one table's rows into the directory; returns their ids.
    fn read_table(
        &mut self,
        table: Table,
        since: Option<&str>,
    ) -> Result<HashSet<u64>, mysql::Error> {
        let (query, params) = table.rows_query(since);
        let site = self.setup.site.clone();
        let conn = self.connected()?;
        let mut ids = std::collections::HashSet::new();
        let mut result = conn.exec_iter(query, params)?;
        let mut users = Vec::new();
        let mut torrents = Vec::new();
        let mut bad = 0;
        for row in result.by_ref() {
            let values = row?.unwrap();
            let decoded = match table {
                Table::Users => sql::user_row(&values).map(|r| users.push(r)),
                Table::Torrents => sql::torrent_row(&values).map(|r| torrents.push(r)),
            };
            if let Err(undecoded) = decoded {
                // One bad row is skipped and counted; the key its id
                // served is withdrawn; the rows after it are read.
                if bad < LOGGED_ROWS {
                    tracing::warn!("database: {} row skipped: {undecoded}", table.name());
                }
                bad += 1;
                if let Some(id) = undecoded.id {
                    let member = match table {
                        Table::Users => Member::User(id),
                        Table::Torrents => Member::Torrent(id),
                    };
                    site.withdraw_member(member, undecoded.updated);
                }
            }
            if users.len() + torrents.len() >= ROW_CHUNK {
                bad += apply_rows(&site, &mut users, &mut torrents, &mut ids);
            }
        }
        drop(result);
        bad += apply_rows(&site, &mut users, &mut torrents, &mut ids);
        self.stats.bad_rows.fetch_add(bad as u64, Ordering::Relaxed);
        Ok(ids)
    }
}

impl Worker {
    /// Read `rt_freeleech_tokens` whole and apply what changed; drop
    /// grants whose time is up. A missing table or grant leaves freeleech
    /// to the API (logged once per change), never fails the sync.
    fn read_freeleech(&mut self) -> Result<(), mysql::Error> {
        let site = self.setup.site.clone();
        site.freeleech().expire(unix_now());
        let conn = self.connected()?;
        let rows: Vec<mysql::Row> = match conn.query(sql::freeleech_query()) {
            Ok(rows) => rows,
            Err(e) if super::credits::refused(&e) => {
                if !self.freeleech_missing {
                    tracing::warn!(
                        "database: rt_freeleech_tokens cannot be read ({e}); freeleech comes from \
                         the API only until it can (contrib/schema/mysql-freeleech.sql)"
                    );
                    self.freeleech_missing = true;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if std::mem::take(&mut self.freeleech_missing) {
            tracing::info!("database: rt_freeleech_tokens is read again");
        }
        if rows.len() > sql::MAX_FREELEECH_ROWS {
            tracing::warn!(
                "database: rt_freeleech_tokens has more than {} grants in force; the rest are left out",
                sql::MAX_FREELEECH_ROWS
            );
        }
        let mut grants = Vec::with_capacity(rows.len().min(sql::MAX_FREELEECH_ROWS));
        let mut bad = 0u64;
        for row in rows.into_iter().take(sql::MAX_FREELEECH_ROWS) {
            match sql::grant_row(&row.unwrap()) {
                Ok(g) => grants.push(g),
                Err(e) if bad < LOGGED_ROWS as u64 => {
                    tracing::warn!("database: rt_freeleech_tokens row skipped: {e}");
                    bad += 1;
                }
                Err(_) => bad += 1,
            }
        }
        self.stats.bad_rows.fetch_add(bad, Ordering::Relaxed);
        let first = !std::mem::replace(&mut self.freeleech_read, true);
        site.freeleech().apply_rows(&grants, first);
        Ok(())
    }
}

/// Apply collected rows to the directory; returns how many were refused
/// (each logged).
fn apply_rows(
    site: &SiteDirectory,
    users: &mut Vec<UserRow>,
    torrents: &mut Vec<TorrentRow>,
    ids: &mut HashSet<u64>,
) -> usize {
    ids.extend(users.iter().map(|r| r.id));
    ids.extend(torrents.iter().map(|r| r.id));
    let mut errors = site.apply_users(users.drain(..));
    errors.extend(site.apply_torrents(torrents.drain(..)));
    for e in errors.iter().take(LOGGED_ROWS) {
        tracing::warn!("database: row skipped: {e}");
    }
    errors.len()
}
