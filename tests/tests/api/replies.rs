//! Replies (API.md, *Messages*: `reply_to`): a reply names a message of its
//! own chat (deleted ones too); another chat's message or no message is
//! refused with 400 (WebSocket: `validation`), nothing stored and no seq
//! taken — also when refused and accepted sends share one batch commit. The
//! id comes back in every Message: the send's answer, history, frames, the
//! chat list's preview.

use std::time::Duration;

use chat_tests::{TestDeployment, TestUser, spawn_deployment_on, ws::ChatSocket};
use serde_json::{Value, json};
use sql_pool::{Backend, on_both_backends};

const WAIT: Duration = Duration::from_secs(5);

async fn group(app: &TestDeployment, owner: &TestUser, members: &[&TestUser]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|member| member.id).collect();
    let body = json!({"chat_type": "group", "name": "replies", "participant_ids": ids});
    let (status, chat) = app.call(reqwest::Method::POST, "/api/v1/chats/", owner, Some(body)).await;
    assert_eq!(status, 201, "{chat}");
    chat["id"].as_i64().unwrap()
}

async fn send(app: &TestDeployment, sender: &TestUser, body: Value) -> (u16, Value) {
    app.call(reqwest::Method::POST, "/api/v1/messages/", sender, Some(body)).await
}

async fn history(app: &TestDeployment, reader: &TestUser, chat_id: i64) -> Vec<Value> {
    let path = format!("/api/v1/messages/chat/{chat_id}?limit=100");
    let (status, page) = app.call(reqwest::Method::GET, &path, reader, None).await;
    assert_eq!(status, 200);
    page["messages"].as_array().cloned().unwrap_or_default()
}

async fn a_reply_names_a_message_of_its_chat_and_anything_else_is_refused_with_nothing_stored(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    let elsewhere_chat = group(&app, &alice, &[]).await;
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();
    let id_of = |message: &Value| message["id"].as_i64().unwrap();

    let (_, first) = send(&app, &alice, json!({"chat_id": chat_id, "content": "first"})).await;
    let (_, gone) = send(&app, &alice, json!({"chat_id": chat_id, "content": "gone"})).await;
    let (status, _) =
        app.call(reqwest::Method::DELETE, &format!("/api/v1/messages/{}", id_of(&gone)), &alice, None).await;
    assert_eq!(status, 204);
    let (_, elsewhere) = send(&app, &alice, json!({"chat_id": elsewhere_chat, "content": "elsewhere"})).await;
    assert_eq!(first["reply_to"], Value::Null, "no reply: null");

    let (status, reply) =
        send(&app, &bob, json!({"chat_id": chat_id, "content": "re", "reply_to": id_of(&first)})).await;
    assert_eq!((status, reply["reply_to"].as_i64()), (201, Some(id_of(&first))));
    let (status, to_deleted) =
        send(&app, &bob, json!({"chat_id": chat_id, "content": "re: gone", "reply_to": id_of(&gone)})).await;
    assert_eq!(
        (status, to_deleted["reply_to"].as_i64()),
        (201, Some(id_of(&gone))),
        "a deleted message may be answered"
    );

    let before = history(&app, &alice, chat_id).await.len();
    for reply_to in [id_of(&elsewhere), 999_999_999, -1] {
        let (status, refused) =
            send(&app, &bob, json!({"chat_id": chat_id, "content": "x", "reply_to": reply_to})).await;
        assert_eq!(status, 400, "reply_to {reply_to}: {refused}");
    }
    assert_eq!(history(&app, &alice, chat_id).await.len(), before, "nothing stored");
    let (_, next) = send(&app, &alice, json!({"chat_id": chat_id, "content": "next"})).await;
    assert_eq!(next["seq"].as_i64(), Some(reply["seq"].as_i64().unwrap() + 2), "no seq taken by the refused ones");

    // A retry of a stored send is answered with the original, whatever it now names.
    let keyed = json!({"chat_id": chat_id, "content": "k", "client_msg_id": "key-1", "reply_to": id_of(&first)});
    let (status, original) = send(&app, &bob, keyed).await;
    assert_eq!(status, 201);
    let retry = json!({"chat_id": chat_id, "content": "k", "client_msg_id": "key-1", "reply_to": 999_999_999});
    let (status, again) = send(&app, &bob, retry).await;
    assert_eq!(
        (status, again["id"].clone(), again["reply_to"].clone()),
        (200, original["id"].clone(), original["reply_to"].clone())
    );

    // In history, in the frames, in the chat list's preview.
    let stored = history(&app, &alice, chat_id).await;
    let stored_reply = stored.iter().find(|message| message["id"] == reply["id"]).unwrap();
    assert_eq!(stored_reply["reply_to"].as_i64(), Some(id_of(&first)));
    let frame = loop {
        let frame = socket.expect("new_message", WAIT).await.unwrap();
        if frame["message"]["id"] == reply["id"] {
            break frame;
        }
    };
    assert_eq!(frame["message"]["reply_to"].as_i64(), Some(id_of(&first)));
    let (_, latest) =
        send(&app, &bob, json!({"chat_id": chat_id, "content": "latest", "reply_to": id_of(&first)})).await;
    let (_, chats) = app.call(reqwest::Method::GET, "/api/v1/chats/", &alice, None).await;
    let listed = chats.as_array().unwrap().iter().find(|chat| chat["id"] == chat_id).unwrap().clone();
    assert_eq!(listed["last_message"]["id"], latest["id"]);
    assert_eq!(listed["last_message"]["reply_to"].as_i64(), Some(id_of(&first)));
    let path = format!("/api/v1/messages/{}", id_of(&latest));
    let (status, edited) = app.call(reqwest::Method::PUT, &path, &bob, Some(json!({"content": "edited"}))).await;
    assert_eq!((status, edited["reply_to"].as_i64()), (200, Some(id_of(&first))), "an edit keeps it");
}

on_both_backends!(a_reply_names_a_message_of_its_chat_and_anything_else_is_refused_with_nothing_stored);

/// alice and bob in a chat with alice's first message in it, and a message
/// of alice's in another chat of hers.
struct Scene {
    app: TestDeployment,
    alice: TestUser,
    bob: TestUser,
    chat_id: i64,
    first: Value,
    elsewhere: Value,
}

async fn scene(backend: Backend) -> Scene {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    let other = group(&app, &alice, &[]).await;
    let (_, first) = send(&app, &alice, json!({"chat_id": chat_id, "content": "first"})).await;
    let (_, elsewhere) = send(&app, &alice, json!({"chat_id": other, "content": "elsewhere"})).await;
    Scene { app, alice, bob, chat_id, first, elsewhere }
}

async fn a_reply_frame_is_stored_like_a_rest_reply_and_a_bad_one_is_a_validation_error(backend: Backend) {
    let Scene { app, alice, bob, chat_id, first, elsewhere } = scene(backend).await;
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();

    socket
        .send(&json!({"type": "message", "content": "re", "reply_to": first["id"], "client_msg_id": "a"}))
        .await
        .unwrap();
    let echoed = socket.expect("new_message", WAIT).await.unwrap();
    assert_eq!(
        (echoed["message"]["reply_to"].clone(), echoed["message"]["client_msg_id"].as_str()),
        (first["id"].clone(), Some("a"))
    );
    for reply_to in [elsewhere["id"].clone(), json!(999_999_999), json!("1"), json!(1.5)] {
        socket
            .send(&json!({"type": "message", "content": "x", "reply_to": reply_to, "client_msg_id": "b"}))
            .await
            .unwrap();
        let error = socket.expect("error", WAIT).await.unwrap_or_else(|closed| panic!("{reply_to}: {closed:?}"));
        assert_eq!(
            (error["code"].as_str(), error["client_msg_id"].as_str()),
            (Some("validation"), Some("b")),
            "{reply_to}"
        );
    }
    assert_eq!(history(&app, &alice, chat_id).await.len(), 2, "only the good reply was stored");
}

on_both_backends!(a_reply_frame_is_stored_like_a_rest_reply_and_a_bad_one_is_a_validation_error);

async fn refused_and_accepted_replies_committed_together_leave_seqs_gap_free(backend: Backend) {
    let Scene { app, alice, bob, chat_id, first, elsewhere } = scene(backend).await;
    // Forty sends at once (batched together by the writer), every other one refused.
    let sends = (0..40).map(|n| {
        let target = if n % 2 == 0 { first["id"].clone() } else { elsewhere["id"].clone() };
        let (app, bob) = (&app, &bob);
        async move { send(app, bob, json!({"chat_id": chat_id, "content": format!("r{n}"), "reply_to": target})).await }
    });
    let answers = futures::future::join_all(sends).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 20, "{statuses:?}");
    let seqs: Vec<i64> = history(&app, &alice, chat_id).await.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<i64>>(), "gap-free: the refused took no seq");
}

on_both_backends!(refused_and_accepted_replies_committed_together_leave_seqs_gap_free);
