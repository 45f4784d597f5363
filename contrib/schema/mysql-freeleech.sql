-- Freeleech tokens (rt_freeleech_tokens) for a database made with an
-- earlier contrib/schema/mysql.sql. Run once; until then the tracker logs
-- one WARN naming this file and freeleech comes from the API only.
--
--   mariadb site < contrib/schema/mysql-freeleech.sql
--   GRANT SELECT ON site.rt_freeleech_tokens TO 'tracker'@'10.0.0.5';

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
