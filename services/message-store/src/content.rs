//! Where message content lives: MongoDB (`messages` collection) in the
//! distributed deployment, an SQL table for the standalone default. Content
//! is keyed by a generated UUID that the metadata row refers to.

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::{
    Collection, IndexModel,
    bson::{Document, doc},
    options::{ClientOptions, IndexOptions},
};
use sql_pool::Db;
use sqlx::Row;

/// One message's content, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub message_id: String,
    pub chat_id: i64,
    pub sender_id: i64,
    pub content: String,
    pub timestamp_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("the content store is unavailable: {0}")]
    Unavailable(String),
    #[error("content store failure: {0}")]
    Failed(String),
}

#[tonic::async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Stores new content (before the metadata that makes the message exist), all at once.
    async fn put_many(&self, contents: &[StoredContent]) -> Result<(), ContentError>;
    /// The contents of these ids that exist, by id.
    async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, String>, ContentError>;
    /// Replaces the text of one message (edit).
    async fn replace(&self, id: &str, content: &str, edited_at_ms: i64) -> Result<(), ContentError>;
    /// Erases one message's content for good (delete). Erasing what is gone is fine.
    async fn erase(&self, id: &str) -> Result<(), ContentError>;
    /// Whether the store answers now.
    async fn ping(&self) -> bool;
}

// SQL

/// Content in the `message_contents` table of the service's own database.
#[derive(Debug, Clone)]
pub struct SqlContentStore {
    db: Db,
}

impl SqlContentStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn sql_error(error: sqlx::Error) -> ContentError {
    if sql_pool::is_transient(&error) {
        ContentError::Unavailable(error.to_string())
    } else {
        ContentError::Failed(error.to_string())
    }
}

#[tonic::async_trait]
impl ContentStore for SqlContentStore {
    async fn put_many(&self, contents: &[StoredContent]) -> Result<(), ContentError> {
        if contents.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO message_contents (message_id, chat_id, sender_id, content, timestamp_ms) VALUES {}",
            sql_pool::placeholders(contents.len(), "(?, ?, ?, ?, ?)")
        );
        let mut query = sqlx::query(&sql);
        for content in contents {
            query = query
                .bind(content.message_id.clone())
                .bind(content.chat_id)
                .bind(content.sender_id)
                .bind(content.content.clone())
                .bind(content.timestamp_ms);
        }
        query.execute(&self.db.pool).await.map_err(sql_error)?;
        Ok(())
    }

    async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, String>, ContentError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT message_id, content FROM message_contents WHERE message_id IN ({})",
            sql_pool::placeholders(ids.len(), "?")
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.clone());
        }
        let rows = query.fetch_all(&self.db.pool).await.map_err(sql_error)?;
        rows.iter()
            .map(|row| Ok((row.try_get("message_id")?, row.try_get("content")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(sql_error)
    }

    async fn replace(&self, id: &str, content: &str, _edited_at_ms: i64) -> Result<(), ContentError> {
        sqlx::query("UPDATE message_contents SET content = ? WHERE message_id = ?")
            .bind(content.to_owned())
            .bind(id.to_owned())
            .execute(&self.db.pool)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn erase(&self, id: &str) -> Result<(), ContentError> {
        sqlx::query("DELETE FROM message_contents WHERE message_id = ?")
            .bind(id.to_owned())
            .execute(&self.db.pool)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn ping(&self) -> bool {
        self.db.ping().await
    }
}

// MongoDB

/// The collection content lives in.
pub const MONGO_COLLECTION: &str = "messages";

/// Content in MongoDB's `messages` collection.
#[derive(Debug, Clone)]
pub struct MongoContentStore {
    collection: Collection<Document>,
}

/// The document stored for one message.
pub fn content_document(content: &StoredContent) -> Document {
    doc! {
        "message_id": &content.message_id,
        "content": &content.content,
        "timestamp": mongodb::bson::DateTime::from_millis(content.timestamp_ms),
        "chat_id": content.chat_id,
        "sender_id": content.sender_id,
    }
}

/// The filter for a set of message ids (one `$in` query, not one per message).
pub fn ids_filter(ids: &[String]) -> Document {
    doc! { "message_id": { "$in": ids } }
}

/// The update for an edit.
pub fn replace_update(content: &str, edited_at_ms: i64) -> Document {
    doc! { "$set": { "content": content, "edited_at": mongodb::bson::DateTime::from_millis(edited_at_ms) } }
}

/// `(message_id, content)` of a stored document.
pub fn from_document(document: &Document) -> Option<(String, String)> {
    Some((document.get_str("message_id").ok()?.to_owned(), document.get_str("content").ok()?.to_owned()))
}

/// The indexes the collection needs: unique `message_id`, and `(chat_id, timestamp)`.
pub fn indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! { "message_id": 1 })
            .options(IndexOptions::builder().unique(true).name("uq_message_id".to_owned()).build())
            .build(),
        IndexModel::builder()
            .keys(doc! { "chat_id": 1, "timestamp": 1 })
            .options(IndexOptions::builder().name("ix_chat_timestamp".to_owned()).build())
            .build(),
    ]
}

fn mongo_error(error: mongodb::error::Error) -> ContentError {
    use mongodb::error::ErrorKind;
    match *error.kind {
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            ContentError::Unavailable(error.to_string())
        }
        _ => ContentError::Failed(error.to_string()),
    }
}

impl MongoContentStore {
    /// Connects lazily to `url` (server selection waits at most 2 s, so an
    /// outage answers "unavailable" quickly) and makes sure the indexes exist
    /// when the server is reachable.
    pub async fn connect(url: &str, database: &str) -> Result<Self, ContentError> {
        let mut options = ClientOptions::parse(url).await.map_err(|error| ContentError::Failed(error.to_string()))?;
        options.server_selection_timeout = Some(std::time::Duration::from_secs(2));
        options.app_name = Some("message-store".to_owned());
        let client = mongodb::Client::with_options(options).map_err(|error| ContentError::Failed(error.to_string()))?;
        let collection = client.database(database).collection::<Document>(MONGO_COLLECTION);
        let store = Self { collection };
        if let Err(error) = store.collection.create_indexes(indexes()).await {
            tracing::warn!(%error, "cannot create the MongoDB indexes yet; they are made on the next start");
        }
        Ok(store)
    }
}

#[tonic::async_trait]
impl ContentStore for MongoContentStore {
    async fn put_many(&self, contents: &[StoredContent]) -> Result<(), ContentError> {
        if contents.is_empty() {
            return Ok(());
        }
        self.collection.insert_many(contents.iter().map(content_document)).await.map_err(mongo_error)?;
        Ok(())
    }

    async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, String>, ContentError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let cursor = self
            .collection
            .find(ids_filter(ids))
            .projection(doc! { "_id": 0, "message_id": 1, "content": 1 })
            .await
            .map_err(mongo_error)?;
        let documents: Vec<Document> = cursor.try_collect().await.map_err(mongo_error)?;
        Ok(documents.iter().filter_map(from_document).collect())
    }

    async fn replace(&self, id: &str, content: &str, edited_at_ms: i64) -> Result<(), ContentError> {
        self.collection
            .update_one(doc! { "message_id": id }, replace_update(content, edited_at_ms))
            .await
            .map_err(mongo_error)?;
        Ok(())
    }

    async fn erase(&self, id: &str) -> Result<(), ContentError> {
        self.collection.delete_one(doc! { "message_id": id }).await.map_err(mongo_error)?;
        Ok(())
    }

    async fn ping(&self) -> bool {
        self.collection.client().database("admin").run_command(doc! { "ping": 1 }).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredContent {
        StoredContent {
            message_id: "5f0c7c1e-0000-4000-8000-000000000001".into(),
            chat_id: 7,
            sender_id: 3,
            content: "héllo 👋".into(),
            timestamp_ms: 1_767_268_800_123,
        }
    }

    #[test]
    fn a_message_maps_to_the_documented_document() {
        let document = content_document(&sample());
        assert_eq!(document.get_str("message_id").unwrap(), sample().message_id);
        assert_eq!(document.get_str("content").unwrap(), "héllo 👋");
        assert_eq!(document.get_i64("chat_id").unwrap(), 7);
        assert_eq!(document.get_i64("sender_id").unwrap(), 3);
        assert_eq!(document.get_datetime("timestamp").unwrap().timestamp_millis(), 1_767_268_800_123);
        assert_eq!(from_document(&document), Some((sample().message_id, "héllo 👋".into())));
    }

    #[test]
    fn contents_are_fetched_with_one_in_query() {
        let filter = ids_filter(&["a".into(), "b".into()]);
        assert_eq!(filter, doc! { "message_id": { "$in": ["a", "b"] } });
    }

    #[test]
    fn an_edit_sets_the_content_and_the_edit_time() {
        let update = replace_update("new", 5);
        let set = update.get_document("$set").unwrap();
        assert_eq!(set.get_str("content").unwrap(), "new");
        assert_eq!(set.get_datetime("edited_at").unwrap().timestamp_millis(), 5);
    }

    #[test]
    fn message_ids_are_unique_and_history_is_indexed() {
        let indexes = indexes();
        assert_eq!(indexes[0].keys, doc! { "message_id": 1 });
        assert_eq!(indexes[0].options.as_ref().and_then(|o| o.unique), Some(true));
        assert_eq!(indexes[1].keys, doc! { "chat_id": 1, "timestamp": 1 });
    }

    #[test]
    fn a_document_without_content_is_skipped() {
        assert_eq!(from_document(&doc! { "message_id": "x" }), None);
    }
}
