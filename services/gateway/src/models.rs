//! The public JSON shapes of API.md and their conversions from the services' messages.

use chat_proto::auth as auth_pb;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Milliseconds since the epoch as an RFC 3339 UTC time with milliseconds and `Z`.
pub fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// User(private): the caller's own profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPrivate {
    pub id: i64,
    #[schema(example = "ada")]
    pub username: String,
    #[schema(example = "ada@example.com")]
    pub email: String,
    pub full_name: Option<String>,
    pub is_active: bool,
    #[schema(example = "2026-01-01T12:00:00.123Z")]
    pub created_at: String,
    pub last_seen: Option<String>,
}

/// User(public): anyone's profile, without the email.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPublic {
    pub id: i64,
    pub username: String,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub created_at: String,
    pub last_seen: Option<String>,
}

impl From<auth_pb::User> for UserPrivate {
    fn from(user: auth_pb::User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            is_active: user.is_active,
            created_at: timestamp(user.created_at_ms),
            last_seen: user.last_seen_ms.map(timestamp),
        }
    }
}

impl From<auth_pb::User> for UserPublic {
    fn from(user: auth_pb::User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            full_name: user.full_name,
            is_active: user.is_active,
            created_at: timestamp(user.created_at_ms),
            last_seen: user.last_seen_ms.map(timestamp),
        }
    }
}

/// A registration.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique in any case.
    #[schema(example = "ada")]
    pub username: String,
    /// Unique in any case; stored lowercase.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8–128 characters.
    #[schema(example = "correct horse battery")]
    pub password: String,
    /// At most 100 characters.
    #[serde(default)]
    pub full_name: Option<String>,
}

/// Credentials, as JSON or as the OAuth2 password form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    /// A username or an email address.
    pub username: String,
    pub password: String,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// A profile change: any of these fields; others are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeBody {
    pub email: Option<String>,
    /// `null` clears the full name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub full_name: Option<Option<String>>,
    /// A new password; needs `current_password`.
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Search parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// 1–64 characters, matched case-insensitively in username and full name.
    pub q: String,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds_and_z() {
        assert_eq!(timestamp(1_767_268_800_123), "2026-01-01T12:00:00.123Z");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn full_name_null_is_told_from_absent() {
        let cleared: UpdateMeBody = serde_json::from_str(r#"{"full_name": null}"#).unwrap();
        assert_eq!(cleared.full_name, Some(None));
        let untouched: UpdateMeBody = serde_json::from_str(r#"{"email": "a@b.co"}"#).unwrap();
        assert_eq!(untouched.full_name, None);
    }
}
