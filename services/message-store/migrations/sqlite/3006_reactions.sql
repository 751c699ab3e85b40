-- Reactions: one row per (message, user, emoji) (see the MySQL migration).
CREATE TABLE IF NOT EXISTS message_reactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    emoji       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_reaction ON message_reactions (message_id, user_id, emoji);
CREATE INDEX IF NOT EXISTS ix_reactions_message ON message_reactions (message_id, id);
