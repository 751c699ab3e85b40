//! Message metadata in MySQL/MariaDB or SQLite (through `sqlx::Any`).
//!
//! A send takes the chat's `chat_sequences` row lock, increments it and
//! inserts the metadata row in one transaction: seq has no gaps and no
//! repeats, and ids within a chat grow in seq order, whichever replica sends.

use sql_pool::{Backend, Db};
use sqlx::{Row, any::AnyRow};

use crate::{
    domain::{Cursor, MessageRow},
    error::MessageError,
};

/// The message store's migrations, for MySQL and for SQLite.
pub fn migrations() -> (sqlx::migrate::Migrator, sqlx::migrate::Migrator) {
    (sqlx::migrate!("./migrations/mysql"), sqlx::migrate!("./migrations/sqlite"))
}

type Result<T> = std::result::Result<T, MessageError>;

const COLUMNS: &str =
    "id, chat_id, seq, sender_id, sender_username, content_id, client_msg_id, created_at_ms, edited_at_ms, is_deleted";

/// How often a send is retried when it lost a lock race (deadlock, busy database).
const SEND_ATTEMPTS: usize = 8;

fn row_from(row: &AnyRow) -> std::result::Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        id: row.try_get("id")?,
        chat_id: row.try_get("chat_id")?,
        seq: row.try_get("seq")?,
        sender_id: row.try_get("sender_id")?,
        sender_username: row.try_get("sender_username")?,
        content_id: row.try_get("content_id")?,
        client_msg_id: row.try_get("client_msg_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        edited_at_ms: row.try_get("edited_at_ms")?,
        is_deleted: row.try_get::<i64, _>("is_deleted")? != 0,
    })
}

fn rows_from(rows: &[AnyRow]) -> Result<Vec<MessageRow>> {
    Ok(rows.iter().map(row_from).collect::<std::result::Result<_, _>>()?)
}

/// A message about to be stored (its content is already in the content store).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub content_id: String,
    pub client_msg_id: Option<String>,
    pub created_at_ms: i64,
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Created(MessageRow),
    /// The `(chat, sender, client_msg_id)` was taken meanwhile: a concurrent retry won.
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct MessageStore {
    db: Db,
}

impl MessageStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    #[tracing::instrument(skip(self))]
    pub async fn by_id(&self, id: i64) -> Result<Option<MessageRow>> {
        let sql = format!("SELECT {COLUMNS} FROM message_metadata WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.db.pool).await?;
        Ok(row.as_ref().map(row_from).transpose()?)
    }

    /// The message this sender already sent to this chat with this key.
    #[tracing::instrument(skip(self))]
    pub async fn by_client_msg_id(&self, chat_id: i64, sender_id: i64, key: &str) -> Result<Option<MessageRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM message_metadata WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?");
        let row =
            sqlx::query(&sql).bind(chat_id).bind(sender_id).bind(key.to_owned()).fetch_optional(&self.db.pool).await?;
        Ok(row.as_ref().map(row_from).transpose()?)
    }

    /// Stores the metadata row with the chat's next seq.
    #[tracing::instrument(skip_all, fields(chat_id = new.chat_id))]
    pub async fn insert(&self, new: &NewMessage) -> Result<Stored> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_insert(new).await {
                Ok(row) => return Ok(Stored::Created(row)),
                Err(error) if sql_pool::is_unique_violation(&error) && new.client_msg_id.is_some() => {
                    return Ok(Stored::Duplicate);
                }
                Err(error) if sql_pool::is_retryable(&error) && attempt < SEND_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "send lost a lock race, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn try_insert(&self, new: &NewMessage) -> std::result::Result<MessageRow, sqlx::Error> {
        let mut tx = self.db.pool.begin().await?;
        let next_seq = match self.db.backend {
            Backend::MySql => {
                "INSERT INTO chat_sequences (chat_id, last_seq) VALUES (?, 1) \
                 ON DUPLICATE KEY UPDATE last_seq = last_seq + 1"
            }
            Backend::Sqlite => {
                "INSERT INTO chat_sequences (chat_id, last_seq) VALUES (?, 1) \
                 ON CONFLICT (chat_id) DO UPDATE SET last_seq = last_seq + 1"
            }
        };
        sqlx::query(next_seq).bind(new.chat_id).execute(&mut *tx).await?;
        let seq: i64 = sqlx::query("SELECT last_seq FROM chat_sequences WHERE chat_id = ?")
            .bind(new.chat_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last_seq")?;
        let sql = self.db.returning_id(
            "INSERT INTO message_metadata \
             (chat_id, seq, sender_id, sender_username, content_id, client_msg_id, created_at_ms, edited_at_ms, is_deleted) \
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0)",
        );
        let query = sqlx::query(&sql)
            .bind(new.chat_id)
            .bind(seq)
            .bind(new.sender_id)
            .bind(new.sender_username.clone())
            .bind(new.content_id.clone())
            .bind(new.client_msg_id.clone())
            .bind(new.created_at_ms);
        let id = self.db.insert_returning_id(&mut *tx, query).await?;
        tx.commit().await?;
        Ok(MessageRow {
            id,
            chat_id: new.chat_id,
            seq,
            sender_id: new.sender_id,
            sender_username: new.sender_username.clone(),
            content_id: new.content_id.clone(),
            client_msg_id: new.client_msg_id.clone(),
            created_at_ms: new.created_at_ms,
            edited_at_ms: None,
            is_deleted: false,
        })
    }

    /// A page of a chat's history, oldest to newest, and whether more lie
    /// beyond it in the direction of travel.
    #[tracing::instrument(skip(self))]
    pub async fn page(&self, chat_id: i64, cursor: Cursor, limit: u32) -> Result<(Vec<MessageRow>, bool)> {
        let fetch = i64::from(limit) + 1;
        let (condition, order, bound) = match cursor {
            Cursor::Newest => ("", "DESC", None),
            Cursor::Before(id) => ("AND id < ?", "DESC", Some(id)),
            Cursor::After(id) => ("AND id > ?", "ASC", Some(id)),
        };
        // The planners would rather walk the primary key in id order, through
        // every chat's messages, than the chat's own (chat_id, id) range: name the index.
        let index = match self.db.backend {
            Backend::MySql => "FORCE INDEX (ix_message_chat)",
            Backend::Sqlite => "INDEXED BY ix_message_chat",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM message_metadata {index} WHERE chat_id = ? {condition} ORDER BY id {order} LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(chat_id);
        if let Some(bound) = bound {
            query = query.bind(bound);
        }
        let rows = query.bind(fetch).fetch_all(&self.db.pool).await?;
        let mut messages = rows_from(&rows)?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        if order == "DESC" {
            messages.reverse();
        }
        Ok((messages, has_more))
    }

    /// Marks a message edited at `at_ms`; `false` when it is deleted (by anyone, even a moment ago).
    #[tracing::instrument(skip(self))]
    pub async fn mark_edited(&self, id: i64, at_ms: i64) -> Result<bool> {
        // The guard is in the statement: a delete that committed first wins, whatever was read before.
        let done = sqlx::query("UPDATE message_metadata SET edited_at_ms = ? WHERE id = ? AND is_deleted = 0")
            .bind(at_ms)
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a message deleted; `false` when it already was (by anyone, even a moment ago).
    #[tracing::instrument(skip(self))]
    pub async fn mark_deleted(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE message_metadata SET is_deleted = 1 WHERE id = ? AND is_deleted = 0")
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The newest message of each of these chats that has one.
    #[tracing::instrument(skip_all, fields(chats = chat_ids.len()))]
    pub async fn last_of(&self, chat_ids: &[i64]) -> Result<Vec<MessageRow>> {
        if chat_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM message_metadata WHERE id IN \
             (SELECT MAX(id) FROM message_metadata WHERE chat_id IN ({}) GROUP BY chat_id)",
            vec!["?"; chat_ids.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chat_ids {
            query = query.bind(*id);
        }
        rows_from(&query.fetch_all(&self.db.pool).await?)
    }
}
