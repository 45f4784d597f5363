//! Real MariaDB servers for the private-mode tests: each one a fresh data
//! directory (`mariadb-install-db`) in a temporary directory, `mariadbd`
//! on a free loopback port, killed when dropped. "The site" speaks to it
//! with the `mariadb` client over its unix socket. Waits are polls with
//! deadlines.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

/// How long a test waits for the server to answer.
pub const MARIADB_DEADLINE: Duration = Duration::from_secs(120);

/// The database, user and password the tracker is given.
pub const DATABASE: &str = "site";
pub const USER: &str = "tracker";
pub const PASSWORD: &str = "s3cret-pass";

pub struct MariaDb {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl MariaDb {
    /// A server with the site's database (contrib/schema/mysql.sql) and the
    /// tracker's user, in `dir` (made afresh).
    pub fn start(dir: &Path) -> MariaDb {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // Passed on to the bootstrap server: its temporary tables in
            // the test's own directory, not in /tmp where bootstraps of
            // tests running side by side were seen to clash.
            .arg(format!("--tmpdir={}", dir.display()));
        if running_as_root() {
            install.arg("--user=root");
        }
        let out = install
            .output()
            .expect("mariadb-install-db (make test installs Debian's mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = MariaDb {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        db.restart();
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/schema/mysql.sql"),
        )
        .unwrap();
        db.sql(&format!("CREATE DATABASE {DATABASE}"));
        db.sql(&schema);
        db.sql(&format!(
            "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\
             GRANT SELECT ON {DATABASE}.rt_users TO '{USER}'@'127.0.0.1';\
             GRANT SELECT ON {DATABASE}.rt_torrents TO '{USER}'@'127.0.0.1';\
             GRANT SELECT, INSERT, UPDATE ON {DATABASE}.rt_credits TO '{USER}'@'127.0.0.1';\
             GRANT SELECT, INSERT ON {DATABASE}.rt_batches TO '{USER}'@'127.0.0.1';\
             GRANT SELECT, INSERT, UPDATE, DELETE ON {DATABASE}.rt_peers TO '{USER}'@'127.0.0.1';\
             GRANT SELECT, INSERT, UPDATE ON {DATABASE}.rt_torrent_stats TO '{USER}'@'127.0.0.1';\
             GRANT SELECT ON {DATABASE}.rt_freeleech_tokens TO '{USER}'@'127.0.0.1';"
        ));
        db
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }

    /// (Re)start on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let sbin = Path::new("/usr/sbin/mariadbd");
        let mut cmd = Command::new(if sbin.exists() {
            sbin
        } else {
            Path::new("mariadbd")
        });
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadbd.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(["--innodb-buffer-pool-size=32M", "--skip-log-bin"]);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (make test installs Debian's mariadb-server)");
        self.child = Some(child);
        let deadline = Instant::now() + MARIADB_DEADLINE;
        while self.try_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd on {} never answered: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, committed transactions survive.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The URL the tracker is configured with.
    pub fn url(&self) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// Run statements as root in the site's database (once it exists);
    /// the output, tab-separated, without column names.
    pub fn sql(&self, statements: &str) -> String {
        self.try_sql(statements)
            .unwrap_or_else(|e| panic!("{statements}: {e}"))
    }

    pub fn try_sql(&self, statements: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names"]);
        if self.dir.join("data").join(DATABASE).is_dir() {
            cmd.arg(DATABASE);
        }
        let out = cmd
            .args(["-e", statements])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        // Its data (about 140 MB) goes with a test that passed; a failed
        // one keeps it to look at.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
