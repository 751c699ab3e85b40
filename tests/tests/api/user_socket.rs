//! The user socket, `GET /api/v1/ws` (API.md "One connection per client"),
//! and the `chat_updated` / `participant_updated` frames on both kinds of
//! socket: one scenario per promise of the contract, each run twice — on
//! the distributed deployment (real MariaDB and NATS with JetStream) and on
//! the standalone `chat-server` binary (SQLite, the in-process bus).

use std::time::Duration;

use chat_tests::{
    ServiceProcess, TestDeployment, TestUser, free_port, register_user, rest_call, spawn_deployment, standalone_server,
    ws::{ChatSocket, Closed},
};
use serde_json::{Value, json};

/// A server to test: the distributed deployment or the standalone binary.
struct Target {
    base_url: String,
    http: reqwest::Client,
    _deployment: Option<TestDeployment>,
    _standalone: Option<(ServiceProcess, TempDir)>,
}

/// A data directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Target {
    async fn distributed() -> Self {
        let app = spawn_deployment().await;
        Self { base_url: app.base_url.clone(), http: app.http.clone(), _deployment: Some(app), _standalone: None }
    }

    async fn standalone() -> Self {
        let port = free_port();
        let data = TempDir(std::env::temp_dir().join(format!("chat-user-socket-{}-{port}", std::process::id())));
        let server = standalone_server(&data.0, port);
        server.ready().await;
        Self {
            base_url: server.base_url.clone(),
            http: reqwest::Client::new(),
            _deployment: None,
            _standalone: Some((server, data)),
        }
    }

    /// Registers and logs in a user whose name starts with `prefix`.
    async fn user(&self, prefix: &str) -> TestUser {
        register_user(&self.http, &self.base_url, prefix).await
    }
}

/// Each scenario as two tests: `<scenario>::distributed` and `<scenario>::standalone`.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn distributed() {
                super::$scenario(&super::Target::distributed().await).await;
            }

            #[tokio::test]
            async fn standalone() {
                super::$scenario(&super::Target::standalone().await).await;
            }
        }
    )*};
}

on_both!(
    a_user_socket_carries_every_frame_a_per_chat_socket_gets_for_each_chat_of_its_user,
    a_joined_chat_is_carried_within_a_second_beginning_with_the_participant_added_about_the_user,
    a_new_chat_s_first_frame_on_a_user_socket_is_the_one_about_its_user,
    after_a_removal_or_a_leave_nothing_more_of_the_chat_comes_and_the_socket_stays_open,
    client_frames_need_a_chat_id_of_the_user_s_but_ping,
    after_replays_each_listed_chat_then_goes_live_with_no_gap_and_no_duplicate,
    a_malformed_after_closes_with_1008_and_an_empty_one_is_none,
    a_user_socket_is_a_live_connection_to_each_chat_for_presence_and_stats,
    renames_and_admin_changes_reach_both_kinds_of_socket,
    a_message_sent_right_after_a_join_follows_the_join_s_frame,
);

const WAIT: Duration = Duration::from_secs(5);
/// API.md: a joined chat is carried "within a second".
const FOLLOW_WITHIN: Duration = Duration::from_secs(1);
/// How long a socket must stay quiet for "nothing more" to hold.
const QUIET: Duration = Duration::from_millis(700);

/// The REST calls these tests make, as one user or another.
struct Rest<'a> {
    app: &'a Target,
}

impl Rest<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, user: &TestUser, body: Option<Value>) -> (u16, Value) {
        rest_call(&self.app.http, &self.app.base_url, method, path, user, body).await
    }

    async fn group(&self, owner: &TestUser, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|member| member.id).collect();
        let body = json!({"chat_type": "group", "name": "g", "participant_ids": ids});
        let (status, chat) = self.call(reqwest::Method::POST, "/api/v1/chats/", owner, Some(body)).await;
        assert_eq!(status, 201, "{chat}");
        chat["id"].as_i64().expect("an id")
    }

    async fn direct(&self, owner: &TestUser, other: &TestUser) -> i64 {
        let body = json!({"chat_type": "direct", "participant_ids": [other.id]});
        let (status, chat) = self.call(reqwest::Method::POST, "/api/v1/chats/", owner, Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {chat}");
        chat["id"].as_i64().expect("an id")
    }

    async fn send(&self, sender: &TestUser, chat_id: i64, content: &str) -> Value {
        let body = json!({"chat_id": chat_id, "content": content});
        let (status, message) = self.call(reqwest::Method::POST, "/api/v1/messages/", sender, Some(body)).await;
        assert_eq!(status, 201, "{message}");
        message
    }

    async fn expect_status(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &TestUser,
        body: Option<Value>,
        want: u16,
    ) {
        let (status, answer) = self.call(method.clone(), path, user, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }

    async fn add(&self, admin: &TestUser, chat_id: i64, user: &TestUser) {
        let path = format!("/api/v1/chats/{chat_id}/participants");
        self.expect_status(reqwest::Method::POST, &path, admin, Some(json!({"user_ids": [user.id]})), 200).await;
    }

    async fn remove(&self, admin: &TestUser, chat_id: i64, user: &TestUser) {
        let path = format!("/api/v1/chats/{chat_id}/participants?user_id={}", user.id);
        self.expect_status(reqwest::Method::DELETE, &path, admin, None, 204).await;
    }

    async fn leave(&self, user: &TestUser, chat_id: i64) {
        self.expect_status(reqwest::Method::DELETE, &format!("/api/v1/chats/{chat_id}"), user, None, 204).await;
    }

    async fn online(&self, user: &TestUser, chat_id: i64) -> Vec<i64> {
        let path = format!("/api/v1/ws/chat/{chat_id}/online");
        let (status, online) = self.call(reqwest::Method::GET, &path, user, None).await;
        assert_eq!(status, 200);
        serde_json::from_value(online["online_user_ids"].clone()).expect("ids")
    }
}

/// A frame without what differs from one delivery to another of the same event (nothing, today) —
/// and without `pong`s, which each socket gets for its own pings.
fn events_of(frames: &[Value], chat_id: i64) -> Vec<Value> {
    frames.iter().filter(|frame| frame["chat_id"] == chat_id && frame["type"] != "pong").cloned().collect()
}

fn kinds(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|frame| frame["type"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn a_user_socket_carries_every_frame_a_per_chat_socket_gets_for_each_chat_of_its_user(app: &Target) {
    let rest = Rest { app };
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let first = rest.group(&bob, &[&alice]).await;
    let second = rest.direct(&carol, &alice).await;
    let not_hers = rest.group(&bob, &[&carol]).await;
    let mut user_socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    let mut per_chat = [
        ChatSocket::connect_ready(&app.base_url, first, &alice.token, None).await.unwrap(),
        ChatSocket::connect_ready(&app.base_url, second, &alice.token, None).await.unwrap(),
    ];

    let sent = rest.send(&bob, first, "hello").await;
    let message_id = sent["id"].as_i64().unwrap();
    rest.send(&carol, second, "hi").await;
    rest.send(&bob, not_hers, "not for alice").await;
    let path = format!("/api/v1/messages/{message_id}");
    rest.expect_status(reqwest::Method::PUT, &path, &bob, Some(json!({"content": "hello!"})), 200).await;
    rest.expect_status(reqwest::Method::DELETE, &path, &bob, None, 204).await;
    let mut typist = ChatSocket::connect_ready(&app.base_url, second, &carol.token, None).await.unwrap();
    typist.send(&json!({"type": "typing", "content": "start"})).await.unwrap();
    rest.add(&bob, first, &carol).await;

    let heard = user_socket.drain(QUIET * 2).await;
    for (socket, chat_id) in per_chat.iter_mut().zip([first, second]) {
        let on_its_own = events_of(&socket.drain(QUIET).await, chat_id);
        assert!(!on_its_own.is_empty());
        assert_eq!(events_of(&heard, chat_id), on_its_own, "chat {chat_id}: the same frames, with its chat_id");
    }
    assert_eq!(
        kinds(&events_of(&heard, first)),
        ["new_message", "message_edited", "message_deleted", "participant_added"]
    );
    assert!(events_of(&heard, not_hers).is_empty(), "a chat she is not in");
}

async fn a_joined_chat_is_carried_within_a_second_beginning_with_the_participant_added_about_the_user(app: &Target) {
    let rest = Rest { app };
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let existing = rest.group(&bob, &[]).await;
    let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();

    // Created with her in it, by someone else; by her (by_user_id = the creator); added; a direct chat.
    let theirs = rest.group(&bob, &[&alice]).await;
    let hers = rest.group(&alice, &[&bob]).await;
    rest.add(&bob, existing, &alice).await;
    let direct = rest.direct(&bob, &alice).await;
    for (chat_id, by) in [(theirs, &bob), (hers, &alice), (existing, &bob), (direct, &bob)] {
        let first = socket.expect_in("participant_added", chat_id, WAIT).await.unwrap();
        assert_eq!((first["user_id"].as_i64(), first["by_user_id"].as_i64()), (Some(alice.id), Some(by.id)));
    }
    for chat_id in [theirs, hers, existing, direct] {
        rest.send(&bob, chat_id, "and then").await;
        let message = socket.expect_in("new_message", chat_id, WAIT).await.unwrap();
        assert_eq!(message["message"]["content"], "and then");
    }

    // Back in a direct chat she had left.
    rest.leave(&alice, direct).await;
    socket.expect_in("participant_removed", direct, WAIT).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rest.direct(&bob, &alice).await, direct);
    let back = socket.expect_in("participant_added", direct, FOLLOW_WITHIN).await.expect("within a second");
    assert!(started.elapsed() <= FOLLOW_WITHIN + Duration::from_millis(500));
    assert_eq!(back["user_id"], alice.id);
    rest.send(&bob, direct, "welcome back").await;
    assert_eq!(socket.expect_in("new_message", direct, WAIT).await.unwrap()["message"]["content"], "welcome back");
}

async fn a_new_chat_s_first_frame_on_a_user_socket_is_the_one_about_its_user(app: &Target) {
    let rest = Rest { app };
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    // bob and carol are announced before her: those frames go to the chat's sockets of the time.
    let chat_id = rest.group(&bob, &[&carol, &alice]).await;
    rest.send(&bob, chat_id, "first").await;
    let frames = socket.drain(QUIET).await;
    let of_chat = events_of(&frames, chat_id);
    assert_eq!(kinds(&of_chat), ["participant_added", "new_message"], "{of_chat:?}");
    assert_eq!(of_chat[0]["user_id"], alice.id);
}

async fn after_a_removal_or_a_leave_nothing_more_of_the_chat_comes_and_the_socket_stays_open(app: &Target) {
    let rest = Rest { app };
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let removed_from = rest.group(&bob, &[&alice]).await;
    let left = rest.group(&bob, &[&alice]).await;
    let stays = rest.group(&bob, &[&alice]).await;
    let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();

    rest.remove(&bob, removed_from, &alice).await;
    let removal = socket.expect_in("participant_removed", removed_from, WAIT).await.unwrap();
    assert_eq!((removal["user_id"].as_i64(), removal["by_user_id"].as_i64()), (Some(alice.id), Some(bob.id)));
    rest.leave(&alice, left).await;
    let leave = socket.expect_in("participant_removed", left, WAIT).await.unwrap();
    assert_eq!((leave["user_id"].as_i64(), leave["by_user_id"].as_i64()), (Some(alice.id), Some(alice.id)));

    for chat_id in [removed_from, left] {
        rest.send(&bob, chat_id, "not for alice").await;
        let path = format!("/api/v1/chats/{chat_id}");
        rest.expect_status(reqwest::Method::PUT, &path, &bob, Some(json!({"name": "renamed"})), 200).await;
    }
    rest.send(&bob, stays, "still for alice").await;
    let frames = socket.drain(QUIET).await;
    assert!(events_of(&frames, removed_from).is_empty() && events_of(&frames, left).is_empty(), "{frames:?}");
    assert_eq!(kinds(&events_of(&frames, stays)), ["new_message"]);

    // Open: it answers, and refuses frames about the chats she left.
    socket.send(&json!({"type": "ping"})).await.unwrap();
    assert_eq!(socket.expect("pong", WAIT).await.unwrap()["chat_id"], Value::Null);
    socket.send(&json!({"type": "message", "chat_id": left, "content": "x", "client_msg_id": "k"})).await.unwrap();
    let refused = socket.expect("error", WAIT).await.unwrap();
    assert_eq!((refused["code"].as_str(), refused["client_msg_id"].as_str()), (Some("forbidden"), Some("k")));
}

async fn client_frames_need_a_chat_id_of_the_user_s_but_ping(app: &Target) {
    let rest = Rest { app };
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = rest.group(&alice, &[&bob]).await;
    let other = rest.group(&bob, &[&carol]).await;
    let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    let mut bobs = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();

    let refusals = [
        (json!({"type": "message", "content": "no chat", "client_msg_id": "a"}), "bad_frame", Some("a")),
        (json!({"type": "typing", "content": "start"}), "bad_frame", None),
        (json!({"type": "message", "chat_id": other, "content": "x", "client_msg_id": "b"}), "forbidden", Some("b")),
        (json!({"type": "typing", "chat_id": other, "content": "start"}), "forbidden", None),
        (json!({"type": "ping", "chat_id": other}), "forbidden", None),
        (json!({"type": "message", "chat_id": chat_id, "content": "   "}), "validation", None),
        (json!({"type": "dance", "chat_id": chat_id}), "bad_frame", None),
    ];
    for (frame, code, client_msg_id) in refusals {
        socket.send(&frame).await.unwrap();
        let error = socket.expect("error", WAIT).await.unwrap_or_else(|closed| panic!("{frame}: {closed:?}"));
        assert_eq!((error["code"].as_str(), error["client_msg_id"].as_str()), (Some(code), client_msg_id), "{frame}");
    }

    socket.send(&json!({"type": "ping"})).await.unwrap();
    assert_eq!(socket.expect("pong", WAIT).await.unwrap()["chat_id"], Value::Null);
    socket.send(&json!({"type": "ping", "chat_id": chat_id})).await.unwrap();
    assert_eq!(socket.expect("pong", WAIT).await.unwrap()["chat_id"], chat_id);
    socket.send(&json!({"type": "typing", "chat_id": chat_id, "content": "start"})).await.unwrap();
    assert_eq!(bobs.expect("typing_started", WAIT).await.unwrap()["user_id"], alice.id);
    socket
        .send(&json!({"type": "message", "chat_id": chat_id, "content": "sent here", "client_msg_id": "c"}))
        .await
        .unwrap();
    let echoed = socket.expect_in("new_message", chat_id, WAIT).await.unwrap();
    assert_eq!(
        (echoed["message"]["content"].as_str(), echoed["message"]["client_msg_id"].as_str()),
        (Some("sent here"), Some("c"))
    );
    assert_eq!(bobs.expect("new_message", WAIT).await.unwrap()["message"]["id"], echoed["message"]["id"]);
}

async fn after_replays_each_listed_chat_then_goes_live_with_no_gap_and_no_duplicate(app: &Target) {
    let rest = Rest { app };
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let (listed, also_listed, unlisted) =
        (rest.group(&bob, &[&alice]).await, rest.group(&bob, &[&alice]).await, rest.group(&bob, &[&alice]).await);
    let not_hers = rest.group(&bob, &[&carol]).await;
    let mut ids = std::collections::HashMap::<i64, Vec<i64>>::new();
    for n in 0..5 {
        for chat_id in [listed, also_listed, unlisted, not_hers] {
            let id = rest.send(&bob, chat_id, &format!("m{n}")).await["id"].as_i64().unwrap();
            ids.entry(chat_id).or_default().push(id);
        }
    }
    // Resume after the 2nd message of `listed`, from the start of `also_listed`; `not_hers` is ignored.
    let after = format!("{listed}:{},{also_listed}:0,{not_hers}:0", ids[&listed][1]);
    let mut socket = ChatSocket::connect_user(&app.base_url, &alice.token, Some(&after)).await.unwrap();
    // Live messages of the listed chats while the replay runs (or right after it).
    let mut live = Vec::new();
    for chat_id in [listed, also_listed] {
        live.push((chat_id, rest.send(&bob, chat_id, "live").await["id"].as_i64().unwrap()));
    }
    // Served (a ping answered), then a live message of the unlisted chat.
    socket.send(&json!({"type": "ping"})).await.unwrap();
    let mut frames = Vec::new();
    while frames.last().is_none_or(|frame: &Value| frame["type"] != "pong") {
        frames.push(socket.next_frame(WAIT).await.expect("frames until the pong"));
    }
    live.push((unlisted, rest.send(&bob, unlisted, "live").await["id"].as_i64().unwrap()));
    frames.extend(socket.drain(QUIET * 2).await);
    let received = |chat_id: i64| -> Vec<i64> {
        events_of(&frames, chat_id)
            .iter()
            .filter(|frame| frame["type"] == "new_message")
            .map(|frame| frame["message"]["id"].as_i64().unwrap())
            .collect()
    };
    let live_of = |chat_id: i64| live.iter().filter(move |(chat, _)| *chat == chat_id).map(|(_, id)| *id);
    let expected_listed: Vec<i64> = ids[&listed][2..].iter().copied().chain(live_of(listed)).collect();
    let expected_also: Vec<i64> = ids[&also_listed].iter().copied().chain(live_of(also_listed)).collect();
    assert_eq!(received(listed), expected_listed, "after the given id, in order, once");
    assert_eq!(received(also_listed), expected_also);
    assert_eq!(received(unlisted), live_of(unlisted).collect::<Vec<_>>(), "live from the upgrade only");
    assert!(events_of(&frames, not_hers).is_empty(), "a listed chat she is not in is ignored");
}

async fn a_malformed_after_closes_with_1008_and_an_empty_one_is_none(app: &Target) {
    let rest = Rest { app };
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = rest.group(&bob, &[&alice]).await;
    let five_hundred_one = (1..=501).map(|chat| format!("{chat}:0")).collect::<Vec<_>>().join(",");
    let twice = format!("{chat_id}:0,{chat_id}:1");
    for after in ["5", "5:-1", "x:1", "5:1,", "5:1;6:2", twice.as_str(), five_hundred_one.as_str()] {
        let mut socket = ChatSocket::connect_user(&app.base_url, &alice.token, Some(after)).await.unwrap();
        assert_eq!(socket.next_frame(WAIT).await, Err(Some(Closed::Code(1008))), "after={after:.40}");
    }
    let five_hundred = (1..=500).map(|chat| format!("{chat}:0")).collect::<Vec<_>>().join(",");
    for after in ["", five_hundred.as_str()] {
        let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, Some(after)).await.unwrap();
        rest.send(&bob, chat_id, "live").await;
        assert!(socket.expect_in("new_message", chat_id, WAIT).await.is_ok(), "after={after:.40}");
    }
    let mut refused = ChatSocket::connect_user(&app.base_url, "not-a-token", None).await.unwrap();
    assert_eq!(refused.next_frame(WAIT).await, Err(Some(Closed::Code(4401))));
}

async fn a_user_socket_is_a_live_connection_to_each_chat_for_presence_and_stats(app: &Target) {
    let rest = Rest { app };
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let (first, second) = (rest.group(&bob, &[&alice]).await, rest.group(&bob, &[&alice]).await);
    let later = rest.group(&bob, &[]).await;
    let mut watchers = Vec::new();
    for chat_id in [first, second, later] {
        watchers.push(ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap());
    }

    let socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    for watcher in &mut watchers[..2] {
        assert_eq!(watcher.expect("user_joined", WAIT).await.unwrap()["user_id"], alice.id);
    }
    for chat_id in [first, second] {
        assert_eq!(rest.online(&bob, chat_id).await, [alice.id.min(bob.id), alice.id.max(bob.id)]);
    }
    let (status, stats) = rest.call(reqwest::Method::GET, "/api/v1/ws/stats", &bob, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (stats["connections"].as_i64(), stats["users"].as_i64(), stats["chats"].as_i64()),
        (Some(4), Some(2), Some(3))
    );

    // Joining makes it a live connection of that chat; leaving ends that.
    rest.add(&bob, later, &alice).await;
    assert_eq!(watchers[2].expect("user_joined", WAIT).await.unwrap()["user_id"], alice.id);
    rest.leave(&alice, first).await;
    assert_eq!(watchers[0].expect("user_left", WAIT).await.unwrap()["user_id"], alice.id);
    assert_eq!(rest.online(&bob, first).await, [bob.id]);

    // A second connection of hers changes nothing; closing the last one does.
    let per_chat = ChatSocket::connect_ready(&app.base_url, second, &alice.token, None).await.unwrap();
    socket.close().await;
    assert!(watchers[1].expect("user_left", QUIET).await.is_err(), "her per-chat socket is still open");
    per_chat.close().await;
    assert_eq!(watchers[1].expect("user_left", WAIT).await.unwrap()["user_id"], alice.id);
    assert_eq!(watchers[2].expect("user_left", WAIT).await.unwrap()["user_id"], alice.id);
}

async fn renames_and_admin_changes_reach_both_kinds_of_socket(app: &Target) {
    let rest = Rest { app };
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = rest.group(&bob, &[&alice, &carol]).await;
    let mut user_socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    let mut per_chat = ChatSocket::connect_ready(&app.base_url, chat_id, &carol.token, None).await.unwrap();

    let path = format!("/api/v1/chats/{chat_id}");
    rest.expect_status(reqwest::Method::PUT, &path, &bob, Some(json!({"name": "Renamed"})), 200).await;
    rest.expect_status(reqwest::Method::PUT, &path, &bob, Some(json!({"name": "Renamed"})), 200).await; // no change
    let admin = format!("/api/v1/chats/{chat_id}/participants/{}", alice.id);
    rest.expect_status(reqwest::Method::PUT, &admin, &bob, Some(json!({"is_admin": true})), 200).await;
    rest.expect_status(reqwest::Method::PUT, &admin, &bob, Some(json!({"is_admin": true})), 200).await; // no change
    rest.expect_status(reqwest::Method::PUT, &admin, &alice, Some(json!({"is_admin": false})), 200).await;
    // bob, the last admin, leaves: the longest-standing member (alice, added before carol? both at creation) is promoted.
    rest.leave(&bob, chat_id).await;

    let (user_frames, chat_frames) = (user_socket.drain(QUIET).await, per_chat.drain(QUIET).await);
    let user_frames = events_of(&user_frames, chat_id);
    let chat_frames: Vec<Value> =
        events_of(&chat_frames, chat_id).into_iter().filter(|f| f["type"] != "user_joined").collect();
    let user_frames: Vec<Value> = user_frames.into_iter().filter(|f| f["type"] != "user_joined").collect();
    assert_eq!(user_frames, chat_frames, "the same frames on both kinds of socket");
    assert_eq!(
        kinds(&chat_frames),
        ["chat_updated", "participant_updated", "participant_updated", "participant_removed", "participant_updated"]
    );
    let renamed = &chat_frames[0];
    assert_eq!((renamed["name"].as_str(), renamed["by_user_id"].as_i64()), (Some("Renamed"), Some(bob.id)));
    let change = |frame: &Value| (frame["user_id"].as_i64(), frame["is_admin"].as_bool(), frame["by_user_id"].as_i64());
    assert_eq!(change(&chat_frames[1]), (Some(alice.id), Some(true), Some(bob.id)));
    assert_eq!(change(&chat_frames[2]), (Some(alice.id), Some(false), Some(alice.id)));
    let successor = &chat_frames[4];
    assert_eq!(
        (successor["is_admin"].as_bool(), successor["by_user_id"].as_i64()),
        (Some(true), Some(bob.id)),
        "by the leaver"
    );
    let (_, participants) = rest.call(reqwest::Method::GET, &format!("{path}/participants"), &carol, None).await;
    let admin_now = participants.as_array().unwrap().iter().find(|p| p["is_admin"] == true).unwrap()["user_id"].clone();
    assert_eq!(successor["user_id"], admin_now, "the member who is admin now");
}

async fn a_message_sent_right_after_a_join_follows_the_join_s_frame(app: &Target) {
    let rest = Rest { app };
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chats: Vec<i64> = futures::future::join_all((0..10).map(|_| rest.group(&bob, &[]))).await;
    let mut socket = ChatSocket::connect_user_ready(&app.base_url, &alice.token, None).await.unwrap();
    // Each send goes out the moment the add is answered: the room that the
    // join opens on the gateway may still be opening.
    for chat_id in &chats {
        rest.add(&bob, *chat_id, &alice).await;
        rest.send(&bob, *chat_id, "right after").await;
    }
    let frames = socket.drain(QUIET * 2).await;
    for chat_id in chats {
        let of_chat = events_of(&frames, chat_id);
        assert_eq!(kinds(&of_chat), ["participant_added", "new_message"], "chat {chat_id}: {of_chat:?}");
    }
}
