-- Access tokens carry the version they were issued at; a password change moves
-- it up, so earlier tokens stop working. Gateways ask for the versions that
-- changed since they last looked (the index keeps that cheap).
ALTER TABLE users
    ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN tokens_changed_at_ms BIGINT NULL,
    ADD INDEX ix_users_tokens_changed (tokens_changed_at_ms);
