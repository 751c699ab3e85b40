//! WebSocket frames: what clients send (parsed, never trusted) and what the server sends.

use serde::Serialize;
use serde_json::Value;

use crate::models::Message;

/// A frame the server sends, serialized as JSON text (UTF-8, not ASCII-escaped).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    NewMessage { chat_id: i64, message: Message },
    MessageEdited { chat_id: i64, message: Message },
    MessageDeleted { chat_id: i64, message_id: i64, timestamp: String },
    TypingStarted { user_id: i64, chat_id: i64, timestamp: String },
    TypingStopped { user_id: i64, chat_id: i64, timestamp: String },
    UserJoined { user_id: i64, chat_id: i64, timestamp: String },
    UserLeft { user_id: i64, chat_id: i64, timestamp: String },
    ParticipantAdded { user_id: i64, by_user_id: i64, chat_id: i64, timestamp: String },
    ParticipantRemoved { user_id: i64, by_user_id: i64, chat_id: i64, timestamp: String },
    Pong { chat_id: i64, timestamp: String },
    Error { code: ErrorCode, detail: String, client_msg_id: Option<String> },
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
    Message { content: String, client_msg_id: Option<String> },
    Typing { started: bool },
    Ping,
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

/// Parses a text frame sent on the socket of `socket_chat_id`.
pub fn parse_client_frame(text: &str, socket_chat_id: i64) -> Result<ClientFrame, FrameError> {
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
    match frame.get("chat_id") {
        None | Some(Value::Null) => {}
        Some(Value::Number(number)) if number.as_i64() == Some(socket_chat_id) => {}
        Some(Value::Number(_)) => {
            return Err(FrameError::new(ErrorCode::Forbidden, "this socket is for another chat", client_msg_id));
        }
        Some(_) => return Err(bad("chat_id must be an integer", client_msg_id)),
    }
    match kind {
        "ping" => Ok(ClientFrame::Ping),
        "message" => match frame.get("content") {
            Some(Value::String(content)) => Ok(ClientFrame::Message { content: content.clone(), client_msg_id }),
            _ => Err(FrameError::new(ErrorCode::Validation, "content must be a string", client_msg_id)),
        },
        "typing" => match frame.get("content").and_then(Value::as_str) {
            Some("start") => Ok(ClientFrame::Typing { started: true }),
            Some("stop") => Ok(ClientFrame::Typing { started: false }),
            _ => Err(FrameError::new(ErrorCode::Validation, "typing content is \"start\" or \"stop\"", client_msg_id)),
        },
        other => Err(bad(&format!("unknown frame type {other:?}"), client_msg_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> (ErrorCode, Option<String>) {
        let error = parse_client_frame(text, 7).expect_err("refused");
        (error.code, error.client_msg_id)
    }

    #[test]
    fn good_frames_parse_with_or_without_the_chat_id() {
        assert_eq!(parse_client_frame(r#"{"type":"ping"}"#, 7), Ok(ClientFrame::Ping));
        assert_eq!(parse_client_frame(r#"{"type":"ping","chat_id":7}"#, 7), Ok(ClientFrame::Ping));
        assert_eq!(
            parse_client_frame(r#"{"type":"message","content":"hé","client_msg_id":"c1"}"#, 7),
            Ok(ClientFrame::Message { content: "hé".into(), client_msg_id: Some("c1".into()) })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"typing","content":"stop"}"#, 7),
            Ok(ClientFrame::Typing { started: false })
        );
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
    }

    #[test]
    fn server_frames_are_tagged_and_keep_non_ascii_text() {
        let frame = ServerFrame::Pong { chat_id: 1, timestamp: "t".into() };
        assert_eq!(frame.to_json(), r#"{"type":"pong","chat_id":1,"timestamp":"t"}"#);
        let error = ServerFrame::Error { code: ErrorCode::BadFrame, detail: "é".into(), client_msg_id: None };
        assert_eq!(error.to_json(), r#"{"type":"error","code":"bad_frame","detail":"é","client_msg_id":null}"#);
    }
}
