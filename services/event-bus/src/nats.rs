//! The NATS bus of the distributed deployment (core NATS: at most once).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use secrecy::{ExposeSecret as _, SecretString};

use telemetry::propagation::TracePairs;

use crate::{Bus, BusError, Envelope, EnvelopeStream, ReplayStream, Subscription, TracedSubscription};

/// How long a replay waits for the next event the stream still holds.
const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// How long [`Bus::flush`] waits for the server's answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    reconnections: tokio::sync::watch::Receiver<u64>,
    /// When the connection was last lost (ms since the epoch; 0: never).
    lost_at_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

fn trace_of(headers: Option<&async_nats::HeaderMap>) -> TracePairs {
    headers
        .iter()
        .flat_map(|headers| headers.iter())
        .map(|(name, values)| (name.to_string(), values))
        // JetStream's own headers (the message id) are no trace context.
        .filter(|(name, _)| !name.starts_with("Nats-"))
        .filter_map(|(name, values)| Some((name, values.first()?.to_string())))
        .collect()
}

fn unavailable(error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(error.to_string())
}

/// How a client proves itself to the NATS server: `NATS_USER` and
/// `NATS_PASSWORD`, or `NATS_TOKEN`, or nothing (a server without auth).
#[derive(Clone, Default)]
pub enum NatsCredentials {
    #[default]
    None,
    UserPassword {
        user: String,
        password: SecretString,
    },
    Token(SecretString),
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword({user}, [redacted])"),
            Self::Token(_) => f.write_str("Token([redacted])"),
        }
    }
}

impl NatsCredentials {
    /// `NATS_USER` with `NATS_PASSWORD`, or `NATS_TOKEN`; one kind at most.
    pub fn from_env() -> Result<Self, env_config::ConfigError> {
        use env_config::ConfigError;
        let (user, password, token) =
            (env_config::string("NATS_USER"), env_config::string("NATS_PASSWORD"), env_config::string("NATS_TOKEN"));
        match (user, password, token) {
            (None, None, None) => Ok(Self::None),
            (Some(user), Some(password), None) => Ok(Self::UserPassword { user, password: password.into() }),
            (None, None, Some(token)) => Ok(Self::Token(token.into())),
            (Some(_), None, None) => Err(ConfigError::missing("NATS_PASSWORD", "NATS_USER is set")),
            (None, Some(_), None) => Err(ConfigError::missing("NATS_USER", "NATS_PASSWORD is set")),
            _ => Err(ConfigError::invalid(
                "NATS_TOKEN",
                "[redacted]",
                "set either NATS_TOKEN or NATS_USER/NATS_PASSWORD",
            )),
        }
    }

    fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            Self::None => options,
            Self::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.expose_secret().to_owned())
            }
            Self::Token(token) => options.token(token.expose_secret().to_owned()),
        }
    }
}

impl NatsBus {
    /// Connects to `url` with no credentials; see [`Self::connect_with`].
    pub async fn connect(url: &str, name: &str) -> Result<Self, BusError> {
        Self::connect_with(url, name, &NatsCredentials::None).await
    }

    /// Connects to `url`; keeps retrying in the background when NATS is down
    /// at start-up (or refuses the credentials), and reconnects by itself
    /// after an outage.
    pub async fn connect_with(url: &str, name: &str, credentials: &NatsCredentials) -> Result<Self, BusError> {
        let (reconnected, reconnections) = tokio::sync::watch::channel(0_u64);
        let reconnected = std::sync::Arc::new(reconnected);
        let connected_before = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost_at_ms = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let lost = lost_at_ms.clone();
        let client = credentials
            .apply(async_nats::ConnectOptions::new())
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let (reconnected, connected_before, lost) =
                    (reconnected.clone(), connected_before.clone(), lost.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            if connected_before.swap(true, std::sync::atomic::Ordering::SeqCst) {
                                reconnected.send_modify(|count| *count += 1);
                            }
                        }
                        async_nats::Event::Disconnected => {
                            // Kept before the reconnection is announced: readers take it after `changed`.
                            lost.store(crate::now_ms(), std::sync::atomic::Ordering::SeqCst);
                            tracing::warn!("disconnected from NATS");
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(Self { client, reconnections, lost_at_ms })
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

    async fn publish_traced(&self, subject: String, payload: Bytes, trace: TracePairs) -> Result<(), BusError> {
        if trace.is_empty() {
            return self.publish(subject, payload).await;
        }
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in trace {
            headers.insert(name.as_str(), value.as_str());
        }
        let published = self.client.publish_with_headers(subject, headers, payload).await;
        published.map_err(|error| BusError::Unavailable(error.to_string()))
    }

    async fn subscribe_traced(&self, subject: String) -> Result<TracedSubscription, BusError> {
        let subscriber =
            self.client.subscribe(subject).await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(subscriber
            .map(|message| {
                let trace = trace_of(message.headers.as_ref());
                (message.payload, trace)
            })
            .boxed())
    }

    async fn subscribe_all(&self, pattern: String) -> Result<EnvelopeStream, BusError> {
        let subscriber = self.client.subscribe(pattern).await.map_err(unavailable)?;
        Ok(subscriber
            .map(|message| Envelope {
                subject: message.subject.as_str().into(),
                trace: trace_of(message.headers.as_ref()),
                payload: message.payload,
            })
            .boxed())
    }

    async fn replay(&self, stream: String, subject: String, since_ms: i64) -> Result<Option<ReplayStream>, BusError> {
        use async_nats::jetstream::{self, consumer};
        let jetstream = jetstream::new(self.client.clone());
        let stream = jetstream.get_stream(&stream).await.map_err(unavailable)?;
        let since =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(since_ms) * 1_000_000).map_err(unavailable)?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(unavailable)?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(Some(futures::stream::empty().boxed()));
        }
        let messages = consumer.messages().await.map_err(unavailable)?;
        // Up to the newest event at the time: the one with nothing pending after it.
        let replay = futures::stream::unfold(Some(messages), |messages| async move {
            let mut messages = messages?;
            let message = match tokio::time::timeout(REPLAY_WAIT, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => return Some((Err(unavailable(error)), None)),
                Ok(None) | Err(_) => {
                    return Some((Err(unavailable("the stream stopped before its newest event")), None));
                }
            };
            let pending = match message.info() {
                Ok(info) => info.pending,
                Err(error) => return Some((Err(unavailable(error)), None)),
            };
            let message = message.message;
            let envelope = Envelope {
                subject: message.subject.as_str().into(),
                trace: trace_of(message.headers.as_ref()),
                payload: message.payload,
            };
            Some((Ok(envelope), (pending > 0).then_some(messages)))
        });
        Ok(Some(replay.boxed()))
    }

    fn lost_at_ms(&self) -> i64 {
        self.lost_at_ms.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn subscribe(&self, subject: String) -> Result<Subscription, BusError> {
        let subscriber =
            self.client.subscribe(subject).await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        Ok(subscriber.map(|message| message.payload).boxed())
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
        // Written is not taken: a subscription counts once the server has
        // processed it. A request nobody answers comes back as "no
        // responders" after the server has processed everything this
        // connection sent before it, subscriptions included.
        let request = async_nats::Request::new().timeout(Some(SYNC_TIMEOUT));
        match self.client.send_request(self.client.new_inbox(), request).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
            Err(error) => Err(BusError::Unavailable(error.to_string())),
        }
    }

    fn reconnections(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.reconnections.clone())
    }

    fn is_connected(&self) -> bool {
        NatsBus::is_connected(self)
    }
}
