//! One WebSocket connection, of a chat (`GET /ws/{chat_id}`) or of a user
//! (`GET /ws`): authenticate, check membership or list the user's chats,
//! enter the rooms, replay `after`, then serve frames both ways until either
//! side closes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use chat_proto::{
    messages::{GetHistoryRequest, get_history_request::Cursor},
    metadata::ListChatIdsRequest,
};
use futures::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};

use super::{
    after::{parse_after_id, parse_after_map},
    close::CloseCode,
    frames::{ClientFrame, ErrorCode, FrameError, Scope, ServerFrame, parse_client_frame},
};
use crate::{
    error::ApiError,
    extract::AuthUser,
    fanout::{Outbound, Queued, Registration, SocketHandle},
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
/// A socket's typing starts go to the bus at most this often per chat (receivers keep
/// a start for 10 s, so a client repeating it every few seconds stays "typing").
pub const TYPING_REPEAT: Duration = Duration::from_secs(2);

/// What the upgrade request carried.
#[derive(Debug)]
pub struct ConnectRequest {
    pub scope: Scope,
    pub token: Option<String>,
    /// `after` as given (checked once the socket is open, as the contract says).
    pub after: Option<String>,
}

type Sink = SplitSink<WebSocket, WsMessage>;
type Refusal = (CloseCode, &'static str);

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

/// Who may connect and where replay starts (`(chat, after id)` pairs), or the
/// close code that says why not.
async fn admit(state: &AppState, request: &ConnectRequest) -> Result<(AuthUser, Vec<(i64, i64)>), Refusal> {
    let token = request.token.as_deref().ok_or((CloseCode::Unauthorized, "missing token"))?;
    let caller =
        AuthUser::from_token(state, token).map_err(|_| (CloseCode::Unauthorized, "invalid or expired token"))?;
    let raw_after = request.after.as_deref();
    match request.scope {
        Scope::Chat(chat_id) => {
            let after = match raw_after {
                None => None,
                Some(raw) => {
                    Some(parse_after_id(raw).ok_or((CloseCode::Policy, "after must be a non-negative integer"))?)
                }
            };
            state.require_participant(chat_id, caller.user_id).await.map_err(|error| match error {
                ApiError::NotFound(_) => (CloseCode::NotFound, "no such chat"),
                ApiError::Forbidden(_) => (CloseCode::Forbidden, "not a participant"),
                _ => (CloseCode::TryAgain, "chat service unavailable"),
            })?;
            Ok((caller, after.map(|after| (chat_id, after)).into_iter().collect()))
        }
        Scope::User => {
            let after = parse_after_map(raw_after.unwrap_or_default()).map_err(|why| (CloseCode::Policy, why))?;
            Ok((caller, after))
        }
    }
}

/// Serves one connection to its end.
///
/// The connection's task lives as long as the socket, and a task is as big as
/// the largest state of its future: the socket is split before the future
/// starts (an `async fn` keeps its arguments for its whole life), and every
/// phase but the idle loop (admission, entering the rooms, leaving, closing —
/// each with gRPC or bus calls in it) is boxed, so that an idle socket holds
/// only what the loop needs.
pub fn serve(socket: WebSocket, state: AppState, request: ConnectRequest) -> impl Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    serve_split(sink, stream, state, request)
}

async fn serve_split(mut sink: Sink, mut stream: SplitStream<WebSocket>, state: AppState, request: ConnectRequest) {
    let (caller, mut resume) = match Box::pin(admit(&state, &request)).await {
        Ok(admitted) => admitted,
        Err((code, reason)) => return Box::pin(close(&mut sink, code, reason)).await,
    };
    let scope = request.scope;
    drop(request);
    // Enter the rooms first, then replay, then go live: nothing falls between.
    let (socket, registration) = match Box::pin(enter(&state, &caller, scope)).await {
        Ok(entered) => entered,
        Err(refusal) => return Box::pin(close(&mut sink, refusal.0, refusal.1)).await,
    };
    // A listed chat the user is not in is ignored.
    resume.retain(|(chat_id, _)| scope == Scope::Chat(*chat_id) || state.hub.follows(&socket, *chat_id));
    METRICS.ws_connections.inc();
    let connection = Connection { state: &state, caller: &caller, scope, socket: &socket };
    let outcome = connection.run(resume, registration, &mut sink, &mut stream).await;
    Box::pin(leave(&state, scope, &socket)).await;
    METRICS.ws_connections.dec();
    if let Some((code, reason)) = outcome {
        Box::pin(close(&mut sink, code, reason)).await;
        Box::pin(linger(&mut stream)).await;
    }
}

/// Puts the socket in its chat's room, or a user socket in the rooms of all its user's chats.
async fn enter(state: &AppState, caller: &AuthUser, scope: Scope) -> Result<(SocketHandle, Registration), Refusal> {
    match scope {
        Scope::Chat(chat_id) => state.hub.join(chat_id, caller.user_id).await.map_err(|error| {
            tracing::warn!(%error, chat_id, "cannot join the chat's room");
            (CloseCode::TryAgain, "bus unavailable")
        }),
        Scope::User => {
            // Registered before the list is read: a join or a leave meanwhile is not missed.
            let (socket, registration) = state.hub.connect_user(caller.user_id);
            let listed = state.metadata.clone().list_chat_ids(caller.call(ListChatIdsRequest {})).await;
            let followed = match listed {
                Ok(listed) => state.hub.follow(&socket, listed.into_inner().chat_ids).await.map_err(|error| {
                    tracing::warn!(%error, "cannot follow the user's chats");
                    (CloseCode::TryAgain, "bus unavailable")
                }),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "cannot list the user's chats");
                    Err((CloseCode::TryAgain, "chat service unavailable"))
                }
            };
            match followed {
                Ok(()) => Ok((socket, registration)),
                Err(refusal) => {
                    state.hub.disconnect_user(&socket).await;
                    Err(refusal)
                }
            }
        }
    }
}

async fn leave(state: &AppState, scope: Scope, socket: &SocketHandle) {
    match scope {
        Scope::Chat(chat_id) => state.hub.leave(chat_id, socket).await,
        Scope::User => state.hub.disconnect_user(socket).await,
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

/// The last message id a socket sent of each chat it replayed: a live
/// `new_message` at or below it was sent already (the replay overlapped the live feed).
#[derive(Debug, Default)]
struct Replayed(Vec<(i64, i64)>);

impl Replayed {
    fn sent_already(&self, chat_id: i64, id: i64) -> bool {
        self.0.iter().any(|(chat, last)| *chat == chat_id && id <= *last)
    }
}

/// When the socket last passed a typing start on, per chat (until the stop).
#[derive(Debug, Default)]
struct TypingSince(Vec<(i64, tokio::time::Instant)>);

impl TypingSince {
    /// Whether the change is news to the chat's receivers (a start repeated
    /// sooner than [`TYPING_REPEAT`], or a stop with no start, is not); notes it.
    fn news(&mut self, chat_id: i64, started: bool, now: tokio::time::Instant) -> bool {
        let at = self.0.iter().position(|(chat, _)| *chat == chat_id);
        let news = match (started, at) {
            (true, Some(at)) => now.duration_since(self.0[at].1) >= TYPING_REPEAT,
            (true, None) | (false, Some(_)) => true,
            (false, None) => false,
        };
        if news {
            if let Some(at) = at {
                self.0.swap_remove(at);
            }
            if started {
                self.0.push((chat_id, now));
            }
        }
        news
    }
}

/// One connection's fixed parts.
struct Connection<'a> {
    state: &'a AppState,
    caller: &'a AuthUser,
    scope: Scope,
    socket: &'a SocketHandle,
}

impl Connection<'_> {
    /// Replays the messages of `chat_id` after `after`; the id of the last one sent.
    async fn replay(&self, chat_id: i64, after: i64, sink: &mut Sink) -> Result<i64, Refusal> {
        let mut last_id = after;
        loop {
            let request = GetHistoryRequest { chat_id, limit: 100, cursor: Some(Cursor::AfterId(last_id)) };
            let page = self
                .state
                .messages
                .clone()
                .get_history(self.caller.call(request))
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
        &self,
        resume: Vec<(i64, i64)>,
        registration: Registration,
        sink: &mut Sink,
        stream: &mut SplitStream<WebSocket>,
    ) -> Option<Refusal> {
        let Registration { mut queue, close, .. } = registration;
        let mut replayed = Replayed::default();
        for (chat_id, after) in resume {
            // Boxed, as is `handle` below: the connection's future stays small while it idles.
            match Box::pin(self.replay(chat_id, after, sink)).await {
                Ok(last) => replayed.0.push((chat_id, last)),
                Err(refusal) => return Some(refusal),
            }
        }
        let (state, caller) = (self.state, self.caller);
        let expires_in =
            Duration::from_secs(u64::try_from(caller.expires_at - event_bus::now_ms() / 1000).unwrap_or(0));
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let (ping_every, pong_timeout) = (state.ws.ping_every, state.ws.pong_timeout);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        // Anything from the client (a pong above all) shows the connection is alive.
        let mut last_heard = tokio::time::Instant::now();
        let mut typing = TypingSince::default();
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
                        written = write(sink, &outbound, &replayed) => if !written { return None },
                        code = close.closed() => return Some(why_closed(Some(code))),
                    }
                }
                code = close.closed() => {
                    if code == CloseCode::Forbidden {
                        // What was queued before the removal (its participant_removed frame) goes out first.
                        while let Ok(outbound) = queue.try_recv() {
                            write(sink, &outbound, &replayed).await;
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
                            if let Some(reply) = Box::pin(self.handle(text.as_str(), &mut typing)).await {
                                self.socket.reply(reply);
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            let error = FrameError::new(ErrorCode::BadFrame, "frames are JSON text, not binary", None);
                            self.socket.reply(Outbound::Frame(error.into_frame().to_json().into()));
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

    /// Acts on one client frame; what to send back to this socket only, if anything.
    async fn handle(&self, text: &str, typing: &mut TypingSince) -> Option<Outbound> {
        let error = |error: FrameError| Some(Outbound::Frame(error.into_frame().to_json().into()));
        let (chat_id, frame) = match parse_client_frame(text, self.scope) {
            Ok(parsed) => parsed,
            Err(refused) => return error(refused),
        };
        // A user socket's frame names a chat its user must be in (the chats it carries).
        if let Some(chat_id) = chat_id
            && self.scope == Scope::User
            && !self.state.hub.follows(self.socket, chat_id)
        {
            let detail = "you are not a participant of this chat";
            return error(FrameError::new(ErrorCode::Forbidden, detail, frame.into_client_msg_id()));
        }
        match frame {
            ClientFrame::Ping => {
                let pong = ServerFrame::Pong { chat_id, timestamp: timestamp(event_bus::now_ms()) };
                Some(Outbound::Frame(pong.to_json().into()))
            }
            ClientFrame::Typing { started } => {
                // Typing fans out to the whole chat over the bus: only news is passed on.
                let chat_id = chat_id?;
                if typing.news(chat_id, started, tokio::time::Instant::now()) {
                    self.state.hub.typing(chat_id, self.caller.user_id, started).await;
                }
                None
            }
            ClientFrame::Read { seq } => {
                // A move comes back through the bus as a `read` frame, to every device.
                let chat_id = chat_id?;
                match messaging::mark_read(self.state, self.caller, chat_id, seq).await {
                    Ok(_) => None,
                    Err(refused) => error(send_error(refused, None)),
                }
            }
            ClientFrame::Message { content, client_msg_id, reply_to } => {
                let chat_id = chat_id?;
                let outgoing = messaging::Outgoing { chat_id, content, client_msg_id: client_msg_id.clone(), reply_to };
                match messaging::send(self.state, self.caller, outgoing).await {
                    // A new message comes back through the bus, like everyone's; a
                    // replayed idempotent send is not broadcast, so it is answered here.
                    Ok((_, true)) => None,
                    Ok((message, false)) => {
                        let id = message.id;
                        let json = ServerFrame::NewMessage { chat_id, message: message.into() }.to_json().into();
                        Some(Outbound::Message { chat_id, id, json })
                    }
                    Err(refused) => error(send_error(refused, client_msg_id)),
                }
            }
        }
    }
}

/// The error frame of a refused send (or read mark).
fn send_error(error: ApiError, client_msg_id: Option<String>) -> FrameError {
    let code = match &error {
        ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::PayloadTooLarge { .. } => ErrorCode::Validation,
        ApiError::Forbidden(_) | ApiError::NotFound(_) | ApiError::Unauthorized(_) => ErrorCode::Forbidden,
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
    FrameError::new(code, detail, client_msg_id)
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
async fn write(sink: &mut Sink, outbound: &Queued, replayed: &Replayed) -> bool {
    match &**outbound {
        Outbound::Message { chat_id, id, json } => replayed.sent_already(*chat_id, *id) || send_text(sink, json).await,
        Outbound::Frame(json) => send_text(sink, json).await,
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

    #[test]
    fn a_replayed_chat_drops_live_messages_up_to_its_last_replayed_id_only() {
        let replayed = Replayed(vec![(1, 10), (2, 0)]);
        let table = [((1, 9), true), ((1, 10), true), ((1, 11), false), ((2, 1), false), ((3, 1), false)];
        for ((chat, id), dropped) in table {
            assert_eq!(replayed.sent_already(chat, id), dropped, "chat {chat} message {id}");
        }
    }

    #[test]
    fn typing_is_news_per_chat_a_repeat_only_after_the_repeat_interval() {
        let t0 = tokio::time::Instant::now();
        let later = |ms: u64| t0 + Duration::from_millis(ms);
        let mut typing = TypingSince::default();
        let steps = [
            ((1, true, 0), true),
            ((1, true, 1_000), false), // sooner than TYPING_REPEAT
            ((2, true, 1_000), true),  // another chat
            ((1, true, 2_000), true),
            ((1, false, 2_100), true),
            ((1, false, 2_200), false), // no start to stop
            ((2, false, 2_300), true),
        ];
        for ((chat, started, at), news) in steps {
            assert_eq!(typing.news(chat, started, later(at)), news, "chat {chat} started {started} at {at}");
        }
    }
}
