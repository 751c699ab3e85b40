//! Messages and the rules about their content.

use crate::error::MessageError;

/// The most characters (Unicode scalar values) a message may have.
pub const MAX_CONTENT_CHARS: usize = 10_000;
/// The longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// A message's text: 1–10,000 characters, not only whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub fn parse(value: String) -> Result<Self, MessageError> {
        if value.trim().is_empty() {
            return Err(MessageError::invalid("content", "must not be empty or only whitespace"));
        }
        if value.chars().count() > MAX_CONTENT_CHARS {
            return Err(MessageError::invalid("content", format!("must be at most {MAX_CONTENT_CHARS} characters")));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A client's idempotency key: 1–64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(value: Option<String>) -> Result<Option<Self>, MessageError> {
        let Some(value) = value else { return Ok(None) };
        if value.is_empty() || value.chars().count() > MAX_CLIENT_MSG_ID_CHARS {
            return Err(MessageError::invalid(
                "client_msg_id",
                format!("must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"),
            ));
        }
        Ok(Some(Self(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A message's metadata row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub chat_id: i64,
    pub seq: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub content_id: String,
    pub client_msg_id: Option<String>,
    pub created_at_ms: i64,
    pub edited_at_ms: Option<i64>,
    pub is_deleted: bool,
    /// The message of the same chat this one answers.
    pub reply_to: Option<i64>,
}

/// A message with its content (empty once deleted) and reactions (none once deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub row: MessageRow,
    pub content: String,
    pub reactions: Vec<crate::reactions::Reaction>,
}

impl From<Message> for chat_proto::messages::Message {
    fn from(message: Message) -> Self {
        let row = message.row;
        Self {
            id: row.id,
            chat_id: row.chat_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username,
            content: if row.is_deleted { String::new() } else { message.content },
            timestamp_ms: row.created_at_ms,
            is_edited: row.edited_at_ms.is_some(),
            is_deleted: row.is_deleted,
            edited_at_ms: row.edited_at_ms,
            client_msg_id: row.client_msg_id,
            reply_to: row.reply_to,
            reactions: if row.is_deleted {
                Vec::new()
            } else {
                message.reactions.into_iter().map(Into::into).collect()
            },
        }
    }
}

/// Which page of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Newest,
    Before(i64),
    After(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_counted_in_unicode_scalar_values() {
        assert!(Content::parse("é".repeat(MAX_CONTENT_CHARS)).is_ok());
        assert!(Content::parse("👋".repeat(MAX_CONTENT_CHARS)).is_ok());
        assert!(Content::parse("x".repeat(MAX_CONTENT_CHARS + 1)).is_err());
    }

    #[test]
    fn empty_or_blank_content_is_refused() {
        for bad in ["", " ", "\n\t "] {
            assert!(Content::parse(bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_msg_ids_are_1_to_64_characters() {
        assert_eq!(ClientMsgId::parse(None).unwrap(), None);
        assert!(ClientMsgId::parse(Some("k".repeat(64))).unwrap().is_some());
        assert!(ClientMsgId::parse(Some(String::new())).is_err());
        assert!(ClientMsgId::parse(Some("k".repeat(65))).is_err());
    }
}
