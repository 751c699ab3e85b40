-- Messages: metadata here, content in the content store. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS chat_sequences (
    chat_id   INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS message_metadata (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id          INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    sender_id        INTEGER NOT NULL,
    sender_username  TEXT    NOT NULL,
    content_id       TEXT    NOT NULL,
    client_msg_id    TEXT,
    created_at_ms    INTEGER NOT NULL,
    edited_at_ms     INTEGER,
    is_deleted       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_message_seq ON message_metadata (chat_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS uq_message_client_msg_id ON message_metadata (chat_id, sender_id, client_msg_id);
CREATE INDEX IF NOT EXISTS ix_message_chat ON message_metadata (chat_id, id);

CREATE TABLE IF NOT EXISTS message_contents (
    message_id    TEXT    PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL,
    content       TEXT    NOT NULL,
    timestamp_ms  INTEGER NOT NULL
);
