//! message-store through gRPC on MariaDB and SQLite: seq under concurrent
//! senders, idempotency, history pages, edits, deletes, and the events published.

use chat_proto::{
    events::chat_event::Kind,
    messages::{self as pb, get_history_request::Cursor},
    metadata::{self as metadata_pb, ChatType},
};
use chat_tests::{TestDeployment, as_user, spawn_deployment_on};
use futures::StreamExt;
use sql_pool::Backend;
use sql_pool::on_both_backends;
use tonic::Code;

async fn group_of(app: &TestDeployment, size: usize) -> (i64, Vec<i64>) {
    let users = app.register_many("msg", size).await;
    let request = as_user(
        users[0],
        metadata_pb::CreateChatRequest {
            chat_type: ChatType::Group as i32,
            name: Some("messages".into()),
            participant_ids: users[1..].to_vec(),
        },
    );
    let chat = app.metadata().await.create_chat(request).await.expect("a group").into_inner().chat.expect("a chat");
    (chat.id, users)
}

/// A send as `sender_id` (whose token names them `user<id>`).
fn send(
    sender_id: i64,
    chat_id: i64,
    content: &str,
    client_msg_id: Option<&str>,
) -> tonic::Request<pb::SendMessageRequest> {
    let request = pb::SendMessageRequest {
        chat_id,
        content: content.into(),
        client_msg_id: client_msg_id.map(Into::into),
        reply_to: None,
    };
    as_user(sender_id, request)
}

async fn history(
    app: &TestDeployment,
    caller_id: i64,
    chat_id: i64,
    limit: u32,
    cursor: Option<Cursor>,
) -> pb::HistoryPage {
    let request = as_user(caller_id, pb::GetHistoryRequest { chat_id, limit, cursor });
    app.messages().await.get_history(request).await.expect("a page").into_inner()
}

async fn twenty_concurrent_senders_get_seq_1_to_n_with_no_gap(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (chat_id, users) = group_of(&app, 20).await;
    let mut first_listener = app.chat_events(chat_id).await;
    let mut second_listener = app.chat_events(chat_id).await;
    let client = app.messages().await;
    const PER_SENDER: usize = 5;
    let sends = users.iter().flat_map(|sender| (0..PER_SENDER).map(move |n| (*sender, n))).map(|(sender, n)| {
        let mut client = client.clone();
        async move {
            let response = client.send_message(send(sender, chat_id, &format!("{sender}-{n}"), None)).await;
            response.expect("stored").into_inner().message.expect("a message")
        }
    });
    let mut sent = futures::future::join_all(sends).await;
    let total = users.len() * PER_SENDER;
    sent.sort_by_key(|message| message.id);
    let seqs: Vec<i64> = sent.iter().map(|message| message.seq).collect();
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>(), "seq follows id order with no gap and no repeat");

    let stored = history(&app, users[0], chat_id, 100, None).await;
    assert_eq!(
        stored.messages.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
        sent.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>()
    );

    let mut orders = Vec::new();
    for listener in [&mut first_listener, &mut second_listener] {
        let mut ids = Vec::new();
        while ids.len() < total {
            let event = tokio::time::timeout(std::time::Duration::from_secs(10), listener.next())
                .await
                .expect("every message is published")
                .expect("a stream");
            if let Some(Kind::NewMessage(message)) = event.kind {
                ids.push(message.id);
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), total, "each message is published once");
        orders.push(ids);
    }
    assert_eq!(orders[0], orders[1], "every receiver sees one total order");
}
on_both_backends!(twenty_concurrent_senders_get_seq_1_to_n_with_no_gap);

async fn a_retried_client_msg_id_returns_the_original_once(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (chat_id, users) = group_of(&app, 2).await;
    let client = app.messages().await;
    let sender = users[1];
    let retries = (0..8).map(|_| {
        let mut client = client.clone();
        async move {
            client.send_message(send(sender, chat_id, "only once", Some("key-1"))).await.expect("sent").into_inner()
        }
    });
    let responses = futures::future::join_all(retries).await;
    let id = responses[0].message.as_ref().unwrap().id;
    assert!(responses.iter().all(|r| r.message.as_ref().unwrap().id == id));
    assert_eq!(responses.iter().filter(|r| r.created).count(), 1, "created once, the rest are the original");
    assert_eq!(history(&app, users[0], chat_id, 10, None).await.messages.len(), 1);
    assert_eq!(app.db_content_rows("only once").await, 1, "no orphaned content is left behind");

    let other_sender =
        client.clone().send_message(send(users[0], chat_id, "same key, other sender", Some("key-1"))).await;
    assert!(other_sender.unwrap().into_inner().created, "the key is per sender");
}
on_both_backends!(a_retried_client_msg_id_returns_the_original_once);

async fn history_pages_back_and_forth_with_has_more(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (chat_id, users) = group_of(&app, 2).await;
    let mut client = app.messages().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            client
                .send_message(send(users[0], chat_id, &format!("m{n}"), None))
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap()
                .id,
        );
    }
    let page_ids = |page: &pb::HistoryPage| page.messages.iter().map(|m| m.id).collect::<Vec<_>>();
    let newest = history(&app, users[1], chat_id, 3, None).await;
    assert_eq!((page_ids(&newest), newest.has_more), (ids[4..].to_vec(), true));
    let older = history(&app, users[1], chat_id, 3, Some(Cursor::BeforeId(ids[4]))).await;
    assert_eq!((page_ids(&older), older.has_more), (ids[1..4].to_vec(), true));
    let oldest = history(&app, users[1], chat_id, 3, Some(Cursor::BeforeId(ids[1]))).await;
    assert_eq!((page_ids(&oldest), oldest.has_more), (ids[..1].to_vec(), false));
    let from_start = history(&app, users[1], chat_id, 5, Some(Cursor::AfterId(0))).await;
    assert_eq!((page_ids(&from_start), from_start.has_more), (ids[..5].to_vec(), true));
    let rest = history(&app, users[1], chat_id, 5, Some(Cursor::AfterId(ids[4]))).await;
    assert_eq!((page_ids(&rest), rest.has_more), (ids[5..].to_vec(), false));
    assert_eq!(rest.messages[1].content, "m6");
}
on_both_backends!(history_pages_back_and_forth_with_has_more);

async fn edits_and_deletes_change_storage_and_are_published(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (chat_id, users) = group_of(&app, 3).await;
    let (admin, sender, member) = (users[0], users[1], users[2]);
    let mut client = app.messages().await;
    let mut events = app.chat_events(chat_id).await;
    let message =
        client.send_message(send(sender, chat_id, "secret draft", None)).await.unwrap().into_inner().message.unwrap();

    let by_other = as_user(member, pb::EditMessageRequest { message_id: message.id, content: "hijack".into() });
    assert_eq!(client.edit_message(by_other).await.expect_err("not the sender").code(), Code::PermissionDenied);
    let edit = as_user(sender, pb::EditMessageRequest { message_id: message.id, content: "final words".into() });
    let edited = client.edit_message(edit).await.unwrap().into_inner();
    assert!(edited.is_edited && edited.edited_at_ms.is_some() && edited.content == "final words");
    assert_eq!(app.db_content_rows("secret draft").await, 0, "the old text is gone");

    let by_member = as_user(member, pb::DeleteMessageRequest { message_id: message.id });
    assert_eq!(
        client.delete_message(by_member).await.expect_err("not sender nor admin").code(),
        Code::PermissionDenied
    );
    let by_admin = || as_user(admin, pb::DeleteMessageRequest { message_id: message.id });
    assert!(client.delete_message(by_admin()).await.unwrap().into_inner().deleted);
    assert!(!client.delete_message(by_admin()).await.unwrap().into_inner().deleted, "a second delete changes nothing");
    assert_eq!(app.db_content_rows("final words").await, 0, "deleted content is erased from storage");
    let page = history(&app, sender, chat_id, 10, None).await;
    assert!(page.messages[0].is_deleted && page.messages[0].content.is_empty());
    let again = as_user(sender, pb::EditMessageRequest { message_id: message.id, content: "undead".into() });
    assert_eq!(client.edit_message(again).await.expect_err("deleted").code(), Code::FailedPrecondition);

    let timeout = std::time::Duration::from_secs(5);
    let sent = tokio::time::timeout(timeout, events.next()).await.unwrap().unwrap();
    assert!(matches!(sent.kind, Some(Kind::NewMessage(ref m)) if m.id == message.id), "{sent:?}");
    let first = tokio::time::timeout(timeout, events.next()).await.unwrap().unwrap();
    assert!(matches!(first.kind, Some(Kind::MessageEdited(ref m)) if m.content == "final words"), "{first:?}");
    let second = tokio::time::timeout(timeout, events.next()).await.unwrap().unwrap();
    assert!(matches!(second.kind, Some(Kind::MessageDeleted(ref d)) if d.message_id == message.id), "{second:?}");
    let nothing_more = tokio::time::timeout(std::time::Duration::from_millis(500), events.next()).await;
    assert!(nothing_more.is_err(), "one delete event only: {nothing_more:?}");
}
on_both_backends!(edits_and_deletes_change_storage_and_are_published);

async fn outsiders_and_bad_content_are_refused_and_nothing_is_published(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let (chat_id, users) = group_of(&app, 2).await;
    let outsider = app.register_many("outsider", 1).await[0];
    let mut events = app.chat_events(chat_id).await;
    let mut client = app.messages().await;
    let cases = [
        (send(outsider, chat_id, "let me in", None), Code::PermissionDenied),
        (send(users[0], 9_999_999, "nowhere", None), Code::NotFound),
        (send(users[0], chat_id, "   ", None), Code::InvalidArgument),
        (send(users[0], chat_id, &"x".repeat(10_001), None), Code::InvalidArgument),
        (send(users[0], chat_id, "ok", Some(&"k".repeat(65))), Code::InvalidArgument),
    ];
    for (request, code) in cases {
        assert_eq!(client.send_message(request).await.expect_err("refused").code(), code);
    }
    let read = as_user(outsider, pb::GetHistoryRequest { chat_id, limit: 10, cursor: None });
    assert_eq!(client.get_history(read).await.expect_err("outsider").code(), Code::PermissionDenied);
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), events.next()).await;
    assert!(nothing.is_err(), "nothing unpersisted is published: {nothing:?}");
}
on_both_backends!(outsiders_and_bad_content_are_refused_and_nothing_is_published);
