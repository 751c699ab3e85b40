-- Users of the chat service. Times are milliseconds since the Unix epoch (UTC);
-- flags are BIGINT 0/1 so that one query text decodes the same on MySQL and SQLite.
CREATE TABLE IF NOT EXISTS users (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username        VARCHAR(32)  NOT NULL,
    -- Uniqueness and ordering are case-insensitive: they use this lowercase copy, compared bytewise.
    username_lower  VARCHAR(32)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    email           VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    full_name       VARCHAR(100) NULL,
    password_hash   VARCHAR(255) NOT NULL,
    is_active       BIGINT       NOT NULL DEFAULT 1,
    created_at_ms   BIGINT       NOT NULL,
    last_seen_ms    BIGINT       NULL,
    UNIQUE KEY uq_users_username (username_lower),
    UNIQUE KEY uq_users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
