//! Two gateway replicas on real NATS: delivery across replicas exactly once
//! and in seq order, presence across replicas, a replica killed mid-stream,
//! and the bus restarted mid-stream.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::{collections::HashSet, time::Duration};

use chat_tests::{
    NatsProcess, TestDeployment, TestUser, rest_call, spawn_deployment, spawn_deployment_with,
    ws::{ChatSocket, Closed},
};
use serde_json::{Value, json};
use sql_pool::Backend;

const WAIT: Duration = Duration::from_secs(5);

async fn group(app: &TestDeployment, base_url: &str, owner: &TestUser, members: &[&TestUser]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|member| member.id).collect();
    let body = json!({"chat_type": "group", "name": "cluster", "participant_ids": ids});
    let response =
        app.http.post(format!("{base_url}/api/v1/chats/")).bearer_auth(&owner.token).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// `POST /api/v1/messages/` as `sender`.
async fn post_message(
    app: &TestDeployment,
    base_url: &str,
    sender: &TestUser,
    chat_id: i64,
    content: &str,
) -> reqwest::Response {
    let body = json!({"chat_id": chat_id, "content": content});
    let request = app.http.post(format!("{base_url}/api/v1/messages/")).bearer_auth(&sender.token).json(&body);
    request.send().await.unwrap()
}

async fn send(app: &TestDeployment, base_url: &str, sender: &TestUser, chat_id: i64, content: &str) -> Value {
    let response = post_message(app, base_url, sender, chat_id, content).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.unwrap()
}

/// Sends `total` messages one after another, pausing between them.
async fn send_paced(
    app: &TestDeployment,
    base_url: &str,
    sender: &TestUser,
    chat_id: i64,
    total: usize,
    pause: Duration,
) {
    for n in 0..total {
        send(app, base_url, sender, chat_id, &format!("m{n}")).await;
        tokio::time::sleep(pause).await;
    }
}

/// `GET /api/v1/ws/stats` on a gateway, as `user`.
async fn stats(app: &TestDeployment, base_url: &str, user: &TestUser) -> Value {
    let response = app.http.get(format!("{base_url}/api/v1/ws/stats")).bearer_auth(&user.token).send().await.unwrap();
    response.json().await.unwrap()
}

/// Reads `new_message` frames until `count` arrived (or `wait` passed); their (id, seq).
async fn collect(socket: &mut ChatSocket, count: usize, wait: Duration) -> Vec<(i64, i64)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.expect("new_message", left).await {
            Ok(frame) => {
                received.push((frame["message"]["id"].as_i64().unwrap(), frame["message"]["seq"].as_i64().unwrap()))
            }
            Err(_) => break,
        }
    }
    received
}

fn assert_exactly_once_in_order(received: &[(i64, i64)], count: usize, who: &str) {
    let seqs: Vec<i64> = received.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=count as i64).collect::<Vec<_>>(), "{who}: every message once, in seq order");
    let ids: HashSet<i64> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), count, "{who}: no duplicate ids");
}

#[tokio::test]
async fn messages_sent_on_either_replica_reach_every_socket_once_in_seq_order() {
    let app = spawn_deployment().await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &a, &alice, &[&bob, &carol]).await;
    let mut sockets = [
        ChatSocket::connect_ready(&a, chat_id, &alice.token, None).await.unwrap(),
        ChatSocket::connect_ready(&b, chat_id, &bob.token, None).await.unwrap(),
        ChatSocket::connect_ready(&a, chat_id, &carol.token, None).await.unwrap(),
        ChatSocket::connect_ready(&b, chat_id, &carol.token, None).await.unwrap(),
    ];
    const EACH: usize = 20;
    let senders = [(&a, &alice), (&b, &bob)].map(|(base, sender)| {
        let app = &app;
        async move {
            for n in 0..EACH {
                send(app, base, sender, chat_id, &format!("{} {n}", sender.username)).await;
            }
        }
    });
    futures::future::join_all(senders).await;
    for (n, socket) in sockets.iter_mut().enumerate() {
        let received = collect(socket, 2 * EACH, WAIT).await;
        assert_exactly_once_in_order(&received, 2 * EACH, &format!("socket {n}"));
        assert!(socket.expect("new_message", Duration::from_millis(300)).await.is_err(), "nothing more");
    }
}

async fn online(app: &TestDeployment, base_url: &str, user: &TestUser, chat_id: i64) -> Vec<i64> {
    let url = format!("{base_url}/api/v1/ws/chat/{chat_id}/online");
    let body: Value = app.http.get(url).bearer_auth(&user.token).send().await.unwrap().json().await.unwrap();
    let mut ids: Vec<i64> = body["online_user_ids"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn presence_and_typing_cross_replicas() {
    let app = spawn_deployment().await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &a, &alice, &[&bob]).await;
    let mut alice_socket = ChatSocket::connect_ready(&a, chat_id, &alice.token, None).await.unwrap();
    let mut bob_socket = ChatSocket::connect_ready(&b, chat_id, &bob.token, None).await.unwrap();

    let joined = alice_socket.expect("user_joined", WAIT).await.unwrap();
    assert_eq!(joined["user_id"], bob.id);
    let mut both = vec![alice.id, bob.id];
    both.sort_unstable();
    assert_eq!(online(&app, &a, &alice, chat_id).await, both, "replica A sees B's user");
    assert_eq!(online(&app, &b, &bob, chat_id).await, both, "replica B sees A's user");

    let stats = stats(&app, &b, &bob).await;
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["cluster"]["replicas"], 2, "{stats}");

    bob_socket.send(&json!({"type": "typing", "content": "start"})).await.unwrap();
    assert_eq!(alice_socket.expect("typing_started", WAIT).await.unwrap()["user_id"], bob.id);
    bob_socket.send(&json!({"type": "typing", "content": "stop"})).await.unwrap();
    assert_eq!(alice_socket.expect("typing_stopped", WAIT).await.unwrap()["user_id"], bob.id);

    bob_socket.close().await;
    assert_eq!(alice_socket.expect("user_left", WAIT).await.unwrap()["user_id"], bob.id);
    assert_eq!(online(&app, &a, &alice, chat_id).await, vec![alice.id]);
}

#[tokio::test]
async fn clients_of_a_killed_replica_resume_on_the_other_exactly_once() {
    let app = spawn_deployment().await;
    let survivor = app.base_url.clone();
    let mut doomed = app.gateway_process("doomed");
    doomed.ready().await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &survivor, &alice, &[&bob, &carol]).await;
    let mut clients = Vec::new();
    for user in [&bob, &carol] {
        clients.push((user, ChatSocket::connect_ready(&doomed.base_url, chat_id, &user.token, None).await.unwrap()));
    }
    const TOTAL: usize = 60;
    let sender = send_paced(&app, &survivor, &alice, chat_id, TOTAL, Duration::from_millis(10));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        doomed.kill();
    };
    let readers = clients.into_iter().map(|(user, mut socket)| {
        let survivor = survivor.clone();
        async move {
            let mut received: Vec<(i64, i64)> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while received.len() < TOTAL && tokio::time::Instant::now() < deadline {
                match socket.expect("new_message", Duration::from_secs(5)).await {
                    Ok(frame) => received
                        .push((frame["message"]["id"].as_i64().unwrap(), frame["message"]["seq"].as_i64().unwrap())),
                    Err(Some(Closed::Dropped | Closed::Code(_))) => {
                        // The replica is gone: resume on the other one after the last message seen.
                        let after = received.last().map_or(0, |(id, _)| *id);
                        socket = ChatSocket::connect_ready(&survivor, chat_id, &user.token, Some(after)).await.unwrap();
                    }
                    Err(None) => break,
                }
            }
            (user.username.clone(), received)
        }
    });
    let (_, _, results) = tokio::join!(sender, killer, futures::future::join_all(readers));
    for (who, received) in results {
        assert_exactly_once_in_order(&received, TOTAL, &who);
    }
}

#[tokio::test]
async fn a_replica_stopped_with_sigterm_closes_its_sockets_with_1012_withdraws_presence_at_once_and_loses_nothing() {
    let app = spawn_deployment().await;
    let survivor = app.base_url.clone();
    let mut leaving = app.gateway_process("leaving");
    leaving.ready().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &survivor, &alice, &[&bob]).await;
    let mut watcher = ChatSocket::connect_ready(&survivor, chat_id, &alice.token, None).await.unwrap();
    let mut socket = ChatSocket::connect_ready(&leaving.base_url, chat_id, &bob.token, None).await.unwrap();
    assert_eq!(watcher.expect("user_joined", WAIT).await.unwrap()["user_id"], bob.id);

    const TOTAL: usize = 40;
    let sender = send_paced(&app, &survivor, &alice, chat_id, TOTAL, Duration::from_millis(20));
    let client = async {
        let mut received: Vec<(i64, i64)> = Vec::new();
        let mut closed_with = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while received.len() < TOTAL && tokio::time::Instant::now() < deadline {
            if received.len() == 10 && closed_with.is_none() {
                leaving.terminate();
            }
            match socket.expect("new_message", WAIT).await {
                Ok(frame) => {
                    received.push((frame["message"]["id"].as_i64().unwrap(), frame["message"]["seq"].as_i64().unwrap()))
                }
                Err(Some(closed)) => {
                    assert!(closed_with.is_none(), "closed twice");
                    closed_with = Some(closed);
                    let after = received.last().map_or(0, |(id, _)| *id);
                    socket = ChatSocket::connect_ready(&survivor, chat_id, &bob.token, Some(after)).await.unwrap();
                }
                Err(None) => break,
            }
        }
        (closed_with, received)
    };
    let presence = async {
        // The replica says goodbye: its user is offline long before heartbeats would time out (7 s).
        let started = tokio::time::Instant::now();
        let left = watcher.expect("user_left", Duration::from_secs(30)).await.expect("user_left");
        (left, started.elapsed())
    };
    let (_, (closed_with, received), (left, waited)) = tokio::join!(sender, client, presence);
    assert!(waited < Duration::from_secs(5), "user_left after {waited:?}: the goodbye, not the 7 s heartbeat timeout");
    assert_eq!(closed_with, Some(Closed::Code(1012)), "a close frame saying 'service restart'");
    assert_exactly_once_in_order(&received, TOTAL, "the resumed client");
    assert_eq!(left["user_id"], bob.id);
    assert_eq!(leaving.exited(Duration::from_secs(12)).await, Some(Some(0)), "it exits by itself, cleanly");
}

#[tokio::test]
async fn a_draining_replica_is_not_ready_and_refuses_new_sockets_while_it_finishes_a_request() {
    let app = spawn_deployment().await;
    let leaving = app.gateway_process_with("draining", &[("SHUTDOWN_DELAY_SECONDS", "2")]);
    leaving.ready().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat_id = group(&app, &app.base_url, &alice, &[&bob]).await;
    let mut open = ChatSocket::connect_ready(&leaving.base_url, chat_id, &bob.token, None).await.unwrap();
    let ready = || app.http.get(format!("{}/ready", leaving.base_url)).send();
    assert_eq!(ready().await.unwrap().status(), 200);
    leaving.terminate();
    let mut saw_draining = false;
    for _ in 0..40 {
        match ready().await {
            Ok(response) if response.status() == 503 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["status"], "draining");
                saw_draining = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(_) => break,
        }
    }
    assert!(saw_draining, "/ready said 503 while draining");
    if let Ok(refused) = ChatSocket::connect(&leaving.base_url, chat_id, &alice.token, None).await {
        panic!("a new socket was accepted while draining (chat {})", refused.chat_id);
    }
    // REST still works during the delay, and the open socket still gets messages until its 1012.
    send(&app, &leaving.base_url, &alice, chat_id, "still here").await;
    assert_eq!(open.expect("new_message", WAIT).await.unwrap()["message"]["content"], "still here");
    assert_eq!(open.expect("new_message", WAIT).await.unwrap_err(), Some(Closed::Code(1012)));
}

#[tokio::test]
async fn a_killed_replicas_users_go_offline_within_seconds() {
    let app = spawn_deployment().await;
    let survivor = app.base_url.clone();
    let mut doomed = app.gateway_process("doomed-presence");
    doomed.ready().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &survivor, &alice, &[&bob]).await;
    let mut alice_socket = ChatSocket::connect_ready(&survivor, chat_id, &alice.token, None).await.unwrap();
    let _bob_socket = ChatSocket::connect_ready(&doomed.base_url, chat_id, &bob.token, None).await.unwrap();
    assert_eq!(alice_socket.expect("user_joined", WAIT).await.unwrap()["user_id"], bob.id);

    doomed.kill();
    let left = alice_socket
        .expect("user_left", Duration::from_secs(12))
        .await
        .expect("user_left once the replica's heartbeats stop");
    assert_eq!(left["user_id"], bob.id);
    assert_eq!(online(&app, &survivor, &alice, chat_id).await, vec![alice.id]);
}

#[tokio::test]
async fn a_bus_stopped_for_5_seconds_mid_stream_loses_no_message_on_any_socket() {
    let mut nats = NatsProcess::start();
    let app = spawn_deployment_with(Backend::MySql, &nats.url()).await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &a, &alice, &[&bob]).await;
    let mut sockets = [
        ChatSocket::connect_ready(&a, chat_id, &bob.token, None).await.unwrap(),
        ChatSocket::connect_ready(&b, chat_id, &bob.token, None).await.unwrap(),
        ChatSocket::connect_ready(&b, chat_id, &alice.token, None).await.unwrap(),
    ];
    const TOTAL: usize = 60;
    let sender = send_paced(&app, &a, &alice, chat_id, TOTAL, Duration::from_millis(20));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nats.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        nats.restart();
    };
    let readers = sockets.iter_mut().map(|socket| collect(socket, TOTAL, Duration::from_secs(30)));
    let (_, _, results) = tokio::join!(sender, restart, futures::future::join_all(readers));
    for (n, received) in results.iter().enumerate() {
        assert_exactly_once_in_order(received, TOTAL, &format!("socket {n}"));
    }
}

#[tokio::test]
async fn a_token_that_expires_closes_its_socket_with_4401() {
    let app = spawn_deployment().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &app.base_url, &alice, &[&bob]).await;
    let settings = access_token::TokenSettings {
        secret: chat_tests::SECRET.into(),
        algorithm: access_token::Algorithm::HS256,
        ttl: Duration::from_secs(2),
    };
    let short_lived = access_token::TokenIssuer::new(&settings).issue(bob.id, &bob.username, 0).unwrap();
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &short_lived, None).await.unwrap();
    let ended = loop {
        match socket.next_frame(Duration::from_secs(6)).await {
            Ok(_) => continue,
            Err(ended) => break ended,
        }
    };
    assert_eq!(ended, Some(Closed::Code(4401)), "closed when the token expired");
}

#[tokio::test]
async fn a_reader_that_cannot_keep_up_is_closed_with_1013_and_slows_nobody() {
    let app = spawn_deployment().await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &app.base_url, &alice, &[&bob, &carol]).await;
    // Bob connects and never reads: the kernel's buffers fill, then his queue of 256 frames.
    let mut stuck = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();
    let mut reader = ChatSocket::connect_ready(&app.base_url, chat_id, &carol.token, None).await.unwrap();
    const TOTAL: usize = 800;
    let big = "x".repeat(9_000);
    let sender = async {
        for _ in 0..TOTAL {
            send(&app, &app.base_url, &alice, chat_id, &big).await;
        }
    };
    let (_, received) = tokio::join!(sender, collect(&mut reader, TOTAL, Duration::from_secs(60)));
    assert_exactly_once_in_order(&received, TOTAL, "the reader that keeps up");
    let stats = stats(&app, &app.base_url, &carol).await;
    assert_eq!(stats["connections"], 1, "the slow reader's socket is gone: {stats}");
    let mut delivered = 0;
    let ended = loop {
        match stuck.next_frame(Duration::from_secs(5)).await {
            Ok(frame) if frame["type"] == "new_message" => delivered += 1,
            Ok(_) => {}
            Err(ended) => break ended,
        }
    };
    assert!(delivered < TOTAL, "the slow reader was cut off ({delivered} of {TOTAL})");
    // The 1013 close frame goes out when the peer's buffers have room for it; a
    // peer that never reads sees the connection end instead.
    assert!(matches!(ended, Some(Closed::Code(1013) | Closed::Dropped)), "{ended:?}");
}

#[tokio::test]
async fn a_typing_start_without_stop_ends_after_10_seconds_on_every_replica() {
    let app = spawn_deployment().await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &a, &alice, &[&bob, &carol]).await;
    let mut typist = ChatSocket::connect_ready(&a, chat_id, &alice.token, None).await.unwrap();
    let mut here = ChatSocket::connect_ready(&a, chat_id, &bob.token, None).await.unwrap();
    let mut there = ChatSocket::connect_ready(&b, chat_id, &carol.token, None).await.unwrap();
    typist.send(&json!({"type": "typing", "content": "start"})).await.unwrap();
    let started = std::time::Instant::now();
    for socket in [&mut here, &mut there] {
        assert_eq!(socket.expect("typing_started", WAIT).await.unwrap()["user_id"], alice.id);
    }
    for socket in [&mut here, &mut there] {
        let stopped = socket.expect("typing_stopped", Duration::from_secs(13)).await.expect("the start expires");
        assert_eq!(stopped["user_id"], alice.id);
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(9_500), "not before 10 s: {waited:?}");
    assert!(typist.expect("typing_stopped", Duration::from_millis(300)).await.is_err(), "never echoed to the typist");
}

/// A send's status only.
async fn send_status(app: &TestDeployment, base_url: &str, sender: &TestUser, chat_id: i64) -> u16 {
    post_message(app, base_url, sender, chat_id, "hello?").await.status().as_u16()
}

async fn history_status(app: &TestDeployment, base_url: &str, reader: &TestUser, chat_id: i64) -> u16 {
    let url = format!("{base_url}/api/v1/messages/chat/{chat_id}");
    app.http.get(url).bearer_auth(&reader.token).send().await.unwrap().status().as_u16()
}

async fn remove(app: &TestDeployment, base_url: &str, admin: &TestUser, chat_id: i64, user_id: i64) {
    let url = format!("{base_url}/api/v1/chats/{chat_id}/participants?user_id={user_id}");
    let response = app.http.delete(url).bearer_auth(&admin.token).send().await.unwrap();
    assert_eq!(response.status(), 204);
}

// A removal takes effect with its response, on every path, whatever
// message-store has cached about the member (its membership cache serves
// previews only; membership events reach it shortly after the response).

#[tokio::test]
async fn a_removed_member_is_refused_at_once_though_message_store_knew_them() {
    let app = spawn_deployment().await;
    let base = app.base_url.clone();
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &base, &alice, &[&bob]).await;
    for n in 0..3 {
        send(&app, &base, &bob, chat_id, &format!("known {n}")).await;
    }
    assert_eq!(history_status(&app, &base, &bob, chat_id).await, 200);

    remove(&app, &base, &alice, chat_id, bob.id).await;
    assert_eq!(send_status(&app, &base, &bob, chat_id).await, 403, "a send right after the removal");
    assert_eq!(history_status(&app, &base, &bob, chat_id).await, 403);

    let body = json!({"user_ids": [bob.id]});
    let url = format!("{base}/api/v1/chats/{chat_id}/participants");
    let added = app.http.post(url).bearer_auth(&alice.token).json(&body).send().await.unwrap();
    assert_eq!(added.status(), 200);
    assert_eq!(send_status(&app, &base, &bob, chat_id).await, 201, "a send right after being added back");
}

#[tokio::test]
async fn a_removal_during_a_bus_outage_is_not_undone_by_the_cache() {
    let mut nats = NatsProcess::start();
    let app = spawn_deployment_with(Backend::MySql, &nats.url()).await;
    let base = app.base_url.clone();
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &base, &alice, &[&bob]).await;
    send(&app, &base, &bob, chat_id, "known").await;

    // The removal's event is lost with the bus.
    nats.stop();
    remove(&app, &base, &alice, chat_id, bob.id).await;
    assert_eq!(send_status(&app, &base, &bob, chat_id).await, 403, "while the bus is down");
    nats.restart();
    let reconnected = async {
        while !app.bus.is_connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), reconnected).await.expect("the bus comes back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send_status(&app, &base, &bob, chat_id).await, 403, "after the bus is back");
}

#[tokio::test]
async fn admin_rights_are_checked_afresh_for_every_delete() {
    let app = spawn_deployment().await;
    let base = app.base_url.clone();
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &base, &alice, &[&bob, &carol]).await;
    let set_admin = |is_admin: bool| {
        let url = format!("{base}/api/v1/chats/{chat_id}/participants/{}", bob.id);
        app.http.put(url).bearer_auth(&alice.token).json(&json!({"is_admin": is_admin})).send()
    };
    let delete = |message: &Value| {
        let url = format!("{base}/api/v1/messages/{}", message["id"]);
        app.http.delete(url).bearer_auth(&bob.token).send()
    };
    assert_eq!(set_admin(true).await.unwrap().status(), 200);
    send(&app, &base, &bob, chat_id, "bob, admin").await;
    let first = send(&app, &base, &carol, chat_id, "one").await;
    let second = send(&app, &base, &carol, chat_id, "two").await;
    assert!(delete(&first).await.unwrap().status().is_success(), "an admin deletes another's message");

    assert_eq!(set_admin(false).await.unwrap().status(), 200);
    assert_eq!(delete(&second).await.unwrap().status(), 403, "no longer an admin");
}

#[tokio::test]
async fn repeated_typing_starts_are_passed_on_to_the_bus_once() {
    use event_bus::Bus as _;
    use futures::StreamExt as _;
    use prost::Message as _;

    let app = spawn_deployment().await;
    let base = app.base_url.clone();
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &base, &alice, &[&bob]).await;
    let mut on_the_bus = app.bus.subscribe(app.subjects.typing(chat_id)).await.unwrap();
    app.bus.flush().await.unwrap();
    let mut watcher = ChatSocket::connect_ready(&base, chat_id, &bob.token, None).await.unwrap();
    let mut typist = ChatSocket::connect_ready(&base, chat_id, &alice.token, None).await.unwrap();

    for _ in 0..20 {
        typist.send(&json!({"type": "typing", "content": "start"})).await.unwrap();
    }
    for _ in 0..3 {
        typist.send(&json!({"type": "typing", "content": "stop"})).await.unwrap();
    }
    typist.send(&json!({"type": "typing", "content": "start"})).await.unwrap();
    assert_eq!(watcher.expect("typing_started", WAIT).await.unwrap()["user_id"], alice.id);
    assert_eq!(watcher.expect("typing_stopped", WAIT).await.unwrap()["user_id"], alice.id);
    assert_eq!(watcher.expect("typing_started", WAIT).await.unwrap()["user_id"], alice.id);

    let mut published = Vec::new();
    while let Ok(Some(payload)) = tokio::time::timeout(Duration::from_millis(500), on_the_bus.next()).await {
        published.push(chat_proto::events::TypingEvent::decode(payload).unwrap().started);
    }
    assert_eq!(published, vec![true, false, true], "one start, one stop, the next start");
}

#[tokio::test]
async fn a_subscription_made_before_flush_hears_the_next_publish_of_any_connection() {
    use event_bus::{Bus as _, NatsBus};
    use futures::StreamExt as _;

    let url = chat_tests::nats_url();
    let (listener, publisher) =
        (NatsBus::connect(&url, "listener").await.unwrap(), NatsBus::connect(&url, "publisher").await.unwrap());
    let prefix = chat_tests::unique_prefix("flush");
    for n in 0..20 {
        let subject = format!("{prefix}.probe.{n}");
        let mut subscription = listener.subscribe(subject.clone()).await.unwrap();
        listener.flush().await.expect("the server answers");
        publisher.publish(subject, format!("{n}").into()).await.unwrap();
        let heard = tokio::time::timeout(WAIT, subscription.next()).await.expect("heard").unwrap();
        assert_eq!(heard, format!("{n}").as_bytes());
    }
}

// The user socket (`GET /api/v1/ws`) across replicas, and every event kind
// lossless when a replica's bus connection goes away for a while.

/// `PUT`/`DELETE` on the gateway at `base_url` as `user`; asserts the status.
async fn call(
    app: &TestDeployment,
    base_url: &str,
    user: &TestUser,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    want: u16,
) {
    let (status, answer) = rest_call(&app.http, base_url, method.clone(), path, user, body).await;
    assert_eq!(status, want, "{method} {path}: {answer}");
}

/// Frames about `chat_id` (no pongs), until the socket is quiet for `quiet` or closes.
async fn frames_of(socket: &mut ChatSocket, chat_id: i64, quiet: Duration) -> Vec<Value> {
    frames_after(socket, chat_id, quiet, quiet).await
}

/// [`frames_of`], the first frame awaited for up to `first` (a replica reconnecting to the bus).
async fn frames_after(socket: &mut ChatSocket, chat_id: i64, first: Duration, quiet: Duration) -> Vec<Value> {
    let mut frames: Vec<Value> = socket.next_frame(first).await.into_iter().collect();
    frames.extend(socket.drain(quiet).await);
    frames.into_iter().filter(|frame| frame["chat_id"] == chat_id && frame["type"] != "pong").collect()
}

fn kinds(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|frame| frame["type"].as_str().unwrap_or_default()).collect()
}

#[tokio::test]
async fn a_user_socket_on_one_replica_hears_what_is_done_through_the_other_follows_a_join_within_a_second_and_stops_after_a_removal()
 {
    let app = spawn_deployment().await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let mut socket = ChatSocket::connect_user_ready(&b, &alice.token, None).await.unwrap();

    let chat_id = group(&app, &a, &bob, &[&alice]).await;
    let added = socket.expect_in("participant_added", chat_id, Duration::from_secs(1)).await.expect("within a second");
    assert_eq!((added["user_id"].as_i64(), added["by_user_id"].as_i64()), (Some(alice.id), Some(bob.id)));
    let sent = send(&app, &a, &bob, chat_id, "through A").await;
    assert_eq!(socket.expect_in("new_message", chat_id, WAIT).await.unwrap()["message"]["id"], sent["id"]);

    remove(&app, &a, &bob, chat_id, alice.id).await;
    let removed = socket.expect_in("participant_removed", chat_id, WAIT).await.unwrap();
    assert_eq!(removed["user_id"], alice.id);
    send(&app, &a, &bob, chat_id, "not for alice").await;
    let path = format!("/api/v1/chats/{chat_id}");
    call(&app, &a, &bob, reqwest::Method::PUT, &path, Some(json!({"name": "after her"})), 200).await;
    assert!(frames_of(&mut socket, chat_id, Duration::from_millis(700)).await.is_empty(), "nothing more of the chat");
    socket.send(&json!({"type": "ping"})).await.unwrap();
    assert!(socket.expect("pong", WAIT).await.is_ok(), "the socket stays open");
}

#[tokio::test]
async fn a_bus_stopped_for_5_seconds_while_edits_deletes_and_a_removal_are_made_leaves_every_socket_with_exactly_the_promised_events()
 {
    let mut nats = NatsProcess::start();
    let app = spawn_deployment_with(Backend::MySql, &nats.url()).await;
    let (a, b) = (app.base_url.clone(), app.another_gateway().await);
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &a, &alice, &[&bob, &carol]).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(send(&app, &a, &alice, chat_id, &format!("m{n}")).await["id"].as_i64().unwrap());
    }
    let mut bob_on_a = ChatSocket::connect_ready(&a, chat_id, &bob.token, None).await.unwrap();
    let mut bob_user_on_b = ChatSocket::connect_user_ready(&b, &bob.token, None).await.unwrap();
    let mut carol_on_b = ChatSocket::connect_ready(&b, chat_id, &carol.token, None).await.unwrap();
    let mut carol_user_on_a = ChatSocket::connect_user_ready(&a, &carol.token, None).await.unwrap();
    for socket in [&mut bob_on_a, &mut bob_user_on_b, &mut carol_on_b, &mut carol_user_on_a] {
        socket.drain(Duration::from_millis(300)).await; // presence of the others
    }

    nats.stop();
    // Made while no service reaches NATS: each is committed with its event in the outbox.
    let message = |id: i64| format!("/api/v1/messages/{id}");
    call(&app, &a, &alice, reqwest::Method::PUT, &message(ids[0]), Some(json!({"content": "edited"})), 200).await;
    call(&app, &a, &alice, reqwest::Method::DELETE, &message(ids[1]), None, 204).await;
    remove(&app, &a, &alice, chat_id, carol.id).await;
    let path = format!("/api/v1/chats/{chat_id}");
    call(&app, &a, &alice, reqwest::Method::PUT, &path, Some(json!({"name": "after the outage"})), 200).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    nats.restart();
    // Then a message: it comes after all of the above, on every socket still in the chat.
    let after = loop {
        let response = post_message(&app, &a, &alice, chat_id, "after").await;
        if response.status() == 201 {
            break response.json::<Value>().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (reconnected, quiet) = (Duration::from_secs(20), Duration::from_secs(3));

    let expected = ["message_edited", "message_deleted", "participant_removed", "chat_updated", "new_message"];
    for (who, socket) in [("bob on A", &mut bob_on_a), ("bob's user socket on B", &mut bob_user_on_b)] {
        let frames = frames_after(socket, chat_id, reconnected, quiet).await;
        let frames: Vec<Value> = frames.into_iter().filter(|frame| frame["type"] != "user_left").collect();
        assert_eq!(kinds(&frames), expected, "{who}: each event once, in order: {frames:?}");
        assert_eq!(frames[0]["message"]["content"], "edited");
        assert_eq!(frames[1]["message_id"], ids[1]);
        assert_eq!(frames[2]["user_id"], carol.id);
        assert_eq!(frames[4]["message"]["id"], after["id"]);
    }
    // Carol's per-chat socket: her removal, then closed with 4403.
    let removed = carol_on_b.expect("participant_removed", reconnected).await.unwrap();
    assert_eq!(removed["user_id"], carol.id);
    assert_eq!(carol_on_b.next_frame(quiet).await, Err(Some(Closed::Code(4403))));
    // Her user socket: the edit and the delete, her removal, then nothing more of the chat; still open.
    let frames = frames_after(&mut carol_user_on_a, chat_id, reconnected, quiet).await;
    let frames: Vec<Value> = frames.into_iter().filter(|frame| frame["type"] != "user_left").collect();
    assert_eq!(kinds(&frames), ["message_edited", "message_deleted", "participant_removed"], "{frames:?}");
    carol_user_on_a.send(&json!({"type": "ping"})).await.unwrap();
    assert!(carol_user_on_a.expect("pong", WAIT).await.is_ok());
}

#[tokio::test]
async fn a_killed_replicas_user_sockets_resume_on_the_other_with_an_after_map_every_message_once_per_chat() {
    let app = spawn_deployment().await;
    let survivor = app.base_url.clone();
    let mut doomed = app.gateway_process("doomed");
    doomed.ready().await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chats =
        [group(&app, &survivor, &alice, &[&bob, &carol]).await, group(&app, &survivor, &alice, &[&bob, &carol]).await];
    let mut clients = Vec::new();
    for user in [&bob, &carol] {
        clients.push((user, ChatSocket::connect_user_ready(&doomed.base_url, &user.token, None).await.unwrap()));
    }
    const EACH: usize = 30;
    let senders = chats.map(|chat_id| send_paced(&app, &survivor, &alice, chat_id, EACH, Duration::from_millis(10)));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        doomed.kill();
    };
    let readers = clients.into_iter().map(|(user, mut socket)| {
        let survivor = survivor.clone();
        async move {
            let mut received: std::collections::HashMap<i64, Vec<(i64, i64)>> =
                chats.iter().map(|c| (*c, Vec::new())).collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while received.values().map(Vec::len).sum::<usize>() < 2 * EACH && tokio::time::Instant::now() < deadline {
                match socket.expect("new_message", Duration::from_secs(5)).await {
                    Ok(frame) => {
                        let chat_id = frame["chat_id"].as_i64().unwrap();
                        let message =
                            (frame["message"]["id"].as_i64().unwrap(), frame["message"]["seq"].as_i64().unwrap());
                        received.get_mut(&chat_id).expect("one of the chats").push(message);
                    }
                    Err(Some(Closed::Dropped | Closed::Code(_))) => {
                        // The replica is gone: resume on the other one after the last message seen of each chat.
                        let after: Vec<String> = received
                            .iter()
                            .map(|(chat, got)| format!("{chat}:{}", got.last().map_or(0, |(id, _)| *id)))
                            .collect();
                        socket = ChatSocket::connect_user_ready(&survivor, &user.token, Some(&after.join(",")))
                            .await
                            .unwrap();
                    }
                    Err(None) => break,
                }
            }
            (user.username.clone(), received)
        }
    });
    let (_, _, results) = tokio::join!(futures::future::join_all(senders), killer, futures::future::join_all(readers));
    for (who, received) in results {
        for (chat_id, messages) in received {
            assert_exactly_once_in_order(&messages, EACH, &format!("{who} in chat {chat_id}"));
        }
    }
}
