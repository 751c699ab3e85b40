-- Access tokens carry the version they were issued at; a password change moves
-- it up, so earlier tokens stop working. Gateways ask for the versions that
-- changed since they last looked (the index keeps that cheap).
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tokens_changed_at_ms INTEGER;
CREATE INDEX IF NOT EXISTS ix_users_tokens_changed ON users (tokens_changed_at_ms);
