-- Edit history (SQL content store): each edit keeps the text it replaces.
-- The current text stays in message_contents, with the time it was written.
ALTER TABLE message_contents ADD COLUMN edited_at_ms INTEGER;
UPDATE message_contents SET edited_at_ms =
    (SELECT m.edited_at_ms FROM message_metadata m WHERE m.content_id = message_contents.message_id);

CREATE TABLE IF NOT EXISTS message_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    content_id  TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    -- When this text was written: the message's time, or the edit's.
    at_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_versions_content ON message_versions (content_id, id);
