//! One WebSocket connection: authenticate, check membership, replay `after`,
//! then serve frames both ways until either side closes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use chat_proto::messages::{GetHistoryRequest, get_history_request::Cursor};
use futures::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};

use super::{
    close::CloseCode,
    frames::{ClientFrame, ErrorCode, FrameError, ServerFrame, parse_client_frame},
    hub::{Outbound, Queued, Registration},
};
use crate::{
    error::ApiError,
    extract::AuthUser,
    messaging,
    metrics::METRICS,
    models::{Message, timestamp},
    state::AppState,
};

/// The largest frame served, in bytes (API.md: 64 KiB; larger ones close the socket with 1009).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The largest frame read at all: frames between [`MAX_FRAME_BYTES`] and this
/// are read whole and answered with a readable 1009; beyond it the reader
/// gives up mid-frame (the 1009 is still sent, the rest may be cut short).
pub const READ_LIMIT_BYTES: usize = 1024 * 1024;
/// How long a closing socket waits for the client's close frame (the close
/// handshake), reading and discarding what it still sends.
const LINGER: Duration = Duration::from_secs(2);
/// A socket's typing starts go to the bus at most this often (receivers keep
/// a start for 10 s, so a client repeating it every few seconds stays "typing").
pub const TYPING_REPEAT: Duration = Duration::from_secs(2);

/// What the upgrade request carried.
#[derive(Debug)]
pub struct ConnectRequest {
    pub chat_id: i64,
    pub token: Option<String>,
    /// `after` as given (checked once the socket is open, as the contract says).
    pub after: Option<String>,
}

type Sink = SplitSink<WebSocket, WsMessage>;

/// How long a close frame may wait for room in a slow peer's buffers.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

async fn close(sink: &mut Sink, code: CloseCode, reason: &str) {
    let frame = CloseFrame { code: code.code(), reason: Utf8Bytes::from(reason) };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let _ = sink.send(WsMessage::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
}

async fn send_text(sink: &mut Sink, json: &str) -> bool {
    sink.send(WsMessage::Text(Utf8Bytes::from(json))).await.is_ok()
}

/// Who may connect, or the close code that says why not.
async fn admit(
    state: &AppState,
    request: &ConnectRequest,
) -> Result<(AuthUser, Option<i64>), (CloseCode, &'static str)> {
    let token = request.token.as_deref().ok_or((CloseCode::Unauthorized, "missing token"))?;
    let caller =
        AuthUser::from_token(state, token).map_err(|_| (CloseCode::Unauthorized, "invalid or expired token"))?;
    let after = match &request.after {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|after| *after >= 0)
                .ok_or((CloseCode::Policy, "after must be a non-negative integer"))?,
        ),
    };
    state.require_participant(request.chat_id, caller.user_id).await.map_err(|error| match error {
        ApiError::NotFound(_) => (CloseCode::NotFound, "no such chat"),
        ApiError::Forbidden(_) => (CloseCode::Forbidden, "not a participant"),
        _ => (CloseCode::TryAgain, "chat service unavailable"),
    })?;
    Ok((caller, after))
}

/// Serves one connection to its end.
///
/// The connection's task lives as long as the socket, and a task is as big as
/// the largest state of its future: the socket is split before the future
/// starts (an `async fn` keeps its arguments for its whole life), and every
/// phase but the idle loop (admission, joining the room, leaving, closing —
/// each with gRPC or bus calls in it) is boxed, so that an idle socket holds
/// only what the loop needs.
pub fn serve(socket: WebSocket, state: AppState, request: ConnectRequest) -> impl Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    serve_split(sink, stream, state, request)
}

async fn serve_split(mut sink: Sink, mut stream: SplitStream<WebSocket>, state: AppState, request: ConnectRequest) {
    let (caller, after) = match Box::pin(admit(&state, &request)).await {
        Ok(admitted) => admitted,
        Err((code, reason)) => return Box::pin(close(&mut sink, code, reason)).await,
    };
    let chat_id = request.chat_id;
    drop(request);
    // Subscribe first, then replay, then go live: nothing falls between.
    let registration = match Box::pin(state.hub.join(chat_id, caller.user_id)).await {
        Ok(registration) => registration,
        Err(error) => {
            tracing::warn!(%error, chat_id, "cannot join the chat's room");
            return Box::pin(close(&mut sink, CloseCode::TryAgain, "bus unavailable")).await;
        }
    };
    let socket_id = registration.socket_id;
    METRICS.ws_connections.inc();
    let outcome = run(&state, &caller, chat_id, after, registration, &mut sink, &mut stream).await;
    Box::pin(state.hub.leave(chat_id, socket_id)).await;
    METRICS.ws_connections.dec();
    if let Some((code, reason)) = outcome {
        Box::pin(close(&mut sink, code, reason)).await;
        Box::pin(linger(&mut stream)).await;
    }
}

/// After the server's close frame: reads (and drops) what the client still
/// sends until its close frame, for at most [`LINGER`] — closing the TCP
/// stream with unread data in it would reset the connection, and the client
/// would never read the close frame.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Replays the messages after `after`; the id of the last one sent.
async fn replay(
    state: &AppState,
    caller: &AuthUser,
    chat_id: i64,
    after: i64,
    sink: &mut Sink,
) -> Result<i64, (CloseCode, &'static str)> {
    let mut last_id = after;
    loop {
        let request = GetHistoryRequest { chat_id, limit: 100, cursor: Some(Cursor::AfterId(last_id)) };
        let page = state
            .messages
            .clone()
            .get_history(caller.call(request))
            .await
            .map_err(|_| (CloseCode::TryAgain, "history unavailable"))?
            .into_inner();
        for message in page.messages {
            last_id = message.id;
            let json = ServerFrame::NewMessage { chat_id, message: Message::from(message) }.to_json();
            if !send_text(sink, &json).await {
                return Err((CloseCode::Internal, "send failed"));
            }
        }
        if !page.has_more {
            return Ok(last_id);
        }
    }
}

/// The connection's life; `Some(close)` when the server ends it.
async fn run(
    state: &AppState,
    caller: &AuthUser,
    chat_id: i64,
    after: Option<i64>,
    registration: Registration,
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
) -> Option<(CloseCode, &'static str)> {
    let Registration { socket_id, mut queue, close } = registration;
    let mut last_message_id = match after {
        // Boxed, as is `handle` below: the connection's future stays small while it idles.
        Some(after) => match Box::pin(replay(state, caller, chat_id, after, sink)).await {
            Ok(last) => last,
            Err(refusal) => return Some(refusal),
        },
        None => 0,
    };
    let expires_in = Duration::from_secs(u64::try_from(caller.expires_at - event_bus::now_ms() / 1000).unwrap_or(0));
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let (ping_every, pong_timeout) = (state.ws.ping_every, state.ws.pong_timeout);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    // Anything from the client (a pong above all) shows the connection is alive.
    let mut last_heard = tokio::time::Instant::now();
    let mut typing_since = None;
    loop {
        tokio::select! {
            outbound = queue.recv() => {
                let Some(outbound) = outbound else {
                    // The hub let go of this socket: it says why on `close`.
                    return Some(why_closed(close.code()));
                };
                // A client that stops reading blocks this write; the hub's close signal (any code) still
                // ends it. Biased: a write that can finish (a participant_removed before its 4403) does.
                tokio::select! {
                    biased;
                    written = write(sink, &outbound, &mut last_message_id) => if !written { return None },
                    code = close.closed() => return Some(why_closed(Some(code))),
                }
            }
            code = close.closed() => {
                if code == CloseCode::Forbidden {
                    // What was queued before the removal (its participant_removed frame) goes out first.
                    while let Ok(outbound) = queue.try_recv() {
                        write(sink, &outbound, &mut last_message_id).await;
                    }
                }
                return Some(why_closed(Some(code)));
            }
            incoming = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    Some(Ok(WsMessage::Text(text))) if text.len() > MAX_FRAME_BYTES => {
                        return Some((CloseCode::TooBig, "frame larger than 64 KiB"));
                    }
                    Some(Ok(WsMessage::Binary(data))) if data.len() > MAX_FRAME_BYTES => {
                        return Some((CloseCode::TooBig, "frame larger than 64 KiB"));
                    }
                    Some(Ok(WsMessage::Text(text))) => {
                        let reply = Box::pin(handle(state, caller, chat_id, text.as_str(), &mut typing_since)).await;
                        if let Some(reply) = reply {
                            state.hub.send_to(chat_id, socket_id, reply).await;
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        let error = FrameError::new(ErrorCode::BadFrame, "frames are JSON text, not binary", None);
                        let error = Outbound::Frame(error.into_frame().to_json().into());
                        state.hub.send_to(chat_id, socket_id, error).await;
                    }
                    Some(Ok(WsMessage::Close(_))) | None => return None,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        if is_too_big(&error) {
                            return Some((CloseCode::TooBig, "frame larger than 64 KiB"));
                        }
                        tracing::debug!(%error, "websocket read failed");
                        return None;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > pong_timeout {
                    return Some((CloseCode::NoPong, "no pong within the deadline"));
                }
                // A password change since the socket opened revokes its token too (a map lookup, every ping).
                if state.verifier.versions().current(caller.user_id) > caller.token_version {
                    return Some((CloseCode::Unauthorized, "token revoked"));
                }
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return None;
                }
            }
            () = &mut expiry => return Some((CloseCode::Unauthorized, "token expired")),
        }
    }
}

/// Whether a read failed because the frame (or message) was over the read
/// limit: told by the WebSocket protocol's own error, not by its text.
fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(tungstenite::Error::Capacity(_)) = current.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// The close code and reason for the hub's close signal.
fn why_closed(code: Option<CloseCode>) -> (CloseCode, &'static str) {
    match code {
        Some(CloseCode::Forbidden) => (CloseCode::Forbidden, "no longer a participant"),
        Some(CloseCode::Restart) => (CloseCode::Restart, "service restart: reconnect with after="),
        Some(code) => (code, "too slow: the client could not keep up"),
        None => (CloseCode::Internal, "room closed"),
    }
}

/// Writes one queued frame; drops a `new_message` already sent (replay overlap). False when the peer is gone.
async fn write(sink: &mut Sink, outbound: &Queued, last_message_id: &mut i64) -> bool {
    match &**outbound {
        Outbound::Message { id, json } => {
            if *id <= *last_message_id {
                return true;
            }
            *last_message_id = *id;
            send_text(sink, json).await
        }
        Outbound::Frame(json) => send_text(sink, json).await,
    }
}

/// Acts on one client frame; what to send back to this socket only, if anything.
/// `typing_since`: when this socket last passed a typing start on, if it has not stopped since.
async fn handle(
    state: &AppState,
    caller: &AuthUser,
    chat_id: i64,
    text: &str,
    typing_since: &mut Option<tokio::time::Instant>,
) -> Option<Outbound> {
    let frame = match parse_client_frame(text, chat_id) {
        Ok(frame) => frame,
        Err(error) => return Some(Outbound::Frame(error.into_frame().to_json().into())),
    };
    match frame {
        ClientFrame::Ping => {
            let pong = ServerFrame::Pong { chat_id, timestamp: timestamp(event_bus::now_ms()) };
            Some(Outbound::Frame(pong.to_json().into()))
        }
        ClientFrame::Typing { started } => {
            // Typing fans out to the whole chat over the bus: a start repeated
            // sooner than TYPING_REPEAT, or a stop with no start, changes
            // nothing for the receivers and is not passed on.
            let now = tokio::time::Instant::now();
            let news = if started {
                typing_since.is_none_or(|since| now.duration_since(since) >= TYPING_REPEAT)
            } else {
                typing_since.is_some()
            };
            if news {
                *typing_since = started.then_some(now);
                state.hub.typing(chat_id, caller.user_id, started).await;
            }
            None
        }
        ClientFrame::Message { content, client_msg_id } => {
            match messaging::send(state, caller, chat_id, content, client_msg_id.clone()).await {
                // A new message comes back through the bus, like everyone's; a
                // replayed idempotent send is not broadcast, so it is answered here.
                Ok((_, true)) => None,
                Ok((message, false)) => {
                    let id = message.id;
                    let json: Box<str> = ServerFrame::NewMessage { chat_id, message: message.into() }.to_json().into();
                    Some(Outbound::Message { id, json })
                }
                Err(error) => {
                    let code = match &error {
                        ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::PayloadTooLarge { .. } => {
                            ErrorCode::Validation
                        }
                        ApiError::Forbidden(_) | ApiError::NotFound(_) | ApiError::Unauthorized(_) => {
                            ErrorCode::Forbidden
                        }
                        ApiError::RateLimited { .. } => ErrorCode::RateLimited,
                        _ => ErrorCode::Unavailable,
                    };
                    let detail = match &error {
                        ApiError::Validation(errors) => {
                            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
                        }
                        ApiError::Internal(_) => "internal error".to_owned(),
                        other => other.to_string(),
                    };
                    Some(Outbound::Frame(FrameError::new(code, detail, client_msg_id).into_frame().to_json().into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversize_read_is_told_by_its_error_type() {
        let too_long = tungstenite::error::CapacityError::MessageTooLong { size: 2 << 20, max_size: 1 << 20 };
        assert!(is_too_big(&axum::Error::new(tungstenite::Error::Capacity(too_long))));
        assert!(!is_too_big(&axum::Error::new(tungstenite::Error::ConnectionClosed)));
        let io = std::io::Error::other("a message about size that is too long");
        assert!(!is_too_big(&axum::Error::new(tungstenite::Error::Io(io))), "not by its words");
    }
}
