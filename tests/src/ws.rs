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

impl ChatSocket {
    /// Connects and, with `ready`, waits for the answer to a ping, so the socket is live.
    pub async fn connect(base_url: &str, chat_id: i64, token: &str, after: Option<i64>) -> anyhow::Result<Self> {
        let (stream, _) = tokio_tungstenite::connect_async(ws_url(base_url, chat_id, token, after)).await?;
        Ok(Self { stream, chat_id, unread: Default::default() })
    }

    /// Connects and waits until the server serves the socket (a ping answered).
    pub async fn connect_ready(base_url: &str, chat_id: i64, token: &str, after: Option<i64>) -> anyhow::Result<Self> {
        let mut socket = Self::connect(base_url, chat_id, token, after).await?;
        socket.send(&serde_json::json!({"type": "ping"})).await?;
        let mut early = std::collections::VecDeque::new();
        loop {
            match socket.next_frame(Duration::from_secs(5)).await {
                Ok(frame) if frame["type"] == "pong" => break,
                Ok(frame) => early.push_back(frame),
                Err(closed) => anyhow::bail!("closed before it was ready: {closed:?}"),
            }
        }
        socket.unread = early;
        Ok(socket)
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
