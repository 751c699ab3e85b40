//! The transactional outbox into JetStream, against real MariaDB and real
//! NATS: every committed change is in the events stream exactly once — with
//! NATS up, and when NATS was down while it committed — and nothing that
//! rolled back ever is.

use std::time::Duration;

use chat_proto::{
    events::{ChatEvent, chat_event::Kind},
    messages as pb,
    metadata::{self as metadata_pb, ChatType},
};
use chat_tests::{
    NatsProcess, StreamedEvent, TestDeployment, as_user, await_stream, spawn_deployment, spawn_deployment_with,
};
use event_bus::{NatsBus, Subjects};
use outbox::{Delivery, StreamSettings};
use sql_pool::{Backend, Db, PoolSettings, testing::TestDatabase};

async fn group_of(app: &TestDeployment, size: usize) -> (i64, Vec<i64>) {
    let users = app.register_many("outbox", size).await;
    let request = as_user(
        users[0],
        metadata_pb::CreateChatRequest {
            chat_type: ChatType::Group as i32,
            name: Some("outbox".into()),
            participant_ids: users[1..].to_vec(),
        },
    );
    let chat = app.metadata().await.create_chat(request).await.expect("a group").into_inner().chat.expect("a chat");
    (chat.id, users)
}

async fn send(app: &TestDeployment, sender: i64, chat_id: i64, content: &str) -> pb::Message {
    let request = as_user(
        sender,
        pb::SendMessageRequest { chat_id, content: content.into(), client_msg_id: None, reply_to: None },
    );
    app.messages().await.send_message(request).await.expect("stored").into_inner().message.expect("a message")
}

/// What each event is, briefly: `new 3`, `edited 3`, `deleted 17`, `added 5`, `removed 5`, `read 5 3`, …
fn describe(event: &ChatEvent) -> String {
    match &event.kind {
        Some(Kind::NewMessage(message)) => format!("new {}", message.seq),
        Some(Kind::MessageEdited(message)) => format!("edited {}", message.seq),
        Some(Kind::MessageDeleted(deleted)) => format!("deleted {}", deleted.message_id),
        Some(Kind::ParticipantAdded(change)) => format!("added {}", change.user_id),
        Some(Kind::ParticipantRemoved(change)) => format!("removed {}", change.user_id),
        Some(Kind::ParticipantUpdated(change)) => format!("admin {} {}", change.user_id, change.is_admin),
        Some(Kind::ChatUpdated(change)) => format!("renamed {}", change.name),
        Some(Kind::Read(read)) => format!("read {} {}", read.user_id, read.seq),
        Some(Kind::ReactionAdded(change)) => format!("reacted {} {}", change.message_id, change.emoji),
        Some(Kind::ReactionRemoved(change)) => format!("unreacted {} {}", change.message_id, change.emoji),
        None => "nothing".into(),
    }
}

/// Whether an event is chat-metadata's (the others are message-store's).
fn is_membership(event: &ChatEvent) -> bool {
    matches!(
        event.kind,
        Some(
            Kind::ParticipantAdded(_)
                | Kind::ParticipantRemoved(_)
                | Kind::ParticipantUpdated(_)
                | Kind::ChatUpdated(_)
        )
    )
}

/// The events of one subject, described, in stream order, as two lists —
/// message-store's and chat-metadata's: each service's events keep their
/// commit order; two services' relays are not ordered with each other. And
/// every id is unique.
fn on_subject(events: &[StreamedEvent], subject: &str) -> (Vec<String>, Vec<String>) {
    let mut ids: Vec<&str> = events.iter().map(|event| event.msg_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "no event id twice in the stream");
    for event in events {
        assert!(
            event.msg_id.starts_with(&event.event.event_id),
            "the Nats-Msg-Id is the payload's event id: {} / {}",
            event.msg_id,
            event.event.event_id
        );
    }
    let of = |membership: bool| {
        events
            .iter()
            .filter(|event| event.subject == subject && is_membership(&event.event) == membership)
            .map(|event| describe(&event.event))
            .collect()
    };
    (of(false), of(true))
}

#[tokio::test]
async fn every_committed_change_is_in_the_stream_exactly_once_in_commit_order() {
    let app = spawn_deployment().await;
    let jetstream = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let mut created = false;
    for _ in 0..50 {
        created = jetstream.get_stream(outbox::stream::name(&app.subjects)).await.is_ok();
        if created {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "the services create the stream at start-up, before any event");
    let (chat_id, users) = group_of(&app, 3).await;
    let mut sent = Vec::new();
    for n in 0..4 {
        sent.push(send(&app, users[n % 2], chat_id, &format!("m{n}")).await);
    }
    let edit = as_user(users[0], pb::EditMessageRequest { message_id: sent[0].id, content: "m0 again".into() });
    app.messages().await.edit_message(edit).await.expect("edited");
    let delete = as_user(users[1], pb::DeleteMessageRequest { message_id: sent[1].id });
    app.messages().await.delete_message(delete).await.expect("deleted");
    let remove = as_user(users[0], metadata_pb::RemoveParticipantRequest { chat_id, user_id: users[2] });
    app.metadata().await.remove_participant(remove).await.expect("removed");
    // A change refused (an outsider's send) announces nothing.
    let refused = as_user(
        users[2],
        pb::SendMessageRequest { chat_id, content: "no".into(), client_msg_id: None, reply_to: None },
    );
    assert!(app.messages().await.send_message(refused).await.is_err());

    // 3 added + 4 new + 1 edited + 1 deleted + 1 removed on the chat; 4 membership copies.
    let events = await_stream(&app.nats_url, &app.subjects, 14, Duration::from_secs(10)).await;
    let chat = app.subjects.events(chat_id);
    let [a, b, c] = [users[0], users[1], users[2]];
    let memberships = vec![format!("added {a}"), format!("added {b}"), format!("added {c}"), format!("removed {c}")];
    let messages: Vec<String> = ["new 1", "new 2", "new 3", "new 4", "edited 1"]
        .into_iter()
        .map(String::from)
        .chain([format!("deleted {}", sent[1].id)])
        .collect();
    assert_eq!(on_subject(&events, &chat), (messages, memberships.clone()));
    assert_eq!(on_subject(&events, &app.subjects.membership()), (Vec::new(), memberships));
    assert_eq!(events.len(), 14, "nothing else");
    for table in ["message_outbox", "metadata_outbox"] {
        assert_emptied(&app, table).await;
    }
}

#[tokio::test]
async fn changes_committed_while_nats_is_down_reach_the_stream_once_it_is_back_in_order_and_once() {
    let mut nats = NatsProcess::start();
    let app = spawn_deployment_with(Backend::MySql, &nats.url()).await;
    let (chat_id, users) = group_of(&app, 2).await;
    send(&app, users[0], chat_id, "before").await;
    await_stream(&app.nats_url, &app.subjects, 5, Duration::from_secs(10)).await;

    nats.stop();
    // Changes do not need the bus: each is committed (and answered) with its outbox row.
    let mut during = Vec::new();
    for n in 0..10 {
        during.push(send(&app, users[n % 2], chat_id, &format!("during {n}")).await);
    }
    let edit = as_user(users[0], pb::EditMessageRequest { message_id: during[0].id, content: "again".into() });
    app.messages().await.edit_message(edit).await.expect("edited while the bus is down");
    let delete = as_user(users[1], pb::DeleteMessageRequest { message_id: during[1].id });
    app.messages().await.delete_message(delete).await.expect("deleted while the bus is down");
    let remove = as_user(users[0], metadata_pb::RemoveParticipantRequest { chat_id, user_id: users[1] });
    app.metadata().await.remove_participant(remove).await.expect("removed while the bus is down");
    assert!(app.db_count("SELECT COUNT(*) AS n FROM message_outbox").await >= 10, "kept in the outbox meanwhile");
    tokio::time::sleep(Duration::from_secs(5)).await;
    nats.restart();

    // 2 added ×2 subjects, 1 new before, 10 new, 1 edited and 1 deleted during, 1 removed ×2.
    let events = await_stream(&app.nats_url, &app.subjects, 19, Duration::from_secs(20)).await;
    let mut messages: Vec<String> = (1..=11).map(|seq| format!("new {seq}")).collect();
    messages.extend(["edited 2".to_owned(), format!("deleted {}", during[1].id)]);
    let memberships =
        vec![format!("added {}", users[0]), format!("added {}", users[1]), format!("removed {}", users[1])];
    assert_eq!(on_subject(&events, &app.subjects.events(chat_id)), (messages, memberships));
    assert_eq!(events.len(), 19, "nothing twice: {:?}", events.iter().map(|e| describe(&e.event)).collect::<Vec<_>>());
    assert_emptied(&app, "message_outbox").await;
    assert_emptied(&app, "metadata_outbox").await;
}

/// The outbox table loses every row once the stream has acknowledged it (within seconds).
async fn assert_emptied(app: &TestDeployment, table: &str) {
    let count = format!("SELECT COUNT(*) AS n FROM {table}");
    for _ in 0..50 {
        if app.db_count(&count).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{table} still holds {} rows the stream has", app.db_count(&count).await);
}

#[tokio::test]
async fn a_rolled_back_change_is_never_published_and_rows_left_by_a_crash_are() {
    // The relay on its own: an outbox table, real MariaDB, real NATS.
    telemetry::init_for_tests();
    let database = TestDatabase::new(Backend::MySql, "outbox");
    let db = Db::open(&database.url, &PoolSettings::default(), message_store::store::migrations()).await.unwrap();
    let nats_url = chat_tests::nats_url();
    let subjects = Subjects::new(chat_tests::unique_prefix("relay")).unwrap();
    let event = |chat_id: i64| ChatEvent { chat_id, at_ms: 1, ..ChatEvent::default() };

    // A crash between commit and publish leaves committed rows and no relay to hand them to.
    {
        let mut tx = db.pool.begin().await.unwrap();
        let left = [subjects.chat_event(&event(1), Vec::new()), subjects.chat_event(&event(2), Vec::new())];
        stage_raw(&mut tx, &left).await;
        tx.commit().await.unwrap();
    }
    let bus = NatsBus::connect(&nats_url, "relay-test").await.unwrap();
    let sink =
        Delivery::jetstream(bus, subjects.clone(), StreamSettings::default()).sink(&db, "message_outbox").unwrap();

    let mut rolled_back = db.pool.begin().await.unwrap();
    sink.stage(&mut rolled_back, &[subjects.chat_event(&event(3), Vec::new())]).await.unwrap();
    rolled_back.rollback().await.unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    let committed = vec![subjects.chat_event(&event(4), Vec::new())];
    sink.stage(&mut tx, &committed).await.unwrap();
    tx.commit().await.unwrap();
    sink.committed(committed).await;

    let events = await_stream(&nats_url, &subjects, 3, Duration::from_secs(10)).await;
    let chats: Vec<i64> = events.iter().map(|event| event.event.chat_id).collect();
    assert_eq!(
        chats,
        [1, 2, 4],
        "the left-over rows first (at start-up), then the live one; never the rolled-back one"
    );
    chat_tests::delete_stream(&nats_url, &subjects);
}

/// Outbox rows written the way a service's transaction writes them, with no relay told.
async fn stage_raw(tx: &mut sqlx::Transaction<'static, sqlx::Any>, events: &[event_bus::Outbound]) {
    for event in events {
        sqlx::query(
            "INSERT INTO message_outbox (event_id, subject, payload, headers, created_at_ms) VALUES (?, ?, ?, '', 0)",
        )
        .bind(event.id.clone())
        .bind(event.subject.clone())
        .bind(event.payload.to_vec())
        .execute(&mut **tx)
        .await
        .unwrap();
    }
}
