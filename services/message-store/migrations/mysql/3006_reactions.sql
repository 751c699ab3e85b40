-- Reactions: one row per (message, user, emoji); the unique key makes a
-- repeated or concurrent identical reaction one row. `id` orders them (an
-- emoji's place is its first standing reaction's). Emoji compare byte for
-- byte (utf8mb4_bin): under a Unicode collation many emoji are "equal".
CREATE TABLE IF NOT EXISTS message_reactions (
    id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id  BIGINT      NOT NULL,
    user_id     BIGINT      NOT NULL,
    emoji       VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at_ms BIGINT    NOT NULL,
    UNIQUE KEY uq_reaction (message_id, user_id, emoji),
    KEY ix_reactions_message (message_id, id)
) ENGINE = InnoDB;
