//! `/api/v1/ws...`: the WebSocket of a chat, the user socket (every chat of
//! the user on one connection), presence (`online`) and `stats`.

pub mod after;
pub mod close;
pub mod frames;
pub mod socket;

use axum::{
    Json,
    extract::{
        State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, Uri, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use self::frames::Scope;
use crate::{
    error::{ApiError, ErrorBody},
    extract::{AppPath, AuthUser, bearer_token},
    state::AppState,
};

/// The token of a WebSocket request: `?token=`, `Authorization: Bearer`, or
/// the subprotocols `bearer, <JWT>`; and whether it came as a subprotocol.
fn token_of(query: &[(String, String)], headers: &HeaderMap) -> (Option<String>, bool) {
    if let Some((_, token)) = query.iter().find(|(key, _)| key == "token") {
        return (Some(token.clone()), false);
    }
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token) {
        return (Some(token.to_owned()), false);
    }
    let protocols: Vec<&str> = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    match protocols.iter().position(|p| p.eq_ignore_ascii_case("bearer")) {
        Some(at) => (protocols.get(at + 1).map(|token| (*token).to_owned()), true),
        None => (None, false),
    }
}

/// The chat's WebSocket (see API.md). Refusals are close codes after the
/// upgrade: 4401 bad token, 4403 not a participant, 4404 no such chat, 1008 bad `after`.
pub async fn connect(
    State(state): State<AppState>,
    AppPath(chat_id): AppPath<i64>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    upgrade_to(state, Scope::Chat(chat_id), &uri, &headers, upgrade)
}

/// The user socket: every chat of the user on one connection (see API.md).
/// Refusals are close codes after the upgrade: 4401 bad token, 1008 bad `after`.
pub async fn connect_user(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    upgrade_to(state, Scope::User, &uri, &headers, upgrade)
}

fn upgrade_to(
    state: AppState,
    scope: Scope,
    uri: &Uri,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::BadRequest(format!("a WebSocket upgrade is expected: {rejection}")).into_response();
        }
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|origin| state.ws.allows_origin(origin));
        if !allowed {
            return ApiError::Forbidden("this origin may not open a WebSocket (ALLOWED_ORIGINS)".into())
                .into_response();
        }
    }
    if state.hub.is_draining() {
        return ApiError::Unavailable("this gateway replica (it is shutting down)").into_response();
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let (token, as_subprotocol) = token_of(&query, headers);
    let after = query.iter().find(|(key, _)| key == "after").map(|(_, value)| value.clone());
    let request = socket::ConnectRequest { scope, token, after };
    let upgrade = if as_subprotocol { upgrade.protocols(["bearer"]) } else { upgrade };
    upgrade
        .max_message_size(socket::READ_LIMIT_BYTES)
        .max_frame_size(socket::READ_LIMIT_BYTES)
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_upgrade(move |ws| socket::serve(ws, state, request))
}

/// This replica's live connections and the cluster's.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub connections: usize,
    pub users: usize,
    pub chats: usize,
    /// This replica's name (`GATEWAY_REPLICA`).
    pub replica: String,
    pub cluster: ClusterStats,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStats {
    pub connections: i64,
    pub replicas: i64,
}

/// Live WebSocket connections: this replica's, and the cluster's totals.
#[utoipa::path(
    get, path = "/api/v1/ws/stats", tag = "websocket",
    responses((status = 200, body = Stats), (status = 401, description = "Missing or invalid token", body = ErrorBody))
)]
pub async fn stats(State(state): State<AppState>, _caller: AuthUser) -> Json<Stats> {
    let local = state.hub.local_stats();
    let (connections, replicas) = state.hub.cluster_stats();
    Json(Stats {
        connections: local.connections,
        users: local.users,
        chats: local.chats,
        replica: state.hub.replica().to_owned(),
        cluster: ClusterStats { connections, replicas },
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Online {
    pub chat_id: i64,
    pub online_user_ids: Vec<i64>,
    pub count: usize,
}

/// Users with at least one live socket to the chat, on any replica (participants only).
#[utoipa::path(
    get, path = "/api/v1/ws/chat/{chat_id}/online", tag = "websocket",
    params(("chat_id" = i64, Path)),
    responses(
        (status = 200, body = Online),
        (status = 403, description = "Not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
    )
)]
pub async fn online(
    State(state): State<AppState>,
    caller: AuthUser,
    AppPath(chat_id): AppPath<i64>,
) -> Result<Json<Online>, ApiError> {
    state.require_participant(chat_id, caller.user_id).await?;
    let online_user_ids = state.hub.online(chat_id).await;
    Ok(Json(Online { chat_id, count: online_user_ids.len(), online_user_ids }))
}
