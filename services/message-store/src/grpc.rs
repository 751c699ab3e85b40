//! The `MessageStoreService` gRPC layer: membership checks (asked of
//! chat-metadata for every read and write; [`MembershipCache`] for previews), the
//! dual-store write path, and the events published once a change is durable.

use std::{collections::HashMap, sync::Arc};

use chat_proto::{
    events::{ChatEvent, MessageDeleted, chat_event::Kind},
    messages::{self as pb, get_history_request, message_store_service_server::MessageStoreService},
    metadata::{CheckMembershipRequest, Membership, chat_metadata_service_client::ChatMetadataServiceClient},
};
use event_bus::EventPublisher;
use grpc_channel::GrpcChannel;
use internal_auth::{Actor, acting};
use tonic::{Request, Response, Status};

use crate::{
    content::{ContentStore, StoredContent},
    domain::{ClientMsgId, Content, Cursor, Message, MessageRow},
    error::MessageError,
    membership::MembershipCache,
    store::{MessageStore, NewMessage, Stored},
};

type Result<T> = std::result::Result<T, MessageError>;

/// The most chats one `GetLastMessages` call may ask about.
const MAX_LAST_MESSAGES: usize = 100;

/// How many locks order the changes of messages (striped by message id).
const MESSAGE_LOCKS: usize = 256;
/// How often an erase that failed after a delete is tried again, and how long apart.
const ERASE_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(200),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(30),
];

#[derive(Clone)]
pub struct MessageStoreGrpc {
    store: MessageStore,
    /// An edit and a delete of one message, each with its event, happen one
    /// after the other here: a `message_edited` is never published after the
    /// `message_deleted` of the same message by this replica.
    message_locks: Arc<[tokio::sync::Mutex<()>]>,
    contents: Arc<dyn ContentStore>,
    metadata: ChatMetadataServiceClient<GrpcChannel>,
    memberships: Arc<MembershipCache>,
    events: EventPublisher,
}

impl From<Message> for pb::Message {
    fn from(message: Message) -> Self {
        let row = message.row;
        Self {
            id: row.id,
            chat_id: row.chat_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username,
            content: if row.is_deleted { String::new() } else { message.content },
            timestamp_ms: row.created_at_ms,
            is_edited: row.edited_at_ms.is_some(),
            is_deleted: row.is_deleted,
            edited_at_ms: row.edited_at_ms,
            client_msg_id: row.client_msg_id,
        }
    }
}

fn unavailable(service: &str) -> impl Fn(Status) -> MessageError + '_ {
    move |status| {
        tracing::warn!(service, code = ?status.code(), message = status.message(), "call failed");
        MessageError::Unavailable(service.to_owned())
    }
}

impl MessageStoreGrpc {
    pub fn new(
        store: MessageStore,
        contents: Arc<dyn ContentStore>,
        metadata: ChatMetadataServiceClient<GrpcChannel>,
        memberships: Arc<MembershipCache>,
        events: EventPublisher,
    ) -> Self {
        let message_locks = (0..MESSAGE_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        Self { store, contents, metadata, memberships, events, message_locks }
    }

    fn message_lock(&self, message_id: i64) -> &tokio::sync::Mutex<()> {
        &self.message_locks[message_id.rem_euclid(MESSAGE_LOCKS as i64) as usize]
    }

    /// Erases a deleted message's content, trying again in the background
    /// when the content store fails (the delete itself is committed and
    /// announced already; a retried delete erases again too).
    async fn erase_deleted(&self, message_id: i64, content_id: String) {
        let Err(error) = self.contents.erase(&content_id).await else { return };
        tracing::warn!(%error, message_id, "cannot erase a deleted message's content; will retry");
        let contents = self.contents.clone();
        tokio::spawn(async move {
            for wait in ERASE_RETRIES {
                tokio::time::sleep(wait).await;
                match contents.erase(&content_id).await {
                    Ok(()) => return tracing::info!(message_id, "erased a deleted message's content on a retry"),
                    Err(error) => tracing::warn!(%error, message_id, "erase retry failed"),
                }
            }
            tracing::error!(message_id, content_id, "a deleted message's content could not be erased; delete it again");
        });
    }

    /// The caller's membership as chat-metadata has it now: what every send,
    /// read, edit and delete is decided on, so that a removal takes effect
    /// with its response (a membership event only reaches this service
    /// shortly after).
    async fn membership(&self, chat_id: i64, user_id: i64) -> Result<Membership> {
        self.check_membership(CheckMembershipRequest { chat_id, user_id, touch_at_ms: 0 }).await
    }

    async fn check_membership(&self, request: CheckMembershipRequest) -> Result<Membership> {
        let response =
            self.metadata.clone().check_membership(request).await.map_err(unavailable("the chat-metadata service"))?;
        Ok(response.into_inner())
    }

    /// The caller's membership, from the cache when it has it: only for
    /// last-message previews of chats the caller has just listed.
    async fn membership_cached(&self, chat_id: i64, user_id: i64) -> Result<Membership> {
        if let Some(membership) = self.memberships.get(chat_id, user_id) {
            return Ok(membership);
        }
        let epoch = self.memberships.epoch();
        let membership = self.membership(chat_id, user_id).await?;
        self.memberships.keep(epoch, chat_id, user_id, membership);
        Ok(membership)
    }

    /// The caller's membership of the chat: `NotFound` for no chat, `Forbidden` for an outsider.
    async fn require_participant(&self, chat_id: i64, user_id: i64) -> Result<Membership> {
        Self::participant_only(self.membership(chat_id, user_id).await?)
    }

    /// [`Self::require_participant`] for a send: a participant's chat also
    /// moves its `updated_at` to `at_ms`, in the same call to chat-metadata
    /// (before the message is stored: a send that then fails has moved the
    /// chat up a list, which is harmless).
    async fn require_sender(&self, chat_id: i64, user_id: i64, at_ms: i64) -> Result<Membership> {
        let request = CheckMembershipRequest { chat_id, user_id, touch_at_ms: at_ms };
        Self::participant_only(self.check_membership(request).await?)
    }

    fn participant_only(membership: Membership) -> Result<Membership> {
        if !membership.chat_exists {
            return Err(MessageError::NotFound("chat not found".into()));
        }
        if !membership.is_participant {
            return Err(MessageError::Forbidden("you are not a participant of this chat".into()));
        }
        Ok(membership)
    }

    /// A message the caller may see (a message of a chat they are not in does not exist for them).
    async fn visible_message(&self, message_id: i64, caller_id: i64) -> Result<(MessageRow, Membership)> {
        let row = self.store.by_id(message_id).await?.ok_or_else(crate::error::message_not_found)?;
        let membership = self.membership(row.chat_id, caller_id).await?;
        if !membership.is_participant {
            return Err(crate::error::message_not_found());
        }
        Ok((row, membership))
    }

    /// Rows with their content from the content store (one query for all).
    async fn with_contents(&self, rows: Vec<MessageRow>) -> Result<Vec<Message>> {
        let ids: Vec<String> = rows.iter().filter(|row| !row.is_deleted).map(|row| row.content_id.clone()).collect();
        let mut contents = self.contents.get_many(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let content = if row.is_deleted {
                    String::new()
                } else {
                    contents.remove(&row.content_id).unwrap_or_else(|| {
                        tracing::error!(
                            message_id = row.id,
                            content_id = row.content_id,
                            "content missing from the store"
                        );
                        String::new()
                    })
                };
                Message { row, content }
            })
            .collect())
    }

    async fn publish(&self, chat_id: i64, kind: Kind) {
        self.events.chat_event(ChatEvent { chat_id, at_ms: event_bus::now_ms(), kind: Some(kind) }).await;
    }

    async fn send(&self, sender: Actor, request: pb::SendMessageRequest) -> Result<(Message, bool)> {
        let content = Content::parse(request.content)?;
        let client_msg_id = ClientMsgId::parse(request.client_msg_id)?;
        let now = event_bus::now_ms();
        self.require_sender(request.chat_id, sender.user_id, now).await?;
        if let Some(key) = &client_msg_id
            && let Some(original) = self.store.by_client_msg_id(request.chat_id, sender.user_id, key.as_str()).await?
        {
            return Ok((self.with_contents(vec![original]).await?.remove(0), false));
        }
        // Content first, then the metadata that makes the message exist: a crash
        // between the two leaves unreferenced content, never a message without content.
        let stored = StoredContent {
            message_id: uuid::Uuid::new_v4().to_string(),
            chat_id: request.chat_id,
            sender_id: sender.user_id,
            content: content.as_str().to_owned(),
            timestamp_ms: now,
        };
        self.contents.put(&stored).await?;
        let new = NewMessage {
            chat_id: request.chat_id,
            sender_id: sender.user_id,
            sender_username: sender.username,
            content_id: stored.message_id.clone(),
            client_msg_id: client_msg_id.as_ref().map(|key| key.as_str().to_owned()),
            created_at_ms: now,
        };
        let row = match self.store.insert(&new).await {
            Ok(Stored::Created(row)) => row,
            Ok(Stored::Duplicate) => {
                self.erase_orphan(&stored.message_id).await;
                let key = client_msg_id.as_ref().map(ClientMsgId::as_str).unwrap_or_default();
                let original = self
                    .store
                    .by_client_msg_id(request.chat_id, sender.user_id, key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("a duplicate client_msg_id whose original is missing"))?;
                return Ok((self.with_contents(vec![original]).await?.remove(0), false));
            }
            Err(error) => {
                self.erase_orphan(&stored.message_id).await;
                return Err(error);
            }
        };
        let message = Message { row, content: stored.content };
        self.publish(message.row.chat_id, Kind::NewMessage(message.clone().into())).await;
        Ok((message, true))
    }

    /// Best effort: content whose metadata was never written is unreferenced anyway.
    async fn erase_orphan(&self, content_id: &str) {
        if let Err(error) = self.contents.erase(content_id).await {
            tracing::warn!(%error, content_id, "cannot erase orphaned content");
        }
    }
}

#[tonic::async_trait]
impl MessageStoreService for MessageStoreGrpc {
    #[tracing::instrument(skip_all)]
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> std::result::Result<Response<pb::SendMessageResponse>, Status> {
        let sender = internal_auth::actor(&request)?;
        let (message, created) = self.send(sender, request.into_inner()).await?;
        Ok(Response::new(pb::SendMessageResponse { message: Some(message.into()), created }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> std::result::Result<Response<pb::HistoryPage>, Status> {
        // Without an acting user: the gateway's fan-out read of a chat it serves.
        let reader = internal_auth::acting_user(&request).map(|actor| actor.user_id);
        let request = request.into_inner();
        if !(1..=100).contains(&request.limit) {
            return Err(MessageError::invalid("limit", "must be 1 to 100").into());
        }
        let cursor = match request.cursor {
            None => Cursor::Newest,
            Some(get_history_request::Cursor::BeforeId(id)) => Cursor::Before(id),
            Some(get_history_request::Cursor::AfterId(id)) => Cursor::After(id),
        };
        if let Some(reader) = reader {
            self.require_participant(request.chat_id, reader).await?;
        }
        let (rows, has_more) = self.store.page(request.chat_id, cursor, request.limit).await?;
        let messages = self.with_contents(rows).await?;
        Ok(Response::new(pb::HistoryPage { messages: messages.into_iter().map(Into::into).collect(), has_more }))
    }

    #[tracing::instrument(skip_all)]
    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> std::result::Result<Response<pb::Message>, Status> {
        let (caller_id, request) = acting(request)?;
        let content = Content::parse(request.content)?;
        let (mut row, _) = self.visible_message(request.message_id, caller_id).await?;
        if row.sender_id != caller_id {
            return Err(MessageError::Forbidden("only the sender may edit a message".into()).into());
        }
        let deleted = || Status::from(MessageError::Rule("a deleted message cannot be edited".into()));
        if row.is_deleted {
            return Err(deleted());
        }
        let _ordered = self.message_lock(row.id).lock().await;
        let now = event_bus::now_ms();
        // Content first (an update, never an insert: erased content stays erased), then the guarded mark.
        self.contents.replace(&row.content_id, content.as_str(), now).await.map_err(MessageError::from)?;
        if !self.store.mark_edited(row.id, now).await? {
            return Err(deleted());
        }
        row.edited_at_ms = Some(now);
        let message = Message { row, content: content.as_str().to_owned() };
        self.publish(message.row.chat_id, Kind::MessageEdited(message.clone().into())).await;
        Ok(Response::new(message.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> std::result::Result<Response<pb::DeleteMessageResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        let (row, membership) = self.visible_message(request.message_id, caller_id).await?;
        // A second delete is authorized like the first.
        if row.sender_id != caller_id && !membership.is_admin {
            return Err(MessageError::Forbidden("only the sender or a chat admin may delete a message".into()).into());
        }
        let deleted = {
            let _ordered = self.message_lock(row.id).lock().await;
            let deleted = !row.is_deleted && self.store.mark_deleted(row.id).await?;
            // Announced once committed, whatever becomes of the erase below.
            if deleted {
                let kind = Kind::MessageDeleted(MessageDeleted { message_id: row.id });
                self.publish(row.chat_id, kind).await;
            }
            deleted
        };
        // Erase even when it was already deleted: a failed erase is finished by the retry.
        self.erase_deleted(row.id, row.content_id).await;
        Ok(Response::new(pb::DeleteMessageResponse { deleted }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_last_messages(
        &self,
        request: Request<pb::GetLastMessagesRequest>,
    ) -> std::result::Result<Response<pb::GetLastMessagesResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        if request.chat_ids.len() > MAX_LAST_MESSAGES {
            return Err(MessageError::invalid("chat_ids", format!("at most {MAX_LAST_MESSAGES} chats per call")).into());
        }
        let checks = request.chat_ids.iter().map(|chat_id| self.membership_cached(*chat_id, caller_id));
        let memberships = futures::future::try_join_all(checks).await?;
        let visible: Vec<i64> = request
            .chat_ids
            .iter()
            .zip(memberships)
            .filter(|(_, membership)| membership.is_participant)
            .map(|(chat_id, _)| *chat_id)
            .collect();
        let rows = self.store.last_of(&visible).await?;
        let messages = self.with_contents(rows).await?;
        let mut by_chat: HashMap<i64, Message> = HashMap::new();
        for message in messages {
            by_chat.insert(message.row.chat_id, message);
        }
        let messages = visible.iter().filter_map(|chat_id| by_chat.remove(chat_id)).map(Into::into).collect();
        Ok(Response::new(pb::GetLastMessagesResponse { messages }))
    }
}
