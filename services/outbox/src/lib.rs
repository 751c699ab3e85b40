//! The transactional outbox: no committed event is lost, nothing
//! uncommitted is published.
//!
//! A service stages the events of a change in its outbox table, in the same
//! transaction as the change ([`EventSink::stage`]). Once it commits, it hands
//! them to this process's relay ([`EventSink::committed`]), which publishes
//! them to the JetStream stream of [`stream`] with `Nats-Msg-Id` = the
//! event's id and deletes the rows the stream acknowledged. If the relay is
//! not sure an event got out (NATS down, a publish timed out, its queue was
//! full, the process crashed between commit and publish), the row stays and
//! the relay publishes the table in order instead, at start-up, once it is
//! behind and every [`SWEEP_INTERVAL`] for rows another process left behind.
//! A re-published event is dropped by the stream's duplicate window; core
//! subscribers (the gateways' per-chat subscriptions) may see it twice and
//! de-duplicate (message ids, seqs).
//!
//! The standalone server's in-process bus needs none of it ([`EventSink::Direct`]):
//! its subscribers live and die with the process that commits.

mod relay;
pub mod stream;

use std::sync::Arc;

use event_bus::{Bus, Outbound, Subjects};
use sql_pool::Db;
use sqlx::AnyConnection;

pub use relay::{Outbox, SWEEP_INTERVAL};
pub use stream::StreamSettings;

/// How a deployment delivers events: the bus, its subjects, and for the
/// distributed deployment the JetStream stream every change goes through.
#[derive(Clone)]
pub struct Delivery {
    pub bus: Arc<dyn Bus>,
    pub subjects: Subjects,
    jetstream: Option<(async_nats::jetstream::Context, StreamSettings)>,
}

impl Delivery {
    /// Straight onto `bus` after each commit (the standalone server's in-process bus).
    pub fn direct(bus: Arc<dyn Bus>, subjects: Subjects) -> Self {
        Self { bus, subjects, jetstream: None }
    }

    /// Through each service's outbox into the JetStream stream of `subjects` on `bus`.
    pub fn jetstream(bus: event_bus::NatsBus, subjects: Subjects, settings: StreamSettings) -> Self {
        let jetstream = async_nats::jetstream::new(bus.client().clone());
        Self { bus: Arc::new(bus), subjects, jetstream: Some((jetstream, settings)) }
    }

    /// Whether events go through an outbox.
    pub fn is_durable(&self) -> bool {
        self.jetstream.is_some()
    }

    /// Where the events of a service whose outbox table is `table` in `db` go
    /// (starts the service's relay when there is a stream).
    pub fn sink(&self, db: &Db, table: &str) -> anyhow::Result<EventSink> {
        match &self.jetstream {
            None => Ok(EventSink::Direct(self.bus.clone())),
            Some((jetstream, settings)) => Ok(EventSink::Outbox(Outbox::start(
                db.clone(),
                table,
                jetstream.clone(),
                self.subjects.clone(),
                settings.clone(),
            )?)),
        }
    }
}

/// Where a service's events go once their change commits.
#[derive(Clone)]
pub enum EventSink {
    /// Published on the bus right after the commit (the in-process bus).
    Direct(Arc<dyn Bus>),
    /// Staged in the outbox table with the change, published by the relay.
    Outbox(Outbox),
}

impl EventSink {
    /// Writes the events into the outbox in the change's transaction (nothing for [`EventSink::Direct`]).
    pub async fn stage(&self, tx: &mut AnyConnection, events: &[Outbound]) -> Result<(), sqlx::Error> {
        match self {
            Self::Direct(_) => Ok(()),
            Self::Outbox(outbox) => outbox.stage(tx, events).await,
        }
    }

    /// Publishes the events of a change that has committed, in order: on the
    /// bus when this returns (unless the bus is down), acknowledged by
    /// JetStream later — the caller never waits for that.
    pub async fn committed(&self, events: Vec<Outbound>) {
        match self {
            Self::Direct(bus) => {
                for event in events {
                    let subject = event.subject.clone();
                    if let Err(error) = bus.publish_traced(event.subject, event.payload, event.trace).await {
                        tracing::warn!(%error, subject, "cannot publish an event");
                    }
                }
            }
            Self::Outbox(outbox) => outbox.committed(events).await,
        }
    }
}

/// `INSERT` of `rows` outbox rows into `table`, for this backend.
fn insert_sql(table: &str, rows: usize) -> String {
    let values = sql_pool::placeholders(rows, "(?, ?, ?, ?, ?)");
    format!("INSERT INTO {table} (event_id, subject, payload, headers, created_at_ms) VALUES {values}")
}

/// The trace context of an event as stored (`name: value` lines).
fn headers_text(trace: &[(String, String)]) -> String {
    trace.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
}

/// The trace context back from [`headers_text`].
fn headers_from(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Whether `table` is a plain SQL identifier (it is put into statements).
fn valid_table(table: &str) -> bool {
    !table.is_empty() && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The oldest rows of `table` written at or before a time, at most a number of them.
fn oldest_first_sql(table: &str) -> String {
    format!("SELECT id, event_id, subject, payload, headers FROM {table} WHERE created_at_ms <= ? ORDER BY id LIMIT ?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_survives_the_table() {
        let trace = vec![("traceparent".to_owned(), "00-abc-def-01".to_owned()), ("tracestate".into(), "k=v".into())];
        assert_eq!(headers_from(&headers_text(&trace)), trace);
        assert!(headers_from("").is_empty());
    }

    #[test]
    fn one_insert_stages_every_event_of_a_change() {
        assert_eq!(
            insert_sql("message_outbox", 2),
            "INSERT INTO message_outbox (event_id, subject, payload, headers, created_at_ms) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)"
        );
    }

    #[test]
    fn table_names_are_identifiers() {
        assert!(valid_table("message_outbox"));
        for bad in ["", "a b", "t; DROP TABLE x", "a.b"] {
            assert!(!valid_table(bad), "{bad:?}");
        }
    }
}
