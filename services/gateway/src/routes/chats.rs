//! `/api/v1/chats/...`: creating and listing chats, renaming, members and admins.

use std::collections::HashMap;

use axum::{Json, extract::State, http::StatusCode};
use chat_proto::{messages as messages_pb, metadata as pb};

use crate::{
    error::{ApiError, ErrorBody},
    extract::{AppJson, AppPath, AppQuery, AuthUser},
    messaging,
    models::{
        AddParticipantsBody, Chat, ChatType, CreateChatBody, ListParams, Participant, RemoveParticipantParams,
        SetAdminBody, UpdateChatBody, page,
    },
    state::AppState,
};

const METADATA: &str = "the chat-metadata service";
const MESSAGES: &str = "the message-store service";

fn metadata_error(status: tonic::Status) -> ApiError {
    ApiError::from_status(status, METADATA)
}

/// The chats as the API shows them, each with its newest message and the
/// caller's read state (one call for all).
async fn with_summaries(state: &AppState, caller: &AuthUser, chats: Vec<pb::Chat>) -> Result<Vec<Chat>, ApiError> {
    let chat_ids: Vec<i64> = chats.iter().filter(|chat| chat.is_active).map(|chat| chat.id).collect();
    let mut summaries: HashMap<i64, messages_pb::ChatSummary> = if chat_ids.is_empty() {
        HashMap::new()
    } else {
        let request = messages_pb::GetChatSummariesRequest { chat_ids };
        let response = state.messages.clone().get_chat_summaries(caller.call(request)).await;
        let summaries = response.map_err(|status| ApiError::from_status(status, MESSAGES))?.into_inner().chats;
        summaries.into_iter().map(|summary| (summary.chat_id, summary)).collect()
    };
    Ok(chats
        .into_iter()
        .map(|chat| {
            let summary = summaries.remove(&chat.id);
            Chat::new(chat, summary)
        })
        .collect())
}

async fn one_chat(state: &AppState, caller: &AuthUser, chat: pb::Chat) -> Result<Json<Chat>, ApiError> {
    let mut chats = with_summaries(state, caller, vec![chat]).await?;
    chats.pop().map(Json).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a chat went missing")))
}

/// Create a direct chat (found again if it exists: 200) or a group (201).
#[utoipa::path(
    post, path = "/api/v1/chats/", tag = "chats",
    request_body = CreateChatBody,
    responses(
        (status = 201, description = "Created", body = Chat),
        (status = 200, description = "The pair's existing direct chat", body = Chat),
        (status = 400, description = "Direct chat with yourself; more than 100 members", body = ErrorBody),
        (status = 404, description = "Unknown user id", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    AppJson(body): AppJson<CreateChatBody>,
) -> Result<(StatusCode, Json<Chat>), ApiError> {
    let (chat_type, name) = match body.chat_type {
        ChatType::Direct => (pb::ChatType::Direct, None),
        ChatType::Group => (pb::ChatType::Group, body.name),
    };
    let request = pb::CreateChatRequest { chat_type: chat_type as i32, name, participant_ids: body.participant_ids };
    let response = state.metadata.clone().create_chat(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    let chat = response.chat.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("CreateChat returned no chat")))?;
    let status = if response.created { StatusCode::CREATED } else { StatusCode::OK };
    messaging::start_reading(&state, &caller, chat.id, response.joined_user_ids).await;
    Ok((status, one_chat(&state, &caller, chat).await?))
}

/// The caller's chats, most recently active first.
#[utoipa::path(
    get, path = "/api/v1/chats/", tag = "chats",
    params(ListParams),
    responses((status = 200, body = [Chat]), (status = 422, description = "Parameter out of range", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Vec<Chat>>, ApiError> {
    let (limit, offset) = page(params.limit, params.offset, 50)?;
    let request = pb::ListChatsRequest { limit, offset };
    let chats =
        state.metadata.clone().list_chats(caller.call(request)).await.map_err(metadata_error)?.into_inner().chats;
    Ok(Json(with_summaries(&state, &caller, chats).await?))
}

/// One chat, for its participants.
#[utoipa::path(
    get, path = "/api/v1/chats/{chat_id}", tag = "chats",
    params(("chat_id" = i64, Path)),
    responses(
        (status = 200, body = Chat),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
) -> Result<Json<Chat>, ApiError> {
    let request = pb::GetChatRequest { chat_id };
    let chat = state.metadata.clone().get_chat(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    one_chat(&state, &caller, chat).await
}

/// Rename a group (admins only).
#[utoipa::path(
    put, path = "/api/v1/chats/{chat_id}", tag = "chats",
    params(("chat_id" = i64, Path)),
    request_body = UpdateChatBody,
    responses(
        (status = 200, body = Chat),
        (status = 400, description = "A direct chat", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Name out of range", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
    AppJson(body): AppJson<UpdateChatBody>,
) -> Result<Json<Chat>, ApiError> {
    let request = pb::UpdateChatRequest { chat_id, name: body.name };
    let chat = state.metadata.clone().update_chat(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    one_chat(&state, &caller, chat).await
}

/// Leave the chat. The last admin's leaving makes the longest-standing member admin.
#[utoipa::path(
    delete, path = "/api/v1/chats/{chat_id}", tag = "chats",
    params(("chat_id" = i64, Path)),
    responses(
        (status = 204, description = "Left"),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
    )
)]
pub async fn leave(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let request = pb::LeaveChatRequest { chat_id };
    state.metadata.clone().leave_chat(caller.call(request)).await.map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The chat's participants.
#[utoipa::path(
    get, path = "/api/v1/chats/{chat_id}/participants", tag = "chats",
    params(("chat_id" = i64, Path)),
    responses((status = 200, body = [Participant]), (status = 403, description = "Not a participant", body = ErrorBody))
)]
pub async fn participants(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
) -> Result<Json<Vec<Participant>>, ApiError> {
    let request = pb::ListParticipantsRequest { chat_id };
    let list =
        state.metadata.clone().list_participants(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    Ok(Json(list.participants.into_iter().map(Into::into).collect()))
}

/// Add users to a group (admins only); all participants after the change.
#[utoipa::path(
    post, path = "/api/v1/chats/{chat_id}/participants", tag = "chats",
    params(("chat_id" = i64, Path)),
    request_body = AddParticipantsBody,
    responses(
        (status = 200, body = [Participant]),
        (status = 400, description = "A direct chat, or more than 100 members", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown user id (nobody added)", body = ErrorBody),
    )
)]
pub async fn add_participants(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
    AppJson(body): AppJson<AddParticipantsBody>,
) -> Result<Json<Vec<Participant>>, ApiError> {
    let request = pb::AddParticipantsRequest { chat_id, user_ids: body.user_ids };
    let list =
        state.metadata.clone().add_participants(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    messaging::start_reading(&state, &caller, chat_id, list.joined_user_ids).await;
    Ok(Json(list.participants.into_iter().map(Into::into).collect()))
}

/// Remove a participant from a group: admins anyone, members themselves.
#[utoipa::path(
    delete, path = "/api/v1/chats/{chat_id}/participants", tag = "chats",
    params(("chat_id" = i64, Path), RemoveParticipantParams),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A direct chat", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn remove_participant(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
    AppQuery(params): AppQuery<RemoveParticipantParams>,
) -> Result<StatusCode, ApiError> {
    let request = pb::RemoveParticipantRequest { chat_id, user_id: params.user_id };
    state.metadata.clone().remove_participant(caller.call(request)).await.map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Promote or demote a participant (admins only; the last admin cannot step down).
#[utoipa::path(
    put, path = "/api/v1/chats/{chat_id}/participants/{user_id}", tag = "chats",
    params(("chat_id" = i64, Path), ("user_id" = i64, Path)),
    request_body = SetAdminBody,
    responses(
        (status = 200, body = Participant),
        (status = 400, description = "The last admin stepping down", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn set_admin(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath((chat_id, user_id)): AppPath<(i64, i64)>,
    AppJson(body): AppJson<SetAdminBody>,
) -> Result<Json<Participant>, ApiError> {
    let request = pb::SetAdminRequest { chat_id, user_id, is_admin: body.is_admin };
    let participant =
        state.metadata.clone().set_admin(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    Ok(Json(participant.into()))
}
