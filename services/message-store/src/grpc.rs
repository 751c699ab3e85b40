//! The `MessageStoreService` gRPC layer: who may do what (membership asked
//! of chat-metadata in batches, [`MembershipChecks`]; [`MembershipCache`] for
//! previews), and the changes handed to the [`Writer`], which commits them in
//! batches and announces them.

use std::{collections::HashMap, sync::Arc};

use chat_proto::{
    messages::{self as pb, get_history_request, message_store_service_server::MessageStoreService},
    metadata::Membership,
};
use internal_auth::{Actor, acting};
use tonic::{Request, Response, Status};

use crate::{
    checks::MembershipChecks,
    content::ContentStore,
    domain::{ClientMsgId, Content, Cursor, Message, MessageRow},
    error::MessageError,
    membership::MembershipCache,
    reactions::{self, Emoji, MAX_EMOJI, Reacted},
    reading::{self, ReadState},
    store::MessageStore,
    writer::{Change, Contents, NewMessage, Outcome, Writer},
};

type Result<T> = std::result::Result<T, MessageError>;

/// The most chats (or users) one `GetChatSummaries`, `StartReading` or `GetReadPositions` call may name.
const MAX_CHATS_PER_CALL: usize = 100;
/// The most chats one `CountUnread` call may name.
const MAX_UNREAD_CHATS: usize = 10_000;

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
    writer: Writer,
    contents: Contents,
    checks: MembershipChecks,
    memberships: Arc<MembershipCache>,
}

fn unexpected(outcome: &Outcome) -> MessageError {
    MessageError::Unexpected(anyhow::anyhow!("the writer answered {outcome:?} to another change"))
}

impl MessageStoreGrpc {
    pub fn new(
        store: MessageStore,
        writer: Writer,
        contents: Contents,
        checks: MembershipChecks,
        memberships: Arc<MembershipCache>,
    ) -> Self {
        Self { store, writer, contents, checks, memberships }
    }

    fn content_store(&self) -> &dyn ContentStore {
        self.contents.store().as_ref()
    }

    /// Erases a deleted message's content kept in another store, trying
    /// again in the background when it fails (the delete itself is committed
    /// and announced already; a retried delete erases again too). SQL content
    /// was erased in the delete's transaction.
    async fn erase_deleted(&self, message_id: i64, content_id: String) {
        let Contents::Separate(contents) = &self.contents else { return };
        let Err(error) = contents.erase(&content_id).await else { return };
        tracing::warn!(%error, message_id, "cannot erase a deleted message's content; will retry");
        let contents = contents.clone();
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
        self.checks.check(chat_id, user_id).await
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

    /// A message of a chat the caller is in: `NotFound` for no such message,
    /// `Forbidden` for someone else's chat's (as for chats).
    async fn participant_message(&self, message_id: i64, caller_id: i64) -> Result<MessageRow> {
        let row = self.store.by_id(message_id).await?.ok_or_else(crate::error::message_not_found)?;
        if !self.membership(row.chat_id, caller_id).await?.is_participant {
            return Err(MessageError::Forbidden("you are not a participant of this message's chat".into()));
        }
        Ok(row)
    }

    /// The chats of these that the caller is in (memberships from the cache:
    /// the gateway has just listed them for the caller from chat-metadata).
    async fn chats_of_caller(&self, chat_ids: &[i64], caller_id: i64) -> Result<Vec<i64>> {
        let checks = chat_ids.iter().map(|chat_id| self.membership_cached(*chat_id, caller_id));
        let memberships = futures::future::try_join_all(checks).await?;
        Ok(chat_ids
            .iter()
            .zip(memberships)
            .filter(|(_, membership)| membership.is_participant)
            .map(|(chat_id, _)| *chat_id)
            .collect())
    }

    async fn react(&self, caller_id: i64, request: pb::ReactionRequest, add: bool) -> Result<pb::ReactionResponse> {
        let emoji = Emoji::parse(request.emoji)?;
        let row = self.participant_message(request.message_id, caller_id).await?;
        let change = Change::React {
            chat_id: row.chat_id,
            message_id: row.id,
            user_id: caller_id,
            emoji: emoji.as_str().to_owned(),
            add,
        };
        let reacted = match self.writer.write(change).await? {
            Outcome::Reacted(reacted) => reacted,
            other => return Err(unexpected(&other)),
        };
        let refused = match reacted {
            Reacted::Deleted if add => Some("a deleted message takes no reactions".to_owned()),
            Reacted::Full => Some(format!("a message holds at most {MAX_EMOJI} distinct emoji")),
            _ => None,
        };
        if let Some(refused) = refused {
            return Err(MessageError::Rule(refused));
        }
        let message = if add {
            let row = self.store.by_id(row.id).await?.ok_or_else(crate::error::message_not_found)?;
            Some(self.with_content(row).await?.into())
        } else {
            None
        };
        Ok(pb::ReactionResponse { message, changed: reacted == Reacted::Changed })
    }

    /// Rows with their content from the content store and their reactions
    /// (one query each for all of them).
    async fn with_contents(&self, rows: Vec<MessageRow>) -> Result<Vec<Message>> {
        let ids: Vec<String> = rows.iter().filter(|row| !row.is_deleted).map(|row| row.content_id.clone()).collect();
        let mut contents = self.content_store().get_many(&ids).await?;
        let standing: Vec<i64> = rows.iter().filter(|row| !row.is_deleted).map(|row| row.id).collect();
        let mut reactions = reactions::of_messages(&self.store.db().pool, &standing).await?;
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
                let reactions = reactions.remove(&row.id).unwrap_or_default();
                Message { row, content, reactions }
            })
            .collect())
    }

    /// One row with its content.
    async fn with_content(&self, row: MessageRow) -> Result<Message> {
        let mut messages = self.with_contents(vec![row]).await?;
        messages.pop().ok_or_else(|| MessageError::Unexpected(anyhow::anyhow!("a message without its row")))
    }

    async fn send(&self, sender: Actor, request: pb::SendMessageRequest) -> Result<(Message, bool)> {
        let content = Content::parse(request.content)?;
        let client_msg_id = ClientMsgId::parse(request.client_msg_id)?;
        let now = event_bus::now_ms();
        self.require_participant(request.chat_id, sender.user_id).await?;
        let new = NewMessage {
            chat_id: request.chat_id,
            sender_id: sender.user_id,
            sender_username: sender.username,
            content_id: uuid::Uuid::new_v4().to_string(),
            content: content.into_string(),
            client_msg_id: client_msg_id.map(ClientMsgId::into_string),
            created_at_ms: now,
            reply_to: request.reply_to,
        };
        match self.writer.write(Change::Send(new)).await? {
            Outcome::Created(message) => Ok((message, true)),
            // A retry: the original, as stored.
            Outcome::Repeated(original) => Ok((self.with_content(original).await?, false)),
            other => Err(unexpected(&other)),
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
        let (row, _) = self.visible_message(request.message_id, caller_id).await?;
        if row.sender_id != caller_id {
            return Err(MessageError::Forbidden("only the sender may edit a message".into()).into());
        }
        let deleted = || Status::from(MessageError::Rule("a deleted message cannot be edited".into()));
        if row.is_deleted {
            return Err(deleted());
        }
        let now = event_bus::now_ms();
        // Content kept elsewhere goes first (an update, never an insert: erased
        // content stays erased); the writer's guarded mark then decides.
        if let Contents::Separate(contents) = &self.contents {
            contents.replace(&row.content_id, content.as_str(), now).await.map_err(MessageError::from)?;
        }
        match self.writer.write(Change::Edit { row, content: content.into_string(), at_ms: now }).await? {
            Outcome::Edited(Some(message)) => Ok(Response::new(message.into())),
            Outcome::Edited(None) => Err(deleted()),
            other => Err(unexpected(&other).into()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn add_reaction(
        &self,
        request: Request<pb::ReactionRequest>,
    ) -> std::result::Result<Response<pb::ReactionResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        Ok(Response::new(self.react(caller_id, request, true).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_reaction(
        &self,
        request: Request<pb::ReactionRequest>,
    ) -> std::result::Result<Response<pb::ReactionResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        Ok(Response::new(self.react(caller_id, request, false).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> std::result::Result<Response<pb::ReadState>, Status> {
        let (caller_id, request) = acting(request)?;
        if request.seq < 0 {
            return Err(MessageError::invalid("seq", "must be 0 or more").into());
        }
        self.require_participant(request.chat_id, caller_id).await?;
        let change = Change::Read { chat_id: request.chat_id, user_id: caller_id, seq: request.seq };
        let moved = match self.writer.write(change).await? {
            Outcome::Read { moved, .. } => moved,
            other => return Err(unexpected(&other).into()),
        };
        let state =
            reading::states(self.store.db(), caller_id, &[request.chat_id]).await.map_err(MessageError::from)?;
        let state =
            state.first().copied().unwrap_or(ReadState { chat_id: request.chat_id, last_read_seq: 0, unread_count: 0 });
        Ok(Response::new(pb::ReadState {
            chat_id: request.chat_id,
            user_id: caller_id,
            last_read_seq: state.last_read_seq,
            unread_count: state.unread_count,
            moved,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn start_reading(
        &self,
        request: Request<pb::StartReadingRequest>,
    ) -> std::result::Result<Response<pb::StartReadingResponse>, Status> {
        // Called by the gateway for the user who made the join (the creator, the admin, the returning user).
        let (caller_id, request) = acting(request)?;
        if request.user_ids.len() > MAX_CHATS_PER_CALL {
            return Err(MessageError::invalid("user_ids", format!("at most {MAX_CHATS_PER_CALL} per call")).into());
        }
        self.require_participant(request.chat_id, caller_id).await?;
        match self.writer.write(Change::StartReading { chat_id: request.chat_id, user_ids: request.user_ids }).await? {
            Outcome::Started => Ok(Response::new(pb::StartReadingResponse {})),
            other => Err(unexpected(&other).into()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn get_read_positions(
        &self,
        request: Request<pb::GetReadPositionsRequest>,
    ) -> std::result::Result<Response<pb::ReadPositions>, Status> {
        let (caller_id, request) = acting(request)?;
        if request.user_ids.len() > MAX_CHATS_PER_CALL {
            return Err(MessageError::invalid("user_ids", format!("at most {MAX_CHATS_PER_CALL} per call")).into());
        }
        self.require_participant(request.chat_id, caller_id).await?;
        let positions = reading::positions(self.store.db(), request.chat_id, &request.user_ids)
            .await
            .map_err(MessageError::from)?;
        let positions =
            positions.into_iter().map(|(user_id, last_read_seq)| pb::ReadPosition { user_id, last_read_seq }).collect();
        Ok(Response::new(pb::ReadPositions { positions }))
    }

    #[tracing::instrument(skip_all)]
    async fn count_unread(
        &self,
        request: Request<pb::CountUnreadRequest>,
    ) -> std::result::Result<Response<pb::UnreadTotals>, Status> {
        let (caller_id, request) = acting(request)?;
        if request.chat_ids.len() > MAX_UNREAD_CHATS {
            return Err(MessageError::invalid("chat_ids", format!("at most {MAX_UNREAD_CHATS} chats per call")).into());
        }
        let mut totals = pb::UnreadTotals::default();
        for chunk in request.chat_ids.chunks(MAX_CHATS_PER_CALL) {
            let chats = self.chats_of_caller(chunk, caller_id).await?;
            for state in reading::states(self.store.db(), caller_id, &chats).await.map_err(MessageError::from)? {
                totals.total_unread += state.unread_count;
                totals.chats += i64::from(state.unread_count > 0);
            }
        }
        Ok(Response::new(totals))
    }

    #[tracing::instrument(skip_all)]
    async fn get_edits(
        &self,
        request: Request<pb::GetEditsRequest>,
    ) -> std::result::Result<Response<pb::EditHistory>, Status> {
        let (caller_id, request) = acting(request)?;
        let row = self.participant_message(request.message_id, caller_id).await?;
        // A deleted message's history went with its content.
        let versions = if row.is_deleted {
            Vec::new()
        } else {
            self.content_store().versions(&row.content_id).await.map_err(MessageError::from)?
        };
        let versions = versions.into_iter().map(|v| pb::Version { content: v.content, at_ms: v.at_ms }).collect();
        Ok(Response::new(pb::EditHistory { versions }))
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
        let (id, content_id) = (row.id, row.content_id.clone());
        let deleted = if row.is_deleted {
            false
        } else {
            match self.writer.write(Change::Delete { row }).await? {
                Outcome::Deleted(deleted) => deleted,
                other => return Err(unexpected(&other).into()),
            }
        };
        // Erase even when it was already deleted: a failed erase is finished by the retry.
        self.erase_deleted(id, content_id).await;
        Ok(Response::new(pb::DeleteMessageResponse { deleted }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_chat_summaries(
        &self,
        request: Request<pb::GetChatSummariesRequest>,
    ) -> std::result::Result<Response<pb::ChatSummaries>, Status> {
        let (caller_id, request) = acting(request)?;
        if request.chat_ids.len() > MAX_CHATS_PER_CALL {
            return Err(
                MessageError::invalid("chat_ids", format!("at most {MAX_CHATS_PER_CALL} chats per call")).into()
            );
        }
        let visible = self.chats_of_caller(&request.chat_ids, caller_id).await?;
        let (rows, states) = tokio::try_join!(self.store.last_of(&visible), async {
            reading::states(self.store.db(), caller_id, &visible).await.map_err(MessageError::from)
        })?;
        let mut last: HashMap<i64, Message> =
            self.with_contents(rows).await?.into_iter().map(|message| (message.row.chat_id, message)).collect();
        let chats = states
            .into_iter()
            .map(|state| pb::ChatSummary {
                chat_id: state.chat_id,
                last_message: last.remove(&state.chat_id).map(Into::into),
                last_read_seq: state.last_read_seq,
                unread_count: state.unread_count,
            })
            .collect();
        Ok(Response::new(pb::ChatSummaries { chats }))
    }
}
