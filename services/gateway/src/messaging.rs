//! What a client does, whichever way it asks (REST or a WebSocket frame):
//! one place for the rules around a send — the sender's write budget, the
//! call to message-store, what comes back.

use chat_proto::messages as pb;

use crate::{error::ApiError, extract::AuthUser, state::AppState};

const MESSAGES: &str = "the message-store service";

/// A failed call to message-store, as the client sees it.
pub fn messages_error(status: tonic::Status) -> ApiError {
    ApiError::from_status(status, MESSAGES)
}

/// Spends one of the caller's writes (a send or an edit); 429 past the limit.
pub fn spend_write(state: &AppState, caller: &AuthUser) -> Result<(), ApiError> {
    state.limits.writes.take(&caller.user_id, std::time::Instant::now()).map_err(ApiError::rate_limited)
}

/// A message to send, as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub chat_id: i64,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub reply_to: Option<i64>,
}

/// Stores a message as the caller; `(message, created)`: `created` is false
/// for a retry with a used `client_msg_id` (the original comes back).
pub async fn send(state: &AppState, caller: &AuthUser, outgoing: Outgoing) -> Result<(pb::Message, bool), ApiError> {
    spend_write(state, caller)?;
    let Outgoing { chat_id, content, client_msg_id, reply_to } = outgoing;
    let request = pb::SendMessageRequest { chat_id, content, client_msg_id, reply_to };
    let response =
        state.messages.clone().send_message(caller.call(request)).await.map_err(messages_error)?.into_inner();
    let message =
        response.message.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("SendMessage returned nothing")))?;
    Ok((message, response.created))
}

/// Moves the caller's read position in a chat forward to `seq` (REST and the
/// WebSocket `read` frame). Not charged to the write budget: a mark that does
/// not move changes nothing, and marks ride the writer's batches.
pub async fn mark_read(state: &AppState, caller: &AuthUser, chat_id: i64, seq: i64) -> Result<pb::ReadState, ApiError> {
    let request = pb::MarkReadRequest { chat_id, seq };
    Ok(state.messages.clone().mark_read(caller.call(request)).await.map_err(messages_error)?.into_inner())
}

/// Starts the read positions of users who just joined a chat at its last
/// seq, right after chat-metadata committed the join. The join stands if this
/// fails: those users are then taken to be at the last seq the first time
/// their read state is asked for (a warning says so).
pub async fn start_reading(state: &AppState, caller: &AuthUser, chat_id: i64, user_ids: Vec<i64>) {
    if user_ids.is_empty() {
        return;
    }
    let request = pb::StartReadingRequest { chat_id, user_ids };
    if let Err(status) = state.messages.clone().start_reading(caller.call(request)).await {
        tracing::warn!(chat_id, code = ?status.code(), message = status.message(), "cannot start the joiners' read positions");
    }
}
