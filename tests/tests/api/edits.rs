//! Edit history (API.md, *Edit history*): every version of a message, oldest
//! first — the original with the message's time, then each edit with its
//! `edited_at` — the last being the current text; participants only; erased
//! with the message on delete (read from the store directly), on MariaDB and SQLite.

use chat_tests::spawn_deployment_on;
use serde_json::{Value, json};
use sql_pool::{Backend, on_both_backends};

fn versions(history: &Value) -> Vec<(String, String)> {
    history
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| (v["content"].as_str().unwrap().to_owned(), v["timestamp"].as_str().unwrap().to_owned()))
        .collect()
}

async fn every_version_is_kept_oldest_first_for_participants_and_erased_with_the_message(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let body = json!({"chat_type": "group", "name": "edits", "participant_ids": [bob.id]});
    let (_, chat) = app.call(reqwest::Method::POST, "/api/v1/chats/", &alice, Some(body)).await;
    let chat_id = chat["id"].as_i64().unwrap();
    let tag = format!("{}-{}", std::process::id(), chat_id);
    let (status, sent) = app
        .call(
            reqwest::Method::POST,
            "/api/v1/messages/",
            &alice,
            Some(json!({"chat_id": chat_id, "content": format!("v1 {tag}")})),
        )
        .await;
    assert_eq!(status, 201);
    let id = sent["id"].as_i64().unwrap();
    let path = format!("/api/v1/messages/{id}/edits");

    let (status, history) = app.call(reqwest::Method::GET, &path, &bob, None).await;
    assert_eq!(status, 200);
    let original = (format!("v1 {tag}"), sent["timestamp"].as_str().unwrap().to_owned());
    assert_eq!(versions(&history), std::slice::from_ref(&original), "never edited: the original alone");

    let mut expected = vec![original];
    for n in 2..=3 {
        let content = format!("v{n} {tag}");
        let (status, edited) = app
            .call(reqwest::Method::PUT, &format!("/api/v1/messages/{id}"), &alice, Some(json!({"content": content})))
            .await;
        assert_eq!(status, 200);
        expected.push((content, edited["edited_at"].as_str().unwrap().to_owned()));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, history) = app.call(reqwest::Method::GET, &path, &bob, None).await;
    assert_eq!(versions(&history), expected, "oldest first, each with its time; the last is the current text");

    let (status, _) = app.call(reqwest::Method::GET, &path, &carol, None).await;
    assert_eq!(status, 403, "not a participant (as for chats: 404 is for no such message)");
    let (status, _) = app.call(reqwest::Method::GET, "/api/v1/messages/999999999/edits", &alice, None).await;
    assert_eq!(status, 404);

    let like = format!("%{tag}%");
    let stored = |table: &str| format!("SELECT COUNT(*) AS n FROM {table} WHERE content LIKE '{like}'");
    assert_eq!(app.db_count(&stored("message_versions")).await, 2);
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/api/v1/messages/{id}"), &alice, None).await;
    assert_eq!(status, 204);
    let (status, history) = app.call(reqwest::Method::GET, &path, &bob, None).await;
    assert_eq!((status, history), (200, json!([])), "erased with the message");
    assert_eq!(app.db_count(&stored("message_versions")).await, 0, "no earlier version is left in the store");
    assert_eq!(app.db_count(&stored("message_contents")).await, 0, "nor the current text");
}

on_both_backends!(every_version_is_kept_oldest_first_for_participants_and_erased_with_the_message);
