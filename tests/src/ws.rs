//! A WebSocket client of the chat gateway, for tests and the load generator.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a socket ended, or that it is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The server closed it with this code.
    Code(u16),
    /// The connection dropped without a close frame.
    Dropped,
}

/// A socket of one chat (`GET /ws/{chat_id}`), or a user socket (`GET /ws`,
/// every chat of its user; `chat_id` 0).
pub struct ChatSocket {
    stream: Stream,
    pub chat_id: i64,
    /// Frames read while waiting for something else (a replay before the pong), not yet taken.
    unread: std::collections::VecDeque<Value>,
}

/// `ws://…/api/v1/ws/{chat_id}?token=…[&after=…]` for a gateway at `base_url` (`http://host:port`).
pub fn ws_url(base_url: &str, chat_id: i64, token: &str, after: Option<i64>) -> String {
    let base = base_url.replacen("http://", "ws://", 1);
    let after = after.map(|after| format!("&after={after}")).unwrap_or_default();
    format!("{base}/api/v1/ws/{chat_id}?token={token}{after}")
}

/// `ws://…/api/v1/ws?token=…[&after=…]`: the user socket, `after` as given (`chat:message,…`).
pub fn user_ws_url(base_url: &str, token: &str, after: Option<&str>) -> String {
    let base = base_url.replacen("http://", "ws://", 1);
    let after = after.map(|after| format!("&after={after}")).unwrap_or_default();
    format!("{base}/api/v1/ws?token={token}{after}")
}

impl ChatSocket {
    /// Connects (the socket may not be served yet: see [`ChatSocket::connect_ready`]).
    pub async fn connect(base_url: &str, chat_id: i64, token: &str, after: Option<i64>) -> anyhow::Result<Self> {
        Self::open(&ws_url(base_url, chat_id, token, after), chat_id).await
    }

    /// A user socket (every chat of the token's user), `after` as given.
    pub async fn connect_user(base_url: &str, token: &str, after: Option<&str>) -> anyhow::Result<Self> {
        Self::open(&user_ws_url(base_url, token, after), 0).await
    }

    async fn open(url: &str, chat_id: i64) -> anyhow::Result<Self> {
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { stream, chat_id, unread: Default::default() })
    }

    /// Connects and waits until the server serves the socket (a ping answered).
    pub async fn connect_ready(base_url: &str, chat_id: i64, token: &str, after: Option<i64>) -> anyhow::Result<Self> {
        Self::connect(base_url, chat_id, token, after).await?.ready().await
    }

    /// A user socket, once the server serves it (it follows every chat of its user by then).
    pub async fn connect_user_ready(base_url: &str, token: &str, after: Option<&str>) -> anyhow::Result<Self> {
        Self::connect_user(base_url, token, after).await?.ready().await
    }

    /// Waits for the answer to a ping; what came before it stays to be read.
    async fn ready(mut self) -> anyhow::Result<Self> {
        self.send(&serde_json::json!({"type": "ping"})).await?;
        let mut early = std::collections::VecDeque::new();
        loop {
            match self.next_frame(Duration::from_secs(5)).await {
                Ok(frame) if frame["type"] == "pong" => break,
                Ok(frame) => early.push_back(frame),
                Err(closed) => anyhow::bail!("closed before it was ready: {closed:?}"),
            }
        }
        self.unread = early;
        Ok(self)
    }

    pub async fn send(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.stream.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// The next JSON frame within `wait`; `Err` when the socket closed (or nothing came: `Err(None)`).
    pub async fn next_frame(&mut self, wait: Duration) -> Result<Value, Option<Closed>> {
        if let Some(frame) = self.unread.pop_front() {
            return Ok(frame);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.map_err(|_| None)?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).map_err(|_| Some(Closed::Dropped));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Some(frame.map_or(Closed::Dropped, |frame| Closed::Code(frame.code.into()))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Some(Closed::Dropped)),
            }
        }
    }

    /// The next frame of this type about this chat, skipping others, within `wait`.
    pub async fn expect_in(&mut self, kind: &str, chat_id: i64, wait: Duration) -> Result<Value, Option<Closed>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame["type"] == kind && frame["chat_id"] == chat_id {
                return Ok(frame);
            }
        }
    }

    /// Every frame that comes within `wait` (until the socket closes or goes quiet that long).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Ok(frame) = self.next_frame(wait).await {
            frames.push(frame);
        }
        frames
    }

    /// The next frame of this type, skipping others, within `wait`.
    pub async fn expect(&mut self, kind: &str, wait: Duration) -> Result<Value, Option<Closed>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
