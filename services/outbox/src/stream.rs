//! The JetStream stream that keeps every chat event: what it captures, its
//! limits, and making sure it exists (idempotently, by every service that
//! publishes into it, at start-up and again whenever a publish finds no stream).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use env_config::ConfigError;
use event_bus::Subjects;

/// The stream's limits and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Events older than this are dropped (`EVENTS_STREAM_MAX_AGE_SECONDS`, default 24 h).
    pub max_age: Duration,
    /// The stream drops its oldest events past this size (`EVENTS_STREAM_MAX_BYTES`, default 1 GiB).
    pub max_bytes: i64,
    /// Copies kept in a NATS cluster (`EVENTS_STREAM_REPLICAS`, default 1; 3 in production).
    pub replicas: usize,
    /// A re-published event id is dropped within this window (`EVENTS_STREAM_DUPLICATE_WINDOW_SECONDS`, default 120, at least 120).
    pub duplicate_window: Duration,
}

/// The shortest duplicate window: a relay re-publishes within it.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            replicas: 1,
            duplicate_window: MIN_DUPLICATE_WINDOW,
        }
    }
}

impl StreamSettings {
    /// From the `EVENTS_STREAM_*` variables (every one optional).
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let max_age =
            Duration::from_secs(env_config::parsed_or("EVENTS_STREAM_MAX_AGE_SECONDS", defaults.max_age.as_secs())?);
        let max_bytes: i64 = env_config::parsed_or("EVENTS_STREAM_MAX_BYTES", defaults.max_bytes)?;
        let replicas: usize = env_config::parsed_or("EVENTS_STREAM_REPLICAS", defaults.replicas)?;
        let window = Duration::from_secs(env_config::parsed_or(
            "EVENTS_STREAM_DUPLICATE_WINDOW_SECONDS",
            defaults.duplicate_window.as_secs(),
        )?);
        if window < MIN_DUPLICATE_WINDOW {
            return Err(ConfigError::invalid(
                "EVENTS_STREAM_DUPLICATE_WINDOW_SECONDS",
                &window.as_secs().to_string(),
                "at least 120: the outbox relay re-publishes within two minutes",
            ));
        }
        if max_age < window {
            return Err(ConfigError::invalid(
                "EVENTS_STREAM_MAX_AGE_SECONDS",
                &max_age.as_secs().to_string(),
                "at least the duplicate window",
            ));
        }
        if max_bytes <= 0 {
            return Err(ConfigError::invalid("EVENTS_STREAM_MAX_BYTES", &max_bytes.to_string(), "a positive size"));
        }
        if !(1..=5).contains(&replicas) {
            return Err(ConfigError::invalid("EVENTS_STREAM_REPLICAS", &replicas.to_string(), "1 to 5"));
        }
        Ok(Self { max_age, max_bytes, replicas, duplicate_window: window })
    }
}

/// The stream's name for a subject prefix (`chat` → `chat-events`; a stream
/// name takes no dots).
pub fn name(subjects: &Subjects) -> String {
    subjects.events_stream()
}

/// What the stream captures: every chat's events and the membership subject.
pub fn captured(subjects: &Subjects) -> Vec<String> {
    vec![format!("{}.chat.*.events", subjects.prefix()), subjects.membership()]
}

/// The stream's configuration.
pub fn config(subjects: &Subjects, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: name(subjects),
        description: Some(
            "Every committed chat event (messages, edits, deletes, membership), from the services' outboxes".into(),
        ),
        subjects: captured(subjects),
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to `settings`.
pub async fn ensure(
    jetstream: &jetstream::Context,
    subjects: &Subjects,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    let config = config(subjects, settings);
    let name = config.name.clone();
    jetstream
        .create_or_update_stream(config)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create or update the JetStream stream {name}: {error}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_captures_chat_events_and_membership_and_nothing_ephemeral() {
        let subjects = Subjects::new("test-1.a").unwrap();
        assert_eq!(name(&subjects), "test-1_a-events");
        let captured = captured(&subjects);
        assert_eq!(captured, ["test-1.a.chat.*.events", "test-1.a.membership"]);
        assert!(!captured.iter().any(|subject| subject.ends_with("typing") || subject.contains("presence")));
    }

    #[test]
    fn the_configuration_keeps_events_on_file_with_a_duplicate_window() {
        let subjects = Subjects::new("chat").unwrap();
        let config = config(&subjects, &StreamSettings::default());
        assert_eq!(config.storage, stream::StorageType::File);
        assert_eq!(config.max_age, Duration::from_secs(86_400));
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.num_replicas, 1);
    }
}
