//! WebSocket frames: what clients send (parsed, never trusted) and what the server sends.

use serde::Serialize;
use serde_json::Value;

use crate::models::Message;

/// A frame the server sends, serialized as JSON text (UTF-8, not ASCII-escaped).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    NewMessage {
        chat_id: i64,
        message: Message,
    },
    MessageEdited {
        chat_id: i64,
        message: Message,
    },
    MessageDeleted {
        chat_id: i64,
        message_id: i64,
        timestamp: String,
    },
    TypingStarted {
        user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    TypingStopped {
        user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    UserJoined {
        user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    UserLeft {
        user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    ParticipantAdded {
        user_id: i64,
        by_user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    ParticipantRemoved {
        user_id: i64,
        by_user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    ParticipantUpdated {
        user_id: i64,
        is_admin: bool,
        by_user_id: i64,
        chat_id: i64,
        timestamp: String,
    },
    ChatUpdated {
        chat_id: i64,
        name: String,
        by_user_id: i64,
        timestamp: String,
    },
    /// A read position moved.
    Read {
        chat_id: i64,
        user_id: i64,
        seq: i64,
        timestamp: String,
    },
    ReactionAdded {
        chat_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: String,
        timestamp: String,
    },
    ReactionRemoved {
        chat_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: String,
        timestamp: String,
    },
    /// `chat_id` null: a user socket's ping that named no chat.
    Pong {
        chat_id: Option<i64>,
        timestamp: String,
    },
    Error {
        code: ErrorCode,
        detail: String,
        client_msg_id: Option<String>,
    },
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"unavailable","detail":"cannot encode a frame","client_msg_id":null}"#.into()
        })
    }
}

/// The `code` of an error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Validation,
    Forbidden,
    RateLimited,
    BadFrame,
    Unavailable,
}

/// A client frame that was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Message {
        content: String,
        client_msg_id: Option<String>,
        reply_to: Option<i64>,
    },
    Typing {
        started: bool,
    },
    /// As `PUT /chats/{id}/read`.
    Read {
        seq: i64,
    },
    Ping,
}

impl ClientFrame {
    /// Its `client_msg_id`, to echo in an error about the frame.
    pub fn into_client_msg_id(self) -> Option<String> {
        match self {
            Self::Message { client_msg_id, .. } => client_msg_id,
            Self::Typing { .. } | Self::Read { .. } | Self::Ping => None,
        }
    }
}

/// Why a client frame was refused: becomes an error frame; the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub detail: String,
    pub client_msg_id: Option<String>,
}

impl FrameError {
    pub fn new(code: ErrorCode, detail: impl Into<String>, client_msg_id: Option<String>) -> Self {
        Self { code, detail: detail.into(), client_msg_id }
    }

    pub fn into_frame(self) -> ServerFrame {
        ServerFrame::Error { code: self.code, detail: self.detail, client_msg_id: self.client_msg_id }
    }
}

/// Which chats a socket carries: one (`GET /ws/{chat_id}`) or all its user's (`GET /ws`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Chat(i64),
    User,
}

/// Parses a text frame: the chat it is about (`None` only for a user
/// socket's ping that names none) and what it asks for. On a chat's socket a
/// missing `chat_id` means that chat and another one is `forbidden`; on a user
/// socket `chat_id` is required (but for `ping`), and whether the user is in
/// that chat is the caller's to check.
pub fn parse_client_frame(text: &str, scope: Scope) -> Result<(Option<i64>, ClientFrame), FrameError> {
    let bad = |detail: &str, id: Option<String>| FrameError::new(ErrorCode::BadFrame, detail, id);
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(bad("a frame is a JSON object", None));
    };
    let client_msg_id = match frame.get("client_msg_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(bad("client_msg_id must be a string", None)),
    };
    let kind = match frame.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(bad("a frame needs a string \"type\"", client_msg_id)),
    };
    let named = match frame.get("chat_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => match number.as_i64() {
            Some(chat_id) => Some(chat_id),
            None => return Err(bad("chat_id must be an integer", client_msg_id)),
        },
        Some(_) => return Err(bad("chat_id must be an integer", client_msg_id)),
    };
    let chat_id = match (scope, named) {
        (Scope::Chat(own), None) => Some(own),
        (Scope::Chat(own), Some(named)) if named == own => Some(own),
        (Scope::Chat(_), Some(_)) => {
            return Err(FrameError::new(ErrorCode::Forbidden, "this socket is for another chat", client_msg_id));
        }
        (Scope::User, named) => named,
    };
    let frame = match kind {
        "ping" => ClientFrame::Ping,
        "message" => {
            let reply_to = match frame.get("reply_to") {
                None | Some(Value::Null) => None,
                Some(Value::Number(number)) if number.as_i64().is_some() => number.as_i64(),
                Some(_) => {
                    let detail = "reply_to must be a message id";
                    return Err(FrameError::new(ErrorCode::Validation, detail, client_msg_id));
                }
            };
            match frame.get("content") {
                Some(Value::String(content)) => {
                    ClientFrame::Message { content: content.clone(), client_msg_id, reply_to }
                }
                _ => return Err(FrameError::new(ErrorCode::Validation, "content must be a string", client_msg_id)),
            }
        }
        "read" => match frame.get("seq").and_then(Value::as_i64) {
            Some(seq) if seq >= 0 => ClientFrame::Read { seq },
            _ => {
                let detail = "seq must be an integer, 0 or more";
                return Err(FrameError::new(ErrorCode::Validation, detail, client_msg_id));
            }
        },
        "typing" => match frame.get("content").and_then(Value::as_str) {
            Some("start") => ClientFrame::Typing { started: true },
            Some("stop") => ClientFrame::Typing { started: false },
            _ => {
                let detail = "typing content is \"start\" or \"stop\"";
                return Err(FrameError::new(ErrorCode::Validation, detail, client_msg_id));
            }
        },
        other => return Err(bad(&format!("unknown frame type {other:?}"), client_msg_id)),
    };
    if chat_id.is_none() && frame != ClientFrame::Ping {
        let detail = "chat_id is required on a user socket (only ping may omit it)";
        return Err(bad(detail, frame.into_client_msg_id()));
    }
    Ok((chat_id, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> (ErrorCode, Option<String>) {
        code_in(text, Scope::Chat(7))
    }

    fn code_in(text: &str, scope: Scope) -> (ErrorCode, Option<String>) {
        let error = parse_client_frame(text, scope).expect_err("refused");
        (error.code, error.client_msg_id)
    }

    #[test]
    fn good_frames_parse_with_or_without_the_chat_id() {
        let chat = Scope::Chat(7);
        assert_eq!(parse_client_frame(r#"{"type":"ping"}"#, chat), Ok((Some(7), ClientFrame::Ping)));
        assert_eq!(parse_client_frame(r#"{"type":"ping","chat_id":7}"#, chat), Ok((Some(7), ClientFrame::Ping)));
        assert_eq!(
            parse_client_frame(r#"{"type":"message","content":"hé","client_msg_id":"c1"}"#, chat),
            Ok((
                Some(7),
                ClientFrame::Message { content: "hé".into(), client_msg_id: Some("c1".into()), reply_to: None }
            ))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"message","content":"re","reply_to":5}"#, chat),
            Ok((Some(7), ClientFrame::Message { content: "re".into(), client_msg_id: None, reply_to: Some(5) }))
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"typing","content":"stop"}"#, chat),
            Ok((Some(7), ClientFrame::Typing { started: false }))
        );
    }

    #[test]
    fn on_a_user_socket_every_frame_but_ping_names_its_chat() {
        let user = Scope::User;
        assert_eq!(parse_client_frame(r#"{"type":"ping"}"#, user), Ok((None, ClientFrame::Ping)));
        assert_eq!(parse_client_frame(r#"{"type":"ping","chat_id":9}"#, user), Ok((Some(9), ClientFrame::Ping)));
        assert_eq!(
            parse_client_frame(r#"{"type":"typing","chat_id":9,"content":"start"}"#, user),
            Ok((Some(9), ClientFrame::Typing { started: true }))
        );
        let table: &[(&str, (ErrorCode, Option<&str>))] = &[
            (r#"{"type":"message","content":"x","client_msg_id":"k"}"#, (ErrorCode::BadFrame, Some("k"))),
            (r#"{"type":"typing","content":"start"}"#, (ErrorCode::BadFrame, None)),
            (r#"{"type":"message","chat_id":null,"content":"x"}"#, (ErrorCode::BadFrame, None)),
            (r#"{"type":"message","chat_id":1.5,"content":"x"}"#, (ErrorCode::BadFrame, None)),
            (r#"{"type":"message","chat_id":9}"#, (ErrorCode::Validation, None)),
        ];
        for (text, (code, id)) in table {
            assert_eq!(code_in(text, user), (*code, id.map(str::to_owned)), "{text}");
        }
    }

    #[test]
    fn bad_frames_get_the_documented_codes_and_echo_the_client_msg_id() {
        assert_eq!(code_of("not json"), (ErrorCode::BadFrame, None));
        assert_eq!(code_of("[1,2]"), (ErrorCode::BadFrame, None));
        assert_eq!(code_of(r#"{"client_msg_id":"k"}"#), (ErrorCode::BadFrame, Some("k".into())));
        assert_eq!(code_of(r#"{"type":"dance","client_msg_id":"k"}"#), (ErrorCode::BadFrame, Some("k".into())));
        assert_eq!(
            code_of(r#"{"type":"message","chat_id":8,"content":"x","client_msg_id":"k"}"#),
            (ErrorCode::Forbidden, Some("k".into()))
        );
        assert_eq!(code_of(r#"{"type":"message","chat_id":"7","content":"x"}"#), (ErrorCode::BadFrame, None));
        assert_eq!(code_of(r#"{"type":"message"}"#), (ErrorCode::Validation, None));
        assert_eq!(code_of(r#"{"type":"typing","content":"maybe"}"#), (ErrorCode::Validation, None));
        for reply_to in [r#""5""#, "5.5", "true", "[5]"] {
            let frame = format!(r#"{{"type":"message","content":"x","reply_to":{reply_to},"client_msg_id":"k"}}"#);
            assert_eq!(code_of(&frame), (ErrorCode::Validation, Some("k".into())), "{frame}");
        }
    }

    #[test]
    fn server_frames_are_tagged_and_keep_non_ascii_text() {
        let frame = ServerFrame::Pong { chat_id: Some(1), timestamp: "t".into() };
        assert_eq!(frame.to_json(), r#"{"type":"pong","chat_id":1,"timestamp":"t"}"#);
        let frame = ServerFrame::Pong { chat_id: None, timestamp: "t".into() };
        assert_eq!(frame.to_json(), r#"{"type":"pong","chat_id":null,"timestamp":"t"}"#);
        let frame = ServerFrame::ChatUpdated { chat_id: 1, name: "n".into(), by_user_id: 2, timestamp: "t".into() };
        assert_eq!(frame.to_json(), r#"{"type":"chat_updated","chat_id":1,"name":"n","by_user_id":2,"timestamp":"t"}"#);
        let frame = ServerFrame::ParticipantUpdated {
            user_id: 3,
            is_admin: true,
            by_user_id: 2,
            chat_id: 1,
            timestamp: "t".into(),
        };
        assert_eq!(
            frame.to_json(),
            r#"{"type":"participant_updated","user_id":3,"is_admin":true,"by_user_id":2,"chat_id":1,"timestamp":"t"}"#
        );
        let error = ServerFrame::Error { code: ErrorCode::BadFrame, detail: "é".into(), client_msg_id: None };
        assert_eq!(error.to_json(), r#"{"type":"error","code":"bad_frame","detail":"é","client_msg_id":null}"#);
    }
}
