-- Messages: metadata here (what makes a message exist), content in the content
-- store (MongoDB, or the message_contents table below). Times are milliseconds
-- since the Unix epoch (UTC); flags are BIGINT 0/1.

-- The last seq given out per chat: incremented under its row lock, so seq has no gaps and no repeats.
CREATE TABLE IF NOT EXISTS chat_sequences (
    chat_id   BIGINT NOT NULL PRIMARY KEY,
    last_seq  BIGINT NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS message_metadata (
    id               BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    chat_id          BIGINT      NOT NULL,
    seq              BIGINT      NOT NULL,
    sender_id        BIGINT      NOT NULL,
    -- Usernames never change, so history needs no call to auth.
    sender_username  VARCHAR(32) NOT NULL,
    -- The content's key in the content store (a UUID).
    content_id       CHAR(36)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    client_msg_id    VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_at_ms    BIGINT      NOT NULL,
    edited_at_ms     BIGINT      NULL,
    is_deleted       BIGINT      NOT NULL DEFAULT 0,
    UNIQUE KEY uq_message_seq (chat_id, seq),
    -- Idempotent sends: a retry with the same key finds the original, on any replica.
    UNIQUE KEY uq_message_client_msg_id (chat_id, sender_id, client_msg_id),
    KEY ix_message_chat (chat_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The SQL content store (standalone default, or CONTENT_STORE=sql).
CREATE TABLE IF NOT EXISTS message_contents (
    message_id    CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    chat_id       BIGINT   NOT NULL,
    sender_id     BIGINT   NOT NULL,
    -- VARCHAR, not TEXT: sqlx::Any reads MySQL TEXT as bytes. 10,000 characters fit.
    content       VARCHAR(10000) NOT NULL,
    timestamp_ms  BIGINT   NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
