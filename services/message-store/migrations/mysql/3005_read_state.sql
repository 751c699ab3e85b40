-- Read state: each participant's position in each chat (the seq up to which
-- they have read). Written when they join (the chat's last seq then), when
-- they send (their message's seq, in the send's own commit) and when they
-- mark read (forward only). A user who leaves keeps their row.
CREATE TABLE IF NOT EXISTS read_positions (
    chat_id        BIGINT NOT NULL,
    user_id        BIGINT NOT NULL,
    last_read_seq  BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id),
    KEY ix_read_positions_user (user_id, chat_id)
) ENGINE = InnoDB;

-- Unread counts subtract the deleted messages past a position: this index
-- finds them without reading the messages that are not deleted.
ALTER TABLE message_metadata ADD INDEX ix_message_deleted (chat_id, is_deleted, seq);
