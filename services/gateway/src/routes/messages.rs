//! `/api/v1/messages/...`: sending, history, edit (and its history) and delete.

use axum::{Json, extract::State, http::StatusCode};
use chat_proto::messages::{self as pb, get_history_request::Cursor};

use crate::{
    error::{ApiError, ErrorBody},
    extract::{AppJson, AppPath, AppQuery, AuthUser},
    messaging::{self, messages_error},
    models::{EditMessageBody, HistoryPage, HistoryParams, Message, MessageVersion, SendMessageBody, page},
    state::AppState,
};

/// Send a message; delivered as `new_message` on every live socket of the chat.
#[utoipa::path(
    post, path = "/api/v1/messages/", tag = "messages",
    request_body = SendMessageBody,
    responses(
        (status = 201, description = "Stored", body = Message),
        (status = 200, description = "A retry with a used client_msg_id: the original", body = Message),
        (status = 400, description = "reply_to is not a message of this chat (nothing stored)", body = ErrorBody),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 422, description = "Content empty, blank or over 10,000 characters", body = ErrorBody),
        (status = 429, description = "Over the sender's write rate (MESSAGE_RATE_PER_SECOND, MESSAGE_BURST); see Retry-After", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    caller: AuthUser,
    AppJson(body): AppJson<SendMessageBody>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let outgoing = messaging::Outgoing {
        chat_id: body.chat_id,
        content: body.content,
        client_msg_id: body.client_msg_id,
        reply_to: body.reply_to,
    };
    let (message, created) = messaging::send(&state, &caller, outgoing).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(message.into())))
}

/// A page of a chat's history, oldest to newest.
#[utoipa::path(
    get, path = "/api/v1/messages/chat/{chat_id}", tag = "messages",
    params(("chat_id" = i64, Path), HistoryParams),
    responses(
        (status = 200, body = HistoryPage),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 422, description = "before and after together, or limit out of range", body = ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
    AppQuery(params): AppQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let (limit, _) = page(params.limit, None, 50)?;
    let cursor = match (params.before, params.after) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("before", "give before or after, not both")),
        (Some(before), None) if before < 0 => return Err(ApiError::invalid("before", "must be 0 or more")),
        (Some(before), None) => Some(Cursor::BeforeId(before)),
        (None, Some(after)) if after < 0 => return Err(ApiError::invalid("after", "must be 0 or more")),
        (None, Some(after)) => Some(Cursor::AfterId(after)),
        (None, None) => None,
    };
    let request = pb::GetHistoryRequest { chat_id, limit, cursor };
    let page = state.messages.clone().get_history(caller.call(request)).await.map_err(messages_error)?.into_inner();
    Ok(Json(HistoryPage { messages: page.messages.into_iter().map(Into::into).collect(), has_more: page.has_more }))
}

/// Edit a message (sender only); broadcast as `message_edited`.
#[utoipa::path(
    put, path = "/api/v1/messages/{message_id}", tag = "messages",
    params(("message_id" = i64, Path)),
    request_body = EditMessageBody,
    responses(
        (status = 200, body = Message),
        (status = 400, description = "The message is deleted", body = ErrorBody),
        (status = 403, description = "Not the sender", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 422, description = "Content out of range", body = ErrorBody),
        (status = 429, description = "Over the sender's write rate (edits count as writes); see Retry-After", body = ErrorBody),
    )
)]
pub async fn edit(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(message_id): AppPath<i64>,
    AppJson(body): AppJson<EditMessageBody>,
) -> Result<Json<Message>, ApiError> {
    messaging::spend_write(&state, &caller)?;
    let request = pb::EditMessageRequest { message_id, content: body.content };
    let message = state.messages.clone().edit_message(caller.call(request)).await.map_err(messages_error)?.into_inner();
    Ok(Json(message.into()))
}

/// Every version of a message, oldest first: the original, then one per edit;
/// the last is the current text. A deleted message's history is erased with it: `[]`.
#[utoipa::path(
    get, path = "/api/v1/messages/{message_id}/edits", tag = "messages",
    params(("message_id" = i64, Path)),
    responses(
        (status = 200, body = [MessageVersion]),
        (status = 403, description = "Not a participant of the message's chat", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
    )
)]
pub async fn edits(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(message_id): AppPath<i64>,
) -> Result<Json<Vec<MessageVersion>>, ApiError> {
    let request = pb::GetEditsRequest { message_id };
    let history = state.messages.clone().get_edits(caller.call(request)).await.map_err(messages_error)?.into_inner();
    Ok(Json(history.versions.into_iter().map(Into::into).collect()))
}

/// Delete a message (sender or chat admin); its content is erased. Broadcast as `message_deleted`.
#[utoipa::path(
    delete, path = "/api/v1/messages/{message_id}", tag = "messages",
    params(("message_id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted (or already deleted)"),
        (status = 403, description = "Neither the sender nor an admin", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(message_id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let request = pb::DeleteMessageRequest { message_id };
    state.messages.clone().delete_message(caller.call(request)).await.map_err(messages_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// React to a message with an emoji (the path segment, percent-encoded);
/// broadcast as `reaction_added` when it is new.
#[utoipa::path(
    put, path = "/api/v1/messages/{message_id}/reactions/{emoji}", tag = "messages",
    params(
        ("message_id" = i64, Path),
        ("emoji" = String, Path, description = "Percent-encoded: 1–32 Unicode scalar values, no whitespace or control characters"),
    ),
    responses(
        (status = 200, description = "The message with its reactions (the same if the caller had reacted so already)", body = Message),
        (status = 400, description = "The message is deleted, or would get a 21st distinct emoji", body = ErrorBody),
        (status = 403, description = "Not a participant of the message's chat", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 422, description = "Not an emoji as described", body = ErrorBody),
        (status = 429, description = "Over the caller's write rate (reactions count as writes); see Retry-After", body = ErrorBody),
    )
)]
pub async fn react(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath((message_id, emoji)): AppPath<(i64, String)>,
) -> Result<Json<Message>, ApiError> {
    messaging::spend_write(&state, &caller)?;
    let request = pb::ReactionRequest { message_id, emoji };
    let response = state.messages.clone().add_reaction(caller.call(request)).await.map_err(messages_error)?;
    let message = response
        .into_inner()
        .message
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AddReaction returned no message")))?;
    Ok(Json(message.into()))
}

/// Take back the caller's reaction; broadcast as `reaction_removed` when there was one.
#[utoipa::path(
    delete, path = "/api/v1/messages/{message_id}/reactions/{emoji}", tag = "messages",
    params(
        ("message_id" = i64, Path),
        ("emoji" = String, Path, description = "Percent-encoded, as for PUT"),
    ),
    responses(
        (status = 204, description = "Not reacting so (any more); also when there was nothing to take back or the message is deleted"),
        (status = 403, description = "Not a participant of the message's chat", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 422, description = "Not an emoji as described", body = ErrorBody),
        (status = 429, description = "Over the caller's write rate; see Retry-After", body = ErrorBody),
    )
)]
pub async fn unreact(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath((message_id, emoji)): AppPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    messaging::spend_write(&state, &caller)?;
    let request = pb::ReactionRequest { message_id, emoji };
    state.messages.clone().remove_reaction(caller.call(request)).await.map_err(messages_error)?;
    Ok(StatusCode::NO_CONTENT)
}
