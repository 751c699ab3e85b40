-- Read state: each participant's position in each chat (see the MySQL migration).
CREATE TABLE IF NOT EXISTS read_positions (
    chat_id        INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    last_read_seq  INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX IF NOT EXISTS ix_read_positions_user ON read_positions (user_id, chat_id);
CREATE INDEX IF NOT EXISTS ix_message_deleted ON message_metadata (chat_id, is_deleted, seq);
