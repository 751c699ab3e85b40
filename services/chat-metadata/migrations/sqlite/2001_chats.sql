-- Chats and their participants. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS chats (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_type      TEXT    NOT NULL,
    name           TEXT,
    -- "<smaller user id>:<larger user id>" for direct chats: one chat per pair, whoever creates it.
    direct_key     TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    is_active      INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_chats_direct_key ON chats (direct_key);

CREATE TABLE IF NOT EXISTS participants (
    chat_id       INTEGER NOT NULL REFERENCES chats (id),
    user_id       INTEGER NOT NULL,
    username      TEXT    NOT NULL,
    joined_at_ms  INTEGER NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX IF NOT EXISTS ix_participants_user ON participants (user_id, chat_id);
