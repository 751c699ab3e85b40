//! Rate limits on a gateway that has them: writes per user (REST and
//! WebSocket), failed logins per username.

use std::time::Duration;

use chat_tests::{spawn_deployment, ws::ChatSocket};
use gateway::limits::{LimitSettings, Rate};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// Three writes at once, then one every ten seconds; three failed logins a minute.
const TIGHT: LimitSettings = LimitSettings {
    writes: Rate { per_second: 0.1, burst: 3.0 },
    login_failures: Rate { per_second: 3.0 / 60.0, burst: 3.0 },
};

#[tokio::test]
async fn writes_past_the_limit_are_429_with_retry_after_per_user() {
    let app = spawn_deployment().await;
    let base = app.limited_gateway(TIGHT).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = app.direct_chat(&base, &alice, &bob).await;
    let send = |user: &chat_tests::TestUser| {
        let body = json!({"chat_id": chat_id, "content": "hi"});
        app.http.post(format!("{base}/api/v1/messages/")).bearer_auth(&user.token).json(&body).send()
    };
    let first = send(&alice).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(send(&alice).await.unwrap().status(), 201);

    // An edit spends a write too: the burst of three is gone.
    let edit = app
        .http
        .put(format!("{base}/api/v1/messages/{}", first["id"]))
        .bearer_auth(&alice.token)
        .json(&json!({"content": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);

    let limited = send(&alice).await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");

    assert_eq!(send(&bob).await.unwrap().status(), 201, "bob has his own budget");
    // Reads are not limited.
    let history = app.http.get(format!("{base}/api/v1/messages/chat/{chat_id}")).bearer_auth(&alice.token);
    assert_eq!(history.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_limited_websocket_send_gets_an_error_frame_and_the_socket_stays_open() {
    let app = spawn_deployment().await;
    let base = app.limited_gateway(TIGHT).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = app.direct_chat(&base, &alice, &bob).await;
    let mut socket = ChatSocket::connect_ready(&base, chat_id, &alice.token, None).await.unwrap();
    for n in 0..3 {
        socket.send(&json!({"type": "message", "content": format!("m{n}")})).await.unwrap();
        assert_eq!(socket.expect("new_message", WAIT).await.unwrap()["message"]["content"], format!("m{n}"));
    }
    socket.send(&json!({"type": "message", "content": "one too many", "client_msg_id": "k-4"})).await.unwrap();
    let error = socket.expect("error", WAIT).await.unwrap();
    assert_eq!(error["code"], "rate_limited");
    assert_eq!(error["client_msg_id"], "k-4");
    socket.send(&json!({"type": "ping"})).await.unwrap();
    assert!(socket.expect("pong", WAIT).await.is_ok(), "the socket stays open");
}

#[tokio::test]
async fn failed_logins_past_the_limit_are_429_for_that_username_only() {
    let app = spawn_deployment().await;
    let base = app.limited_gateway(TIGHT).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let login = |username: &str, password: &str| {
        let body = json!({"username": username, "password": password});
        app.http.post(format!("{base}/api/v1/users/login")).json(&body).send()
    };
    assert_eq!(login(&alice.username, &alice.password).await.unwrap().status(), 200, "successes cost nothing");
    for _ in 0..3 {
        assert_eq!(login(&alice.username, "wrong-password-1").await.unwrap().status(), 401);
    }
    let limited = login(&alice.username.to_uppercase(), &alice.password).await.unwrap();
    assert_eq!(limited.status(), 429, "even the right password, for a while; any case of the name");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(login(&bob.username, &bob.password).await.unwrap().status(), 200, "bob is not slowed");
}
