-- The transactional outbox: the events of membership changes, written in the same
-- transaction as the change they announce; the relay publishes them to
-- JetStream (Nats-Msg-Id = event_id) and deletes them once acknowledged.
CREATE TABLE IF NOT EXISTS metadata_outbox (
    id             BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    subject        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payload        MEDIUMBLOB   NOT NULL,
    -- The trace context of the change ("name: value" lines).
    headers        TEXT         NULL,
    created_at_ms  BIGINT       NOT NULL,
    KEY ix_metadata_outbox_event (event_id)
) ENGINE = InnoDB;
