//! Request extractors whose rejections come back in our error shape: JSON
//! bodies, query strings and path parameters (422 naming the field, 413 over
//! the body limit), and the caller's access token (401).

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts},
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::{error::ApiError, state::AppState};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Turns a serde error at `path` into a 422 that names the field.
fn field_error(location: &str, path: &serde_path_to_error::Path, error: &dyn std::fmt::Display) -> ApiError {
    let message = error.to_string();
    // serde reports missing and unknown fields at the parent's path; the name is in the message.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix).and_then(|(_, rest)| rest.split_once('`')).map(|(name, _)| name));
    let mut field = path.to_string();
    if let Some(name) = named.filter(|name| field != *name && !field.ends_with(&format!(".{name}"))) {
        field = if field == "." { name.to_owned() } else { format!("{field}.{name}") };
    }
    if field == "." {
        field = location.to_owned();
    } else if location != "body" {
        field = format!("{location}.{field}");
    }
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    ApiError::invalid(field, message)
}

/// Parses a JSON body into `T`, naming the offending field on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        if error.inner().is_syntax() || error.inner().is_eof() {
            ApiError::invalid("body", format!("malformed JSON: {}", error.inner()))
        } else {
            field_error("body", error.path(), error.inner())
        }
    })?;
    Ok(value)
}

/// How much of an oversized body is still read (and dropped) before the 413.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;
/// How long an oversized body is drained at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the whole body, within [`MAX_BODY_BYTES`] — with a `Content-Length`
/// or chunked alike. Past the limit the rest of the body is read and dropped
/// (up to [`DRAIN_LIMIT_BYTES`], for up to [`DRAIN_TIME`]) before the 413 goes
/// out: a server that answers and closes while the client is still sending
/// resets the connection, and the client never reads the answer.
pub async fn body_bytes(request: Request) -> Result<Bytes, ApiError> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let mut body = request.into_body().into_data_stream();
    let too_large = ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES };
    if declared.is_some_and(|length| length > MAX_BODY_BYTES + DRAIN_LIMIT_BYTES) {
        return Err(too_large);
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| ApiError::BadRequest(format!("cannot read the body: {error}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            let mut drained = bytes.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained <= MAX_BODY_BYTES + DRAIN_LIMIT_BYTES {
                    match body.next().await {
                        Some(Ok(chunk)) => drained += chunk.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// A JSON body. The content type is not insisted on: the body must be JSON either way.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request).await?;
        parse_json(&bytes).map(Self)
    }
}

/// A query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| field_error("query", error.path(), error.inner()))
    }
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| ApiError::invalid("path", rejection.body_text()))
    }
}

/// The caller, from a valid `Authorization: Bearer` access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: i64,
    pub username: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    /// The token itself, forwarded on every call the gateway makes for this user.
    pub token: internal_auth::UserToken,
    /// The user's token version the token was issued at.
    pub token_version: i64,
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl AuthUser {
    /// Verifies a raw token.
    pub fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let verified = state
            .verifier
            .verify(token)
            .map_err(|error| ApiError::Unauthorized(format!("could not validate credentials: {error}")))?;
        let token = internal_auth::UserToken::new(token)
            .ok_or_else(|| ApiError::Unauthorized("could not validate credentials".into()))?;
        Ok(Self {
            user_id: verified.user_id,
            username: verified.username,
            expires_at: verified.expires_at,
            token,
            token_version: verified.version,
        })
    }

    /// A call to a service that acts for this user (their token goes with it).
    pub fn call<T>(&self, message: T) -> tonic::Request<T> {
        self.token.request(message)
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("not authenticated".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <token>".into()))?;
        Self::from_token(state, token)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        username: String,
        limit: Option<u32>,
    }

    fn field_of(result: Result<Body, ApiError>) -> String {
        match result {
            Err(ApiError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        assert_eq!(field_of(parse_json(br#"{"username": 12345}"#)), "username");
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(field_of(parse_json(br#"{"limit": 1}"#)), "username");
    }

    #[test]
    fn an_unknown_field_is_named() {
        assert_eq!(field_of(parse_json(br#"{"username": "a", "nickname": "b"}"#)), "nickname");
    }

    #[test]
    fn malformed_json_is_a_422_on_the_body() {
        assert_eq!(field_of(parse_json(br#"{"username": "#)), "body");
    }

    #[test]
    fn bearer_tokens_are_taken_in_any_case_of_the_scheme() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
