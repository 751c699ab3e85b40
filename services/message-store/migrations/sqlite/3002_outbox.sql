-- The transactional outbox: the events of changes of messages (new, edited, deleted), written in the same
-- transaction as the change they announce (the distributed deployment's
-- relay publishes them to JetStream; the standalone server publishes in process).
CREATE TABLE IF NOT EXISTS message_outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    headers        TEXT,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_message_outbox_event ON message_outbox (event_id);
