//! Configuration: a TOML file (every key optional), then command-line flags
//! on top. Unknown keys are errors that name the key and line, so a typo
//! never silently leaves a default in force.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::storage::operator_file::{SMALL_FILE_LIMIT, read_bounded, read_text_bounded};
use crate::tracker::AnnouncePolicy;
use crate::tracker::access::{
    AccessMode, AccessRules, ClientFilter, check_entries, parse_ban_list, parse_hash_list,
    parse_passkeys,
};
use crate::tracker::peer_set::MAX_PEER_TIMEOUT;

mod admin;
pub use admin::{AdminConfig, AdminToken, MIN_ADMIN_TOKEN};

/// The whole configuration: one section per TOML table (`--print-config`
/// shows every key with its default and a comment).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: workers and the stats log.
    pub server: ServerConfig,
    /// `[udp]`: the UDP frontend (BEP 15).
    pub udp: UdpConfig,
    /// `[http]`: the HTTP frontend (BEP 3).
    pub http: HttpConfig,
    /// `[tracker]`: what clients are told (intervals, numwant) and peer expiry.
    pub tracker: TrackerConfig,
    /// `[access]`: allow/deny lists, bans and the client filter.
    pub access: AccessConfig,
    /// `[private]`: private mode (passkeys or a site's database, credits).
    pub private: PrivateConfig,
    /// `[limits]`: per-address rate limits.
    pub limits: LimitsConfig,
    /// `[storage]`: snapshots.
    pub storage: StorageConfig,
    /// `[metrics]`: the metrics listener.
    pub metrics: MetricsConfig,
    /// `[process]`: the user to run as.
    pub process: ProcessConfig,
    /// `[tls]`: HTTPS.
    pub tls: TlsConfig,
    /// `[cluster]`: cluster mode over Redis.
    pub cluster: ClusterConfig,
    /// `[admin]`: the management API.
    pub admin: AdminConfig,
}

/// `[cluster]`: several nodes serving one set of swarms through Redis.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster mode on.
    pub enabled: bool,
    /// This node's unique name ("": the host name).
    pub node: String,
    /// One Redis server, or seed nodes of a Redis Cluster.
    pub redis: Vec<String>,
    /// `redis` names seed nodes of a Redis Cluster, not one server.
    pub redis_cluster: bool,
    /// The connection-id key shared by every node ("": none).
    pub secret_file: String,
    /// Milliseconds between flushes of this node's changes to the stream.
    pub flush_interval_ms: u64,
    /// Seconds between re-publications of an unchanged peer.
    pub refresh_interval: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            node: String::new(),
            redis: vec!["redis://127.0.0.1:6379".into()],
            redis_cluster: false,
            secret_file: String::new(),
            flush_interval_ms: 100,
            refresh_interval: 1200,
        }
    }
}

/// The keys every node of a cluster derives from its shared secret.
#[derive(Debug, Clone)]
pub struct ClusterKeys {
    /// The connection-id key (a UDP connection id issued by one node is valid
    /// at every other).
    pub connection_ids: [u8; 16],
    /// The key that tags stream messages and checkpoints.
    pub mac: crate::cluster::mac::ClusterMac,
}

/// The shortest cluster secret: 32 bytes (256 bits).
pub const MIN_CLUSTER_SECRET: usize = 32;

/// `[limits]`: token buckets per client address (0 per second: off).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// UDP connects per second per address.
    pub connects_per_second: u32,
    /// Connects an address may send at once.
    pub connect_burst: u32,
    /// Announces per second per address (UDP and HTTP).
    pub announces_per_second: u32,
    /// Announces an address may send at once.
    pub announce_burst: u32,
    /// Buckets in the fixed table addresses hash to.
    pub slots: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connects_per_second: 0,
            connect_burst: 10,
            announces_per_second: 0,
            announce_burst: 20,
            slots: 65_536,
        }
    }
}

/// `[tls]`: the HTTPS listeners and their certificate.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Addresses for HTTPS (the HTTP frontend over TLS).
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain.
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key.
    pub key: Option<std::path::PathBuf>,
}

/// `[process]`: what the process does after binding.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// User to switch to after binding (when started as root).
    pub user: Option<String>,
}

/// `[metrics]`: the metrics listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve /metrics, /health and the stats page.
    pub enabled: bool,
    /// Address of /metrics, /health and the stats page.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
        }
    }
}

/// `[storage]`: snapshots of the swarm table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Snapshot file of the swarm table (none: swarms live in memory only).
    pub snapshot: Option<std::path::PathBuf>,
    /// Seconds between snapshots (one is also written at stop).
    pub snapshot_interval: u64,
    /// The tracker's own directory: where files it keeps go by default
    /// (the credit journal of database mode, `credits.journal`).
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            snapshot: None,
            snapshot_interval: 300,
            state_dir: None,
        }
    }
}

/// `[private]`: private mode (a passkey file, or a site's database).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateConfig {
    /// Private mode on: every announce needs a passkey.
    pub enabled: bool,
    /// File of passkeys (this or `database` when enabled).
    pub passkeys: Option<std::path::PathBuf>,
    /// The site's database: `mysql://user:password@host:port/db`.
    pub database: Option<String>,
    /// Seconds between reads of the rows that changed.
    pub sync_interval: u64,
    /// Seconds between writes of the credits to the database.
    pub flush_interval: u64,
    /// This tracker's name in `rt_batches` (empty: the host name).
    pub node: String,
    /// Most peers (peer ids) of one user in one torrent; 0: no cap.
    pub max_peers_per_user_torrent: u32,
    /// Credits (per user and torrent) kept in memory while the database
    /// is down; beyond, they spill to the journal.
    pub max_pending_credits: u64,
    /// Bytes a second one client session may plausibly move each way;
    /// reported increases beyond are not credited.
    pub max_rate: u64,
    /// Journal the uploaded/downloaded credits are appended to.
    pub ledger: Option<std::path::PathBuf>,
    /// Seconds between appends to the journal.
    pub ledger_interval: u64,
    /// With a database, also write `rt_peers`, `rt_torrent_stats` and
    /// the history columns of `rt_credits`.
    pub write_back: bool,
}

impl Default for PrivateConfig {
    fn default() -> Self {
        PrivateConfig {
            enabled: false,
            passkeys: None,
            database: None,
            sync_interval: 10,
            flush_interval: 3,
            node: String::new(),
            max_peers_per_user_torrent: 3,
            max_pending_credits: 1_000_000,
            max_rate: crate::tracker::ledger::DEFAULT_MAX_RATE,
            ledger: None,
            ledger_interval: 60,
            write_back: true,
        }
    }
}

/// `[access]`: which torrents, addresses and clients are served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// The info-hash list: off, allow (only those listed) or deny.
    pub mode: AccessMode,
    /// Info-hash list file (required unless mode is "off").
    pub list: Option<std::path::PathBuf>,
    /// File of banned IP addresses and CIDR ranges.
    pub banned: Option<std::path::PathBuf>,
    /// Client filter by peer_id prefix.
    pub clients: AccessMode,
    /// The peer_id prefixes the client filter matches.
    pub client_prefixes: Vec<String>,
    /// Largest list, ban or passkey file read (bytes).
    pub max_list_bytes: u64,
    /// Most entries in one of those files.
    pub max_list_entries: u64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            mode: AccessMode::Off,
            list: None,
            banned: None,
            clients: AccessMode::Off,
            client_prefixes: Vec::new(),
            // 5 M info hashes are 205 MB of text; 256 MiB leaves room for
            // comments.
            max_list_bytes: 256 << 20,
            max_list_entries: 5_000_000,
        }
    }
}

/// `[server]`: the process's workers and its stats log line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Worker threads per frontend (0: one per core).
    pub workers: usize,
    /// Seconds between stats log lines (0: none).
    pub stats_interval: u64,
}

/// How HTTP (and HTTPS) workers talk to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpBackend {
    /// io_uring where it works, else epoll (one WARN line says why).
    Auto,
    /// Multishot accepts, one receive or send in flight per connection.
    IoUring,
    /// epoll readiness and non-blocking sockets: anywhere.
    Epoll,
}

impl std::fmt::Display for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpBackend::Auto => "auto",
            HttpBackend::IoUring => "io_uring",
            HttpBackend::Epoll => "epoll",
        })
    }
}

/// How UDP workers talk to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UdpBackend {
    /// io_uring where it works (the probe at start succeeds, Linux 6.0+),
    /// else mmsg, said in one WARN line with the reason.
    Auto,
    /// Multishot receives over a provided-buffer ring, batched sends.
    IoUring,
    /// poll + recvmmsg + sendmmsg: for kernels or containers without
    /// io_uring, and the baseline io_uring is measured against.
    Mmsg,
}

impl std::fmt::Display for UdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UdpBackend::Auto => "auto",
            UdpBackend::IoUring => "io_uring",
            UdpBackend::Mmsg => "mmsg",
        })
    }
}

/// `[udp]`: the UDP frontend (BEP 15).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    /// Addresses to serve UDP on.
    pub listen: Vec<SocketAddr>,
    /// io_uring, mmsg (recvmmsg/sendmmsg), or auto.
    pub backend: UdpBackend,
    /// Provided receive buffers per worker (2 KiB each).
    pub recv_buffers: u32,
    /// Reply slots per worker (replies in flight).
    pub send_slots: u32,
    /// SO_RCVBUF of each socket, in bytes (0: the kernel's default).
    pub socket_recv_buffer: u32,
    /// Seconds a connection id is accepted after it was issued.
    pub connection_id_lifetime: u32,
}

/// `[http]`: the HTTP frontend (BEP 3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Addresses to serve HTTP on.
    pub listen: Vec<SocketAddr>,
    /// io_uring, epoll, or auto.
    pub backend: HttpBackend,
    /// Answer a scrape without `info_hash` with every torrent.
    pub full_scrape: bool,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Open connections per worker.
    pub max_connections: u32,
    /// Open connections per client address, over all workers.
    pub max_connections_per_ip: u32,
    /// Seconds a connection may idle, or take to send a request head.
    pub idle_timeout: u32,
    /// Gzip big scrape bodies for clients that accept it.
    pub gzip: bool,
    /// The smallest scrape body gzipped, in bytes.
    pub gzip_min_bytes: u32,
}

/// `[tracker]`: what clients are told, and how long peers live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Seconds between announces a client is told.
    pub interval: u32,
    /// `min interval`: an announce sooner is answered but refreshes nothing.
    pub min_interval: u32,
    /// Seconds after its last announce a peer is dropped.
    pub peer_timeout: u32,
    /// Peers in a reply when the client does not say.
    pub default_numwant: u32,
    /// Most peers in one reply.
    pub max_numwant: u32,
    /// Honour the announce's `ip` field or parameter.
    pub allow_ip_param: bool,
    /// Shards of the swarm table (a power of two).
    pub shards: u32,
    /// Each reply's interval is drawn from [interval × (1 − this),
    /// interval] (0 to 0.5).
    pub interval_jitter: f64,
    /// HTTP replies list peers of both families (`peers` and `peers6`).
    pub dual_stack_replies: bool,
    /// Completed counts kept for torrents without peers.
    pub max_idle_torrents: u64,
}

fn default_addr() -> SocketAddr {
    "0.0.0.0:6969".parse().expect("valid literal")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                workers: 0,
                stats_interval: 60,
            },
            udp: UdpConfig {
                listen: vec![default_addr()],
                backend: UdpBackend::Auto,
                recv_buffers: 256,
                send_slots: 1024,
                socket_recv_buffer: 1 << 20,
                connection_id_lifetime: crate::tracker::connection_id::CONNECTION_ID_LIFETIME,
            },
            http: HttpConfig {
                listen: vec![default_addr()],
                backend: HttpBackend::Auto,
                full_scrape: false,
                trusted_proxies: Vec::new(),
                max_connections: 10_000,
                max_connections_per_ip: 64,
                idle_timeout: 30,
                gzip: true,
                gzip_min_bytes: crate::protocol::gzip::GZIP_MIN_BYTES as u32,
            },
            tracker: {
                // The announce policy's defaults are the tracker's.
                let p = AnnouncePolicy::default();
                TrackerConfig {
                    interval: p.interval,
                    min_interval: p.min_interval,
                    peer_timeout: p.peer_timeout,
                    default_numwant: p.default_numwant as u32,
                    max_numwant: p.max_numwant as u32,
                    allow_ip_param: p.allow_ip_param,
                    shards: 1024,
                    interval_jitter: p.interval_jitter,
                    dual_stack_replies: p.dual_stack_replies,
                    max_idle_torrents: crate::tracker::table::DEFAULT_MAX_IDLE_TORRENTS as u64,
                }
            },
            access: AccessConfig::default(),
            private: PrivateConfig::default(),
            limits: LimitsConfig::default(),
            storage: StorageConfig::default(),
            metrics: MetricsConfig::default(),
            process: ProcessConfig::default(),
            tls: TlsConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Config::default().server
    }
}
impl Default for UdpConfig {
    fn default() -> Self {
        Config::default().udp
    }
}
impl Default for HttpConfig {
    fn default() -> Self {
        Config::default().http
    }
}
impl Default for TrackerConfig {
    fn default() -> Self {
        Config::default().tracker
    }
}

/// A config that cannot be used: each names the file, key or line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A file the config names (a list, the secret) cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadList {
        /// The file's path.
        path: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or has an unknown key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file's path.
        path: String,
        /// What the parser said, with the line.
        message: String,
    },
    /// A key's value is not allowed.
    #[error("{location}{key} = {value}: {problem}")]
    Invalid {
        /// Where: the file and line, or the command line.
        location: String,
        /// The key, as `section.key`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// A value of `key` that the config cannot take (its place in the file is
/// added where the file is known).
fn invalid(key: &'static str, value: String, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        location: String::new(),
        key,
        value,
        problem: problem.to_string(),
    }
}

/// The credit journal's file name in `storage.state_dir`.
pub const CREDIT_JOURNAL_NAME: &str = "credits.journal";

impl Config {
    /// Read and check a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let what = "config files are at most 1 MiB";
        let text = read_text_bounded(path, SMALL_FILE_LIMIT, what).map_err(|source| {
            ConfigError::Read {
                path: path.display().to_string(),
                source,
            }
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Parse and check TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: one_line(&e, text),
        })?;
        config.validate().map_err(|e| e.located(text, origin))?;
        Ok(config)
    }

    /// Check value ranges (also after command-line overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_ranges()?;
        self.check_shapes()?;
        self.check_needs()
    }

    /// Every number with a plain range, durations (seconds) included: a
    /// duration past its bound would overflow the clock arithmetic it
    /// feeds (`Instant + Duration`), so it is refused here, by key.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        const DAY: u64 = 86_400;
        let (t, u) = (&self.tracker, &self.udp);
        let ranges: [(&'static str, u64, u64, u64, &str); 24] = [
            (
                "udp.connection_id_lifetime",
                u.connection_id_lifetime.into(),
                60,
                3600,
                " seconds",
            ),
            ("server.workers", self.server.workers as u64, 0, 1024, ""),
            (
                "server.stats_interval",
                self.server.stats_interval,
                0,
                DAY,
                " seconds (0: off)",
            ),
            ("tracker.interval", t.interval.into(), 1, DAY, " seconds"),
            (
                "tracker.min_interval",
                t.min_interval.into(),
                0,
                DAY,
                " seconds",
            ),
            ("tracker.max_numwant", t.max_numwant.into(), 1, 10_000, ""),
            (
                "tracker.default_numwant",
                t.default_numwant.into(),
                1,
                10_000,
                "",
            ),
            (
                "storage.snapshot_interval",
                self.storage.snapshot_interval,
                1,
                DAY,
                " seconds",
            ),
            (
                "private.ledger_interval",
                self.private.ledger_interval,
                1,
                DAY,
                " seconds",
            ),
            (
                "private.sync_interval",
                self.private.sync_interval,
                1,
                3600,
                " seconds",
            ),
            (
                "private.flush_interval",
                self.private.flush_interval,
                1,
                3600,
                " seconds",
            ),
            (
                "private.max_pending_credits",
                self.private.max_pending_credits,
                1,
                100_000_000,
                "",
            ),
            (
                "private.max_rate",
                self.private.max_rate,
                1,
                1 << 50,
                " bytes a second",
            ),
            (
                "private.max_peers_per_user_torrent",
                self.private.max_peers_per_user_torrent.into(),
                0,
                1000,
                " (0: no cap)",
            ),
            (
                "http.max_connections",
                self.http.max_connections.into(),
                1,
                1_000_000,
                "",
            ),
            (
                "http.max_connections_per_ip",
                self.http.max_connections_per_ip.into(),
                0,
                1_000_000,
                "",
            ),
            (
                "http.idle_timeout",
                self.http.idle_timeout.into(),
                1,
                3_600,
                " seconds",
            ),
            (
                "tracker.max_idle_torrents",
                self.tracker.max_idle_torrents,
                0,
                1_000_000_000,
                "",
            ),
            (
                "http.gzip_min_bytes",
                self.http.gzip_min_bytes.into(),
                0,
                1 << 20,
                " bytes",
            ),
            ("udp.send_slots", u.send_slots.into(), 16, 65_536, ""),
            ("udp.recv_buffers", u.recv_buffers.into(), 64, 32_768, ""),
            ("limits.slots", self.limits.slots.into(), 1, 1 << 24, ""),
            (
                "access.max_list_bytes",
                self.access.max_list_bytes,
                1024,
                16 << 30,
                " bytes",
            ),
            (
                "access.max_list_entries",
                self.access.max_list_entries,
                1,
                100_000_000,
                "",
            ),
        ];
        for (key, value, min, max, unit) in ranges {
            if !(min..=max).contains(&value) {
                let problem = format!("must be {min} to {max}{unit}");
                return Err(invalid(key, value.to_string(), &problem));
            }
        }
        if t.peer_timeout < t.interval || t.peer_timeout > MAX_PEER_TIMEOUT {
            return Err(invalid(
                "tracker.peer_timeout",
                t.peer_timeout.to_string(),
                &format!(
                    "must be at least tracker.interval ({}) and at most {MAX_PEER_TIMEOUT} seconds",
                    t.interval
                ),
            ));
        }
        Ok(())
    }

    /// Sizes that must be powers of two (tables indexed by a mask).
    fn check_shapes(&self) -> Result<(), ConfigError> {
        let jitter = self.tracker.interval_jitter;
        if !(0.0..=0.5).contains(&jitter) {
            let problem = "must be a fraction from 0 to 0.5 (0.1: intervals 10% shorter at most)";
            return Err(invalid(
                "tracker.interval_jitter",
                jitter.to_string(),
                problem,
            ));
        }
        let shapes = [
            ("tracker.shards", self.tracker.shards, 65_536),
            ("udp.recv_buffers", self.udp.recv_buffers, 32_768),
            ("limits.slots", self.limits.slots, 1 << 24),
        ];
        for (key, value, max) in shapes {
            if !value.is_power_of_two() || value > max {
                let problem = format!("must be a power of two up to {max}");
                return Err(invalid(key, value.to_string(), &problem));
            }
        }
        Ok(())
    }

    /// Settings that need another one.
    fn check_needs(&self) -> Result<(), ConfigError> {
        if self.access.mode != AccessMode::Off && self.access.list.is_none() {
            return Err(invalid(
                "access.mode",
                format!("{:?}", self.access.mode).to_lowercase(),
                "needs access.list, the file of info hashes",
            ));
        }
        if self.access.clients != AccessMode::Off && self.access.client_prefixes.is_empty() {
            return Err(invalid(
                "access.clients",
                format!("{:?}", self.access.clients).to_lowercase(),
                "needs access.client_prefixes",
            ));
        }
        self.check_private()?;
        self.check_cluster()?;
        self.admin.check()?;
        if !self.tls.listen.is_empty() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(invalid(
                "tls.listen",
                format!("{:?}", self.tls.listen),
                "needs tls.cert and tls.key (PEM files)",
            ));
        }
        Ok(())
    }

    /// `[private]`, when enabled: one source of members, a database URL
    /// the client can use (checked without connecting).
    fn check_private(&self) -> Result<(), ConfigError> {
        let p = &self.private;
        if !p.enabled {
            return Ok(());
        }
        let url = match (&p.passkeys, &p.database) {
            (None, None) => {
                return Err(invalid(
                    "private.enabled",
                    "true".into(),
                    "needs private.passkeys (a file) or private.database (a mysql:// URL)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "private.database",
                    "(set)".into(),
                    "private.passkeys and private.database exclude each other",
                ));
            }
            (Some(_), None) => return Ok(()),
            (None, Some(url)) => url,
        };
        if self.credit_journal().is_none() {
            return Err(invalid(
                "private.database",
                "(set)".into(),
                "needs the credit journal that makes every flush exactly-once: set \
                 private.ledger, or [storage] state_dir (it is then state_dir/credits.journal)",
            ));
        }
        // The URL holds a password: errors never repeat it.
        let shown = || "(the URL)".to_string();
        if !url.starts_with("mysql://") {
            return Err(invalid(
                "private.database",
                shown(),
                "is not a mysql://user:password@host:port/database URL",
            ));
        }
        if let Err(e) = mysql::Opts::from_url(url) {
            return Err(invalid(
                "private.database",
                shown(),
                &format!("is not a usable mysql:// URL: {e}"),
            ));
        }
        if p.node.len() > 64 {
            return Err(invalid(
                "private.node",
                p.node.clone(),
                "is at most 64 bytes",
            ));
        }
        Ok(())
    }

    /// `[cluster]`, when enabled.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if !c.enabled {
            return Ok(());
        }
        if c.secret_file.is_empty() {
            return Err(invalid(
                "cluster.secret_file",
                "\"\"".into(),
                "cluster mode needs a secret file (the same on every node)",
            ));
        }
        let node_ok = c.node.len() <= 64
            && c.node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !node_ok {
            return Err(invalid(
                "cluster.node",
                format!("{:?}", c.node),
                "must be at most 64 letters, digits, '-', '_' or '.'",
            ));
        }
        let url_ok = |u: &String| u.starts_with("redis://") || u.starts_with("rediss://");
        if c.redis.is_empty() || !c.redis.iter().all(url_ok) {
            return Err(invalid(
                "cluster.redis",
                format!("{:?}", c.redis),
                "must list redis:// or rediss:// URLs",
            ));
        }
        if !(1..=60_000).contains(&c.flush_interval_ms) {
            return Err(invalid(
                "cluster.flush_interval_ms",
                c.flush_interval_ms.to_string(),
                "must be 1 to 60000 milliseconds",
            ));
        }
        let room = self
            .tracker
            .peer_timeout
            .saturating_sub(self.tracker.interval);
        if c.refresh_interval == 0 || c.refresh_interval > room {
            return Err(invalid(
                "cluster.refresh_interval",
                c.refresh_interval.to_string(),
                &format!(
                    "must be 1 to tracker.peer_timeout - tracker.interval ({room}) seconds, so \
                     that other nodes hear from a peer before it expires there"
                ),
            ));
        }
        Ok(())
    }

    /// Cluster mode's keys, derived from the secret file (`None` without
    /// cluster mode): the connection-id key (128 bits) and, apart from it,
    /// the key that authenticates messages and checkpoints. A missing,
    /// unreadable or short file is an error naming `cluster.secret_file`.
    pub fn cluster_keys(&self) -> Result<Option<ClusterKeys>, ConfigError> {
        let c = &self.cluster;
        if !c.enabled {
            return Ok(None);
        }
        let bad = |problem: String| {
            invalid(
                "cluster.secret_file",
                format!("{:?}", c.secret_file),
                &problem,
            )
        };
        let path = Path::new(&c.secret_file);
        let bytes = read_bounded(path, SMALL_FILE_LIMIT, "secret files are at most 1 MiB")
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() < MIN_CLUSTER_SECRET {
            return Err(bad(format!(
                "holds {} bytes; it needs at least {MIN_CLUSTER_SECRET} (e.g. head -c 32 /dev/urandom)",
                bytes.len()
            )));
        }
        Ok(Some(ClusterKeys {
            connection_ids: crate::tracker::connection_id::key_from_secret(&bytes),
            mac: crate::cluster::mac::ClusterMac::from_secret(&bytes),
        }))
    }

    /// Private mode on a database: its credit journal, `private.ledger` or
    /// else `credits.journal` in `storage.state_dir` (none: neither is set).
    pub fn credit_journal(&self) -> Option<std::path::PathBuf> {
        let in_state_dir =
            || (self.storage.state_dir.as_ref()).map(|d| d.join(CREDIT_JOURNAL_NAME));
        self.private.ledger.clone().or_else(in_state_dir)
    }

    /// The announce policy `[tracker]` describes.
    pub fn announce_policy(&self) -> AnnouncePolicy {
        let t = &self.tracker;
        AnnouncePolicy {
            interval: t.interval,
            min_interval: t.min_interval.min(t.interval),
            peer_timeout: t.peer_timeout,
            default_numwant: t.default_numwant as usize,
            max_numwant: t.max_numwant as usize,
            allow_ip_param: t.allow_ip_param,
            interval_jitter: t.interval_jitter,
            dual_stack_replies: t.dual_stack_replies,
        }
    }

    /// Read the access rules the config names (`[access]`). Errors name
    /// the file and line.
    pub fn access_rules(&self) -> Result<AccessRules, ConfigError> {
        let a = &self.access;
        let located =
            |path: &std::path::Path, e: crate::tracker::access::ListError| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            };
        // Bounded in bytes and entries: a reload's peak memory is the old
        // rules, one file's text and its parsed entries.
        let read = |path: &std::path::Path| {
            let what = "access.max_list_bytes";
            let text = read_text_bounded(path, a.max_list_bytes, what).map_err(|source| {
                ConfigError::ReadList {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            check_entries(&text, a.max_list_entries as usize).map_err(|e| located(path, e))?;
            Ok::<_, ConfigError>(text)
        };
        let mut rules = match a.list.as_ref().filter(|_| a.mode != AccessMode::Off) {
            Some(path) => {
                let hashes = parse_hash_list(&read(path)?).map_err(|e| located(path, e))?;
                AccessRules::new(a.mode, hashes)
            }
            None => AccessRules::default(),
        };
        if let Some(path) = &a.banned {
            rules = rules.with_bans(parse_ban_list(&read(path)?).map_err(|e| located(path, e))?);
        }
        rules = rules.with_clients(ClientFilter {
            mode: a.clients,
            prefixes: a
                .client_prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        });
        let private = &self.private;
        if let Some(path) = private.passkeys.as_ref().filter(|_| private.enabled) {
            rules =
                rules.with_passkeys(parse_passkeys(&read(path)?).map_err(|e| located(path, e))?);
        }
        Ok(rules)
    }

    /// The effective worker count (0 in the config means one per core).
    pub fn worker_count(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The full default configuration, one comment per key: what
    /// `--print-config` prints. A test checks it parses back to the defaults.
    pub fn default_toml() -> String {
        let d = Config::default();
        let list = |v: &[SocketAddr]| {
            v.iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            r#"# ringtracker configuration. Every key is optional; flags on the command
# line (--udp, --http, --https, --metrics, --workers, --interval) override
# what is set here.

[server]
# Worker threads, each with its own io_uring and its own sockets
# (SO_REUSEPORT). 0 means one per CPU core.
workers = {workers}
# Seconds between log lines with the packet counters (at most 86400).
# 0 turns them off.
stats_interval = {stats_interval}

[udp]
# Addresses to serve BEP 15 on. Add "[::]:6969" for IPv6 (a socket of its
# own, IPV6_V6ONLY). Replies leave from the address a request arrived on.
listen = [{udp_listen}]
# "auto": io_uring where the kernel allows it, else mmsg (one WARN line at
# start says which and why: Docker's default seccomp profile and
# kernel.io_uring_disabled block io_uring). "io_uring" (multishot
# receives, batched sends; Linux 6.0+) or "mmsg" (poll + recvmmsg/sendmmsg)
# force one; a forced io_uring that is blocked stops the start.
backend = "{backend}"
# Receive buffers per worker in the provided-buffer ring (power of two,
# 64 to 32768; 2 KiB each). The kernel takes one only while a batch is
# being received (the rest wait in the socket buffer), so a small ring is
# enough and stays in cache; running out is counted as recv_enobufs.
recv_buffers = {recv_buffers}
# Replies that can be in flight per worker before new ones are dropped
# (and counted as drop_no_send_slot).
send_slots = {send_slots}
# SO_RCVBUF of each UDP socket in bytes; the kernel caps it at
# net.core.rmem_max. 0 keeps the kernel default. Deeper is not better
# under sustained overload: a worker then answers datagrams that waited
# long enough to leave the cache (8 MiB: 0.89-0.91 of peak goodput when
# flooded, 1 MiB: 0.94-0.96, docs/PERFORMANCE.md); a burst deeper than
# the buffer is dropped and counted, and clients retry.
socket_recv_buffer = {socket_recv_buffer}
# Seconds a connection id is accepted after the connect that issued it
# (60 to 3600). BEP 15 has clients use one for a minute and trackers accept
# it for two, but uTorrent and others keep using an id for minutes, and
# each refused id costs them a connect round trip (and us a connect). Longer
# accepts a stolen id longer: an id works only from the address it was
# issued to, so that is a spoofer who can also read our replies to it.
connection_id_lifetime = {connection_id_lifetime}

[http]
# Addresses for the HTTP announce and scrape frontend (BEP 3, 23, 7, 24, 48).
listen = [{http_listen}]
# "auto": io_uring where the kernel allows it, else epoll (one WARN line at
# start says why); "io_uring" or "epoll" force one (a forced io_uring that
# is blocked stops the start). Both serve HTTP and HTTPS alike.
backend = "{http_backend}"
# Answer a scrape without info_hash with every torrent (about 70 bytes a
# torrent; each worker rebuilds it at most every 30 s and shares it).
full_scrape = {full_scrape}
# Reverse proxies whose X-Forwarded-For / X-Real-IP headers are believed
# (exact addresses). From anyone else those headers are ignored.
trusted_proxies = [{trusted_proxies}]
# Open connections per worker (at most 1000000); further ones are closed
# at once. The soft open-file limit is raised at start to carry them all
# (max_connections x workers + 1024); where the hard limit cannot, the
# default is lowered to what fits (logged) and a value set here is a
# start-up error naming both numbers.
max_connections = {max_connections}
# Open connections one client address may hold, over all workers (an IPv6
# address counts by its /64; at most 1000000, 0 turns the cap off).
# Further ones are closed at once (drops_total{{reason="over_address_cap"}}).
# The trusted_proxies are not capped: a proxy carries everyone, capping
# clients is its job.
max_connections_per_ip = {max_connections_per_ip}
# Seconds a connection may sit idle (or half-sent) before it is closed
# (1 to 3600).
idle_timeout = {idle_timeout}
# Scrape and full-scrape bodies of at least gzip_min_bytes are sent
# gzipped (Content-Encoding: gzip) to clients whose Accept-Encoding takes
# it; smaller ones, announces and errors stay plain. A full scrape is
# compressed once per build (at most every 30 s per worker, on the first
# request that accepts gzip) and shared like its plain form: about 3.1
# times smaller up to 16 MiB (level 6: 37 ms of that worker's CPU for the
# 1.4 MB of 20,000 live torrents), about 2.9 times beyond (level 1: 76 ms
# for the 24 MB of 342,000). Info hashes themselves do not compress.
gzip = {gzip}
# The smallest body gzipped, in bytes, 0 to 1048576 (a one-torrent
# scrape is about 80).
gzip_min_bytes = {gzip_min_bytes}

[tracker]
# Seconds clients are asked to wait between announces.
interval = {interval}
# Seconds clients must wait at least between announces (HTTP `min
# interval`; capped at `interval`).
min_interval = {min_interval}
# Seconds after its last announce that a peer is forgotten. At least
# `interval`, at most {max_timeout}.
peer_timeout = {peer_timeout}
# Peers sent when a client asks for 0 or a negative number (numwant).
default_numwant = {default_numwant}
# The most peers sent in one reply (a UDP reply is also capped by what
# fits one 1500-byte packet: 242 IPv4 or 79 IPv6 peers).
max_numwant = {max_numwant}
# Use the address a client puts in the announce's `ip` field instead of
# the packet's source. Off by default: BEP 7 warns that it lets anyone
# point a swarm at a third party's address (a reflection attack).
allow_ip_param = {allow_ip_param}
# Shards of the swarm table (power of two). More shards, less contention
# between workers.
shards = {shards}
# Clients that started together (after an outage, a restart) announce
# together forever. Each reply's interval is drawn uniformly from
# [interval x (1 - interval_jitter), interval], so the herd spreads out
# within a few rounds; `min interval` is not changed. 0 to 0.5; 0: off.
interval_jitter = {interval_jitter}
# An HTTP announce gets peers of both families (BEP 7: IPv4 ones in
# `peers`, IPv6 ones in `peers6`, or all in `peers` with compact=0), its
# own family first and the other filling up to numwant, so a client that
# announced over IPv4 still meets the IPv6 seeders it may reach. UDP
# replies stay one family (BEP 15 has no field for the other).
dual_stack_replies = {dual_stack_replies}
# A torrent whose last peer leaves keeps its completed count (scrape's
# `downloaded`) in a compact table, so an index that scrapes it after a
# quiet night still sees its snatches; its next peer takes it back (the
# full scrape lists torrents with peers only). At most this many (0 to
# 1000000000; 0: none), the smallest counts dropped first when full; each
# costs 29 to 57 bytes, about 420 MB for the default 10 million. Kept in
# snapshots and cluster checkpoints (33 bytes each, in every node's).
max_idle_torrents = {max_idle_torrents}

[access]
# Which torrents are served: "off" (all), "allow" (only those in `list`)
# or "deny" (all but those in `list`). A refused announce gets a UDP
# error packet or an HTTP failure reason (retry in: never), and its swarm
# is not created; the swarm of a torrent refused after a reload goes at
# the next expiry sweep.
mode = "off"
# The list: one info hash per line, 40 hex digits, `#` comments. Reloaded
# on SIGHUP; a malformed file keeps the old list in force (and is logged).
# list = "/etc/ringtracker/torrents.txt"
# Banned addresses: one IP or CIDR range (IPv4 or IPv6) per line, `#`
# comments. A banned address gets nothing at all (UDP: no reply; HTTP: the
# connection is closed). Reloaded on SIGHUP with the list above.
# banned = "/etc/ringtracker/banned.txt"
# Client filter by peer_id prefix: "off", "allow" (only these clients) or
# "deny" (all but these). Refused clients are told `retry in: never`.
clients = "off"
# The prefixes, e.g. ["-TR", "-qB"] (Transmission, qBittorrent).
client_prefixes = []
# Every list file (the list, the bans, [private] passkeys) is read at
# start and on SIGHUP as a regular file only (a FIFO or a device is
# refused), within two bounds; over one, a start stops and a reload keeps
# the old rules, naming the file. A reload's peak memory is the rules in
# force plus one file's text and its entries.
# Largest list file, in bytes (1024 to 17179869184).
max_list_bytes = {max_list_bytes}
# Most entries in one list file (1 to 100000000).
max_list_entries = {max_list_entries}

[private]
# Private tracker (BEP 27): every announce needs a registered passkey, in
# the URL path (http://host:port/<passkey>/announce, and /scrape) or, over
# UDP, in BEP 41 URLData (udp://host:port/<passkey>/announce). Without
# one: no peers, no swarm, and `retry in: never`. UDP scrapes are refused
# (they cannot carry a passkey).
enabled = false
# Where the members come from: a file of passkeys, or the site's database.
# One passkey per line, 16 to 64 letters and digits. Reloaded on SIGHUP.
# passkeys = "/etc/ringtracker/passkeys.txt"
# Or a MariaDB/MySQL database with the tables of contrib/schema/mysql.sql
# (docs/PRIVATE.md): users and torrents are read from rt_users and
# rt_torrents (all enabled rows at start, then the rows whose updated_at
# moved every `sync_interval`, and all of them again on SIGHUP); only
# registered torrents are served; credits (bytes × the torrent's and the
# user's factors, seed time, snatches) go to rt_credits every
# `flush_interval`, each batch once (rt_batches). Announces never wait for
# the database: while it is down, the users and torrents last read are
# served and credits wait.
# database = "mysql://tracker:secret@127.0.0.1:3306/site"
# Seconds between reads of the changed rows (1 to 3600).
sync_interval = {sync_interval}
# Seconds between writes of the credits (1 to 3600).
flush_interval = {flush_interval}
# This tracker's name in rt_batches, stable across restarts (at most 64
# bytes; empty: the host name).
node = ""
# Most peers (distinct peer ids) of one user in one torrent; a further one
# is refused until one stops or times out (0: no cap; 0 to 1000).
max_peers_per_user_torrent = {max_peers_per_user_torrent}
# With a database, credits (one per user and torrent that moved) and ended
# sessions kept in memory while it is down; past this many they are cut
# into a batch and spilled to the `ledger` journal, to be sent when it is
# back (1 to 100000000).
max_pending_credits = {max_pending_credits}
# Bytes a second one client session may plausibly move each way (1 to
# 2^50; default 1 GiB/s). A reported increase is credited up to the
# seconds since the session's last announce (at least one; a first report
# with `started` counts as one) times this, and a passkey's sessions
# together no faster; the rest is not credited,
# counted (ringtracker_ledger_implausible_bytes_total) and logged once per
# passkey. Clients lie: a total of 2^64-1 or a jump of a petabyte earns
# what a fast client could have moved.
max_rate = {max_rate}
# With a database, also keep the site's tables of live peers and counts
# filled (docs/PRIVATE.md, tables of contrib/schema/mysql.sql; older
# tables: contrib/schema/mysql-writeback.sql), in the credits' flush:
# rt_peers (one row per live peer: ids, address, port, User-Agent, totals,
# left, seeder), rt_torrent_stats (seeders, leechers, times_completed) and
# the history columns of rt_credits (first_announce, completed_at, active,
# seeding, left). Until those tables exist, credits still flow and one
# ERROR line names the migration.
write_back = {write_back}
# Journal of the bytes each passkey's announces report, for the site to
# credit its users: in numbered batches, one line per passkey and torrent
# that moved, tab-separated:
#   batch  unix_time  passkey  info_hash_hex  uploaded  downloaded
# (bytes since the batch before). Differences are taken per client session;
# a session's first report counts in full only with `started`. Appended
# every `ledger_interval` seconds and at stop or, with [storage] snapshot
# set, right after each snapshot: then every credit reaches the journal
# exactly once across restarts and crashes. If the file cannot be written,
# the batches are kept and retried.
# With a database the file is instead the credit journal (required): each
# batch and the session baselines it was measured against are synced to
# it before the batch goes to the database, so after a crash nothing is
# credited twice or lost (docs/PRIVATE.md).
# ledger = "/var/lib/ringtracker/ledger.tsv"
# Seconds between appends to the ledger journal (without snapshots;
# 1 to 86400).
ledger_interval = {ledger_interval}

[limits]
# Token buckets per client address, shared by all workers; 0 turns a limit
# off. Over the limit a UDP datagram is dropped (drop_rate_limited) and an
# HTTP announce gets a failure reason with `retry in: 1` (minute).
# Connects (UDP) per second per address.
connects_per_second = {connects_per_second}
# Connects an address may make at once before the rate applies.
connect_burst = {connect_burst}
# Announces (UDP and HTTP) per second per address.
announces_per_second = {announces_per_second}
# Announces an address may make at once before the rate applies.
announce_burst = {announce_burst}
# Buckets in the table (power of two, 8 bytes each). Addresses hash into
# it, so a flood of spoofed addresses cannot grow memory; colliding
# addresses share a bucket.
slots = {limit_slots}

[storage]
# Snapshot file of the swarm table: every peer with its age, seeders and
# leechers, completed counts (and private mode's ledger). Loaded at start
# (peers whose lifetime ran out meanwhile are dropped), written every
# `snapshot_interval` seconds and at stop (SIGTERM/SIGINT), never in
# place: PATH.tmp, fsync, rename; the one before is kept as PATH.prev. A
# file that cannot be read stops the start (see --discard-bad-snapshot).
# snapshot = "/var/lib/ringtracker/swarms.snap"
# Seconds between snapshots (1 to 86400).
snapshot_interval = {snapshot_interval}
# The tracker's own directory (the Debian package: its StateDirectory,
# /var/lib/ringtracker). Files it keeps go there unless their own key says
# otherwise: with [private] database, the credit journal is
# state_dir/credits.journal when private.ledger is not set.
# state_dir = "/var/lib/ringtracker"

[metrics]
# An operator's listener: GET /metrics (Prometheus text format), /health
# (200 while every worker serves, else 503) and / (a live stats page).
# Off: no listener at all.
enabled = {metrics_enabled}
# Loopback by default: expose it deliberately, it is not for clients.
listen = "{metrics_listen}"

[process]
# Started as root (to bind ports below 1024), switch to this user once
# every socket is bound; if the switch fails the tracker stops rather than
# run as root. The snapshot and ledger directories must be writable by it.
# user = "nobody"

[tls]
# HTTPS: the same announce and scrape as [http], over TLS (rustls). Each
# address is served by every HTTP worker. Certificate and key are re-read
# on SIGHUP: new connections get the new ones, open ones are not dropped.
listen = []
# PEM certificate chain (leaf first) and PEM private key.
# cert = "/etc/ringtracker/tls/fullchain.pem"
# key = "/etc/ringtracker/tls/privkey.pem"

[cluster]
# Several nodes serve one set of swarms through Redis 7 / Valkey (streams):
# any node answers any client (DNS round-robin, anycast), answers never
# wait on Redis, and a node that is down or joins catches up by itself
# (docs/SCALING.md). Off: this node is an island.
enabled = {cluster_enabled}
# Unique name of this node (letters, digits, - _ .; default: the host name).
node = ""
# One Redis server, or seed nodes of a Redis Cluster; rediss:// and
# user:password@ work. The tracker starts and serves without it.
redis = [{cluster_redis}]
# true: the URLs are seed nodes of a Redis Cluster (its slots are followed).
redis_cluster = {redis_cluster}
# A file of at least 32 bytes, the same on every node (head -c 32
# /dev/urandom): the connection-id key, so an id one node issued is valid
# at every node. Node clocks must agree within a minute (NTP).
secret_file = ""
# Milliseconds between the sync thread's appends of this node's changes.
flush_interval_ms = {flush_interval_ms}
# Seconds: a peer that announces unchanged is re-published at most once
# per this, so other nodes keep it alive (at most peer_timeout - interval).
refresh_interval = {refresh_interval}

[admin]
# The management API (docs/API.md): JSON over HTTP/1.1 for a site's hooks
# and an operator's scripts. Users, torrents, freeleech and the allow or
# deny list change at once, without a sync or SIGHUP; reads show a
# torrent's peers and the busiest torrents. Off unless listen is set;
# keep it on loopback or a private network.
# listen = "127.0.0.1:9001"
# A file holding the bearer token (at least 32 bytes; trailing newline
# ignored; mode 600: a file others may read is refused). Every request
# carries `Authorization: Bearer <token>`. Read at start.
# token_file = "/etc/ringtracker/admin.token"
# HTTPS for the API: PEM certificate chain and key (both or neither; read
# at start). Without them the API is plain HTTP: keep it on loopback or a
# private network.
# tls_cert = "/etc/ringtracker/tls/admin.pem"
# tls_key = "/etc/ringtracker/tls/admin.key"
"#,
            workers = d.server.workers,
            stats_interval = d.server.stats_interval,
            udp_listen = list(&d.udp.listen),
            backend = d.udp.backend,
            recv_buffers = d.udp.recv_buffers,
            send_slots = d.udp.send_slots,
            connection_id_lifetime = d.udp.connection_id_lifetime,
            interval_jitter = d.tracker.interval_jitter,
            dual_stack_replies = d.tracker.dual_stack_replies,
            max_idle_torrents = d.tracker.max_idle_torrents,
            socket_recv_buffer = d.udp.socket_recv_buffer,
            http_listen = list(&d.http.listen),
            http_backend = d.http.backend,
            full_scrape = d.http.full_scrape,
            trusted_proxies = d
                .http
                .trusted_proxies
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", "),
            max_connections = d.http.max_connections,
            max_connections_per_ip = d.http.max_connections_per_ip,
            max_list_bytes = d.access.max_list_bytes,
            max_list_entries = d.access.max_list_entries,
            idle_timeout = d.http.idle_timeout,
            gzip = d.http.gzip,
            gzip_min_bytes = d.http.gzip_min_bytes,
            interval = d.tracker.interval,
            min_interval = d.tracker.min_interval,
            max_timeout = MAX_PEER_TIMEOUT,
            peer_timeout = d.tracker.peer_timeout,
            default_numwant = d.tracker.default_numwant,
            max_numwant = d.tracker.max_numwant,
            allow_ip_param = d.tracker.allow_ip_param,
            shards = d.tracker.shards,
            connects_per_second = d.limits.connects_per_second,
            connect_burst = d.limits.connect_burst,
            announces_per_second = d.limits.announces_per_second,
            announce_burst = d.limits.announce_burst,
            limit_slots = d.limits.slots,
            ledger_interval = d.private.ledger_interval,
            sync_interval = d.private.sync_interval,
            flush_interval = d.private.flush_interval,
            max_peers_per_user_torrent = d.private.max_peers_per_user_torrent,
            max_pending_credits = d.private.max_pending_credits,
            max_rate = d.private.max_rate,
            write_back = d.private.write_back,
            snapshot_interval = d.storage.snapshot_interval,
            metrics_enabled = d.metrics.enabled,
            metrics_listen = d.metrics.listen,
            cluster_enabled = d.cluster.enabled,
            cluster_redis = d
                .cluster
                .redis
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", "),
            redis_cluster = d.cluster.redis_cluster,
            flush_interval_ms = d.cluster.flush_interval_ms,
            refresh_interval = d.cluster.refresh_interval,
        )
    }
}

impl ConfigError {
    /// Add "file:line: " to a validation error, found by the key's name.
    fn located(self, text: &str, origin: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                key,
                value,
                problem,
                ..
            } => {
                let location = match line_of(text, key) {
                    Some(line) => format!("{origin}:{line}: "),
                    None => format!("{origin}: "),
                };
                ConfigError::Invalid {
                    location,
                    key,
                    value,
                    problem,
                }
            }
            other => other,
        }
    }
}

/// The 1-based line where `section.key` is set, if it is set in the file.
fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.split_once('.')?;
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim();
        } else if current == section
            && l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// toml's errors span several lines with a source excerpt; keep the line
/// number and the message on one line.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_config_is_the_default() {
        let parsed = Config::from_toml(&Config::default_toml(), "printed").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn every_key_has_a_comment() {
        let text = Config::default_toml();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains(" = ") {
                assert!(lines[i - 1].starts_with('#'), "no comment above {l}");
            }
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("", "x").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::from_toml("[tracker]\ninterval = 60\nintervall = 5\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("intervall"), "{e}");
        let e = Config::from_toml("[trackers]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trackers") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = Config::from_toml("[tracker]\ninterval = 600\npeer_timeout = 10\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:3: tracker.peer_timeout = 10"), "{e}");
        let e = Config::from_toml("[udp]\nrecv_buffers = 1000\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:2: udp.recv_buffers = 1000"), "{e}");
        let e = Config::from_toml("[udp]\nlisten = [\"nonsense\"]\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Config::from_toml("[tracker]\ninterval = \"x\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    /// Durations near u64::MAX once passed validation and panicked after
    /// binding ("overflow when adding duration to instant"): every one is
    /// bounded, by key and line.
    #[test]
    fn huge_durations_are_refused_by_key_and_line() {
        for (section, key) in [
            ("server", "stats_interval"),
            ("storage", "snapshot_interval"),
            ("private", "ledger_interval"),
            ("http", "idle_timeout"),
            ("tracker", "interval"),
        ] {
            let max = if key == "idle_timeout" || key == "interval" {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            let text = format!("[{section}]\n{key} = {max}\n");
            let e = Config::from_toml(&text, "d.toml").unwrap_err().to_string();
            let at = format!("d.toml:2: {section}.{key} = {max}");
            assert!(e.starts_with(&at), "{e}");
            assert!(e.contains("must be"), "{e}");
        }
        // A day is fine.
        Config::from_toml("[storage]\nsnapshot_interval = 86400\n", "d").unwrap();
    }

    #[test]
    fn access_needs_a_list() {
        let e = Config::from_toml("[access]\nmode = \"allow\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml:2: access.mode = allow"), "{e}");
        let c = Config::from_toml(
            "[access]\nmode = \"deny\"\nlist = \"/nonexistent/list\"\n",
            "a",
        )
        .unwrap();
        let e = c.access_rules().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/list"), "{e}");
    }

    /// A database config needs its credit journal: `private.ledger`, or
    /// `credits.journal` in `storage.state_dir` (what the package sets).
    #[test]
    fn the_credit_journal_defaults_to_the_state_directory() {
        let private = "[private]\nenabled = true\ndatabase = \"mysql://u:p@127.0.0.1:3306/site\"\n";
        let e = Config::from_toml(private, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("private.ledger") && e.contains("state_dir"),
            "{e}"
        );
        let text = format!("{private}[storage]\nstate_dir = \"/var/lib/ringtracker\"\n");
        let c = Config::from_toml(&text, "c.toml").unwrap();
        let default = std::path::PathBuf::from("/var/lib/ringtracker/credits.journal");
        assert_eq!(c.credit_journal(), Some(default));
        let text = format!("{private}ledger = \"/srv/j\"\n[storage]\nstate_dir = \"/var/lib/x\"\n");
        let c = Config::from_toml(&text, "c.toml").unwrap();
        assert_eq!(c.credit_journal(), Some("/srv/j".into()), "the key wins");
    }

    #[test]
    fn private_mode_loads_its_passkeys() {
        let e = Config::from_toml("[private]\nenabled = true\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:2: private.enabled = true"), "{e}");
        let dir = std::env::temp_dir().join(format!("rt-config-pk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys.txt");
        std::fs::write(&keys, "abcdef0123456789\n").unwrap();
        let text = format!(
            "[private]\nenabled = true\npasskeys = \"{}\"\n",
            keys.display()
        );
        let rules = Config::from_toml(&text, "p")
            .unwrap()
            .access_rules()
            .unwrap();
        assert!(rules.private());
        assert!(rules.permits_passkey(Some(b"abcdef0123456789")));
        assert!(!rules.permits_passkey(None));
        let off = text.replace("enabled = true", "enabled = false");
        assert!(
            !Config::from_toml(&off, "p")
                .unwrap()
                .access_rules()
                .unwrap()
                .private()
        );
    }

    #[test]
    fn backend_names() {
        let c = Config::from_toml("[udp]\nbackend = \"mmsg\"\n", "b").unwrap();
        assert_eq!(c.udp.backend, UdpBackend::Mmsg);
        let c = Config::from_toml("[udp]\nbackend = \"io_uring\"\n", "b").unwrap();
        assert_eq!(c.udp.backend, UdpBackend::IoUring);
        assert_eq!(Config::default().udp.backend, UdpBackend::Auto);
        let e = Config::from_toml("[udp]\nbackend = \"epoll\"\n", "b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("epoll"), "{e}");
    }

    #[test]
    fn numwant_policy() {
        let p = Config::default().announce_policy();
        assert_eq!(p.numwant(-1), 50);
        assert_eq!(p.numwant(0), 50);
        assert_eq!(p.numwant(1), 1);
        assert_eq!(p.numwant(10_000), 200);
    }
}
