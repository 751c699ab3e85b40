//! Races and error paths of edits, deletes and membership changes, forced
//! with real locks and real failures of the real databases.

use std::{collections::HashMap, time::Duration};

use chat_proto::{
    events::chat_event::Kind,
    messages as pb,
    metadata::{self as metadata_pb, ChatType},
};
use chat_tests::{TestDeployment, as_user, spawn_deployment, spawn_deployment_on};
use futures::StreamExt as _;
use sql_pool::Backend;
use tonic::Code;

async fn group_of(app: &TestDeployment, size: usize) -> (i64, Vec<i64>) {
    let users = app.register_many("race", size).await;
    let request = metadata_pb::CreateChatRequest {
        chat_type: ChatType::Group as i32,
        name: Some("races".into()),
        participant_ids: users[1..].to_vec(),
    };
    let chat = app.metadata().await.create_chat(as_user(users[0], request)).await.unwrap().into_inner().chat.unwrap();
    (chat.id, users)
}

async fn post(app: &TestDeployment, sender: i64, chat_id: i64, content: &str) -> pb::Message {
    let request = pb::SendMessageRequest { chat_id, content: content.into(), client_msg_id: None, reply_to: None };
    app.messages().await.send_message(as_user(sender, request)).await.unwrap().into_inner().message.unwrap()
}

async fn sql(app: &TestDeployment, statement: &str) {
    let db = sql_pool::Db::connect(&app.db.url, &sql_pool::PoolSettings::default()).await.unwrap();
    sqlx::query(statement).execute(&db.pool).await.unwrap();
}

#[tokio::test]
async fn a_delete_and_the_erasure_of_its_sql_content_commit_together_or_not_at_all() {
    let app = spawn_deployment().await;
    let (chat_id, users) = group_of(&app, 2).await;
    let mut events = app.chat_events(chat_id).await;
    let message = post(&app, users[1], chat_id, "soon gone").await;
    let sent = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    assert!(matches!(sent.kind, Some(Kind::NewMessage(ref m)) if m.id == message.id), "{sent:?}");

    // The content table is unusable: the delete fails as a whole, nothing is announced.
    sql(&app, "RENAME TABLE message_contents TO message_contents_away").await;
    let delete = || as_user(users[1], pb::DeleteMessageRequest { message_id: message.id });
    let refused = app.messages().await.delete_message(delete()).await;
    sql(&app, "RENAME TABLE message_contents_away TO message_contents").await;
    assert!(refused.is_err(), "the delete did not commit without its erasure");
    let quiet = tokio::time::timeout(Duration::from_millis(700), events.next()).await;
    assert!(quiet.is_err(), "nothing was announced: {quiet:?}");
    let request = as_user(users[0], pb::GetHistoryRequest { chat_id, limit: 10, cursor: None });
    let page = app.messages().await.get_history(request).await.unwrap().into_inner();
    assert!(!page.messages[0].is_deleted && page.messages[0].content == "soon gone", "the message is intact");

    // Once the table is back, the delete and the erasure commit together.
    assert!(app.messages().await.delete_message(delete()).await.unwrap().into_inner().deleted);
    assert_eq!(app.db_content_rows("soon gone").await, 0, "erased in the delete's transaction");
    let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    assert!(matches!(event.kind, Some(Kind::MessageDeleted(ref d)) if d.message_id == message.id), "{event:?}");
}

#[tokio::test]
async fn a_second_delete_is_authorized_like_the_first() {
    let app = spawn_deployment().await;
    let (chat_id, users) = group_of(&app, 3).await;
    let (sender, bystander) = (users[1], users[2]);
    let message = post(&app, sender, chat_id, "mine").await;
    let mut client = app.messages().await;
    let delete = |by| as_user(by, pb::DeleteMessageRequest { message_id: message.id });
    assert!(client.delete_message(delete(sender)).await.unwrap().into_inner().deleted);
    let again = client.delete_message(delete(bystander)).await;
    assert_eq!(again.expect_err("neither sender nor admin").code(), Code::PermissionDenied);
    assert!(!client.delete_message(delete(sender)).await.unwrap().into_inner().deleted, "the sender may repeat it");
}

#[tokio::test]
async fn an_edit_racing_a_delete_is_never_announced_after_it() {
    let app = spawn_deployment().await;
    let (chat_id, users) = group_of(&app, 2).await;
    let sender = users[1];
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(post(&app, sender, chat_id, &format!("m{n}")).await.id);
    }
    let mut events = app.chat_events(chat_id).await;
    let client = app.messages().await;
    let races = ids.iter().map(|id| {
        let (mut editor, mut deleter) = (client.clone(), client.clone());
        let edit = as_user(sender, pb::EditMessageRequest { message_id: *id, content: "edited".into() });
        let delete = as_user(sender, pb::DeleteMessageRequest { message_id: *id });
        async move {
            let (edited, deleted) = tokio::join!(editor.edit_message(edit), deleter.delete_message(delete));
            assert!(deleted.unwrap().into_inner().deleted);
            if let Err(status) = edited {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            }
        }
    });
    futures::future::join_all(races).await;

    let mut deleted_at: HashMap<i64, usize> = HashMap::new();
    let mut order = Vec::new();
    while deleted_at.len() < ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap();
        match event.kind {
            Some(Kind::MessageDeleted(deleted)) => {
                deleted_at.insert(deleted.message_id, order.len());
                order.push(("deleted", deleted.message_id));
            }
            Some(Kind::MessageEdited(edited)) => order.push(("edited", edited.id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Whatever came late: any edit still in flight would show here.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        if let Some(Kind::MessageEdited(edited)) = event.kind {
            order.push(("edited", edited.id));
        }
    }
    for (at, (kind, id)) in order.iter().enumerate() {
        if *kind == "edited" {
            assert!(at < deleted_at[id], "message {id} was announced edited after its deletion: {order:?}");
        }
    }
    let read = as_user(sender, pb::GetHistoryRequest { chat_id, limit: 100, cursor: None });
    let page = app.messages().await.get_history(read).await.unwrap().into_inner();
    assert!(page.messages.iter().all(|m| m.is_deleted && m.content.is_empty()), "every message stays deleted");
}

#[tokio::test]
async fn an_admin_demoted_while_their_add_waits_for_the_chat_lock_is_refused() {
    let app = spawn_deployment().await;
    let (chat_id, users) = group_of(&app, 3).await;
    let (owner, deputy, newcomer) = (users[0], users[1], app.register_many("late", 1).await[0]);
    let mut metadata = app.metadata().await;
    let promote = metadata_pb::SetAdminRequest { chat_id, user_id: deputy, is_admin: true };
    metadata.set_admin(as_user(owner, promote)).await.unwrap();

    // Hold the chat's row lock, as a concurrent membership change would.
    let db = sql_pool::Db::connect(&app.db.url, &sql_pool::PoolSettings::default()).await.unwrap();
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("UPDATE chats SET id = id WHERE id = ?").bind(chat_id).execute(&mut *holder).await.unwrap();
    let add = {
        let mut metadata = metadata.clone();
        let request = metadata_pb::AddParticipantsRequest { chat_id, user_ids: vec![newcomer] };
        tokio::spawn(async move { metadata.add_participants(as_user(deputy, request)).await })
    };
    // The deputy passed the first look at their rights; the change waits for the lock. Meanwhile they are demoted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("UPDATE participants SET is_admin = 0 WHERE chat_id = ? AND user_id = ?")
        .bind(chat_id)
        .bind(deputy)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder.commit().await.unwrap();

    let refused = add.await.unwrap().expect_err("no longer an admin when the change ran");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let list = metadata_pb::ListParticipantsRequest { chat_id };
    let members = metadata.list_participants(as_user(owner, list)).await.unwrap().into_inner().participants;
    assert!(members.iter().all(|member| member.user_id != newcomer), "nobody was added");
}

#[tokio::test]
async fn a_database_locked_past_its_timeout_is_503_not_500() {
    let app = spawn_deployment_on(Backend::Sqlite).await;
    let users = app.register_many("busy", 2).await;
    // Another writer holds SQLite's write lock longer than the services' busy_timeout (5 s).
    let db = sql_pool::Db::connect(&app.db.url, &sql_pool::PoolSettings::default()).await.unwrap();
    let mut writer = db.pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *writer).await.unwrap();
    let request = metadata_pb::CreateChatRequest {
        chat_type: ChatType::Group as i32,
        name: Some("blocked".into()),
        participant_ids: vec![users[1]],
    };
    let answer = app.metadata().await.create_chat(as_user(users[0], request)).await;
    sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();
    assert_eq!(answer.expect_err("the database is locked").code(), Code::Unavailable);

    // Once the lock is gone, it works again (the gateway maps UNAVAILABLE to 503 with Retry-After).
    let request = metadata_pb::CreateChatRequest {
        chat_type: ChatType::Group as i32,
        name: Some("free".into()),
        participant_ids: vec![users[1]],
    };
    assert!(app.metadata().await.create_chat(as_user(users[0], request)).await.is_ok());
}
