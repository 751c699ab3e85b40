//! The chat event bus: one [`Bus`] trait, with NATS ([`NatsBus`]) for the
//! distributed deployment and an in-process implementation ([`LocalBus`]) for
//! the standalone binary.
//!
//! Subjects are `<prefix>.chat.<chat_id>.events` and
//! `<prefix>.chat.<chat_id>.typing` ([`Subjects`]); payloads are the protobuf
//! messages of `chat.events.v1`.

mod local;
mod nats;
mod topic;

use bytes::Bytes;
use chat_proto::events::ChatEvent;
use futures::{StreamExt as _, stream::BoxStream};
use prost::Message as _;
use telemetry::propagation::TracePairs;

pub use local::LocalBus;
pub use nats::{NatsBus, NatsCredentials};
pub use topic::{ChatTraffic, Received, Replayed, Topic};

/// The default subject prefix (`NATS_SUBJECT_PREFIX`).
pub const DEFAULT_PREFIX: &str = "chat";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
}

/// A stream of payloads published on one subject.
pub type Subscription = BoxStream<'static, Bytes>;

/// A stream of payloads with the trace context each was published with.
pub type TracedSubscription = BoxStream<'static, (Bytes, TracePairs)>;

/// A payload with the subject it was published on and its trace context.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub subject: std::sync::Arc<str>,
    pub payload: Bytes,
    pub trace: TracePairs,
}

/// What a pattern subscription yields.
pub type EnvelopeStream = BoxStream<'static, Envelope>;

/// What a replay yields: the kept payloads, oldest first, to the newest at the time.
pub type ReplayStream = BoxStream<'static, Result<Envelope, BusError>>;

/// Publish/subscribe on subjects, at most once (like core NATS).
#[tonic::async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError>;
    async fn subscribe(&self, subject: String) -> Result<Subscription, BusError>;
    /// Publishes with trace context (NATS headers); a bus without headers drops it.
    async fn publish_traced(&self, subject: String, payload: Bytes, trace: TracePairs) -> Result<(), BusError> {
        let _ = trace;
        self.publish(subject, payload).await
    }
    /// Like [`Bus::subscribe`], with each payload's trace context (empty when it had none).
    async fn subscribe_traced(&self, subject: String) -> Result<TracedSubscription, BusError> {
        Ok(self.subscribe(subject).await?.map(|payload| (payload, TracePairs::new())).boxed())
    }
    /// Every payload published on a subject that `pattern` matches (its last
    /// token may be `*`), with its subject: one subscription for several subjects.
    async fn subscribe_all(&self, pattern: String) -> Result<EnvelopeStream, BusError>;
    /// What the stream `stream` (JetStream) kept of `subject` (wildcards
    /// allowed) since `since_ms`, oldest first, up to its newest payload now;
    /// `None` for a bus that keeps nothing (and cannot lose a live payload
    /// either: the in-process bus).
    async fn replay(&self, stream: String, subject: String, since_ms: i64) -> Result<Option<ReplayStream>, BusError> {
        let _ = (stream, subject, since_ms);
        Ok(None)
    }
    /// When the connection was last lost (ms since the epoch; 0: never): after
    /// a reconnection, what was published since then may have been missed.
    fn lost_at_ms(&self) -> i64 {
        0
    }
    /// Waits until the bus has taken what this process published and
    /// subscribed so far (a subscription made before `flush` hears everything
    /// published after it returns, from any process).
    async fn flush(&self) -> Result<(), BusError>;
    /// Counts the reconnections after an outage (subscribers may have missed
    /// messages meanwhile); `None` for a bus that cannot lose its connection.
    fn reconnections(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether publishing and subscribing reach the other services now.
    fn is_connected(&self) -> bool {
        true
    }
}

/// The subject names of one deployment (its prefix keeps deployments and tests apart).
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Result<Self, BusError> {
        let prefix = prefix.into();
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if valid { Ok(Self { prefix }) } else { Err(BusError::InvalidSubject(prefix)) }
    }

    /// `NATS_SUBJECT_PREFIX`, default `chat`.
    pub fn from_env() -> Result<Self, env_config::ConfigError> {
        let prefix = env_config::string("NATS_SUBJECT_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.into());
        Self::new(prefix.clone()).map_err(|_| {
            env_config::ConfigError::invalid(
                "NATS_SUBJECT_PREFIX",
                &prefix,
                "use letters, digits, _ and - between dots",
            )
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Messages, edits, deletes and membership changes of one chat.
    pub fn events(&self, chat_id: i64) -> String {
        format!("{}.chat.{chat_id}.events", self.prefix)
    }

    /// Typing indicators of one chat.
    pub fn typing(&self, chat_id: i64) -> String {
        format!("{}.chat.{chat_id}.typing", self.prefix)
    }

    /// Presence changes of one chat, per gateway replica.
    pub fn presence(&self, chat_id: i64) -> String {
        format!("{}.chat.{chat_id}.presence", self.prefix)
    }

    /// Every chat's membership changes (`participant_added` / `participant_removed`),
    /// for services that cache memberships.
    pub fn membership(&self) -> String {
        format!("{}.membership", self.prefix)
    }

    /// Every chat's events subject (a pattern).
    pub fn all_chat_events(&self) -> String {
        format!("{}.chat.*.events", self.prefix)
    }

    /// Every subject of one chat (events, typing, presence): a gateway room's one subscription.
    pub fn chat_all(&self, chat_id: i64) -> String {
        format!("{}.chat.{chat_id}.*", self.prefix)
    }

    /// The JetStream stream that keeps every chat's events (`chat` → `chat-events`;
    /// a stream name takes no dots).
    pub fn events_stream(&self) -> String {
        format!("{}-events", self.prefix.replace('.', "_"))
    }

    /// Gateway replicas' heartbeats.
    pub fn heartbeat(&self) -> String {
        format!("{}.gateway.heartbeat", self.prefix)
    }

    /// Questions about who is online, answered by every gateway replica.
    pub fn presence_query(&self) -> String {
        format!("{}.presence.query", self.prefix)
    }

    /// A subject for the answers to one question.
    pub fn reply(&self, token: &str) -> String {
        format!("{}.presence.reply.{token}", self.prefix)
    }
}

/// An event on its way to the bus: what a service stages in its outbox with
/// the change it announces, and publishes once that change is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Unique per event (a UUID): the JetStream `Nats-Msg-Id`, and the payload's `event_id`.
    pub id: String,
    pub subject: String,
    pub payload: Bytes,
    /// The trace context of the request that made the change.
    pub trace: TracePairs,
}

impl Subjects {
    /// A chat event, given a fresh id, for the chat's events subject.
    pub fn chat_event(&self, event: &ChatEvent, trace: TracePairs) -> Outbound {
        let id = uuid::Uuid::new_v4().to_string();
        let payload = ChatEvent { event_id: id.clone(), ..event.clone() }.encode_to_vec().into();
        Outbound { id, subject: self.events(event.chat_id), payload, trace }
    }

    /// A membership change: for the chat's sockets (its events subject) and
    /// for membership caches (the membership subject), under one event id
    /// (the second copy's `Nats-Msg-Id` is the id with `.membership` after it).
    pub fn membership_event(&self, event: &ChatEvent, trace: TracePairs) -> [Outbound; 2] {
        let for_chat = self.chat_event(event, trace.clone());
        let for_caches = Outbound {
            id: format!("{}.membership", for_chat.id),
            subject: self.membership(),
            payload: for_chat.payload.clone(),
            trace,
        };
        [for_chat, for_caches]
    }
}

/// Milliseconds since the Unix epoch, for event times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Where NATS is reached when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The NATS bus named by `NATS_URL` (default [`DEFAULT_NATS_URL`]), with the
/// credentials of [`NatsCredentials::from_env`], and the subjects of
/// `NATS_SUBJECT_PREFIX`, for a distributed service called `name`.
pub async fn nats_from_env(name: &str) -> anyhow::Result<(NatsBus, Subjects)> {
    let url = env_config::url("NATS_URL", &["nats", "tls", "ws", "wss"])?
        .map_or_else(|| DEFAULT_NATS_URL.to_owned(), |url| url.to_string());
    let subjects = Subjects::from_env()?;
    let bus = NatsBus::connect_with(&url, name, &NatsCredentials::from_env()?).await?;
    Ok((bus, subjects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_prefix_and_the_chat() {
        let subjects = Subjects::new("test-1.a").unwrap();
        assert_eq!(subjects.events(42), "test-1.a.chat.42.events");
        assert_eq!(subjects.typing(42), "test-1.a.chat.42.typing");
    }

    #[test]
    fn an_outbound_event_carries_its_id_in_the_payload() {
        let subjects = Subjects::new("t").unwrap();
        let event = ChatEvent { chat_id: 7, at_ms: 1, ..ChatEvent::default() };
        let outbound = subjects.chat_event(&event, TracePairs::new());
        assert_eq!(outbound.subject, "t.chat.7.events");
        let decoded = ChatEvent::decode(outbound.payload.clone()).unwrap();
        assert_eq!(decoded.event_id, outbound.id);
        assert_ne!(subjects.chat_event(&event, TracePairs::new()).id, outbound.id, "every event its own id");
        let [for_chat, for_caches] = subjects.membership_event(&event, TracePairs::new());
        assert_eq!((for_chat.subject.as_str(), for_caches.subject.as_str()), ("t.chat.7.events", "t.membership"));
        assert_eq!(for_caches.id, format!("{}.membership", for_chat.id));
        assert_eq!(for_chat.payload, for_caches.payload);
    }

    #[test]
    fn prefixes_with_wildcards_or_spaces_are_refused() {
        for bad in ["", "a.*", "a b", "a..b", ">"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
