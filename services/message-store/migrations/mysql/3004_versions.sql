-- Edit history (SQL content store): each edit keeps the text it replaces.
-- The current text stays in message_contents, with the time it was written.
ALTER TABLE message_contents ADD COLUMN edited_at_ms BIGINT NULL;
UPDATE message_contents c JOIN message_metadata m ON m.content_id = c.message_id
    SET c.edited_at_ms = m.edited_at_ms WHERE m.edited_at_ms IS NOT NULL;

CREATE TABLE IF NOT EXISTS message_versions (
    id          BIGINT   NOT NULL AUTO_INCREMENT PRIMARY KEY,
    content_id  CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content     VARCHAR(10000) NOT NULL,
    -- When this text was written: the message's time, or the edit's.
    at_ms       BIGINT   NOT NULL,
    KEY ix_versions_content (content_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
