//! The in-process bus of the standalone binary: one broadcast channel per subject.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::{Bus, BusError, Subscription};

/// How many payloads a slow subscriber may fall behind before it skips some
/// (at most once, like core NATS; the gateway backfills from the store).
const CAPACITY: usize = 4096;

#[derive(Default, Clone)]
pub struct LocalBus {
    subjects: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[tonic::async_trait]
impl Bus for LocalBus {
    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let mut subjects = self.subjects.lock().map_err(|_| BusError::Unavailable("poisoned".into()))?;
        if let Some(sender) = subjects.get(&subject)
            && sender.send(payload).is_err()
        {
            // Nobody listens any more: forget the subject.
            subjects.remove(&subject);
        }
        Ok(())
    }

    async fn subscribe(&self, subject: String) -> Result<Subscription, BusError> {
        let mut subjects = self.subjects.lock().map_err(|_| BusError::Unavailable("poisoned".into()))?;
        let receiver = subjects.entry(subject.clone()).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe();
        let stream = BroadcastStream::new(receiver).filter_map(move |item| {
            let subject = subject.clone();
            async move {
                match item {
                    Ok(payload) => Some(payload),
                    Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                        tracing::warn!(subject, skipped, "a local bus subscriber fell behind");
                        None
                    }
                }
            }
        });
        Ok(stream.boxed())
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
    async fn publishing_with_no_subscriber_is_fine() {
        let bus = LocalBus::new();
        bus.publish("nobody".into(), Bytes::from_static(b"x")).await.unwrap();
        let dropped = bus.subscribe("gone".into()).await.unwrap();
        drop(dropped);
        bus.publish("gone".into(), Bytes::from_static(b"x")).await.unwrap();
    }
}
