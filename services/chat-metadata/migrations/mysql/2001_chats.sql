-- Chats and their participants. Times are milliseconds since the Unix epoch (UTC);
-- flags are BIGINT 0/1 so that one query text decodes the same on MySQL and SQLite.
CREATE TABLE IF NOT EXISTS chats (
    id             BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    chat_type      VARCHAR(8)   NOT NULL,
    name           VARCHAR(100) NULL,
    -- "<smaller user id>:<larger user id>" for direct chats: one chat per pair, whoever creates it.
    direct_key     VARCHAR(48)  CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at_ms  BIGINT       NOT NULL,
    updated_at_ms  BIGINT       NOT NULL,
    is_active      BIGINT       NOT NULL DEFAULT 1,
    UNIQUE KEY uq_chats_direct_key (direct_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS participants (
    chat_id       BIGINT      NOT NULL,
    user_id       BIGINT      NOT NULL,
    -- Usernames never change, so they are kept here and chats need no call to auth.
    username      VARCHAR(32) NOT NULL,
    joined_at_ms  BIGINT      NOT NULL,
    is_admin      BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id),
    KEY ix_participants_user (user_id, chat_id),
    CONSTRAINT fk_participants_chat FOREIGN KEY (chat_id) REFERENCES chats (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
