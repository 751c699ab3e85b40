//! Read state (API.md, *Read state*), sentence by sentence, on MariaDB and
//! SQLite: positions that start at a join, move with a send and forward only
//! with a mark (clamped, broadcast as `read` when they moved, to every
//! socket of the chat, the reader's own included), unread counts without own
//! or deleted messages in every Chat, "seen by" and the badge total — and a
//! chat list whose cost does not grow with its length.

use std::time::Duration;

use chat_tests::{TestDeployment, TestUser, spawn_counted_deployment, spawn_deployment_on, ws::ChatSocket};
use reqwest::Method;
use serde_json::{Value, json};
use sql_pool::{Backend, on_both_backends};

const WAIT: Duration = Duration::from_secs(5);
/// How long a socket is watched for a frame that must not come.
const QUIET: Duration = Duration::from_millis(700);

async fn group(app: &TestDeployment, owner: &TestUser, members: &[&TestUser]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|member| member.id).collect();
    let body = json!({"chat_type": "group", "name": "reads", "participant_ids": ids});
    let (status, chat) = app.call(Method::POST, "/api/v1/chats/", owner, Some(body)).await;
    assert_eq!(status, 201, "{chat}");
    chat["id"].as_i64().unwrap()
}

async fn send(app: &TestDeployment, sender: &TestUser, chat_id: i64, content: &str) -> Value {
    let body = json!({"chat_id": chat_id, "content": content});
    let (status, message) = app.call(Method::POST, "/api/v1/messages/", sender, Some(body)).await;
    assert_eq!(status, 201, "{message}");
    message
}

/// The caller's `(last_read_seq, unread_count)` as `GET /chats/{id}` shows them.
async fn state(app: &TestDeployment, user: &TestUser, chat_id: i64) -> (i64, i64) {
    let (status, chat) = app.call(Method::GET, &format!("/api/v1/chats/{chat_id}"), user, None).await;
    assert_eq!(status, 200, "{chat}");
    (chat["last_read_seq"].as_i64().unwrap(), chat["unread_count"].as_i64().unwrap())
}

async fn mark(app: &TestDeployment, user: &TestUser, chat_id: i64, seq: Value) -> (u16, Value) {
    app.call(Method::PUT, &format!("/api/v1/chats/{chat_id}/read"), user, Some(json!({"seq": seq}))).await
}

/// The `read` frames among what a socket receives within `wait`.
async fn reads(socket: &mut ChatSocket, wait: Duration) -> Vec<(i64, i64, i64)> {
    socket
        .drain(wait)
        .await
        .into_iter()
        .filter(|frame| frame["type"] == "read")
        .map(|frame| {
            (frame["chat_id"].as_i64().unwrap(), frame["user_id"].as_i64().unwrap(), frame["seq"].as_i64().unwrap())
        })
        .collect()
}

async fn a_join_starts_at_the_last_seq_and_a_send_moves_the_senders_position(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    assert_eq!(state(&app, &alice, chat_id).await, (0, 0), "a new chat: nothing read, nothing unread");
    for n in 1..=3 {
        send(&app, &alice, chat_id, &format!("m{n}")).await;
    }
    assert_eq!(state(&app, &alice, chat_id).await, (3, 0), "sending moves the sender's position");
    assert_eq!(state(&app, &bob, chat_id).await, (0, 3));

    let path = format!("/api/v1/chats/{chat_id}/participants");
    let (status, _) = app.call(Method::POST, &path, &alice, Some(json!({"user_ids": [carol.id]}))).await;
    assert_eq!(status, 200);
    assert_eq!(state(&app, &carol, chat_id).await, (3, 0), "added: nothing from before the join is unread");
    send(&app, &bob, chat_id, "after carol joined").await;
    assert_eq!(state(&app, &carol, chat_id).await, (3, 1));
    assert_eq!(state(&app, &bob, chat_id).await, (4, 0), "bob read up to his own message");
    assert_eq!(state(&app, &alice, chat_id).await, (3, 1));

    // A direct chat: created (a join for both), left, asked for again (a join for the one who left).
    let direct = |asker: &TestUser, other: &TestUser| {
        let body = json!({"chat_type": "direct", "participant_ids": [other.id]});
        let (app, asker) = (&app, asker.clone());
        async move { app.call(Method::POST, "/api/v1/chats/", &asker, Some(body)).await }
    };
    let (status, chat) = direct(&alice, &bob).await;
    assert_eq!(status, 201);
    let direct_id = chat["id"].as_i64().unwrap();
    assert_eq!((chat["last_read_seq"].as_i64(), chat["unread_count"].as_i64()), (Some(0), Some(0)));
    send(&app, &alice, direct_id, "d1").await;
    send(&app, &alice, direct_id, "d2").await;
    let (status, again) = direct(&alice, &bob).await;
    assert_eq!(status, 200);
    assert_eq!(again["unread_count"].as_i64(), Some(0), "the asker's own messages are not unread");
    assert_eq!(state(&app, &bob, direct_id).await, (0, 2), "asking again while both are in is not a join");
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/chats/{direct_id}"), &bob, None).await;
    assert_eq!(status, 204);
    send(&app, &alice, direct_id, "d3 while bob is away").await;
    let (status, _) = direct(&alice, &bob).await;
    assert_eq!(status, 200);
    assert_eq!(state(&app, &bob, direct_id).await, (3, 0), "back in the direct chat: starts at its last seq");
}

on_both_backends!(a_join_starts_at_the_last_seq_and_a_send_moves_the_senders_position);

async fn a_mark_moves_forward_only_clamped_and_is_broadcast_only_when_it_moved(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    for n in 1..=5 {
        send(&app, &alice, chat_id, &format!("m{n}")).await;
    }
    // Alice watches the chat; bob has a chat socket and a user socket (his two devices).
    let mut alices = ChatSocket::connect_ready(&app.base_url, chat_id, &alice.token, None).await.unwrap();
    let mut bobs_chat = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();
    let mut bobs_user = ChatSocket::connect_user_ready(&app.base_url, &bob.token, None).await.unwrap();

    let (status, body) = mark(&app, &bob, chat_id, json!(2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"chat_id": chat_id, "user_id": bob.id, "last_read_seq": 2, "unread_count": 3}));
    for socket in [&mut alices, &mut bobs_chat, &mut bobs_user] {
        let frame = socket.expect("read", WAIT).await.unwrap();
        assert_eq!(
            (frame["chat_id"].as_i64(), frame["user_id"].as_i64(), frame["seq"].as_i64()),
            (Some(chat_id), Some(bob.id), Some(2))
        );
        assert!(frame["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{frame}");
    }

    let (status, body) = mark(&app, &bob, chat_id, json!(1)).await;
    assert_eq!((status, body["last_read_seq"].as_i64(), body["unread_count"].as_i64()), (200, Some(2), Some(3)));
    let (status, body) = mark(&app, &bob, chat_id, json!(2)).await;
    assert_eq!((status, body["last_read_seq"].as_i64()), (200, Some(2)), "the same seq: no move");
    assert!(reads(&mut alices, QUIET).await.is_empty(), "a mark that did not move is not broadcast");

    let (status, body) = mark(&app, &bob, chat_id, json!(1_000_000)).await;
    assert_eq!(
        (status, body["last_read_seq"].as_i64(), body["unread_count"].as_i64()),
        (200, Some(5), Some(0)),
        "past the last message: the last message's seq"
    );
    assert_eq!(reads(&mut bobs_user, QUIET).await, vec![(chat_id, bob.id, 5)]);
    assert_eq!(reads(&mut alices, QUIET).await, vec![(chat_id, bob.id, 5)]);

    // A send moves the sender's position without a `read` frame.
    send(&app, &bob, chat_id, "bob's").await;
    assert_eq!(state(&app, &bob, chat_id).await, (6, 0));
    assert!(reads(&mut alices, QUIET).await.is_empty(), "a send's move is not broadcast: the new_message says it");

    // Participants only; the seq is an integer ≥ 0.
    let (status, _) = mark(&app, &carol, chat_id, json!(1)).await;
    assert!(status == 403 || status == 404, "an outsider: {status}");
    for bad in [json!(-1), json!("3"), json!(1.5), Value::Null] {
        let (status, body) = mark(&app, &bob, chat_id, bad.clone()).await;
        assert_eq!(status, 422, "seq {bad}: {body}");
    }
    let (status, _) = app.call(Method::PUT, &format!("/api/v1/chats/{chat_id}/read"), &bob, Some(json!({}))).await;
    assert_eq!(status, 422, "seq missing");
}

on_both_backends!(a_mark_moves_forward_only_clamped_and_is_broadcast_only_when_it_moved);

async fn the_read_frame_marks_like_put_and_a_bad_one_is_a_validation_error(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    for n in 1..=4 {
        send(&app, &alice, chat_id, &format!("m{n}")).await;
    }
    let mut chat_socket = ChatSocket::connect_ready(&app.base_url, chat_id, &bob.token, None).await.unwrap();
    let mut user_socket = ChatSocket::connect_user_ready(&app.base_url, &bob.token, None).await.unwrap();

    chat_socket.send(&json!({"type": "read", "seq": 3})).await.unwrap();
    let frame = user_socket.expect("read", WAIT).await.unwrap();
    assert_eq!((frame["user_id"].as_i64(), frame["seq"].as_i64()), (Some(bob.id), Some(3)));
    assert_eq!(state(&app, &bob, chat_id).await, (3, 1));

    assert_eq!(chat_socket.expect("read", WAIT).await.unwrap()["seq"].as_i64(), Some(3), "the reader's own socket too");
    user_socket.send(&json!({"type": "read", "chat_id": chat_id, "seq": 4})).await.unwrap();
    let frame = chat_socket.expect("read", WAIT).await.unwrap();
    assert_eq!(frame["seq"].as_i64(), Some(4));

    for bad in [json!({"type": "read"}), json!({"type": "read", "seq": -1}), json!({"type": "read", "seq": "2"})] {
        chat_socket.send(&bad).await.unwrap();
        let error = chat_socket.expect("error", WAIT).await.unwrap_or_else(|closed| panic!("{bad}: {closed:?}"));
        assert_eq!(error["code"].as_str(), Some("validation"), "{bad}");
    }
    user_socket.send(&json!({"type": "read", "seq": 1})).await.unwrap();
    let error = user_socket.expect("error", WAIT).await.unwrap();
    assert_eq!(error["code"].as_str(), Some("bad_frame"), "a user socket's frame names its chat");
    chat_socket.send(&json!({"type": "ping"})).await.unwrap();
    chat_socket.expect("pong", WAIT).await.expect("still open after the bad frames");
}

on_both_backends!(the_read_frame_marks_like_put_and_a_bad_one_is_a_validation_error);

async fn unread_counts_leave_out_own_and_deleted_messages_in_every_chat_and_the_badge(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    let first = group(&app, &alice, &[&bob, &carol]).await;
    let second = group(&app, &alice, &[&bob]).await;
    let quiet = group(&app, &alice, &[&bob]).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(send(&app, &alice, first, &format!("a{n}")).await["id"].as_i64().unwrap());
    }
    send(&app, &bob, first, "bob's own").await;
    send(&app, &carol, first, "carol's").await;
    send(&app, &alice, second, "b1").await;
    send(&app, &alice, quiet, "q1").await;
    // Bob has read up to his own message (seq 5); carol's (6) is unread.
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/messages/{}", ids[1]), &alice, None).await;
    assert_eq!(status, 204);
    assert_eq!(state(&app, &bob, first).await, (5, 1), "own and read messages are not unread");
    assert_eq!(state(&app, &carol, first).await, (6, 0));
    let (_, body) = mark(&app, &carol, first, json!(0)).await;
    assert_eq!(body["unread_count"].as_i64(), Some(0), "a lower mark changes nothing");

    // Deleting a message past the position takes it out of the count.
    send(&app, &alice, first, "a5").await;
    let last = send(&app, &alice, first, "a6").await;
    assert_eq!(state(&app, &bob, first).await, (5, 3));
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/messages/{}", last["id"]), &alice, None).await;
    assert_eq!(status, 204);
    assert_eq!(state(&app, &bob, first).await, (5, 2), "carol's and a5; a6 was deleted");
    let (status, _) = mark(&app, &bob, quiet, json!(1)).await;
    assert_eq!(status, 200);

    // In every Chat: the list, one chat, a rename's answer.
    let (status, chats) = app.call(Method::GET, "/api/v1/chats/", &bob, None).await;
    assert_eq!(status, 200);
    let listed: Vec<(i64, i64, i64)> = chats
        .as_array()
        .unwrap()
        .iter()
        .map(|chat| {
            (
                chat["id"].as_i64().unwrap(),
                chat["last_read_seq"].as_i64().unwrap(),
                chat["unread_count"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![(first, 5, 2), (second, 0, 1), (quiet, 1, 0)];
    expected.sort_unstable();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "{listed:?}");
    let (status, renamed) =
        app.call(Method::PUT, &format!("/api/v1/chats/{second}"), &alice, Some(json!({"name": "renamed"}))).await;
    assert_eq!((status, renamed["unread_count"].as_i64()), (200, Some(0)), "the caller's own (alice's) state");

    let (status, badge) = app.call(Method::GET, "/api/v1/users/me/unread", &bob, None).await;
    assert_eq!((status, badge), (200, json!({"total_unread": 3, "chats": 2})));
    let (_, badge) = app.call(Method::GET, "/api/v1/users/me/unread", &alice, None).await;
    assert_eq!(badge, json!({"total_unread": 0, "chats": 0}), "alice sent the last message of each: all read");
    // A chat left no longer counts.
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/chats/{second}"), &bob, None).await;
    assert_eq!(status, 204);
    let (_, badge) = app.call(Method::GET, "/api/v1/users/me/unread", &bob, None).await;
    assert_eq!(badge, json!({"total_unread": 2, "chats": 1}));
    let newcomer = app.user("dave").await;
    let (_, badge) = app.call(Method::GET, "/api/v1/users/me/unread", &newcomer, None).await;
    assert_eq!(badge, json!({"total_unread": 0, "chats": 0}));
}

on_both_backends!(unread_counts_leave_out_own_and_deleted_messages_in_every_chat_and_the_badge);

async fn seen_by_lists_every_current_participants_position_by_user_id(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob, carol, dave) =
        (app.user("alice").await, app.user("bob").await, app.user("carol").await, app.user("dave").await);
    let chat_id = group(&app, &alice, &[&carol, &bob]).await;
    for n in 1..=3 {
        send(&app, &alice, chat_id, &format!("m{n}")).await;
    }
    mark(&app, &carol, chat_id, json!(2)).await;
    let path = format!("/api/v1/chats/{chat_id}/read");
    let (status, seen) = app.call(Method::GET, &path, &bob, None).await;
    assert_eq!(status, 200);
    let mut expected = vec![(alice.id, 3), (bob.id, 0), (carol.id, 2)];
    expected.sort_unstable();
    let expected: Vec<Value> =
        expected.into_iter().map(|(user_id, seq)| json!({"user_id": user_id, "last_read_seq": seq})).collect();
    assert_eq!(seen, Value::Array(expected.clone()), "by user_id ascending");

    let (status, _) = app.call(Method::GET, &path, &dave, None).await;
    assert!(status == 403 || status == 404, "participants only: {status}");
    let leave = format!("/api/v1/chats/{chat_id}/participants?user_id={}", carol.id);
    let (status, _) = app.call(Method::DELETE, &leave, &alice, None).await;
    assert_eq!(status, 204);
    let (_, seen) = app.call(Method::GET, &path, &bob, None).await;
    let users: Vec<i64> = seen.as_array().unwrap().iter().map(|p| p["user_id"].as_i64().unwrap()).collect();
    assert!(!users.contains(&carol.id), "only current participants: {seen}");
}

on_both_backends!(seen_by_lists_every_current_participants_position_by_user_id);

async fn concurrent_marks_end_at_the_largest_seq(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app, &alice, &[&bob]).await;
    for n in 1..=30 {
        send(&app, &alice, chat_id, &format!("m{n}")).await;
    }
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &alice.token, None).await.unwrap();
    // Two devices marking at once, in a shuffled order: the position ends at the largest.
    let seqs: Vec<i64> = (1..=30).map(|n| (n * 17) % 30 + 1).collect();
    let marks = seqs.iter().map(|seq| mark(&app, &bob, chat_id, json!(seq)));
    let answers = futures::future::join_all(marks).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    assert_eq!(state(&app, &bob, chat_id).await, (30, 0), "no lost update");
    let moves = reads(&mut socket, Duration::from_secs(2)).await;
    let announced: Vec<i64> = moves.iter().map(|(_, _, seq)| *seq).collect();
    assert!(announced.windows(2).all(|pair| pair[0] < pair[1]), "every broadcast move is forward: {announced:?}");
    assert_eq!(announced.last(), Some(&30));
}

on_both_backends!(concurrent_marks_end_at_the_largest_seq);

/// The chat list of 100 chats costs the same statements as one of a few
/// (no N+1): measured on MariaDB by the services' own database user.
#[tokio::test]
async fn a_chat_list_of_100_chats_runs_a_fixed_number_of_statements() {
    let (app, counter) = spawn_counted_deployment().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let list = |limit: u32| {
        let (app, bob) = (&app, bob.clone());
        async move {
            let (status, chats) = app.call(Method::GET, &format!("/api/v1/chats/?limit={limit}"), &bob, None).await;
            assert_eq!(status, 200);
            chats.as_array().unwrap().len()
        }
    };
    for n in 0..100 {
        let chat_id = group(&app, &alice, &[&bob]).await;
        send(&app, &alice, chat_id, &format!("hello {n}")).await;
    }
    // Warm: the membership cache is filled by the first list either way; the
    // outbox rows of the sends are gone once the relay has had its moment.
    list(100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (listed, few) = counter.during(list(2)).await;
    assert_eq!(listed, 2);
    let (listed, many) = counter.during(list(100)).await;
    assert_eq!(listed, 100);
    eprintln!("chat list: 2 chats {few} statements, 100 chats {many}");
    assert!(few > 0, "the counter counts ({few})");
    assert!(many <= few + 2, "100 chats cost {many} statements, 2 chats {few}: it must not grow with the list");
}
