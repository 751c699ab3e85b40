//! Read state: `PUT`/`GET /api/v1/chats/{id}/read` and `GET /api/v1/users/me/unread`
//! (positions and counts are message-store's, see its `reading` module).

use axum::{Json, extract::State};
use chat_proto::{messages as messages_pb, metadata as metadata_pb};

use crate::{
    error::{ApiError, ErrorBody},
    extract::{AppJson, AppPath, AuthUser},
    messaging::{self, messages_error},
    models::{ReadBody, ReadPosition, ReadState, UnreadTotals},
    state::AppState,
};

fn metadata_error(status: tonic::Status) -> ApiError {
    ApiError::from_status(status, "the chat-metadata service")
}

/// Mark the chat read up to `seq`: forward only, clamped to the last message;
/// a move is broadcast as `read` (the reader's other devices included).
#[utoipa::path(
    put, path = "/api/v1/chats/{chat_id}/read", tag = "chats",
    params(("chat_id" = i64, Path)),
    request_body = ReadBody,
    responses(
        (status = 200, description = "The caller's read state afterwards (unchanged for a lower seq)", body = ReadState),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 422, description = "seq missing, not an integer, or negative", body = ErrorBody),
    )
)]
pub async fn mark(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
    AppJson(body): AppJson<ReadBody>,
) -> Result<Json<ReadState>, ApiError> {
    if body.seq < 0 {
        return Err(ApiError::invalid("seq", "must be 0 or more"));
    }
    Ok(Json(messaging::mark_read(&state, &caller, chat_id, body.seq).await?.into()))
}

/// Every current participant's read position, by user id (for "seen by").
#[utoipa::path(
    get, path = "/api/v1/chats/{chat_id}/read", tag = "chats",
    params(("chat_id" = i64, Path)),
    responses(
        (status = 200, body = [ReadPosition]),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
    )
)]
pub async fn positions(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
) -> Result<Json<Vec<ReadPosition>>, ApiError> {
    let request = metadata_pb::ListParticipantsRequest { chat_id };
    let list =
        state.metadata.clone().list_participants(caller.call(request)).await.map_err(metadata_error)?.into_inner();
    let user_ids = list.participants.iter().map(|participant| participant.user_id).collect();
    let request = messages_pb::GetReadPositionsRequest { chat_id, user_ids };
    let positions =
        state.messages.clone().get_read_positions(caller.call(request)).await.map_err(messages_error)?.into_inner();
    Ok(Json(
        positions
            .positions
            .into_iter()
            .map(|position| ReadPosition { user_id: position.user_id, last_read_seq: position.last_read_seq })
            .collect(),
    ))
}

/// The caller's unread messages over all their chats (for an app badge).
#[utoipa::path(
    get, path = "/api/v1/users/me/unread", tag = "users",
    responses((status = 200, body = UnreadTotals))
)]
pub async fn unread(State(state): State<AppState>, caller: AuthUser) -> Result<Json<UnreadTotals>, ApiError> {
    let request = metadata_pb::ListChatIdsRequest {};
    let chat_ids =
        state.metadata.clone().list_chat_ids(caller.call(request)).await.map_err(metadata_error)?.into_inner().chat_ids;
    if chat_ids.is_empty() {
        return Ok(Json(UnreadTotals { total_unread: 0, chats: 0 }));
    }
    let request = messages_pb::CountUnreadRequest { chat_ids };
    let totals = state.messages.clone().count_unread(caller.call(request)).await.map_err(messages_error)?.into_inner();
    Ok(Json(UnreadTotals { total_unread: totals.total_unread, chats: totals.chats }))
}
