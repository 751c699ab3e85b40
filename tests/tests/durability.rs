//! Nothing acknowledged is lost when a process dies: the standalone server
//! killed with SIGKILL under 64 senders, and on the distributed deployment
//! message-store killed mid-stream — every message a client got a 201 for
//! is in history afterwards (seq gap-free), and every committed event is in
//! the JetStream stream exactly once.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chat_proto::events::chat_event::Kind;
use chat_tests::{await_stream, free_port, spawn_deployment, standalone_server, ws::ChatSocket};
use serde_json::{Value, json};

/// A registered and logged-in user of the server at `base`: (id, token).
async fn user(http: &reqwest::Client, base: &str, name: &str) -> (i64, String) {
    let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password-123"});
    let response = http.post(format!("{base}/api/v1/users/register")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let login = json!({"username": name, "password": "password-123"});
    let token: Value =
        http.post(format!("{base}/api/v1/users/login")).json(&login).send().await.unwrap().json().await.unwrap();
    (id, token["access_token"].as_str().unwrap().to_owned())
}

async fn group(http: &reqwest::Client, base: &str, owner: &str, members: &[i64]) -> i64 {
    let body = json!({"chat_type": "group", "name": "durable", "participant_ids": members});
    let chat: Value = http
        .post(format!("{base}/api/v1/chats/"))
        .bearer_auth(owner)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    chat["id"].as_i64().unwrap()
}

/// Every message of the chat, oldest first: (id, seq, content).
async fn full_history(http: &reqwest::Client, base: &str, token: &str, chat_id: i64) -> Vec<(i64, i64, String)> {
    let mut all = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut url = format!("{base}/api/v1/messages/chat/{chat_id}?limit=100");
        if let Some(before) = before {
            url.push_str(&format!("&before={before}"));
        }
        let page: Value = http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let mut batch: Vec<(i64, i64, String)> = messages
            .iter()
            .map(|m| (m["id"].as_i64().unwrap(), m["seq"].as_i64().unwrap(), m["content"].as_str().unwrap().to_owned()))
            .collect();
        batch.extend(all);
        all = batch;
        if !page["has_more"].as_bool().unwrap_or(false) || messages.is_empty() {
            return all;
        }
        before = all.first().map(|m| m.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_server_killed_under_64_senders_keeps_every_acknowledged_message_and_a_gap_free_seq() {
    let data = std::env::temp_dir().join(format!("chat-durability-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let mut server = standalone_server(&data, port);
    server.ready().await;
    let (base, http) = (server.base_url.clone(), reqwest::Client::new());
    let tag = std::process::id();
    let mut people = Vec::new();
    for n in 0..8 {
        people.push(user(&http, &base, &format!("dur{n}_{tag}")).await);
    }
    let others: Vec<i64> = people[1..].iter().map(|(id, _)| *id).collect();
    let chat_id = group(&http, &base, &people[0].1, &others).await;

    let acknowledged: Arc<Mutex<Vec<(i64, i64, String)>>> = Arc::default();
    let senders = (0..64).map(|client| {
        let (http, base, token, acknowledged) =
            (http.clone(), base.clone(), people[client % 8].1.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for n in 0.. {
                let content = format!("c{client}-{n}");
                let body = json!({"chat_id": chat_id, "content": content});
                let request = http.post(format!("{base}/api/v1/messages/")).bearer_auth(&token).json(&body);
                let Ok(response) = request.timeout(Duration::from_secs(5)).send().await else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(message) = response.json::<Value>().await else { return };
                acknowledged.lock().unwrap().push((
                    message["id"].as_i64().unwrap(),
                    message["seq"].as_i64().unwrap(),
                    content,
                ));
            }
        })
    });
    let senders: Vec<_> = senders.collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.len() > 100, "the senders were busy when it died: {} acknowledged", acknowledged.len());

    let server = standalone_server(&data, port);
    server.ready().await;
    let stored = full_history(&http, &server.base_url, &people[0].1, chat_id).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m.1).collect();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "seq is gap-free after the crash");
    let stored: HashSet<(i64, i64, String)> = stored.into_iter().collect();
    let lost: Vec<_> = acknowledged.iter().filter(|message| !stored.contains(*message)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_store_killed_mid_stream_loses_no_committed_event_and_connected_clients_get_every_message_once() {
    let app = spawn_deployment().await;
    let port = free_port();
    let mut store = app.message_store_process(port);
    store.ready_grpc().await;
    let mut services = app.services.clone();
    services.messages = url::Url::parse(&store.base_url).unwrap();
    let gateway = format!("http://{}", chat_tests::spawn_gateway(services, &app.subjects, app.stop_signal()).await);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = group(&app.http, &gateway, &alice.token, &[bob.id]).await;
    let mut socket = ChatSocket::connect_ready(&gateway, chat_id, &bob.token, None).await.unwrap();

    // 80 sends, 25 ms apart; message-store dies after 20 and is back 1 s later.
    let acknowledged: Arc<Mutex<BTreeMap<i64, i64>>> = Arc::default();
    let sender = {
        let (http, gateway, token, acknowledged) =
            (app.http.clone(), gateway.clone(), alice.token.clone(), acknowledged.clone());
        async move {
            for n in 0..80 {
                let body = json!({"chat_id": chat_id, "content": format!("m{n}")});
                let response =
                    http.post(format!("{gateway}/api/v1/messages/")).bearer_auth(&token).json(&body).send().await;
                if let Ok(response) = response
                    && response.status() == 201
                {
                    let message: Value = response.json().await.unwrap();
                    acknowledged
                        .lock()
                        .unwrap()
                        .insert(message["seq"].as_i64().unwrap(), message["id"].as_i64().unwrap());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    let crash = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = app.message_store_process(port);
        restarted.ready_grpc().await;
        restarted
    };
    let ((), _restarted) = tokio::join!(sender, crash);
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.len() > 40, "most sends got through: {}", acknowledged.len());

    // The stream: every message committed exactly once (the acknowledged ones among them).
    let events = await_stream(&app.nats_url, &app.subjects, acknowledged.len(), Duration::from_secs(20)).await;
    let mut new: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|event| match &event.event.kind {
            Some(Kind::NewMessage(message)) => Some((message.seq, message.id)),
            _ => None,
        })
        .collect();
    let committed = new.len();
    new.sort_unstable();
    new.dedup();
    assert_eq!(new.len(), committed, "no message twice in the stream");
    let seqs: Vec<i64> = new.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=committed as i64).collect::<Vec<_>>(), "every committed message, gap-free");
    for (seq, id) in &acknowledged {
        assert!(new.contains(&(*seq, *id)), "acknowledged message {seq} ({id}) is in the stream: {new:?}");
    }

    // The client that stayed connected: every committed message once, in order.
    let mut received = Vec::new();
    while received.len() < committed {
        match socket.expect("new_message", Duration::from_secs(15)).await {
            Ok(frame) => received.push(frame["message"]["seq"].as_i64().unwrap()),
            Err(closed) => panic!("the socket ended after {} messages: {closed:?}", received.len()),
        }
    }
    assert_eq!(received, (1..=committed as i64).collect::<Vec<_>>(), "the socket saw each message once, in order");
}
