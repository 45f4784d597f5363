-- Write-back's tables and columns (private.write_back) for a database made
-- with an earlier contrib/schema/mysql.sql. Run once; until then the
-- tracker logs one ERROR naming this file and credits flow as before.
--
--   mariadb site < contrib/schema/mysql-writeback.sql
--
-- On a large rt_credits the ALTER TABLE rebuilds the table (MariaDB 10.11
-- adds these columns instantly, without a rebuild).

ALTER TABLE rt_credits
    ADD COLUMN IF NOT EXISTS first_announce TIMESTAMP(6) NULL DEFAULT NULL,
    ADD COLUMN IF NOT EXISTS completed_at TIMESTAMP(6) NULL DEFAULT NULL,
    ADD COLUMN IF NOT EXISTS active BOOL NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS seeding BOOL NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `left` BIGINT UNSIGNED NULL DEFAULT NULL;

CREATE TABLE IF NOT EXISTS rt_peers (
    torrent_id BIGINT UNSIGNED NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    peer_id BINARY(20) NOT NULL,
    ip VARBINARY(16) NOT NULL,
    port SMALLINT UNSIGNED NOT NULL,
    agent VARCHAR(64) CHARACTER SET ascii NOT NULL DEFAULT '',
    uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
    `left` BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seeder BOOL NOT NULL DEFAULT 0,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    node VARCHAR(64) NOT NULL DEFAULT '',
    PRIMARY KEY (torrent_id, user_id, peer_id),
    KEY rt_peers_user (user_id),
    KEY rt_peers_node (node)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS rt_torrent_stats (
    torrent_id BIGINT UNSIGNED PRIMARY KEY,
    seeders INT UNSIGNED NOT NULL DEFAULT 0,
    leechers INT UNSIGNED NOT NULL DEFAULT 0,
    times_completed INT UNSIGNED NOT NULL DEFAULT 0,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
