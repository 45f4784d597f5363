-- ringtracker's tables on a private site's MariaDB (10.11+) or MySQL (8+)
-- database. The site owns the rows of rt_users and rt_torrents (the
-- tracker only reads them); the tracker adds to rt_credits and records
-- each batch it applied in rt_batches, in one transaction per batch.
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
