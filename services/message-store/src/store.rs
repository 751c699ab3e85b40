//! Message metadata in MySQL/MariaDB or SQLite (through `sqlx::Any`): the
//! reads. Every write goes through the [`crate::writer`].

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

pub(crate) const COLUMNS: &str = "id, chat_id, seq, sender_id, sender_username, content_id, client_msg_id, created_at_ms, edited_at_ms, is_deleted, reply_to";

pub(crate) fn row_from(row: &AnyRow) -> std::result::Result<MessageRow, sqlx::Error> {
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
        reply_to: row.try_get("reply_to")?,
    })
}

fn rows_from(rows: &[AnyRow]) -> Result<Vec<MessageRow>> {
    Ok(rows.iter().map(row_from).collect::<std::result::Result<_, _>>()?)
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

    /// The newest message of each of these chats that has one.
    #[tracing::instrument(skip_all, fields(chats = chat_ids.len()))]
    pub async fn last_of(&self, chat_ids: &[i64]) -> Result<Vec<MessageRow>> {
        if chat_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM message_metadata WHERE id IN \
             (SELECT MAX(id) FROM message_metadata WHERE chat_id IN ({}) GROUP BY chat_id)",
            sql_pool::placeholders(chat_ids.len(), "?")
        );
        let mut query = sqlx::query(&sql);
        for id in chat_ids {
            query = query.bind(*id);
        }
        rows_from(&query.fetch_all(&self.db.pool).await?)
    }
}
