//! The composition root: the shared `Tracker` built from the config, with
//! its random keys drawn here (the sans-I/O core never asks the OS for
//! randomness). `net::Server` serves a tracker built here.

use std::sync::Arc;

use rand::Rng;

use crate::config::{Config, ConfigError};
use crate::tracker::Tracker;
use crate::tracker::access::AccessRules;
use crate::tracker::address_cap::AddressCap;
use crate::tracker::announce::Limits;
use crate::tracker::change::PublishPolicy;
use crate::tracker::connection_id::ConnectionIdIssuer;
use crate::tracker::ledger::{LedgerRules, TransferLedger};
use crate::tracker::peer_set::AddrHasher;
use crate::tracker::rate_limit::RateLimiter;
use crate::tracker::site::SiteDirectory;
use crate::tracker::table::SwarmTable;

/// What the operator's files gave, read before the start (`Config::
/// access_rules`, `Config::cluster_keys`).
#[derive(Default)]
pub struct OperatorFiles {
    /// With private mode on a database, they carry its (empty) directory,
    /// which the database thread fills.
    pub rules: AccessRules,
    /// Cluster mode's keys (connection ids, messages), shared by every node.
    pub cluster_keys: Option<crate::config::ClusterKeys>,
}

impl OperatorFiles {
    /// Read the files `config` names (lists, bans, passkeys, the cluster
    /// secret), each within its bound.
    pub fn read(config: &Config) -> Result<OperatorFiles, ConfigError> {
        let p = &config.private;
        let site = (p.enabled && p.database.is_some()).then(|| Arc::new(SiteDirectory::default()));
        Ok(OperatorFiles {
            rules: config.access_rules()?.with_site(site),
            cluster_keys: config.cluster_keys()?,
        })
    }
}

/// The tracker `config` describes: its policy, an empty swarm table keyed
/// at random, a connection-id key (random, or in cluster mode the shared
/// one on unix time: tracker time 0 is `unix_start`), rate limits, the
/// access rules, and in cluster mode the rule of what it publishes.
pub fn build_tracker(config: &Config, files: OperatorFiles, unix_start: u64) -> Tracker {
    let mut rng = rand::rng();
    let mut key = [0u8; 16];
    rng.fill_bytes(&mut key);
    let connection_ids = match files.cluster_keys.as_ref().map(|k| k.connection_ids) {
        Some(shared) => ConnectionIdIssuer::new(shared).with_clock_base(unix_start as u32),
        None => ConnectionIdIssuer::new(key),
    }
    .with_lifetime(config.udp.connection_id_lifetime);
    let l = &config.limits;
    let mut limiter = |per_second: u32, burst: u32| {
        (per_second > 0).then(|| {
            RateLimiter::new(
                per_second,
                burst,
                l.slots as usize,
                AddrHasher::new(rng.next_u64(), rng.next_u64()),
            )
        })
    };
    let limits = Limits {
        connects: limiter(l.connects_per_second, l.connect_burst),
        announces: limiter(l.announces_per_second, l.announce_burst),
    };
    let table = SwarmTable::new(
        config.tracker.shards as usize,
        [rng.next_u64(), rng.next_u64()],
    )
    .with_max_idle(config.tracker.max_idle_torrents as usize);
    let ledger = TransferLedger::new(LedgerRules {
        max_peers: config.private.max_peers_per_user_torrent,
        seed_gap_cap: config.tracker.peer_timeout,
        unix_start,
        cuts: config.private.enabled && config.private.database.is_some(),
        max_rate: config.private.max_rate,
        write_back: config.private.enabled
            && config.private.database.is_some()
            && config.private.write_back,
    });
    let mut tracker = Tracker::new(config.announce_policy(), table, connection_ids)
        .with_limits(limits)
        .with_ledger(ledger);
    if config.cluster.enabled {
        tracker = tracker.with_publish(PublishPolicy {
            refresh_interval: config.cluster.refresh_interval,
        });
    }
    tracker.set_access(files.rules);
    tracker
}

/// The HTTP workers' shared cap on connections per client address.
pub fn build_address_cap(config: &Config) -> AddressCap {
    let mut rng = rand::rng();
    AddressCap::new(
        config.http.max_connections_per_ip,
        config.http.trusted_proxies.clone(),
        AddrHasher::new(rng.next_u64(), rng.next_u64()),
    )
}

/// A seed for a worker's RNG.
pub fn worker_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    seed
}
