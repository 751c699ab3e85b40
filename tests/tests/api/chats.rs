//! chat-metadata through gRPC on MariaDB and SQLite: the rules that must hold under concurrency.

use chat_proto::{
    events::chat_event::Kind,
    messages as messages_pb,
    metadata::{self as pb, ChatType},
};
use chat_tests::{as_user, spawn_deployment_on};
use futures::StreamExt;
use sql_pool::Backend;
use sql_pool::on_both_backends;
use tonic::Code;

fn direct(caller_id: i64, other: i64) -> tonic::Request<pb::CreateChatRequest> {
    as_user(
        caller_id,
        pb::CreateChatRequest { chat_type: ChatType::Direct as i32, name: None, participant_ids: vec![other] },
    )
}

fn group(caller_id: i64, members: &[i64]) -> tonic::Request<pb::CreateChatRequest> {
    let request = pb::CreateChatRequest {
        chat_type: ChatType::Group as i32,
        name: Some("group".into()),
        participant_ids: members.to_vec(),
    };
    as_user(caller_id, request)
}

async fn concurrent_direct_chat_creation_makes_one_chat(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let ids = app.register_many("pair", 2).await;
    let metadata = app.metadata().await;
    let attempts = (0..10).map(|n| {
        let mut metadata = metadata.clone();
        let request = if n % 2 == 0 { direct(ids[0], ids[1]) } else { direct(ids[1], ids[0]) };
        async move { metadata.create_chat(request).await.expect("created or found").into_inner() }
    });
    let responses = futures::future::join_all(attempts).await;
    let chat_id = responses[0].chat.as_ref().unwrap().id;
    assert!(responses.iter().all(|r| r.chat.as_ref().unwrap().id == chat_id), "one chat for the pair");
    assert_eq!(responses.iter().filter(|r| r.created).count(), 1, "created exactly once");
    let chat = responses[0].chat.as_ref().unwrap();
    assert_eq!(chat.participants.len(), 2);
    assert!(chat.participants.iter().all(|p| !p.is_admin), "direct chats have no admins");
}
on_both_backends!(concurrent_direct_chat_creation_makes_one_chat);

async fn concurrent_adds_cannot_pass_100_members(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let users = app.register_many("cap", 97 + 30).await;
    let (creator, members, candidates) = (users[0], &users[1..97], &users[97..]);
    let metadata = app.metadata().await;
    let chat = metadata.clone().create_chat(group(creator, members)).await.unwrap().into_inner().chat.unwrap();
    assert_eq!(chat.participants.len(), 97);
    let adds = candidates.chunks(3).map(|batch| {
        let mut metadata = metadata.clone();
        let request = as_user(creator, pb::AddParticipantsRequest { chat_id: chat.id, user_ids: batch.to_vec() });
        async move { metadata.add_participants(request).await }
    });
    let results = futures::future::join_all(adds).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 1, "only one batch of 3 fits beside 97 members");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    let request = as_user(creator, pb::ListParticipantsRequest { chat_id: chat.id });
    let after = metadata.clone().list_participants(request).await.unwrap().into_inner().participants;
    assert_eq!(after.len(), 100);
}
on_both_backends!(concurrent_adds_cannot_pass_100_members);

async fn a_group_over_100_or_with_an_unknown_member_is_not_created(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let users = app.register_many("big", 101).await;
    let mut metadata = app.metadata().await;
    let too_big = metadata.create_chat(group(users[0], &users[1..])).await.expect_err("101 members");
    assert_eq!(too_big.code(), Code::FailedPrecondition);
    let unknown = metadata.create_chat(group(users[0], &[users[1], 9_999_999])).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let listed = metadata.list_chats(as_user(users[0], pb::ListChatsRequest { limit: 100, offset: 0 })).await.unwrap();
    assert!(listed.into_inner().chats.is_empty(), "nothing was created");
}
on_both_backends!(a_group_over_100_or_with_an_unknown_member_is_not_created);

async fn the_last_admin_leaving_promotes_the_longest_standing_member(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let users = app.register_many("admins", 3).await;
    let mut metadata = app.metadata().await;
    let chat = metadata.create_chat(group(users[0], &users[1..])).await.unwrap().into_inner().chat.unwrap();

    let demote = as_user(users[0], pb::SetAdminRequest { chat_id: chat.id, user_id: users[0], is_admin: false });
    assert_eq!(metadata.set_admin(demote).await.expect_err("last admin").code(), Code::FailedPrecondition);

    metadata.leave_chat(as_user(users[0], pb::LeaveChatRequest { chat_id: chat.id })).await.unwrap();
    let request = as_user(users[1], pb::ListParticipantsRequest { chat_id: chat.id });
    let left = metadata.list_participants(request).await.unwrap().into_inner().participants;
    let admins: Vec<i64> = left.iter().filter(|p| p.is_admin).map(|p| p.user_id).collect();
    // Both joined with the group, at the same moment: the tie goes to the smaller user id.
    assert_eq!(admins, vec![users[1].min(users[2])], "the longest-standing member is admin now");

    for user in &users[1..] {
        metadata.leave_chat(as_user(*user, pb::LeaveChatRequest { chat_id: chat.id })).await.unwrap();
    }
    let membership = metadata
        .check_membership(pb::CheckMembershipRequest { chat_id: chat.id, user_id: users[1] })
        .await
        .unwrap()
        .into_inner();
    assert!(membership.chat_exists && !membership.is_participant);
    let chat_now = app.db_chat_is_active(chat.id).await;
    assert!(!chat_now, "a chat nobody is in is inactive");
}
on_both_backends!(the_last_admin_leaving_promotes_the_longest_standing_member);

async fn a_send_moves_its_chat_up_before_it_is_answered_and_checks_never_write(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let users = app.register_many("touch", 3).await;
    let mut metadata = app.metadata().await;
    let chat = metadata.create_chat(group(users[0], &users[1..2])).await.unwrap().into_inner().chat.unwrap();
    let reader = metadata.clone();
    let updated_at = || {
        let (mut reader, request) = (reader.clone(), as_user(users[0], pb::GetChatRequest { chat_id: chat.id }));
        async move { reader.get_chat(request).await.unwrap().into_inner().updated_at_ms }
    };

    for user_id in [users[1], users[2]] {
        metadata.check_membership(pb::CheckMembershipRequest { chat_id: chat.id, user_id }).await.unwrap();
    }
    assert_eq!(updated_at().await, chat.updated_at_ms, "a membership check moves nothing");

    let send =
        messages_pb::SendMessageRequest { chat_id: chat.id, content: "hi".into(), client_msg_id: None, reply_to: None };
    let sent = app.messages().await.send_message(as_user(users[1], send)).await.unwrap().into_inner();
    let at = sent.message.unwrap().timestamp_ms;
    assert!(at > chat.updated_at_ms);
    assert_eq!(updated_at().await, at, "the chat moved to its new message before the send was answered");

    let later = at + 60_000;
    let touch = |at_ms| pb::TouchChatsRequest {
        touches: vec![pb::ChatTouch { chat_id: chat.id, at_ms }, pb::ChatTouch { chat_id: chat.id, at_ms: at_ms - 5 }],
    };
    metadata.touch_chats(touch(later)).await.unwrap();
    assert_eq!(updated_at().await, later, "the latest time of a batch wins");
    metadata.touch_chats(touch(later - 1)).await.unwrap();
    assert_eq!(updated_at().await, later, "updated_at never moves back");
}
on_both_backends!(a_send_moves_its_chat_up_before_it_is_answered_and_checks_never_write);

async fn membership_changes_are_published_on_the_chats_subject(backend: Backend) {
    let app = spawn_deployment_on(backend).await;
    let users = app.register_many("events", 3).await;
    let mut metadata = app.metadata().await;
    let chat = metadata.create_chat(group(users[0], &users[1..2])).await.unwrap().into_inner().chat.unwrap();
    let mut events = app.chat_events(chat.id).await;

    let add = as_user(users[0], pb::AddParticipantsRequest { chat_id: chat.id, user_ids: vec![users[2]] });
    metadata.add_participants(add).await.unwrap();
    let remove = as_user(users[0], pb::RemoveParticipantRequest { chat_id: chat.id, user_id: users[1] });
    metadata.remove_participant(remove).await.unwrap();

    let timeout = std::time::Duration::from_secs(5);
    let added = tokio::time::timeout(timeout, events.next()).await.expect("an event").expect("a stream");
    assert!(
        matches!(added.kind, Some(Kind::ParticipantAdded(ref c)) if c.user_id == users[2] && c.by_user_id == users[0]),
        "{added:?}"
    );
    let removed = tokio::time::timeout(timeout, events.next()).await.expect("an event").expect("a stream");
    assert!(matches!(removed.kind, Some(Kind::ParticipantRemoved(ref c)) if c.user_id == users[1]), "{removed:?}");
}
on_both_backends!(membership_changes_are_published_on_the_chats_subject);
