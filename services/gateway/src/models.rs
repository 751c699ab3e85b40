//! The public JSON shapes of API.md and their conversions from the services' messages.

use chat_proto::{auth as auth_pb, messages as messages_pb, metadata as metadata_pb};
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
    #[schema(example = "ada", min_length = 3, max_length = 32, pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// Unique in any case; stored lowercase.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8–128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    /// At most 100 characters.
    #[serde(default)]
    #[schema(max_length = 100)]
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
    #[param(min_length = 1, max_length = 64)]
    pub q: String,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Default 0.
    #[param(minimum = 0, maximum = 4294967295_i64)]
    pub offset: Option<i64>,
}

/// A chat participant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Participant {
    pub user_id: i64,
    pub username: String,
    pub joined_at: String,
    pub is_admin: bool,
}

impl From<metadata_pb::Participant> for Participant {
    fn from(participant: metadata_pb::Participant) -> Self {
        Self {
            user_id: participant.user_id,
            username: participant.username,
            joined_at: timestamp(participant.joined_at_ms),
            is_admin: participant.is_admin,
        }
    }
}

/// `direct` or `group`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Direct,
    Group,
}

/// A chat, with its participants and newest message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Chat {
    pub id: i64,
    pub name: Option<String>,
    pub chat_type: ChatType,
    pub created_at: String,
    /// Moves on every new message.
    pub updated_at: String,
    pub is_active: bool,
    pub participants: Vec<Participant>,
    pub last_message: Option<Message>,
    /// The caller's read position: the seq up to which they have read (0: nothing).
    pub last_read_seq: i64,
    /// The caller's unread messages: past `last_read_seq`, not deleted, not their own.
    pub unread_count: i64,
}

impl Chat {
    /// A chat with the caller's summary of it (none: no message, nothing unread).
    pub fn new(chat: metadata_pb::Chat, summary: Option<messages_pb::ChatSummary>) -> Self {
        let summary = summary.unwrap_or_default();
        let chat_type = match metadata_pb::ChatType::try_from(chat.chat_type) {
            Ok(metadata_pb::ChatType::Direct) => ChatType::Direct,
            _ => ChatType::Group,
        };
        Self {
            id: chat.id,
            name: chat.name,
            chat_type,
            created_at: timestamp(chat.created_at_ms),
            updated_at: timestamp(chat.updated_at_ms),
            is_active: chat.is_active,
            participants: chat.participants.into_iter().map(Into::into).collect(),
            last_message: summary.last_message.map(Into::into),
            last_read_seq: summary.last_read_seq,
            unread_count: summary.unread_count,
        }
    }
}

/// A message. Deleted messages keep their place with `content: ""`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub chat_id: i64,
    /// 1 for the chat's first message, then +1, with no gaps.
    pub seq: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub content: String,
    #[schema(example = "text")]
    pub message_type: &'static str,
    pub timestamp: String,
    pub is_edited: bool,
    pub is_deleted: bool,
    pub edited_at: Option<String>,
    pub client_msg_id: Option<String>,
    /// The message of the same chat this one answers.
    pub reply_to: Option<i64>,
    /// Each emoji with a standing reaction, in the order of its first one; `[]` once deleted.
    pub reactions: Vec<Reaction>,
}

/// Everyone who reacted to a message with one emoji.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reaction {
    #[schema(example = "👍")]
    pub emoji: String,
    /// `len(user_ids)`.
    pub count: i64,
    /// In the order they reacted.
    pub user_ids: Vec<i64>,
}

impl From<messages_pb::Reaction> for Reaction {
    fn from(reaction: messages_pb::Reaction) -> Self {
        Self { emoji: reaction.emoji, count: reaction.user_ids.len() as i64, user_ids: reaction.user_ids }
    }
}

/// Marks a chat read up to a seq (`PUT /chats/{id}/read`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadBody {
    /// 0 or more; a seq past the chat's last message is taken as the last message's.
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// The caller's read state in a chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadState {
    pub chat_id: i64,
    pub user_id: i64,
    pub last_read_seq: i64,
    pub unread_count: i64,
}

impl From<messages_pb::ReadState> for ReadState {
    fn from(state: messages_pb::ReadState) -> Self {
        Self {
            chat_id: state.chat_id,
            user_id: state.user_id,
            last_read_seq: state.last_read_seq,
            unread_count: state.unread_count,
        }
    }
}

/// A participant's read position (for "seen by").
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadPosition {
    pub user_id: i64,
    pub last_read_seq: i64,
}

/// The caller's unread messages over their active chats.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadTotals {
    /// The sum of `unread_count` over the caller's chats.
    pub total_unread: i64,
    /// How many of them have `unread_count > 0`.
    pub chats: i64,
}

impl From<messages_pb::Message> for Message {
    fn from(message: messages_pb::Message) -> Self {
        Self {
            id: message.id,
            chat_id: message.chat_id,
            seq: message.seq,
            sender_id: message.sender_id,
            sender_username: message.sender_username,
            content: message.content,
            message_type: "text",
            timestamp: timestamp(message.timestamp_ms),
            is_edited: message.is_edited,
            is_deleted: message.is_deleted,
            edited_at: message.edited_at_ms.map(timestamp),
            client_msg_id: message.client_msg_id,
            reply_to: message.reply_to,
            reactions: message.reactions.into_iter().map(Into::into).collect(),
        }
    }
}

/// A new chat.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateChatBody {
    pub chat_type: ChatType,
    /// Required for a group (1–100 characters, not only whitespace); ignored for a direct chat.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Direct: exactly one other user. Group: the other members (duplicates ignored; at most 99 others).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub participant_ids: Vec<i64>,
}

/// A group's new name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateChatBody {
    /// 1–100 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// Users to add to a group.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddParticipantsBody {
    /// Users to add (those already in are skipped); the group stays within 100 members.
    #[schema(max_items = 1000)]
    pub user_ids: Vec<i64>,
}

/// A participant's role.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetAdminBody {
    pub is_admin: bool,
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessageBody {
    pub chat_id: i64,
    /// 1–10,000 characters (Unicode scalar values), not only whitespace.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    pub content: String,
    /// Idempotency key (≤ 64 characters): a retry returns the original with 200.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub client_msg_id: Option<String>,
    /// The id of a message of the same chat that this one answers (deleted ones too); another → 400.
    #[serde(default)]
    pub reply_to: Option<i64>,
}

/// A message's new content.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EditMessageBody {
    /// 1–10,000 characters (Unicode scalar values), not only whitespace.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    pub content: String,
}

/// One version of a message's text (`GET /messages/{id}/edits`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageVersion {
    pub content: String,
    /// The original's: the message's `timestamp`; an edit's: its `edited_at`.
    pub timestamp: String,
}

impl From<messages_pb::Version> for MessageVersion {
    fn from(version: messages_pb::Version) -> Self {
        Self { content: version.content, timestamp: timestamp(version.at_ms) }
    }
}

/// A page of a chat's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest to newest.
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the direction of travel.
    pub has_more: bool,
}

/// Paging of the chat list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Default 0.
    #[param(minimum = 0, maximum = 4294967295_i64)]
    pub offset: Option<i64>,
}

/// Paging of a chat's history: the newest page, or `before` / `after` a message id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The newest `limit` messages older than this id. Not with `after` (422).
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// The oldest `limit` messages newer than this id (`0`: from the first). Not with `before` (422).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

/// Who to remove.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveParticipantParams {
    pub user_id: i64,
}

/// `limit` (1–100, default `default`) and `offset` (≥ 0, default 0) as the services take them.
pub fn page(limit: Option<i64>, offset: Option<i64>, default: i64) -> Result<(u32, u32), crate::error::ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=100).contains(&limit) {
        return Err(crate::error::ApiError::invalid("limit", "must be 1 to 100"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(crate::error::ApiError::invalid("offset", "must be 0 or more"));
    }
    let offset = u32::try_from(offset)
        .map_err(|_| crate::error::ApiError::invalid("offset", format!("must be at most {MAX_OFFSET}")))?;
    Ok((limit as u32, offset))
}

/// The largest `offset` a page may start at.
pub const MAX_OFFSET: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds_and_z() {
        assert_eq!(timestamp(1_767_268_800_123), "2026-01-01T12:00:00.123Z");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn page_parameters_out_of_range_say_which_bound() {
        let message = |limit, offset| match page(limit, offset, 20) {
            Err(crate::error::ApiError::Validation(errors)) => format!("{}: {}", errors[0].field, errors[0].message),
            other => format!("{other:?}"),
        };
        let cases = [
            (Some(0), None, "limit: must be 1 to 100"),
            (Some(101), None, "limit: must be 1 to 100"),
            (None, Some(-1), "offset: must be 0 or more"),
            (None, Some(1 << 32), "offset: must be at most 4294967295"),
        ];
        for (limit, offset, expected) in cases {
            assert_eq!(message(limit, offset), expected, "{limit:?} {offset:?}");
        }
        assert_eq!(page(None, Some(i64::from(u32::MAX)), 20).unwrap(), (20, u32::MAX));
    }

    #[test]
    fn full_name_null_is_told_from_absent() {
        let cleared: UpdateMeBody = serde_json::from_str(r#"{"full_name": null}"#).unwrap();
        assert_eq!(cleared.full_name, Some(None));
        let untouched: UpdateMeBody = serde_json::from_str(r#"{"email": "a@b.co"}"#).unwrap();
        assert_eq!(untouched.full_name, None);
    }
}
