//! `PUT`/`DELETE /api/allow/{info_hash}` and `/api/deny/{info_hash}`: an
//! info hash put on or taken off the access list at once, over the file
//! (`tracker::list_overlay`). A torrent that stops being served loses its
//! swarm now.

use serde_json::json;

use super::body::{self, hex};
use super::{AdminApi, Clock, Reply};
use crate::protocol::InfoHash;
use crate::tracker::access::AccessMode;

impl AdminApi {
    pub(super) fn list(&self, list: &str, hash: &str, put: bool, clock: Clock) -> Reply {
        let rules = self.tracker.access();
        let wanted = if list == "allow" {
            AccessMode::Allow
        } else {
            AccessMode::Deny
        };
        if rules.mode != wanted {
            let mode = format!("{:?}", rules.mode).to_lowercase();
            return Reply::error(
                409,
                format!("access.mode is {mode}; /api/{list}/ needs access.mode = \"{list}\""),
            );
        }
        let h = match body::info_hash("info_hash", hash) {
            Ok(h) => h,
            Err(e) => return Reply::error(400, e.0),
        };
        let listed = rules.permits(&InfoHash(h)) == (wanted == AccessMode::Allow);
        if !put && !listed {
            return Reply::error(404, format!("{} is not on the {list} list", hex(&h)));
        }
        if let Err(e) = rules.api_changes().hashes.set(h, put) {
            return Reply::full(e);
        }
        let refused_now = put == (wanted == AccessMode::Deny);
        let removed = if refused_now {
            self.drop_swarm(&h, clock)
        } else {
            0
        };
        let verb = if put { "put on" } else { "taken off" };
        tracing::info!(
            "admin: {} {verb} the {list} list; {removed} peers removed",
            hex(&h)
        );
        Reply::ok(json!({ "info_hash": hex(&h), "listed": put, "peers_removed": removed }))
    }
}
