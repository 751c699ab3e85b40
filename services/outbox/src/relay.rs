//! The relay: publishes committed outbox rows to JetStream and deletes what
//! the stream acknowledged.
//!
//! Two ways out, one order. *Live*: the events of each commit, handed over
//! in memory, are published at once (no read of the table), and the commit's
//! caller is answered once they are handed to the NATS client — so a change
//! is on the bus by the time it is answered, as with a plain publish — while
//! their acknowledgements are awaited by a second task, in order, without
//! holding up the next commit. *From the table*: at start-up, and whenever
//! the relay is behind (an acknowledgement failed or timed out, a publish
//! failed, the live queue overflowed) until it has caught up, it publishes
//! the table oldest first and drops the live queue meanwhile (those events
//! are in the table too). Every [`SWEEP_INTERVAL`] it also publishes rows
//! older than [`LEFT_BEHIND_AFTER`]: another process's, that crashed before
//! its relay got to them.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
};
use event_bus::{Outbound, Subjects};
use sql_pool::Db;
use sqlx::{AnyConnection, Row};
use telemetry::metrics::{Counter, Gauge, register};
use tokio::sync::{mpsc, oneshot};

use crate::{StreamSettings, headers_from, headers_text, insert_sql, oldest_first_sql, stream, valid_table};

/// How often the relay looks for rows that another process left behind.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A row this old was left behind: its own relay would have published it by now.
pub const LEFT_BEHIND_AFTER: Duration = Duration::from_secs(30);
/// How long the relay waits before trying again while it cannot publish.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Acknowledged rows are deleted together, this often.
const DELETE_EVERY: Duration = Duration::from_millis(100);
/// Rows read from the table at a time.
const READ_BATCH: i64 = 256;
/// Commits whose events may wait for the relay in memory (past it, the table has them).
const LIVE_QUEUE: usize = 4096;
/// Publishes whose acknowledgement may be outstanding.
const ACK_QUEUE: usize = 16_384;
/// How long one publish may wait for the stream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit waits for its events to be handed to NATS (never for long: the table has them).
const SENT_WAIT: Duration = Duration::from_millis(500);

struct Metrics {
    published: Counter,
    behind: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics { published: Counter::default(), behind: Gauge::default() };
    register(|registry| {
        registry.register("outbox_published", "Outbox events the stream acknowledged", metrics.published.clone());
        registry.register(
            "outbox_behind",
            "1 while the relay publishes from the table (it could not publish, or is catching up)",
            metrics.behind.clone(),
        );
    });
    metrics
});

/// The events of one commit, and who waits for them to be sent.
struct Live {
    events: Vec<Outbound>,
    sent: oneshot::Sender<()>,
}

struct Shared {
    table: String,
    live: mpsc::Sender<Live>,
    /// Set when a commit's events did not fit the live queue, or an acknowledgement failed.
    lost_track: AtomicBool,
}

/// A service's outbox table and its relay; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    /// Starts the relay of `table` (the service's outbox table, which its
    /// migrations create) into the stream of `subjects`.
    pub fn start(
        db: Db,
        table: &str,
        jetstream: jetstream::Context,
        subjects: Subjects,
        settings: StreamSettings,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(valid_table(table), "invalid outbox table name {table:?}");
        LazyLock::force(&METRICS);
        let (live, queue) = mpsc::channel(LIVE_QUEUE);
        let shared = Arc::new(Shared { table: table.to_owned(), live, lost_track: AtomicBool::new(false) });
        let (acks, pending) = mpsc::channel(ACK_QUEUE);
        tokio::spawn(acknowledge(shared.clone(), db.clone(), pending));
        let relay = Relay {
            shared: shared.clone(),
            db,
            jetstream,
            subjects,
            settings,
            stream_ready: false,
            behind: true,
            acks,
            published_from_table: Recent::default(),
        };
        tokio::spawn(relay.run(queue));
        Ok(Self { shared })
    }

    pub(crate) async fn stage(&self, tx: &mut AnyConnection, events: &[Outbound]) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = insert_sql(&self.shared.table, events.len());
        let now = event_bus::now_ms();
        let mut query = sqlx::query(&sql);
        for event in events {
            query = query
                .bind(event.id.clone())
                .bind(event.subject.clone())
                .bind(event.payload.to_vec())
                .bind(headers_text(&event.trace))
                .bind(now);
        }
        query.execute(&mut *tx).await?;
        Ok(())
    }

    /// Hands a committed change's events to the relay and waits (briefly)
    /// until they are sent: not for the stream's acknowledgement.
    pub(crate) async fn committed(&self, events: Vec<Outbound>) {
        if events.is_empty() {
            return;
        }
        let (sent, was_sent) = oneshot::channel();
        if self.shared.live.try_send(Live { events, sent }).is_err() {
            self.shared.lost_track.store(true, Ordering::Release);
            return;
        }
        let _ = tokio::time::timeout(SENT_WAIT, was_sent).await;
    }
}

/// A bounded set of the ids seen last.
#[derive(Default)]
struct Recent {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    const CAPACITY: usize = 65_536;

    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.ids.remove(&oldest);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

struct Relay {
    shared: Arc<Shared>,
    db: Db,
    jetstream: jetstream::Context,
    subjects: Subjects,
    settings: StreamSettings,
    stream_ready: bool,
    /// Publishing from the table until it is empty.
    behind: bool,
    /// Live publishes whose acknowledgement the second task awaits.
    acks: mpsc::Sender<(String, PublishAckFuture)>,
    /// Events published from the table lately: when they come by on the
    /// live queue too, they are not published again.
    published_from_table: Recent,
}

impl Relay {
    async fn run(mut self, mut queue: mpsc::Receiver<Live>) {
        // The stream exists from the start, not from the first event (and
        // again after every publish that found none).
        self.ready().await;
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        let mut retry_at = tokio::time::Instant::now();
        loop {
            if self.shared.lost_track.swap(false, Ordering::AcqRel) {
                tracing::warn!(table = self.shared.table, "outbox relay lost track; publishing from the table");
                self.behind = true;
            }
            if self.behind && tokio::time::Instant::now() >= retry_at {
                METRICS.behind.set(1);
                if self.publish_table(i64::MAX).await {
                    self.behind = false;
                    METRICS.behind.set(0);
                    tracing::debug!(table = self.shared.table, "outbox relay caught up");
                } else {
                    retry_at = tokio::time::Instant::now() + RETRY_AFTER;
                }
            }
            tokio::select! {
                live = queue.recv() => {
                    let Some(Live { events, sent }) = live else { break };
                    if !self.behind {
                        let events: Vec<Outbound> =
                            events.into_iter().filter(|event| !self.published_from_table.contains(&event.id)).collect();
                        if !self.send_live(events).await {
                            self.behind = true;
                        }
                    }
                    // Behind, the events wait in the table; either way the commit goes on.
                    let _ = sent.send(());
                }
                _ = sweep.tick() => {
                    if !self.behind {
                        let cutoff = event_bus::now_ms() - LEFT_BEHIND_AFTER.as_millis() as i64;
                        if !self.publish_table(cutoff).await {
                            self.behind = true;
                        }
                    }
                }
                () = tokio::time::sleep_until(retry_at), if self.behind => {}
            }
        }
    }

    /// Makes sure the stream exists (once, and again after a publish found none).
    async fn ready(&mut self) -> bool {
        if !self.stream_ready {
            match stream::ensure(&self.jetstream, &self.subjects, &self.settings).await {
                Ok(()) => self.stream_ready = true,
                Err(error) => tracing::warn!(%error, "cannot make sure the events stream exists"),
            }
        }
        self.stream_ready
    }

    /// Sends one event (its acknowledgement to come).
    async fn send(&self, event: Outbound) -> Option<PublishAckFuture> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &event.trace {
            headers.insert(name.as_str(), value.as_str());
        }
        let message = PublishMessage::build().payload(event.payload).headers(headers).message_id(&event.id);
        match self.jetstream.send_publish(event.subject, message).await {
            Ok(ack) => Some(ack),
            Err(error) => {
                tracing::warn!(%error, "cannot publish an outbox event");
                None
            }
        }
    }

    /// Sends a commit's events in order; the acknowledging task awaits their acknowledgements.
    async fn send_live(&mut self, events: Vec<Outbound>) -> bool {
        if events.is_empty() {
            return true;
        }
        if !self.ready().await {
            return false;
        }
        for event in events {
            let id = event.id.clone();
            let Some(ack) = self.send(event).await else { return false };
            if self.acks.send((id, ack)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Publishes the table's rows written at or before `cutoff`, oldest
    /// first, deleting each page once acknowledged; whether it got to the end.
    async fn publish_table(&mut self, cutoff: i64) -> bool {
        loop {
            let sql = oldest_first_sql(&self.shared.table);
            let rows = match sqlx::query(&sql).bind(cutoff).bind(READ_BATCH).fetch_all(&self.db.pool).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, table = self.shared.table, "cannot read the outbox");
                    return false;
                }
            };
            let page: Result<Vec<Outbound>, sqlx::Error> = rows
                .iter()
                .map(|row| {
                    // Read as bytes: MySQL reports a TEXT column without a character set as a BLOB.
                    let headers: Option<Vec<u8>> = row.try_get("headers")?;
                    Ok(Outbound {
                        id: row.try_get("event_id")?,
                        subject: row.try_get("subject")?,
                        payload: bytes::Bytes::from(row.try_get::<Vec<u8>, _>("payload")?),
                        trace: headers_from(&String::from_utf8_lossy(headers.as_deref().unwrap_or_default())),
                    })
                })
                .collect();
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, table = self.shared.table, "an unreadable outbox row");
                    return false;
                }
            };
            if page.is_empty() {
                return true;
            }
            let full = page.len() as i64 == READ_BATCH;
            if !self.ready().await {
                return false;
            }
            let mut sent = Vec::with_capacity(page.len());
            for event in page {
                let id = event.id.clone();
                let Some(ack) = self.send(event).await else { return false };
                self.published_from_table.insert(id.clone());
                sent.push((id, ack));
            }
            let mut acknowledged = Vec::with_capacity(sent.len());
            for (id, ack) in sent {
                match await_ack(ack).await {
                    Ok(()) => acknowledged.push(id),
                    Err(not_found) => {
                        self.stream_ready &= !not_found;
                        return false;
                    }
                }
            }
            if delete(&self.db, &self.shared.table, &acknowledged).await.is_err() || !full {
                return !full;
            }
        }
    }
}

/// Waits for one acknowledgement; `Err(true)` when the stream was missing.
async fn await_ack(ack: PublishAckFuture) -> Result<(), bool> {
    match tokio::time::timeout(ACK_TIMEOUT, ack.into_future()).await {
        Ok(Ok(_)) => {
            METRICS.published.inc();
            Ok(())
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "an outbox event was not acknowledged");
            Err(error.kind() == PublishErrorKind::StreamNotFound)
        }
        Err(_) => {
            tracing::warn!("an outbox event's acknowledgement timed out");
            Err(false)
        }
    }
}

/// The second stage: awaits live publishes' acknowledgements in order and
/// deletes the acknowledged rows together; a failure sends the relay back to the table.
async fn acknowledge(shared: Arc<Shared>, db: Db, mut pending: mpsc::Receiver<(String, PublishAckFuture)>) {
    let mut acknowledged = Vec::new();
    let mut tick = tokio::time::interval(DELETE_EVERY);
    loop {
        tokio::select! {
            next = pending.recv() => {
                let Some((id, ack)) = next else { break };
                match await_ack(ack).await {
                    Ok(()) => acknowledged.push(id),
                    Err(_) => shared.lost_track.store(true, Ordering::Release),
                }
            }
            _ = tick.tick() => {
                if !acknowledged.is_empty() && delete(&db, &shared.table, &acknowledged).await.is_ok() {
                    acknowledged.clear();
                }
            }
        }
    }
    let _ = delete(&db, &shared.table, &acknowledged).await;
}

/// Deletes published rows (a row left is published again, and dropped as a duplicate).
async fn delete(db: &Db, table: &str, ids: &[String]) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(READ_BATCH as usize) {
        let sql = format!("DELETE FROM {table} WHERE event_id IN ({})", sql_pool::placeholders(chunk.len(), "?"));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.clone());
        }
        if let Err(error) = query.execute(&db.pool).await {
            tracing::warn!(%error, table, "cannot delete published outbox rows; later");
            return Err(error);
        }
    }
    Ok(())
}
