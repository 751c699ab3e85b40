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

/// One version of a message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub content: String,
    pub at_ms: i64,
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
    /// Every version of one message's text, oldest first, the current one
    /// last, each with when it was written; none when the content is gone.
    async fn versions(&self, id: &str) -> Result<Vec<Version>, ContentError>;
    /// Erases one message's content, its earlier versions too, for good (delete). Erasing what is gone is fine.
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

    async fn replace(&self, id: &str, content: &str, edited_at_ms: i64) -> Result<(), ContentError> {
        let mut tx = self.db.pool.begin().await.map_err(sql_error)?;
        sql_versions::replace(&mut tx, id, content, edited_at_ms).await.map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)
    }

    async fn versions(&self, id: &str) -> Result<Vec<Version>, ContentError> {
        // One transaction: the earlier versions and the current text of one moment.
        let mut tx = self.db.pool.begin().await.map_err(sql_error)?;
        let versions = sql_versions::read(&mut tx, id).await.map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)?;
        Ok(versions)
    }

    async fn erase(&self, id: &str) -> Result<(), ContentError> {
        let mut tx = self.db.pool.begin().await.map_err(sql_error)?;
        sql_versions::erase(&mut tx, id).await.map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)
    }

    async fn ping(&self) -> bool {
        self.db.ping().await
    }
}

/// The SQL statements of content and its versions, for this store and for
/// the writer's transactions (content in the metadata's database).
pub mod sql_versions {
    use sqlx::{AnyConnection, Row};

    use super::Version;

    /// A new text for a message: the one it replaces becomes an earlier version.
    pub async fn replace(tx: &mut AnyConnection, id: &str, content: &str, at_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO message_versions (content_id, content, at_ms) \
             SELECT message_id, content, COALESCE(edited_at_ms, timestamp_ms) FROM message_contents WHERE message_id = ?",
        )
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE message_contents SET content = ?, edited_at_ms = ? WHERE message_id = ?")
            .bind(content.to_owned())
            .bind(at_ms)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Every version, oldest first, the current text last; none when the content is gone.
    pub async fn read(tx: &mut AnyConnection, id: &str) -> Result<Vec<Version>, sqlx::Error> {
        let current = sqlx::query(
            "SELECT content, COALESCE(edited_at_ms, timestamp_ms) AS at_ms FROM message_contents WHERE message_id = ?",
        )
        .bind(id.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else { return Ok(Vec::new()) };
        let earlier = sqlx::query("SELECT content, at_ms FROM message_versions WHERE content_id = ? ORDER BY id")
            .bind(id.to_owned())
            .fetch_all(&mut *tx)
            .await?;
        earlier
            .iter()
            .chain(std::iter::once(&current))
            .map(|row| Ok(Version { content: row.try_get("content")?, at_ms: row.try_get("at_ms")? }))
            .collect()
    }

    /// The content and every earlier version, gone for good.
    pub async fn erase(tx: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
        for table in
            ["DELETE FROM message_versions WHERE content_id = ?", "DELETE FROM message_contents WHERE message_id = ?"]
        {
            sqlx::query(table).bind(id.to_owned()).execute(&mut *tx).await?;
        }
        Ok(())
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

/// The update for an edit, as one pipeline stage (atomic on the document):
/// the text it replaces, with the time it was written, joins `versions`.
pub fn replace_update(content: &str, edited_at_ms: i64) -> Vec<Document> {
    vec![doc! { "$set": {
        "versions": { "$concatArrays": [
            { "$ifNull": ["$versions", []] },
            [{ "content": "$content", "at": { "$ifNull": ["$edited_at", "$timestamp"] } }],
        ] },
        "content": content,
        "edited_at": mongodb::bson::DateTime::from_millis(edited_at_ms),
    } }]
}

/// Every version in a stored document, oldest first, the current one last.
pub fn versions_of(document: &Document) -> Vec<Version> {
    let at = |document: &Document, key: &str| document.get_datetime(key).ok().map(|at| at.timestamp_millis());
    let earlier = document.get_array("versions").map(|versions| versions.as_slice()).unwrap_or_default();
    let earlier = earlier.iter().filter_map(|version| {
        let version = version.as_document()?;
        Some(Version { content: version.get_str("content").ok()?.to_owned(), at_ms: at(version, "at")? })
    });
    let current = document.get_str("content").ok().map(|content| Version {
        content: content.to_owned(),
        at_ms: at(document, "edited_at").or_else(|| at(document, "timestamp")).unwrap_or_default(),
    });
    match current {
        Some(current) => earlier.chain(std::iter::once(current)).collect(),
        None => Vec::new(),
    }
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

    async fn versions(&self, id: &str) -> Result<Vec<Version>, ContentError> {
        let document = self.collection.find_one(doc! { "message_id": id }).await.map_err(mongo_error)?;
        Ok(document.as_ref().map(versions_of).unwrap_or_default())
    }

    async fn erase(&self, id: &str) -> Result<(), ContentError> {
        // The versions live in the document: they go with it.
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
    fn an_edit_sets_the_content_and_the_edit_time_and_keeps_the_text_it_replaces() {
        let update = replace_update("new", 5);
        assert_eq!(update.len(), 1, "one stage: atomic on the document");
        let set = update[0].get_document("$set").unwrap();
        assert_eq!(set.get_str("content").unwrap(), "new");
        assert_eq!(set.get_datetime("edited_at").unwrap().timestamp_millis(), 5);
        let appended = set.get_document("versions").unwrap().get_array("$concatArrays").unwrap();
        let kept = appended[1].as_array().unwrap()[0].as_document().unwrap();
        assert_eq!(kept.get_str("content").unwrap(), "$content", "the text before this stage");
        assert_eq!(kept.get_document("at").unwrap(), &doc! { "$ifNull": ["$edited_at", "$timestamp"] });
    }

    #[test]
    fn a_document_s_versions_are_oldest_first_with_the_current_last() {
        let time = mongodb::bson::DateTime::from_millis;
        let mut document = content_document(&sample());
        assert_eq!(versions_of(&document), [Version { content: "héllo 👋".into(), at_ms: 1_767_268_800_123 }]);
        document.insert("versions", vec![doc! { "content": "héllo 👋", "at": time(1_767_268_800_123) }]);
        document.insert("content", "edited");
        document.insert("edited_at", time(1_767_268_900_000));
        assert_eq!(
            versions_of(&document),
            [
                Version { content: "héllo 👋".into(), at_ms: 1_767_268_800_123 },
                Version { content: "edited".into(), at_ms: 1_767_268_900_000 },
            ]
        );
        assert!(versions_of(&doc! { "message_id": "x" }).is_empty(), "no content: no history");
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
