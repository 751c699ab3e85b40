-- Users of the chat service. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    -- Uniqueness and ordering are case-insensitive: they use this lowercase copy.
    username_lower  TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    full_name       TEXT,
    password_hash   TEXT    NOT NULL,
    is_active       INTEGER NOT NULL DEFAULT 1,
    created_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_users_username ON users (username_lower);
CREATE UNIQUE INDEX IF NOT EXISTS uq_users_email ON users (email);
