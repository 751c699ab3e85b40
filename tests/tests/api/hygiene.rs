//! What a careless or hostile client meets: oversized bodies and frames get
//! a readable answer (never a reset), silent sockets are closed, browsers
//! from other origins are refused, every 503 and 429 says when to retry.

use std::time::Duration;

use chat_tests::{TestDeployment, spawn_deployment, ws::ChatSocket};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _, http::HeaderValue};

const WAIT: Duration = Duration::from_secs(5);

/// Sends a request as raw bytes (head, then the body in pieces) and reads the whole answer.
async fn raw_request(base_url: &str, head: &str, body: &[&[u8]]) -> String {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body {
        // The server may answer before the body is through; a reset would fail the write or the read.
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answered and closed within {WAIT:?}");
    assert!(read.unwrap().is_ok(), "the connection ended cleanly, not with a reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_readable_413_with_a_length_or_chunked() {
    let app = spawn_deployment().await;
    let host = app.base_url.trim_start_matches("http://").to_owned();
    let body = format!(r#"{{"username": "{}", "email": "a@b.co", "password": "password-1"}}"#, "x".repeat(100 * 1024));

    let head = format!(
        "POST /api/v1/users/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = raw_request(&app.base_url, &head, &[body.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", &answer[..answer.len().min(200)]);

    let head = format!(
        "POST /api/v1/users/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let chunks: Vec<Vec<u8>> = body
        .as_bytes()
        .chunks(8 * 1024)
        .map(|piece| [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat())
        .chain(std::iter::once(b"0\r\n\r\n".to_vec()))
        .collect();
    let pieces: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let answer = raw_request(&app.base_url, &head, &pieces).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", &answer[..answer.len().min(200)]);
    assert!(answer.contains(r#""detail""#), "a JSON error body: {answer}");
}

/// A direct chat of two new users; (their tokens, the chat).
async fn pair(app: &TestDeployment, base_url: &str) -> (chat_tests::TestUser, chat_tests::TestUser, i64) {
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = app.direct_chat(base_url, &alice, &bob).await;
    (alice, bob, chat_id)
}

#[tokio::test]
async fn a_frame_over_64_kib_gets_a_readable_1009_close() {
    let app = spawn_deployment().await;
    let (alice, _, chat_id) = pair(&app, &app.base_url).await;
    for size in [70 * 1024, 512 * 1024] {
        let url = chat_tests::ws::ws_url(&app.base_url, chat_id, &alice.token, None);
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        use futures::{SinkExt as _, StreamExt as _};
        let frame = json!({"type": "message", "content": "x".repeat(size)}).to_string();
        socket.send(Message::text(frame)).await.unwrap();
        let close = tokio::time::timeout(WAIT, async {
            loop {
                match socket.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                    Some(Ok(_)) => continue,
                    other => panic!("{size} bytes: no close frame, but {other:?}"),
                }
            }
        })
        .await
        .expect("a close frame in time");
        assert_eq!(close, Some(1009), "{size} bytes");
    }
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_and_goes_offline() {
    let app = spawn_deployment().await;
    let base = app
        .gateway_with(|settings| {
            settings.ws.ping_every = Duration::from_secs(1);
            settings.ws.pong_timeout = Duration::from_secs(2);
        })
        .await;
    let (alice, bob, chat_id) = pair(&app, &base).await;
    let mut watcher = ChatSocket::connect_ready(&base, chat_id, &alice.token, None).await.unwrap();
    // Bob's client connects, then never reads again: it answers no ping (a half-open connection looks the same).
    let _silent = ChatSocket::connect_ready(&base, chat_id, &bob.token, None).await.unwrap();
    assert_eq!(watcher.expect("user_joined", WAIT).await.unwrap()["user_id"], bob.id);
    // The watcher reads, so its client answers pings and it stays.
    let left = watcher.expect("user_left", Duration::from_secs(8)).await.expect("the silent user goes offline");
    assert_eq!(left["user_id"], bob.id);
    watcher.send(&json!({"type": "ping"})).await.unwrap();
    assert!(watcher.expect("pong", WAIT).await.is_ok(), "a client that answers pings keeps its socket");
}

#[tokio::test]
async fn only_allowed_origins_may_open_a_socket() {
    let app = spawn_deployment().await;
    let base =
        app.gateway_with(|settings| settings.ws.allowed_origins = Some(vec!["https://app.example.com".into()])).await;
    let (alice, _, chat_id) = pair(&app, &base).await;
    let connect = |origin: Option<&'static str>| {
        let mut request = chat_tests::ws::ws_url(&base, chat_id, &alice.token, None).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", HeaderValue::from_static(origin));
        }
        tokio_tungstenite::connect_async(request)
    };
    match connect(Some("https://evil.example.net")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin got {other:?}"),
    }
    assert!(connect(Some("https://app.example.com")).await.is_ok(), "the app's own origin");
    assert!(connect(None).await.is_ok(), "a client that is no browser sends no origin");
}

#[tokio::test]
async fn a_password_change_closes_the_users_open_sockets_with_4401() {
    let app = spawn_deployment().await;
    let base = app
        .gateway_with(|settings| {
            settings.ws.ping_every = Duration::from_secs(1);
            settings.ws.pong_timeout = Duration::from_secs(30);
        })
        .await;
    let (alice, bob, chat_id) = pair(&app, &base).await;
    let mut socket = ChatSocket::connect_ready(&base, chat_id, &alice.token, None).await.unwrap();
    let mut other = ChatSocket::connect_ready(&base, chat_id, &bob.token, None).await.unwrap();
    let change = json!({"password": "a-brand-new-password", "current_password": alice.password});
    let response =
        app.http.put(format!("{base}/api/v1/users/me")).bearer_auth(&alice.token).json(&change).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let closed = socket.expect("never", Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(closed, Some(chat_tests::ws::Closed::Code(4401)), "the revoked token's socket is closed");
    other.send(&json!({"type": "ping"})).await.unwrap();
    assert!(other.expect("pong", WAIT).await.is_ok(), "another user's socket stays");
}
