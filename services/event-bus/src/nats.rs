//! The NATS bus of the distributed deployment (core NATS: at most once).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Bus, BusError, Subscription};

#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
}

impl NatsBus {
    /// Connects to `url`; keeps retrying in the background when NATS is down
    /// at start-up, and reconnects by itself after an outage.
    pub async fn connect(url: &str, name: &str) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            })
            .connect(url)
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(Self { client })
    }

    /// The underlying client (JetStream, connection state).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the client is connected to a server now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[tonic::async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        self.client.publish(subject, payload).await.map_err(|error| BusError::Unavailable(error.to_string()))
    }

    async fn subscribe(&self, subject: String) -> Result<Subscription, BusError> {
        let subscriber =
            self.client.subscribe(subject).await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(subscriber.map(|message| message.payload).boxed())
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|error| BusError::Unavailable(error.to_string()))
    }
}
