//! `PUT`/`DELETE /api/freeleech-tokens/{user_id}/{torrent_id}` and
//! `/api/users/{id}/personal-freeleech`: a user's download credited × 0
//! from the next announce, on one torrent or on all, until a unix second
//! or for good (`tracker::site::Freeleech`). Database mode only: a grant
//! names the site's user and torrent ids.

use serde_json::json;

use super::body::Body;
use super::{AdminApi, Clock, Reply, path_id};
use crate::tracker::site::{Grant, NO_END};

impl AdminApi {
    /// Grant (`put`) or take back freeleech of user `user` on `torrent`
    /// (None: personal freeleech, every torrent).
    pub(super) fn freeleech(
        &self,
        user: &str,
        torrent: Option<&str>,
        put: Option<&[u8]>,
        clock: Clock,
    ) -> Reply {
        let rules = self.tracker.access();
        let Some(site) = rules.site() else {
            return Reply::error(409, "freeleech needs [private] database (the site's ids)");
        };
        let user_id = match path_id("user_id", user) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let torrent_id = match torrent.map(|t| path_id("torrent_id", t)).transpose() {
            Ok(id) => id.unwrap_or(0),
            Err(r) => return r,
        };
        let what = if torrent_id == 0 {
            format!("personal freeleech of user {user_id}")
        } else {
            format!("freeleech token of user {user_id} on torrent {torrent_id}")
        };
        let Some(raw) = put else {
            if !site.freeleech().revoke(user_id, torrent_id) {
                return Reply::error(404, format!("no {what}"));
            }
            tracing::info!("admin: {what} taken back");
            return Reply::ok(
                json!({ "user_id": user_id, "torrent_id": torrent_id, "deleted": true }),
            );
        };
        if site.passkey_of(user_id).is_none() {
            return Reply::error(404, format!("user {user_id} is not served"));
        }
        if torrent_id != 0 && !site.torrent_served(torrent_id) {
            return Reply::error(404, format!("torrent {torrent_id} is not served"));
        }
        let until = match Body::parse(raw, &["until"]).and_then(|b| b.until("until")) {
            Ok(until) => until,
            Err(e) => return Reply::error(400, e.0),
        };
        if until.is_some_and(|u| (u as f64) <= clock.unix) {
            return Reply::error(400, "until: is not in the future");
        }
        let grant = Grant {
            user_id,
            torrent_id,
            until: until.unwrap_or(NO_END),
        };
        if let Err(e) = site.freeleech().grant(grant) {
            return Reply::full(e);
        }
        let shown = until.map_or("for good".to_string(), |u| format!("until {u}"));
        tracing::info!("admin: {what} granted {shown}");
        Reply::ok(json!({ "user_id": user_id, "torrent_id": torrent_id, "until": until }))
    }
}
