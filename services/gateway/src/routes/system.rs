//! `/`, `/health`, `/ready` and `/api/v1/info`.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The service's version, from the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The most characters (Unicode scalar values) a message may have.
pub const MAX_MESSAGE_LENGTH: u32 = 10_000;
/// The most members a group may have, its creator included.
pub const MAX_GROUP_MEMBERS: u32 = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct Root {
    #[schema(example = "chat-service")]
    pub name: &'static str,
    pub version: &'static str,
    #[schema(example = "/docs")]
    pub docs: &'static str,
}

/// The service's name, version and where its docs are.
#[utoipa::path(get, path = "/", tag = "system", responses((status = 200, body = Root)))]
pub async fn root() -> Json<Root> {
    Json(Root { name: "chat-service", version: VERSION, docs: "/docs" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` when a dependency fails its check, or `draining` (`/ready` of a replica shutting down).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each dependency: `ok` or `unavailable`.
    pub checks: BTreeMap<&'static str, &'static str>,
}

/// A health answer; a 503 says when to ask again (`Retry-After`), like every 503 here.
fn answer(status: StatusCode, health: Health) -> Response {
    let mut response = (status, Json(health)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn check(state: &AppState) -> Response {
    let checks: BTreeMap<_, _> = state
        .dependency_checks()
        .await
        .into_iter()
        .map(|(name, ok)| (name, if ok { "ok" } else { "unavailable" }))
        .collect();
    let healthy = checks.values().all(|state| *state == "ok");
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    answer(status, Health { status: if healthy { "ok" } else { "degraded" }, checks })
}

/// Whether the gateway and the services it depends on are up.
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Every dependency answers", body = Health),
        (status = 503, description = "A dependency fails its check", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    check(&state).await
}

/// Readiness for Kubernetes: the same checks as `/health`.
#[utoipa::path(
    get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "A dependency fails its check, or the replica is shutting down (status `draining`)", body = Health),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.hub.is_draining() {
        return answer(StatusCode::SERVICE_UNAVAILABLE, Health { status: "draining", checks: BTreeMap::new() });
    }
    check(&state).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    pub max_message_length: u32,
    pub max_group_members: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    pub name: &'static str,
    pub version: &'static str,
    pub limits: Limits,
}

/// The service's limits, for clients to check input before sending it.
#[utoipa::path(get, path = "/api/v1/info", tag = "system", responses((status = 200, body = Info)))]
pub async fn info() -> Json<Info> {
    Json(Info {
        name: "chat-service",
        version: VERSION,
        limits: Limits { max_message_length: MAX_MESSAGE_LENGTH, max_group_members: MAX_GROUP_MEMBERS },
    })
}
