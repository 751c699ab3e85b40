-- The transactional outbox: the events of membership changes, written in the same
-- transaction as the change they announce (the distributed deployment's
-- relay publishes them to JetStream; the standalone server publishes in process).
CREATE TABLE IF NOT EXISTS metadata_outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    headers        TEXT,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_metadata_outbox_event ON metadata_outbox (event_id);
