//! The in-process bus of the standalone binary: a bounded queue per
//! subscriber, found by the exact subject or by a pattern whose last token is
//! `*` (`chat.7.*` hears `chat.7.events` and `chat.7.typing`).
//!
//! A queue allocates its slots as they fill, so an idle subscription costs a
//! few hundred bytes (a broadcast channel would hold its whole capacity from
//! the start: a room per chat made that a quarter megabyte each).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Bus, BusError, Envelope, EnvelopeStream, Subscription};

/// How many payloads a subscriber may have waiting before it misses some (at
/// most once, like core NATS; the gateway backfills from the store).
const CAPACITY: usize = 4096;

/// A published payload, shared by its subscribers (a queue slot is one pointer).
type Shared = Arc<Envelope>;

#[derive(Default, Clone)]
pub struct LocalBus {
    subscribers: Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Shared>>>>>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, key: String) -> Result<mpsc::Receiver<Shared>, BusError> {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        let mut subscribers = self.subscribers.lock().map_err(|_| BusError::Unavailable("poisoned".into()))?;
        subscribers.entry(key).or_default().push(sender);
        Ok(receiver)
    }
}

/// The pattern key that hears `subject` besides the subject itself: its last token as `*`.
fn pattern_of(subject: &str) -> Option<String> {
    subject.rsplit_once('.').map(|(head, _)| format!("{head}.*"))
}

#[tonic::async_trait]
impl Bus for LocalBus {
    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let mut subscribers = self.subscribers.lock().map_err(|_| BusError::Unavailable("poisoned".into()))?;
        let pattern = pattern_of(&subject);
        let envelope = Arc::new(Envelope { subject: subject.as_str().into(), payload, trace: Vec::new() });
        for key in std::iter::once(subject).chain(pattern) {
            let Some(senders) = subscribers.get_mut(&key) else { continue };
            senders.retain(|sender| match sender.try_send(envelope.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(subject = key, "a local bus subscriber fell behind: a payload is skipped");
                    true
                }
                // The subscriber is gone.
                Err(TrySendError::Closed(_)) => false,
            });
            if senders.is_empty() {
                subscribers.remove(&key);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, subject: String) -> Result<Subscription, BusError> {
        Ok(ReceiverStream::new(self.add(subject)?).map(|envelope| envelope.payload.clone()).boxed())
    }

    async fn subscribe_all(&self, pattern: String) -> Result<EnvelopeStream, BusError> {
        if pattern.split('.').rev().skip(1).any(|token| token == "*" || token == ">") || pattern.ends_with('>') {
            return Err(BusError::InvalidSubject(pattern));
        }
        Ok(ReceiverStream::new(self.add(pattern)?).map(Arc::unwrap_or_clone).boxed())
    }

    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_of_a_subject_get_what_is_published_on_it_only() {
        let bus = LocalBus::new();
        let mut first = bus.subscribe("a".into()).await.unwrap();
        let mut second = bus.subscribe("a".into()).await.unwrap();
        let mut other = bus.subscribe("b".into()).await.unwrap();
        bus.publish("a".into(), Bytes::from_static(b"1")).await.unwrap();
        bus.publish("a".into(), Bytes::from_static(b"2")).await.unwrap();
        for subscriber in [&mut first, &mut second] {
            assert_eq!(subscriber.next().await.unwrap(), "1");
            assert_eq!(subscriber.next().await.unwrap(), "2");
        }
        bus.publish("b".into(), Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(other.next().await.unwrap(), "3");
    }

    #[tokio::test]
    async fn a_pattern_hears_every_subject_under_it_with_its_name_and_nothing_else() {
        let bus = LocalBus::new();
        let mut chat = bus.subscribe_all("p.chat.7.*".into()).await.unwrap();
        for subject in ["p.chat.7.events", "p.chat.8.events", "p.chat.7.typing", "p.chat.7.events.x", "p.chat.7"] {
            bus.publish(subject.into(), Bytes::from(subject.to_owned())).await.unwrap();
        }
        let first = chat.next().await.unwrap();
        assert_eq!((&*first.subject, &first.payload[..]), ("p.chat.7.events", &b"p.chat.7.events"[..]));
        assert_eq!(&*chat.next().await.unwrap().subject, "p.chat.7.typing");
        bus.publish("p.chat.7.presence".into(), Bytes::new()).await.unwrap();
        assert_eq!(&*chat.next().await.unwrap().subject, "p.chat.7.presence", "nothing else came between");
    }

    #[tokio::test]
    async fn only_a_trailing_star_is_a_pattern_here() {
        let bus = LocalBus::new();
        for pattern in ["p.*.events", "p.>", "*.x"] {
            assert!(bus.subscribe_all(pattern.into()).await.is_err(), "{pattern}");
        }
    }

    #[tokio::test]
    async fn publishing_with_no_subscriber_is_fine_and_gone_subscribers_are_forgotten() {
        let bus = LocalBus::new();
        bus.publish("nobody".into(), Bytes::from_static(b"x")).await.unwrap();
        let dropped = bus.subscribe("gone".into()).await.unwrap();
        drop(dropped);
        bus.publish("gone".into(), Bytes::from_static(b"x")).await.unwrap();
        assert!(bus.subscribers.lock().unwrap().is_empty());
    }
}
