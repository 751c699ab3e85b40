//! Typed topics: one definition — a subject and the protobuf type of its
//! payloads — used both to publish and to subscribe, so that no caller
//! encodes or decodes bus bytes by hand.

use std::marker::PhantomData;

use chat_proto::events::{ChatEvent, PresenceAnswer, PresenceEvent, PresenceQuery, ReplicaHeartbeat, TypingEvent};
use futures::{StreamExt as _, stream::BoxStream};
use prost::Message;
use telemetry::propagation::TracePairs;

use crate::{Bus, BusError, Subjects};

/// What a subscription yields: a payload of the topic's type, or why it was not one.
pub type Received<M> = Result<M, prost::DecodeError>;

/// What a replay yields: each kept payload decoded, until the stream cannot be read.
pub type Replayed<M> = BoxStream<'static, Result<Received<M>, BusError>>;

/// A subject whose payloads are `M`s.
pub struct Topic<M> {
    subject: String,
    carries: PhantomData<fn() -> M>,
}

impl<M> Clone for Topic<M> {
    fn clone(&self) -> Self {
        Self { subject: self.subject.clone(), carries: PhantomData }
    }
}

impl<M> std::fmt::Debug for Topic<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Topic").field(&self.subject).finish()
    }
}

impl<M: Message + Default + Send + 'static> Topic<M> {
    pub fn new(subject: String) -> Self {
        Self { subject, carries: PhantomData }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Publishes one message (at most once, like core NATS).
    pub async fn publish(&self, bus: &dyn Bus, message: &M) -> Result<(), BusError> {
        bus.publish(self.subject.clone(), message.encode_to_vec().into()).await
    }

    /// Every message published from now on, decoded.
    pub async fn subscribe(&self, bus: &dyn Bus) -> Result<BoxStream<'static, Received<M>>, BusError> {
        Ok(bus.subscribe(self.subject.clone()).await?.map(M::decode).boxed())
    }

    /// What the stream `stream` kept of this topic (its subject may be a
    /// pattern) since `since_ms`, oldest first, decoded; `None` when the bus
    /// keeps nothing (see [`Bus::replay`]).
    pub async fn replay(&self, bus: &dyn Bus, stream: String, since_ms: i64) -> Result<Option<Replayed<M>>, BusError> {
        let replayed = bus.replay(stream, self.subject.clone(), since_ms).await?;
        Ok(replayed.map(|kept| kept.map(|envelope| envelope.map(|envelope| M::decode(envelope.payload))).boxed()))
    }

    /// [`Topic::subscribe`], with each message's trace context.
    pub async fn subscribe_traced(
        &self,
        bus: &dyn Bus,
    ) -> Result<BoxStream<'static, (Received<M>, TracePairs)>, BusError> {
        Ok(bus
            .subscribe_traced(self.subject.clone())
            .await?
            .map(|(payload, trace)| (M::decode(payload), trace))
            .boxed())
    }
}

/// What a chat's one subscription ([`Subjects::subscribe_chat`]) yields.
#[derive(Debug)]
pub enum ChatTraffic {
    Event(Received<ChatEvent>, TracePairs),
    Typing(Received<TypingEvent>),
    Presence(Received<PresenceEvent>),
}

impl ChatTraffic {
    /// Decodes a payload by its subject's last token; `None` for a subject this is not about.
    fn of(envelope: crate::Envelope) -> Option<Self> {
        let kind = envelope.subject.rsplit('.').next().unwrap_or_default();
        match kind {
            "events" => Some(Self::Event(ChatEvent::decode(envelope.payload), envelope.trace)),
            "typing" => Some(Self::Typing(TypingEvent::decode(envelope.payload))),
            "presence" => Some(Self::Presence(PresenceEvent::decode(envelope.payload))),
            _ => None,
        }
    }
}

impl Subjects {
    /// Everything of one chat — its events, typing and presence — on one subscription.
    pub async fn subscribe_chat(
        &self,
        bus: &dyn Bus,
        chat_id: i64,
    ) -> Result<BoxStream<'static, ChatTraffic>, BusError> {
        let all = bus.subscribe_all(self.chat_all(chat_id)).await?;
        Ok(all.filter_map(|envelope| std::future::ready(ChatTraffic::of(envelope))).boxed())
    }
}

/// The typed topics of a deployment.
impl Subjects {
    /// A chat's messages, edits, deletes and membership changes.
    pub fn events_topic(&self, chat_id: i64) -> Topic<ChatEvent> {
        Topic::new(self.events(chat_id))
    }

    /// A chat's typing indicators.
    pub fn typing_topic(&self, chat_id: i64) -> Topic<TypingEvent> {
        Topic::new(self.typing(chat_id))
    }

    /// A chat's presence changes, per gateway replica.
    pub fn presence_topic(&self, chat_id: i64) -> Topic<PresenceEvent> {
        Topic::new(self.presence(chat_id))
    }

    /// Every chat's events (a pattern: for replays).
    pub fn all_chat_events_topic(&self) -> Topic<ChatEvent> {
        Topic::new(self.all_chat_events())
    }

    /// Every chat's membership changes, for membership caches.
    pub fn membership_topic(&self) -> Topic<ChatEvent> {
        Topic::new(self.membership())
    }

    /// Gateway replicas' heartbeats.
    pub fn heartbeat_topic(&self) -> Topic<ReplicaHeartbeat> {
        Topic::new(self.heartbeat())
    }

    /// "Who is online in this chat?", to every gateway replica.
    pub fn presence_query_topic(&self) -> Topic<PresenceQuery> {
        Topic::new(self.presence_query())
    }

    /// The answers to one presence query (its `reply_subject`).
    pub fn presence_answer_topic(reply_subject: String) -> Topic<PresenceAnswer> {
        Topic::new(reply_subject)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::LocalBus;

    #[tokio::test]
    async fn what_a_topic_publishes_its_subscribers_receive_decoded_and_garbage_is_reported() {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let subjects = Subjects::new("topic-test").unwrap();
        let topic = subjects.typing_topic(7);
        let mut received = topic.subscribe(bus.as_ref()).await.unwrap();
        let event = TypingEvent { chat_id: 7, user_id: 3, started: true, at_ms: 1 };
        topic.publish(bus.as_ref(), &event).await.unwrap();
        assert_eq!(received.next().await.unwrap().unwrap(), event);
        bus.publish(topic.subject().to_owned(), bytes::Bytes::from_static(&[0xff, 0xff])).await.unwrap();
        assert!(received.next().await.unwrap().is_err(), "an undecodable payload is an error, not a default");
    }

    #[tokio::test]
    async fn a_chat_subscription_hears_the_chat_s_three_topics_typed_and_no_other_chat() {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let subjects = Subjects::new("topic-test").unwrap();
        let mut chat = subjects.subscribe_chat(bus.as_ref(), 7).await.unwrap();
        let typing = TypingEvent { chat_id: 7, user_id: 3, started: true, at_ms: 1 };
        subjects.typing_topic(8).publish(bus.as_ref(), &typing).await.unwrap();
        subjects.typing_topic(7).publish(bus.as_ref(), &typing).await.unwrap();
        let presence = PresenceEvent { chat_id: 7, user_id: 3, online: true, replica: "r".into(), at_ms: 2 };
        subjects.presence_topic(7).publish(bus.as_ref(), &presence).await.unwrap();
        let event = ChatEvent { chat_id: 7, at_ms: 3, ..ChatEvent::default() };
        subjects.events_topic(7).publish(bus.as_ref(), &event).await.unwrap();
        assert!(matches!(chat.next().await, Some(ChatTraffic::Typing(Ok(got))) if got == typing));
        assert!(matches!(chat.next().await, Some(ChatTraffic::Presence(Ok(got))) if got == presence));
        assert!(matches!(chat.next().await, Some(ChatTraffic::Event(Ok(got), _)) if got == event));
        let replay = subjects.all_chat_events_topic().replay(bus.as_ref(), subjects.events_stream(), 0).await;
        assert!(replay.unwrap().is_none(), "the in-process bus keeps nothing to replay");
    }
}
