//! `/api/v1/users/...`: registration, login, the caller's profile, lookup and search.

use axum::{
    Json,
    extract::{Request, State},
    http::{StatusCode, header},
};
use chat_proto::auth as pb;
use std::time::Instant;

use crate::{
    client_addr::ClientAddr,
    error::{ApiError, ErrorBody},
    extract::{AppJson, AppPath, AppQuery, AuthUser, body_bytes, parse_json},
    models::{LoginBody, RegisterBody, SearchParams, Token, UpdateMeBody, UserPrivate, UserPublic, page},
    state::AppState,
};

const AUTH: &str = "the auth service";

fn auth_error(status: tonic::Status) -> ApiError {
    ApiError::from_status(status, AUTH)
}

/// Register a new user.
#[utoipa::path(
    post, path = "/api/v1/users/register", tag = "users",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = UserPrivate),
        (status = 409, description = "Username or email already registered", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (REGISTRATIONS_PER_MINUTE, REGISTRATION_BURST); see Retry-After", body = ErrorBody),
        (status = 503, description = "Auth service unavailable", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    AppJson(body): AppJson<RegisterBody>,
) -> Result<(StatusCode, Json<UserPrivate>), ApiError> {
    state
        .limits
        .registrations
        .take(&rate_limit::address_key(client), Instant::now())
        .map_err(ApiError::rate_limited)?;
    let request = pb::RegisterRequest {
        username: body.username,
        email: body.email,
        password: body.password,
        full_name: body.full_name,
    };
    let user = state.auth.clone().register(request).await.map_err(auth_error)?.into_inner();
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Log in with a username (or email) and password; JSON or the OAuth2 password form.
#[utoipa::path(
    post, path = "/api/v1/users/login", tag = "users",
    request_body(
        content(
            (LoginBody = "application/json"),
            (LoginBody = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 200, description = "Logged in", body = Token),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 422, description = "Missing field", body = ErrorBody),
        (status = 429, description = "Too many failed logins of this account from this address (LOGIN_FAILURES_PER_MINUTE), or from this address (LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS); see Retry-After", body = ErrorBody),
        (status = 503, description = "Auth service unavailable", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Result<Json<Token>, ApiError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let bytes = body_bytes(request).await?;
    let body: LoginBody = if is_form {
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(&bytes));
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let message = error.inner().to_string();
            let field = message.split('`').nth(1).unwrap_or("body").to_owned();
            ApiError::invalid(field, message)
        })?
    } else {
        parse_json(&bytes)?
    };
    // Auth limits failed logins per account and address (it knows the accounts).
    let request =
        pb::LoginRequest { username: body.username, password: body.password, client_addr: client.to_string() };
    let response = state.auth.clone().login(request).await.map_err(|status| match status.code() {
        tonic::Code::Unauthenticated => ApiError::Unauthorized("incorrect username or password".into()),
        _ => auth_error(status),
    })?;
    let response = response.into_inner();
    Ok(Json(Token {
        access_token: response.access_token,
        token_type: response.token_type,
        expires_in: response.expires_in,
    }))
}

async fn fetch_user(state: &AppState, id: i64) -> Result<pb::User, ApiError> {
    Ok(state.auth.clone().get_user(pb::GetUserRequest { id }).await.map_err(auth_error)?.into_inner())
}

/// The caller's own profile.
#[utoipa::path(
    get, path = "/api/v1/users/me", tag = "users",
    responses(
        (status = 200, body = UserPrivate),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<UserPrivate>, ApiError> {
    let user = fetch_user(&state, caller.user_id).await.map_err(|error| match error {
        ApiError::NotFound(_) => ApiError::Unauthorized("the token's user no longer exists".into()),
        other => other,
    })?;
    Ok(Json(user.into()))
}

/// Change the caller's email, full name or password (with `current_password`).
#[utoipa::path(
    put, path = "/api/v1/users/me", tag = "users",
    request_body = UpdateMeBody,
    responses(
        (status = 200, description = "Changed. A new password revokes every token issued before: log in again", body = UserPrivate),
        (status = 400, description = "Wrong current password", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords for this account (LOGIN_FAILURES_PER_MINUTE); see Retry-After", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = ErrorBody),
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    AppJson(body): AppJson<UpdateMeBody>,
) -> Result<Json<UserPrivate>, ApiError> {
    if body.password.is_some() && body.current_password.is_none() {
        return Err(ApiError::invalid("current_password", "is required to change the password"));
    }
    let request = pb::UpdateUserRequest {
        email: body.email,
        // Empty clears the full name (see auth.proto).
        full_name: body.full_name.map(Option::unwrap_or_default),
        password: body.password,
        current_password: body.current_password,
    };
    let password_changed = request.password.is_some();
    let user = state.auth.clone().update_user(caller.call(request)).await.map_err(auth_error)?.into_inner();
    if password_changed {
        // Here at once; on the other replicas within token_versions::POLL.
        state.verifier.versions().raise(caller.user_id, caller.token_version + 1, event_bus::now_ms());
    }
    Ok(Json(user.into()))
}

/// Search users by username or full name (never returns the caller).
#[utoipa::path(
    get, path = "/api/v1/users/search", tag = "users",
    params(SearchParams),
    responses(
        (status = 200, body = [UserPublic]),
        (status = 422, description = "Parameter out of range", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: AuthUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> Result<Json<Vec<UserPublic>>, ApiError> {
    let (limit, offset) = page(params.limit, params.offset, 20)?;
    let request = pb::SearchUsersRequest { query: params.q, limit, offset };
    let users = state.auth.clone().search_users(caller.call(request)).await.map_err(auth_error)?.into_inner().users;
    Ok(Json(users.into_iter().map(Into::into).collect()))
}

/// One user's public profile.
#[utoipa::path(
    get, path = "/api/v1/users/{user_id}", tag = "users",
    params(("user_id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, body = UserPublic),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    _caller: AuthUser,
    AppPath(user_id): AppPath<i64>,
) -> Result<Json<UserPublic>, ApiError> {
    Ok(Json(fetch_user(&state, user_id).await?.into()))
}
