//! Reactions (API.md, *Reactions*), sentence by sentence, on MariaDB and
//! SQLite: one per (message, user, emoji) even when sent at once, at most 20
//! distinct emoji even when the 20th and 21st race, ordered by each emoji's
//! first standing reaction, broadcast only when something changed, erased
//! with the message; emoji checked as percent-decoded path segments; and a
//! history page of 100 messages with reactions and replies in a fixed
//! number of statements.

use std::time::Duration;

use chat_tests::{TestDeployment, TestUser, spawn_counted_deployment, spawn_deployment_on, ws::ChatSocket};
use reqwest::Method;
use serde_json::{Value, json};
use sql_pool::{Backend, on_both_backends};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(700);

/// A path segment with every byte outside the unreserved set percent-encoded.
fn encoded(emoji: &str) -> String {
    emoji
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn reaction_path(message_id: i64, emoji: &str) -> String {
    format!("/api/v1/messages/{message_id}/reactions/{}", encoded(emoji))
}

async fn react(app: &TestDeployment, user: &TestUser, message_id: i64, emoji: &str) -> (u16, Value) {
    app.call(Method::PUT, &reaction_path(message_id, emoji), user, None).await
}

async fn unreact(app: &TestDeployment, user: &TestUser, message_id: i64, emoji: &str) -> u16 {
    app.call(Method::DELETE, &reaction_path(message_id, emoji), user, None).await.0
}

/// alice and bob in a group with one message of alice's, carol outside.
struct Scene {
    app: TestDeployment,
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    chat_id: i64,
    message_id: i64,
}

async fn scene(backend: Backend) -> Scene {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let body = json!({"chat_type": "group", "name": "reactions", "participant_ids": [bob.id]});
    let (_, chat) = app.call(Method::POST, "/api/v1/chats/", &alice, Some(body)).await;
    let chat_id = chat["id"].as_i64().unwrap();
    let body = json!({"chat_id": chat_id, "content": "react to me"});
    let (status, message) = app.call(Method::POST, "/api/v1/messages/", &alice, Some(body)).await;
    assert_eq!(status, 201);
    assert_eq!(message["reactions"], json!([]), "none yet: []");
    Scene { app, alice, bob, carol, chat_id, message_id: message["id"].as_i64().unwrap() }
}

/// The reaction frames among what a socket receives within `wait`: `(type, user, emoji)`.
async fn reaction_frames(socket: &mut ChatSocket, wait: Duration) -> Vec<(String, i64, String)> {
    socket
        .drain(wait)
        .await
        .into_iter()
        .filter(|frame| frame["type"].as_str().is_some_and(|kind| kind.starts_with("reaction_")))
        .map(|frame| {
            (
                frame["type"].as_str().unwrap().to_owned(),
                frame["user_id"].as_i64().unwrap(),
                frame["emoji"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn reactions_are_ordered_counted_idempotent_and_broadcast_only_on_change(backend: Backend) {
    let Scene { app, alice, bob, carol, chat_id, message_id } = scene(backend).await;
    let mut chat_socket = ChatSocket::connect_ready(&app.base_url, chat_id, &alice.token, None).await.unwrap();
    let mut user_socket = ChatSocket::connect_user_ready(&app.base_url, &bob.token, None).await.unwrap();

    let (status, message) = react(&app, &bob, message_id, "👍").await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["reactions"], json!([{"emoji": "👍", "count": 1, "user_ids": [bob.id]}]));
    let frame = chat_socket.expect("reaction_added", WAIT).await.unwrap();
    assert_eq!(
        (frame["chat_id"].as_i64(), frame["message_id"].as_i64(), frame["user_id"].as_i64(), frame["emoji"].as_str()),
        (Some(chat_id), Some(message_id), Some(bob.id), Some("👍"))
    );
    assert!(frame["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    user_socket.expect("reaction_added", WAIT).await.expect("the user socket carries it too");

    let (status, again) = react(&app, &bob, message_id, "👍").await;
    assert_eq!((status, &again["reactions"]), (200, &message["reactions"]), "the same reaction again changes nothing");
    assert!(reaction_frames(&mut chat_socket, QUIET).await.is_empty(), "and is not broadcast");

    react(&app, &alice, message_id, "🎉").await;
    let (_, message) = react(&app, &alice, message_id, "👍").await;
    assert_eq!(
        message["reactions"],
        json!([
            {"emoji": "👍", "count": 2, "user_ids": [bob.id, alice.id]},
            {"emoji": "🎉", "count": 1, "user_ids": [alice.id]},
        ]),
        "each emoji where its first reaction is, its users in the order they reacted"
    );
    // Taking back 👍's first reaction leaves alice's, which is younger than 🎉.
    assert_eq!(unreact(&app, &bob, message_id, "👍").await, 204);
    let (_, page) = app.call(Method::GET, &format!("/api/v1/messages/chat/{chat_id}"), &bob, None).await;
    assert_eq!(
        page["messages"][0]["reactions"],
        json!([
            {"emoji": "🎉", "count": 1, "user_ids": [alice.id]},
            {"emoji": "👍", "count": 1, "user_ids": [alice.id]},
        ]),
        "in history, ordered by each emoji's first standing reaction"
    );
    let frames = reaction_frames(&mut chat_socket, QUIET).await;
    assert_eq!(
        frames,
        vec![
            ("reaction_added".to_owned(), alice.id, "🎉".to_owned()),
            ("reaction_added".to_owned(), alice.id, "👍".to_owned()),
            ("reaction_removed".to_owned(), bob.id, "👍".to_owned()),
        ]
    );
    assert_eq!(unreact(&app, &bob, message_id, "👍").await, 204, "nothing to take back: still 204");
    assert_eq!(unreact(&app, &bob, message_id, "🙈").await, 204);
    assert!(reaction_frames(&mut chat_socket, QUIET).await.is_empty(), "nothing changed, nothing broadcast");

    // Participants only; a user who leaves keeps their reactions but cannot take them back.
    let (status, _) = react(&app, &carol, message_id, "👀").await;
    assert_eq!(status, 403);
    assert_eq!(unreact(&app, &carol, message_id, "🎉").await, 403);
    let (status, _) = react(&app, &carol, 999_999_999, "👀").await;
    assert_eq!(status, 404);
    react(&app, &bob, message_id, "🚀").await;
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/chats/{chat_id}"), &bob, None).await;
    assert_eq!(status, 204);
    assert_eq!(unreact(&app, &bob, message_id, "🚀").await, 403);
    let (_, page) = app.call(Method::GET, &format!("/api/v1/messages/chat/{chat_id}"), &alice, None).await;
    let kept = page["messages"][0]["reactions"].as_array().unwrap().iter().any(|r| r["emoji"] == "🚀");
    assert!(kept, "bob's reaction stays after he left: {page}");
}

on_both_backends!(reactions_are_ordered_counted_idempotent_and_broadcast_only_on_change);

async fn emoji_are_percent_decoded_1_to_32_scalar_values_without_whitespace_or_controls(backend: Backend) {
    let Scene { app, bob, message_id, .. } = scene(backend).await;
    for good in ["👩\u{200d}💻", "❤\u{fe0f}", "👍🏽", "+1", &"😀".repeat(32), "ok"] {
        let (status, message) = react(&app, &bob, message_id, good).await;
        assert_eq!(status, 200, "{good:?}: {message}");
        let found = message["reactions"].as_array().unwrap().iter().any(|r| r["emoji"] == good);
        assert!(found, "{good:?} comes back as it was sent: {message}");
    }
    for bad in [" ", "a b", "👍\u{a0}", "\u{3000}", "\u{2028}", "\t", "\u{7}", "\u{85}", &"😀".repeat(33)] {
        let (status, body) = react(&app, &bob, message_id, bad).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
    }
    // Two emoji that a Unicode collation takes as equal are two emoji.
    let (_, message) = react(&app, &bob, message_id, "🐶").await;
    let (_, message_after) = react(&app, &bob, message_id, "🐱").await;
    let count = |message: &Value| message["reactions"].as_array().unwrap().len();
    assert_eq!(count(&message_after), count(&message) + 1, "{message_after}");
}

on_both_backends!(emoji_are_percent_decoded_1_to_32_scalar_values_without_whitespace_or_controls);

async fn a_message_holds_twenty_distinct_emoji_even_under_concurrent_reactions(backend: Backend) {
    let Scene { app, alice, bob, message_id, .. } = scene(backend).await;
    for n in 0..18 {
        let (status, _) = react(&app, &alice, message_id, &format!("e{n}")).await;
        assert_eq!(status, 200);
    }
    // Five new emoji at once for the last two places: exactly two pass.
    let emoji: Vec<String> = (0..5).map(|n| format!("new{n}")).collect();
    let racing = emoji.iter().map(|emoji| react(&app, &bob, message_id, emoji));
    let statuses: Vec<u16> = futures::future::join_all(racing).await.into_iter().map(|(status, _)| status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3, "{statuses:?}");
    let (status, message) = react(&app, &bob, message_id, "e0").await;
    assert_eq!(status, 200, "an emoji it has still takes more users");
    assert_eq!(message["reactions"].as_array().unwrap().len(), 20);

    // The same reaction from one user, many times at once, is one reaction.
    let same = (0..10).map(|_| react(&app, &bob, message_id, "e5"));
    let answers = futures::future::join_all(same).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let (_, message) = react(&app, &alice, message_id, "e5").await;
    let e5 = message["reactions"].as_array().unwrap().iter().find(|r| r["emoji"] == "e5").unwrap().clone();
    assert_eq!(e5, json!({"emoji": "e5", "count": 2, "user_ids": [alice.id, bob.id]}));
}

on_both_backends!(a_message_holds_twenty_distinct_emoji_even_under_concurrent_reactions);

async fn a_deleted_message_takes_no_reactions_and_its_reactions_are_erased(backend: Backend) {
    let Scene { app, alice, bob, chat_id, message_id, .. } = scene(backend).await;
    react(&app, &bob, message_id, "👍").await;
    react(&app, &alice, message_id, "🎉").await;
    let stored = format!("SELECT COUNT(*) AS n FROM message_reactions WHERE message_id = {message_id}");
    assert_eq!(app.db_count(&stored).await, 2);
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &alice.token, None).await.unwrap();
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/messages/{message_id}"), &alice, None).await;
    assert_eq!(status, 204);
    assert_eq!(app.db_count(&stored).await, 0, "erased with the message");
    let (_, page) = app.call(Method::GET, &format!("/api/v1/messages/chat/{chat_id}"), &bob, None).await;
    assert_eq!(page["messages"][0]["reactions"], json!([]));
    let (status, body) = react(&app, &bob, message_id, "👍").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(unreact(&app, &bob, message_id, "👍").await, 204);
    assert!(reaction_frames(&mut socket, QUIET).await.is_empty(), "nothing broadcast for a deleted message");
}

on_both_backends!(a_deleted_message_takes_no_reactions_and_its_reactions_are_erased);

/// A history page of 100 messages, each with reactions and a reply, costs the
/// same statements as a page of 2 (no N+1), on MariaDB, counted by the
/// services' own database user.
#[tokio::test]
async fn a_history_page_of_100_messages_with_reactions_and_replies_runs_a_fixed_number_of_statements() {
    let (app, counter) = spawn_counted_deployment().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let body = json!({"chat_type": "group", "name": "page", "participant_ids": [bob.id]});
    let (_, chat) = app.call(Method::POST, "/api/v1/chats/", &alice, Some(body)).await;
    let chat_id = chat["id"].as_i64().unwrap();
    let mut previous: Option<i64> = None;
    for n in 0..100 {
        let body = json!({"chat_id": chat_id, "content": format!("m{n}"), "reply_to": previous});
        let (status, message) = app.call(Method::POST, "/api/v1/messages/", &alice, Some(body)).await;
        assert_eq!(status, 201);
        let id = message["id"].as_i64().unwrap();
        react(&app, &bob, id, "👍").await;
        react(&app, &alice, id, &format!("e{}", n % 7)).await;
        previous = Some(id);
    }
    let page = |limit: u32| {
        let (app, bob) = (&app, bob.clone());
        async move {
            let path = format!("/api/v1/messages/chat/{chat_id}?limit={limit}");
            let (status, page) = app.call(Method::GET, &path, &bob, None).await;
            assert_eq!(status, 200);
            page["messages"].as_array().unwrap().clone()
        }
    };
    page(100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (few, few_statements) = counter.during(page(2)).await;
    let (many, many_statements) = counter.during(page(100)).await;
    assert_eq!((few.len(), many.len()), (2, 100));
    assert!(many.iter().skip(1).all(|m| m["reply_to"].is_i64() && m["reactions"].as_array().unwrap().len() == 2));
    eprintln!("history: 2 messages {few_statements} statements, 100 messages {many_statements}");
    assert!(few_statements > 0, "the counter counts ({few_statements})");
    assert!(
        many_statements <= few_statements + 2,
        "100 messages cost {many_statements} statements, 2 cost {few_statements}: it must not grow with the page"
    );
}
