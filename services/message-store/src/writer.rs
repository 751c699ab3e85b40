//! The write path: every change of a message — send, edit, delete,
//! reaction — and of a read position goes through one writer per process,
//! which commits whatever is waiting in one transaction (group commit, see
//! [`crate::batch`]) and then answers each caller.
//!
//! One batch, in order:
//!
//! 1. content first when it lives in another store (MongoDB): one
//!    `insert_many` for the batch's sends. A crash after it leaves only
//!    unreferenced content, never a message without content;
//! 2. one transaction: edits, deletes and reactions (each guarded: a deleted
//!    message stays deleted, unedited and without reactions), then the sends
//!    ([`crate::sends`]: the chats' sequence rows locked in chat order,
//!    repeats of a stored `client_msg_id` resolved, seqs placed, the rows
//!    inserted, the senders' read positions moved), then read marks and
//!    joins' positions ([`crate::reading`]) — and the events announcing all
//!    of it, staged with the change ([`outbox::EventSink::stage`]: the
//!    outbox rows);
//! 3. commit, then the events go out ([`outbox::EventSink::committed`]) and
//!    each caller gets its answer.
//!
//! While the transaction runs, the chats of the batch's new messages move
//! up their members' chat lists: one `TouchChats` call to chat-metadata
//! (their `updated_at`), awaited before anyone is answered — so the list is
//! in order by the time a send is answered, and the two commits overlap
//! instead of adding up. A chat moved for a send that then fails is harmless.
//!
//! A batch that loses a lock race (a deadlock, SQLite busy) runs again as a
//! whole; one that fails otherwise fails every caller in it with the same
//! error, and nothing of it is stored or announced.

use std::{collections::HashMap, sync::Arc};

use chat_proto::{
    events::{ChatEvent, MessageDeleted, ReactionChange, ReadMoved, chat_event::Kind},
    metadata::{ChatTouch, TouchChatsRequest, chat_metadata_service_client::ChatMetadataServiceClient},
};
use event_bus::{Outbound, Subjects};
use grpc_channel::GrpcChannel;
use outbox::EventSink;
use sql_pool::Db;
use sqlx::AnyConnection;
use telemetry::propagation::TracePairs;

use crate::{
    batch::Batcher,
    content::{ContentStore, StoredContent, sql_versions},
    domain::{Message, MessageRow},
    error::MessageError,
    placement::SendKey,
    reactions::{self, Reacted},
    reading,
    sends::{Placed, insert_sends},
};

type Result<T> = std::result::Result<T, MessageError>;

/// The most changes one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Changes waiting for the writer at most (past it, callers wait).
const QUEUE: usize = 4096;
/// How often a batch that lost a lock race is run again.
const ATTEMPTS: u32 = 8;

/// A message about to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: i64,
    pub sender_id: i64,
    pub sender_username: String,
    /// The generated key of its content.
    pub content_id: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at_ms: i64,
    /// The message it answers: checked in the transaction (a message of the same chat, deleted or not).
    pub reply_to: Option<i64>,
}

impl NewMessage {
    fn stored_content(&self) -> StoredContent {
        StoredContent {
            message_id: self.content_id.clone(),
            chat_id: self.chat_id,
            sender_id: self.sender_id,
            content: self.content.clone(),
            timestamp_ms: self.created_at_ms,
        }
    }

    pub(crate) fn key(&self) -> SendKey<'_> {
        SendKey { chat_id: self.chat_id, sender_id: self.sender_id, client_msg_id: self.client_msg_id.as_deref() }
    }
}

/// One change of a message.
#[derive(Debug, Clone)]
pub enum Change {
    Send(NewMessage),
    /// A new text for a message (read just before; checked again in the transaction).
    Edit {
        row: MessageRow,
        content: String,
        at_ms: i64,
    },
    Delete {
        row: MessageRow,
    },
    /// A user's read position moved forward (see [`crate::reading`]).
    Read {
        chat_id: i64,
        user_id: i64,
        seq: i64,
    },
    /// Users who just joined a chat start at its last seq.
    StartReading {
        chat_id: i64,
        user_ids: Vec<i64>,
    },
    /// A reaction added or taken back (see [`crate::reactions`]).
    React {
        chat_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: String,
        add: bool,
    },
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new message.
    Created(Message),
    /// The sender's `client_msg_id` was taken: the message stored under it (its content not read).
    Repeated(MessageRow),
    /// The edited message; `None` when it is deleted (even a moment ago).
    Edited(Option<Message>),
    /// Whether this change deleted it (`false`: it already was).
    Deleted(bool),
    /// The reader's position afterwards, and whether this change moved it.
    Read {
        last_read_seq: i64,
        moved: bool,
    },
    Started,
    Reacted(Reacted),
}

/// Where content is written.
#[derive(Clone)]
pub enum Contents {
    /// In `message_contents` of the metadata's database: written (and, on a
    /// delete, erased) in the same transaction as the metadata.
    SameTransaction(Arc<dyn ContentStore>),
    /// In its own store (MongoDB): written before the metadata, erased after.
    Separate(Arc<dyn ContentStore>),
}

impl Contents {
    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn ContentStore> {
        match self {
            Self::SameTransaction(store) | Self::Separate(store) => store,
        }
    }
}

struct Inner {
    db: Db,
    contents: Contents,
    sink: EventSink,
    subjects: Subjects,
    metadata: ChatMetadataServiceClient<GrpcChannel>,
}

/// Hands changes to this process's writer task.
#[derive(Clone)]
pub struct Writer {
    batches: Batcher<(Change, TracePairs), Result<Outcome>>,
}

impl Writer {
    /// Starts the writer task; chats are moved up their lists through `metadata`.
    pub fn spawn(
        db: Db,
        contents: Contents,
        sink: EventSink,
        subjects: Subjects,
        metadata: ChatMetadataServiceClient<GrpcChannel>,
    ) -> Self {
        let inner = Arc::new(Inner { db, contents, sink, subjects, metadata });
        let batches = Batcher::spawn(MAX_BATCH, QUEUE, move |jobs| {
            let inner = inner.clone();
            async move { inner.run(jobs).await }
        });
        Self { batches }
    }

    /// Commits `change` in the next batch; its event carries the caller's trace.
    pub async fn write(&self, change: Change) -> Result<Outcome> {
        let trace = telemetry::propagation::current_trace();
        self.batches
            .submit((change, trace))
            .await
            .map_err(|_| MessageError::Unavailable("the message writer".into()))?
    }
}

/// The error every change of a failed batch gets (one per caller: errors are not `Clone`).
fn batch_failure(error: &sqlx::Error) -> MessageError {
    if sql_pool::is_transient(error) {
        MessageError::Unavailable("the database".into())
    } else {
        MessageError::Unexpected(anyhow::anyhow!("a batch of changes failed: {error}"))
    }
}

impl Inner {
    async fn run(&self, jobs: Vec<(Change, TracePairs)>) -> Vec<Result<Outcome>> {
        let size = jobs.len();
        let _timer = metrics::batch(size);
        // Content first when it lives elsewhere; if it cannot be written, the sends fail alone.
        let mut content_failed = None;
        let separate = match &self.contents {
            Contents::Separate(store) => Some(store.clone()),
            Contents::SameTransaction(_) => None,
        };
        let new_contents: Vec<StoredContent> = jobs
            .iter()
            .filter_map(|(change, _)| match change {
                Change::Send(new) => Some(new.stored_content()),
                _ => None,
            })
            .collect();
        if let Some(store) = &separate
            && !new_contents.is_empty()
            && let Err(error) = store.put_many(&new_contents).await
        {
            tracing::warn!(%error, "cannot store a batch's content");
            content_failed = Some(error);
        }
        let with_sends = content_failed.is_none();
        let commit = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.commit(&jobs, with_sends).await {
                    Err(error) if sql_pool::is_retryable(&error) && attempt < ATTEMPTS => {
                        tracing::debug!(%error, attempt, size, "a batch lost a lock race, running it again");
                        tokio::time::sleep(std::time::Duration::from_millis(2 * u64::from(attempt))).await;
                    }
                    result => break result,
                }
            }
        };
        let touches = if with_sends { latest_per_chat(&jobs) } else { Vec::new() };
        let (committed, ()) = tokio::join!(commit, self.touch(touches));
        match committed {
            Ok((outcomes, events)) => {
                self.sink.committed(events).await;
                if let Some(store) = &separate {
                    // A repeat's fresh content is referenced by nothing.
                    let orphans =
                        jobs.iter().zip(&outcomes).filter_map(|((change, _), outcome)| match (change, outcome) {
                            (Change::Send(new), Some(Ok(Outcome::Repeated(_)))) => Some(new.content_id.clone()),
                            _ => None,
                        });
                    erase_all(store.as_ref(), orphans.collect()).await;
                }
                outcomes
                    .into_iter()
                    .map(|outcome| {
                        outcome.unwrap_or_else(|| {
                            Err(content_failed.as_ref().map_or_else(
                                || MessageError::Unexpected(anyhow::anyhow!("a change was left unanswered")),
                                crate::error::content_error,
                            ))
                        })
                    })
                    .collect()
            }
            Err(error) => {
                tracing::warn!(%error, size, "a batch of changes failed");
                if let Some(store) = &separate {
                    erase_all(store.as_ref(), new_contents.into_iter().map(|content| content.message_id).collect())
                        .await;
                }
                jobs.iter().map(|_| Err(batch_failure(&error))).collect()
            }
        }
    }

    /// Moves these chats up their members' lists; a failure only costs the order.
    async fn touch(&self, touches: Vec<ChatTouch>) {
        if touches.is_empty() {
            return;
        }
        if let Err(status) = self.metadata.clone().touch_chats(TouchChatsRequest { touches }).await {
            tracing::warn!(code = ?status.code(), message = status.message(), "cannot move chats up their lists");
        }
    }

    /// One transaction for the batch: the answers (`None` for sends left out
    /// because their content could not be stored) and the events to publish.
    async fn commit(
        &self,
        jobs: &[(Change, TracePairs)],
        with_sends: bool,
    ) -> std::result::Result<(Vec<Option<Result<Outcome>>>, Vec<Outbound>), sqlx::Error> {
        let in_transaction = matches!(self.contents, Contents::SameTransaction(_));
        let mut tx = self.db.pool.begin().await?;
        let mut outcomes: Vec<Option<Result<Outcome>>> = (0..jobs.len()).map(|_| None).collect();
        let mut events = Vec::new();
        let now = event_bus::now_ms();
        let event = |chat_id: i64, kind: Kind, trace: &TracePairs| {
            self.subjects
                .chat_event(&ChatEvent { chat_id, at_ms: now, kind: Some(kind), ..ChatEvent::default() }, trace.clone())
        };
        for (index, (change, trace)) in jobs.iter().enumerate() {
            match change {
                Change::Edit { row, content, at_ms } => {
                    // The guarded mark first: it holds the message's row for the rest.
                    let edited = mark_edited(&mut tx, row.id, *at_ms).await?;
                    if edited && in_transaction {
                        sql_versions::replace(&mut tx, &row.content_id, content, *at_ms).await?;
                    }
                    let message = if edited {
                        let mut reactions = reactions::of_messages(&mut *tx, &[row.id]).await?;
                        Some(Message {
                            row: MessageRow { edited_at_ms: Some(*at_ms), ..row.clone() },
                            content: content.clone(),
                            reactions: reactions.remove(&row.id).unwrap_or_default(),
                        })
                    } else {
                        None
                    };
                    if let Some(message) = &message {
                        events.push(event(row.chat_id, Kind::MessageEdited(message.clone().into()), trace));
                    }
                    outcomes[index] = Some(Ok(Outcome::Edited(message)));
                }
                Change::Delete { row } => {
                    let deleted = mark_deleted(&mut tx, row.id).await?;
                    if deleted {
                        reactions::erase(&mut tx, row.id).await?;
                    }
                    if deleted && in_transaction {
                        sql_versions::erase(&mut tx, &row.content_id).await?;
                    }
                    if deleted {
                        events.push(event(
                            row.chat_id,
                            Kind::MessageDeleted(MessageDeleted { message_id: row.id }),
                            trace,
                        ));
                    }
                    outcomes[index] = Some(Ok(Outcome::Deleted(deleted)));
                }
                Change::Send(_) | Change::Read { .. } | Change::StartReading { .. } => {}
                Change::React { chat_id, message_id, user_id, emoji, add } => {
                    let backend = self.db.backend;
                    let (message_id, user_id) = (*message_id, *user_id);
                    let reacted = if *add {
                        reactions::add(&mut tx, backend, message_id, user_id, emoji, now).await?
                    } else {
                        reactions::remove(&mut tx, backend, message_id, user_id, emoji).await?
                    };
                    if reacted == Reacted::Changed {
                        let change = ReactionChange { message_id, user_id, emoji: emoji.clone() };
                        let kind = if *add { Kind::ReactionAdded(change) } else { Kind::ReactionRemoved(change) };
                        events.push(event(*chat_id, kind, trace));
                    }
                    outcomes[index] = Some(Ok(Outcome::Reacted(reacted)));
                }
            }
        }
        let sends: Vec<(usize, &NewMessage, &TracePairs)> = if with_sends {
            jobs.iter()
                .enumerate()
                .filter_map(|(index, (change, trace))| match change {
                    Change::Send(new) => Some((index, new, trace)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        if !sends.is_empty() {
            let new: Vec<&NewMessage> = sends.iter().map(|(_, new, _)| *new).collect();
            let placed = insert_sends(&mut tx, self.db.backend, in_transaction, &new).await?;
            for ((index, new, trace), placed) in sends.iter().zip(placed) {
                outcomes[*index] = Some(match placed {
                    Placed::Created(row) => {
                        let message = Message { row, content: new.content.clone(), reactions: Vec::new() };
                        events.push(event(new.chat_id, Kind::NewMessage(message.clone().into()), trace));
                        Ok(Outcome::Created(message))
                    }
                    Placed::Repeated(row) => Ok(Outcome::Repeated(row)),
                    Placed::Refused => {
                        Err(MessageError::Rule("reply_to must be the id of a message of this chat".into()))
                    }
                });
            }
        }
        // Read positions last: after the sends, whose seqs they are clamped to.
        for (index, (change, trace)) in jobs.iter().enumerate() {
            match change {
                Change::Read { chat_id, user_id, seq } => {
                    let (last_read_seq, moved) =
                        reading::mark(&mut tx, self.db.backend, *chat_id, *user_id, *seq).await?;
                    if moved {
                        let read = ReadMoved { user_id: *user_id, seq: last_read_seq };
                        events.push(event(*chat_id, Kind::Read(read), trace));
                    }
                    outcomes[index] = Some(Ok(Outcome::Read { last_read_seq, moved }));
                }
                Change::StartReading { chat_id, user_ids } => {
                    reading::start(&mut tx, self.db.backend, *chat_id, user_ids).await?;
                    outcomes[index] = Some(Ok(Outcome::Started));
                }
                _ => {}
            }
        }
        self.sink.stage(&mut tx, &events).await?;
        tx.commit().await?;
        Ok((outcomes, events))
    }
}

/// The latest new message's time of each chat the batch sends to.
fn latest_per_chat(jobs: &[(Change, TracePairs)]) -> Vec<ChatTouch> {
    let mut latest: HashMap<i64, i64> = HashMap::new();
    for (change, _) in jobs {
        if let Change::Send(new) = change {
            let at = latest.entry(new.chat_id).or_insert(new.created_at_ms);
            *at = (*at).max(new.created_at_ms);
        }
    }
    latest.into_iter().map(|(chat_id, at_ms)| ChatTouch { chat_id, at_ms }).collect()
}

/// Best effort: content nothing refers to.
async fn erase_all(store: &dyn ContentStore, ids: Vec<String>) {
    for id in ids {
        if let Err(error) = store.erase(&id).await {
            tracing::warn!(%error, content_id = id, "cannot erase orphaned content");
        }
    }
}

/// Marks a message edited; `false` when it is deleted (the guard is in the
/// statement: a delete that committed first wins, whatever was read before).
async fn mark_edited(tx: &mut AnyConnection, id: i64, at_ms: i64) -> std::result::Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE message_metadata SET edited_at_ms = ? WHERE id = ? AND is_deleted = 0")
        .bind(at_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a message deleted; `false` when it already was.
async fn mark_deleted(tx: &mut AnyConnection, id: i64) -> std::result::Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE message_metadata SET is_deleted = 1 WHERE id = ? AND is_deleted = 0")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How big batches are and how long they take.
mod metrics {
    use std::{sync::LazyLock, time::Instant};

    use telemetry::metrics::{Histogram, latency_histogram, register};

    struct Batches {
        sizes: Histogram,
        seconds: Histogram,
    }

    static BATCHES: LazyLock<Batches> = LazyLock::new(|| {
        let batches = Batches {
            sizes: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            seconds: latency_histogram(),
        };
        register(|registry| {
            registry.register("message_write_batch_size", "Changes committed per transaction", batches.sizes.clone());
            registry.register(
                "message_write_batch_seconds",
                "How long a batch took, content and commit included",
                batches.seconds.clone(),
            );
        });
        batches
    });

    /// Times a batch of `size` changes until dropped.
    pub struct Timer(Instant);

    impl Drop for Timer {
        fn drop(&mut self) {
            BATCHES.seconds.observe(self.0.elapsed().as_secs_f64());
        }
    }

    /// Counts a batch of `size` changes, and times it.
    pub fn batch(size: usize) -> Timer {
        BATCHES.sizes.observe(size as f64);
        Timer(Instant::now())
    }
}
