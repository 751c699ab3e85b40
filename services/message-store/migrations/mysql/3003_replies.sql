-- A message may answer another message of its chat (checked in the send's transaction).
ALTER TABLE message_metadata ADD COLUMN reply_to BIGINT NULL;
