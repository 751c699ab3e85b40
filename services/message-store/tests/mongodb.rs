//! The MongoDB content store against a real server at `MONGODB_URL`.
//!
//! No MongoDB server can be installed on the development and CI machines, so
//! without `MONGODB_URL` these tests say loudly that they were skipped. The
//! BSON mapping and query building are unit-tested in `src/content.rs`.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use message_store::content::{ContentStore, MongoContentStore, StoredContent};

async fn store() -> Option<MongoContentStore> {
    let Ok(url) = std::env::var("MONGODB_URL") else {
        eprintln!(
            "\n*** SKIPPED: MongoDB content store tests — MONGODB_URL is not set (no MongoDB server on this machine). ***\n"
        );
        return None;
    };
    let database = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
    Some(MongoContentStore::connect(&url, &database).await.expect("MONGODB_URL is reachable"))
}

fn content(text: &str) -> StoredContent {
    StoredContent {
        message_id: uuid::Uuid::new_v4().to_string(),
        chat_id: 1,
        sender_id: 2,
        content: text.into(),
        timestamp_ms: 1_767_268_800_000,
    }
}

#[tokio::test]
async fn content_is_stored_fetched_in_one_query_replaced_and_erased() {
    let Some(store) = store().await else { return };
    assert!(store.ping().await);
    let (first, second) = (content("first 👋"), content("second"));
    store.put_many(&[first.clone(), second.clone()]).await.unwrap();
    let found = store.get_many(&[first.message_id.clone(), second.message_id.clone(), "missing".into()]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&first.message_id], "first 👋");

    store.replace(&first.message_id, "edited", 5).await.unwrap();
    store.erase(&second.message_id).await.unwrap();
    store.erase(&second.message_id).await.unwrap();
    let found = store.get_many(&[first.message_id.clone(), second.message_id.clone()]).await.unwrap();
    assert_eq!(found.len(), 1, "erased content is gone");
    assert_eq!(found[&first.message_id], "edited");
}

#[tokio::test]
async fn a_message_id_is_stored_once() {
    let Some(store) = store().await else { return };
    let once = content("once");
    store.put_many(std::slice::from_ref(&once)).await.unwrap();
    assert!(store.put_many(std::slice::from_ref(&once)).await.is_err(), "the unique index refuses a second copy");
}
