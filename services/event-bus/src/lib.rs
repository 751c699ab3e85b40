//! The chat event bus: one [`Bus`] trait, with NATS ([`NatsBus`]) for the
//! distributed deployment and an in-process implementation ([`LocalBus`]) for
//! the standalone binary.
//!
//! Subjects are `<prefix>.chat.<chat_id>.events` and
//! `<prefix>.chat.<chat_id>.typing` ([`Subjects`]); payloads are the protobuf
//! messages of `chat.events.v1`.

mod local;
mod nats;

use std::sync::Arc;

use bytes::Bytes;
use chat_proto::events::{ChatEvent, TypingEvent};
use futures::{StreamExt as _, stream::BoxStream};
use prost::Message as _;
use telemetry::propagation::TracePairs;

pub use local::LocalBus;
pub use nats::{NatsBus, NatsCredentials};

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

/// Publishes chat events; what the services hold.
#[derive(Clone)]
pub struct EventPublisher {
    bus: Arc<dyn Bus>,
    subjects: Subjects,
}

impl EventPublisher {
    pub fn new(bus: Arc<dyn Bus>, subjects: Subjects) -> Self {
        Self { bus, subjects }
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Publishes on the chat's events subject. A failure is logged, not
    /// returned: the change is already durable, and subscribers backfill.
    pub async fn chat_event(&self, event: ChatEvent) {
        let subject = self.subjects.events(event.chat_id);
        let (payload, trace) = (Bytes::from(event.encode_to_vec()), telemetry::propagation::current_trace());
        if let Err(error) = self.bus.publish_traced(subject.clone(), payload, trace).await {
            tracing::warn!(%error, subject, "cannot publish a chat event");
        }
    }

    /// Publishes a membership change on the chat's events subject (for its
    /// sockets) and on the membership subject (for membership caches).
    pub async fn membership_event(&self, event: ChatEvent) {
        let subject = self.subjects.membership();
        if let Err(error) = self.bus.publish(subject.clone(), Bytes::from(event.encode_to_vec())).await {
            tracing::warn!(%error, subject, "cannot publish a membership event");
        }
        self.chat_event(event).await;
    }

    /// Publishes on the chat's typing subject (best effort).
    pub async fn typing(&self, event: TypingEvent) {
        let subject = self.subjects.typing(event.chat_id);
        if let Err(error) = self.bus.publish(subject.clone(), Bytes::from(event.encode_to_vec())).await {
            tracing::debug!(%error, subject, "cannot publish a typing event");
        }
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
    fn prefixes_with_wildcards_or_spaces_are_refused() {
        for bad in ["", "a.*", "a b", "a..b", ">"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
