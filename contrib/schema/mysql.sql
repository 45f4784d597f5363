-- ringtracker's tables on a private site's MariaDB (10.11+) or MySQL (8+)
-- database. The site owns the rows of rt_users and rt_torrents (the
-- tracker only reads them); the tracker adds to rt_credits and records
-- each batch it applied in rt_batches, in one transaction per batch, and
-- (private.write_back) keeps rt_peers, rt_torrent_stats and the history
-- columns of rt_credits in step. Tables made before write-back:
-- contrib/schema/mysql-writeback.sql.
-- docs/PRIVATE.md explains every column and how to map a site's own tables.
--
--   mariadb site < contrib/schema/mysql.sql

CREATE TABLE IF NOT EXISTS rt_users (
    id BIGINT UNSIGNED PRIMARY KEY,
    -- 16 to 64 letters and digits, compared byte for byte.
    passkey VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL UNIQUE,
    enabled BOOL NOT NULL DEFAULT 1,
    can_leech BOOL NOT NULL DEFAULT 1,
    download_factor DOUBLE NOT NULL DEFAULT 1,
    upload_factor DOUBLE NOT NULL DEFAULT 1,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    -- The tracker reads the rows changed since its last read by this.
    KEY rt_users_updated_at (updated_at)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS rt_torrents (
    id BIGINT UNSIGNED PRIMARY KEY,
    info_hash BINARY(20) NOT NULL UNIQUE,
    enabled BOOL NOT NULL DEFAULT 1,
    -- Freeleech: download_factor 0. Double upload: upload_factor 2.
    download_factor DOUBLE NOT NULL DEFAULT 1,
    upload_factor DOUBLE NOT NULL DEFAULT 1,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    KEY rt_torrents_updated_at (updated_at)
) ENGINE = InnoDB;

-- Totals per user and torrent, added to by every batch. Credited bytes are
-- the reported (raw) bytes times the torrent's factor times the user's.
CREATE TABLE IF NOT EXISTS rt_credits (
    user_id BIGINT UNSIGNED NOT NULL,
    torrent_id BIGINT UNSIGNED NOT NULL,
    uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    raw_uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    raw_downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seed_seconds BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- Snatches: completed downloads.
    completed INT UNSIGNED NOT NULL DEFAULT 0,
    last_announce TIMESTAMP(6) NULL DEFAULT NULL,
    -- History (private.write_back), what a hit-and-run rule reads: the
    -- user's first announce on the torrent, its first completion, whether
    -- it has a live peer there now and whether one seeds, and the bytes
    -- its latest announce had left.
    first_announce TIMESTAMP(6) NULL DEFAULT NULL,
    completed_at TIMESTAMP(6) NULL DEFAULT NULL,
    active BOOL NOT NULL DEFAULT 0,
    seeding BOOL NOT NULL DEFAULT 0,
    `left` BIGINT UNSIGNED NULL DEFAULT NULL,
    PRIMARY KEY (user_id, torrent_id)
) ENGINE = InnoDB;

-- Write-back (private.write_back): one row per live peer of a registered
-- torrent, upserted when it announces and deleted when it stops or times
-- out. `node` is the tracker it announced to (private.node): a tracker
-- rewrites only its own rows at start.
CREATE TABLE IF NOT EXISTS rt_peers (
    torrent_id BIGINT UNSIGNED NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    peer_id BINARY(20) NOT NULL,
    -- 4 bytes (IPv4) or 16 (IPv6): INET6_NTOA(ip) shows it.
    ip VARBINARY(16) NOT NULL,
    port SMALLINT UNSIGNED NOT NULL,
    -- The client's HTTP User-Agent (printable ASCII); UDP: empty.
    agent VARCHAR(64) CHARACTER SET ascii NOT NULL DEFAULT '',
    -- The session's running totals and bytes left, as last reported.
    uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    `left` BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seeder BOOL NOT NULL DEFAULT 0,
    -- The session's first announce and its last.
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    node VARCHAR(64) NOT NULL DEFAULT '',
    PRIMARY KEY (torrent_id, user_id, peer_id),
    KEY rt_peers_user (user_id),
    KEY rt_peers_node (node)
) ENGINE = InnoDB;

-- Write-back: per torrent, the live seeders and leechers (written when
-- they change) and the snatches (added once per credit batch).
CREATE TABLE IF NOT EXISTS rt_torrent_stats (
    torrent_id BIGINT UNSIGNED PRIMARY KEY,
    seeders INT UNSIGNED NOT NULL DEFAULT 0,
    leechers INT UNSIGNED NOT NULL DEFAULT 0,
    times_completed INT UNSIGNED NOT NULL DEFAULT 0,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

-- Freeleech the site grants: a user's download on one torrent
-- (torrent_id 0: on every torrent, personal freeleech) is credited x 0
-- until `until` (unix seconds; NULL: for good). Read whole every
-- sync_interval; rows past their time are ignored. The management API
-- grants at once besides (docs/API.md).
CREATE TABLE IF NOT EXISTS rt_freeleech_tokens (
    user_id BIGINT UNSIGNED NOT NULL,
    torrent_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
    until BIGINT UNSIGNED NULL DEFAULT NULL,
    PRIMARY KEY (user_id, torrent_id)
) ENGINE = InnoDB;

-- The exactly-once record: a batch is applied in the transaction that
-- inserts its row here, so a batch sent again (its commit's outcome was
-- unknown, or the tracker restarted) finds its row and changes nothing.
-- `epoch` is the credit journal's (random, drawn when the journal is
-- made): batch numbers of two journals (a lost one and its successor, two
-- trackers with one node name) never meet. Tables made before it:
-- contrib/schema/mysql-epoch.sql.
CREATE TABLE IF NOT EXISTS rt_batches (
    node VARCHAR(64) NOT NULL,
    epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
    batch BIGINT UNSIGNED NOT NULL,
    applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (node, epoch, batch)
) ENGINE = InnoDB;
