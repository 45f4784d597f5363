//! SIGHUP: the access rules and the certificate read again, each built
//! aside and swapped in whole; on error the old one stays in force.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::net::{self, Server, database, tls};
use crate::tracker::Tracker;

/// The parts of a running server a SIGHUP replaces.
#[derive(Clone)]
pub(super) struct Reloader {
    tracker: Arc<Tracker>,
    tls: Option<tls::TlsConfig>,
    database: Option<database::ReadAll>,
}

impl Reloader {
    pub(super) fn new(server: &Server) -> Reloader {
        Reloader {
            tracker: Arc::clone(server.tracker()),
            tls: server.tls().cloned(),
            database: server.database_reader(),
        }
    }

    /// Read the lists again and put the new rules in force (keeping the
    /// site directory and the API's changes); returns how many info hashes the list holds. In
    /// database mode the database thread reads every row again too.
    fn reload_access(&self, config: &Config) -> Result<usize, ConfigError> {
        if let Some(database) = &self.database {
            database.request();
        }
        let old = self.tracker.access();
        let fresh = config.access_rules()?.with_site(old.site().cloned());
        let (rules, gone) = fresh.carry_api_changes(&old);
        if gone > 0 {
            tracing::info!(
                "reload: {gone} management API changes to the lists dropped, their files now say otherwise"
            );
        }
        let n = rules.len();
        self.tracker.set_access(rules);
        Ok(n)
    }

    /// Read the certificate and key again and use them for new HTTPS
    /// connections (open ones keep theirs). `Ok(false)`: no HTTPS.
    fn reload_tls(&self, config: &Config) -> Result<bool, tls::TlsError> {
        let (Some(current), Some(cert), Some(key)) = (&self.tls, &config.tls.cert, &config.tls.key)
        else {
            return Ok(false);
        };
        current.store(Arc::new(tls::load(cert, key)?));
        Ok(true)
    }

    /// Build the new rules and certificate; the old stay in force on error.
    fn reload(&self, config: &Config) {
        match self.reload_access(config) {
            Ok(n) => tracing::info!("access list reloaded ({n} info hashes)"),
            Err(e) => tracing::error!("access list not reloaded, the old one stays: {e}"),
        }
        match self.reload_tls(config) {
            Ok(false) => {}
            Ok(true) => tracing::info!("tls certificate reloaded"),
            Err(e) => tracing::error!("tls certificate not reloaded, the old one stays: {e}"),
        }
    }
}

/// SIGHUP's work, on a thread of its own: the process keeps answering
/// SIGTERM and running its timers while a large list is read. A SIGHUP
/// that arrives during a reload runs once that one has ended.
pub(super) struct Reloads {
    reloader: Reloader,
    config: Config,
    running: Option<JoinHandle<()>>,
    pending: bool,
}

impl Reloads {
    pub(super) fn new(reloader: Reloader, config: Config) -> Reloads {
        Reloads {
            reloader,
            config,
            running: None,
            pending: false,
        }
    }

    pub(super) fn request(&mut self) {
        self.pending = true;
        self.poll();
    }

    /// Start the pending reload if none is running.
    pub(super) fn poll(&mut self) {
        if self.running.as_ref().is_some_and(|r| !r.is_finished()) || !self.pending {
            return;
        }
        self.pending = false;
        let (reloader, config) = (self.reloader.clone(), self.config.clone());
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                net::background::yield_cpu_to_workers();
                reloader.reload(&config);
            });
        match spawned {
            Ok(handle) => self.running = Some(handle),
            Err(e) => tracing::error!("reload not started: {e}"),
        }
    }
}
