//! The write path: every change of a message — send, edit, delete — goes
//! through one writer per process, which commits whatever is waiting in one
//! transaction (group commit, see [`crate::batch`]) and then answers each caller.
//!
//! One batch, in order:
//!
//! 1. content first when it lives in another store (MongoDB): one
//!    `insert_many` for the batch's sends. A crash after it leaves only
//!    unreferenced content, never a message without content;
//! 2. one transaction: edits and deletes (each guarded: a deleted message
//!    stays deleted and unedited), then the sends — the chats' sequence rows
//!    locked in chat order, repeats of a stored `client_msg_id` resolved,
//!    seqs placed ([`crate::placement`]), the metadata rows and (SQL content)
//!    the content rows inserted — and the events announcing all of it, staged
//!    with the change ([`outbox::EventSink::stage`]: the outbox rows);
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
    events::{ChatEvent, MessageDeleted, chat_event::Kind},
    metadata::{ChatTouch, TouchChatsRequest, chat_metadata_service_client::ChatMetadataServiceClient},
};
use event_bus::{Outbound, Subjects};
use grpc_channel::GrpcChannel;
use outbox::EventSink;
use sql_pool::{Backend, Db, placeholders};
use sqlx::{AnyConnection, Row};
use telemetry::propagation::TracePairs;

use crate::{
    batch::Batcher,
    content::{ContentStore, StoredContent, sql_versions},
    domain::{Message, MessageRow},
    error::MessageError,
    placement::{Placement, SendKey, last_seqs, place},
    store::{COLUMNS, row_from},
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

    fn key(&self) -> SendKey<'_> {
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
                    let message = edited.then(|| Message {
                        row: MessageRow { edited_at_ms: Some(*at_ms), ..row.clone() },
                        content: content.clone(),
                    });
                    if let Some(message) = &message {
                        events.push(event(row.chat_id, Kind::MessageEdited(message.clone().into()), trace));
                    }
                    outcomes[index] = Some(Ok(Outcome::Edited(message)));
                }
                Change::Delete { row } => {
                    let deleted = mark_deleted(&mut tx, row.id).await?;
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
                Change::Send(_) => {}
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
                        let message = Message { row, content: new.content.clone() };
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

/// Where a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placed {
    Created(MessageRow),
    Repeated(MessageRow),
    /// A new message answering no message of its chat: not stored, no seq taken.
    Refused,
}

/// Stores the sends of a batch: sequence rows locked (in chat order, so two
/// writers never wait on each other in a cycle), repeats resolved, new rows
/// inserted with gap-free seqs, the chats' last seqs moved.
async fn insert_sends(
    tx: &mut AnyConnection,
    backend: Backend,
    with_content: bool,
    sends: &[&NewMessage],
) -> std::result::Result<Vec<Placed>, sqlx::Error> {
    let mut chats: Vec<i64> = sends.iter().map(|send| send.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    let values = placeholders(chats.len(), "(?, 0)");
    let ensure = match backend {
        Backend::MySql => format!(
            "INSERT INTO chat_sequences (chat_id, last_seq) VALUES {values} ON DUPLICATE KEY UPDATE last_seq = last_seq"
        ),
        Backend::Sqlite => {
            format!("INSERT INTO chat_sequences (chat_id, last_seq) VALUES {values} ON CONFLICT (chat_id) DO NOTHING")
        }
    };
    let mut query = sqlx::query(&ensure);
    for chat in &chats {
        query = query.bind(*chat);
    }
    query.execute(&mut *tx).await?;
    let lock = if backend == Backend::MySql { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT chat_id, last_seq FROM chat_sequences WHERE chat_id IN ({}){lock}",
        placeholders(chats.len(), "?")
    );
    let mut query = sqlx::query(&sql);
    for chat in &chats {
        query = query.bind(*chat);
    }
    let mut last_seq = HashMap::new();
    for row in query.fetch_all(&mut *tx).await? {
        last_seq.insert(row.try_get::<i64, _>("chat_id")?, row.try_get::<i64, _>("last_seq")?);
    }

    let keyed: Vec<&&NewMessage> = sends.iter().filter(|send| send.client_msg_id.is_some()).collect();
    let mut stored_rows = Vec::new();
    if !keyed.is_empty() {
        let sql = format!(
            "SELECT {COLUMNS} FROM message_metadata WHERE {}",
            vec!["(chat_id = ? AND sender_id = ? AND client_msg_id = ?)"; keyed.len()].join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for send in &keyed {
            query = query.bind(send.chat_id).bind(send.sender_id).bind(send.client_msg_id.clone());
        }
        for row in query.fetch_all(&mut *tx).await? {
            stored_rows.push(row_from(&row)?);
        }
    }
    let stored: HashMap<(i64, i64, &str), MessageRow> = stored_rows
        .iter()
        .filter_map(|row| Some(((row.chat_id, row.sender_id, row.client_msg_id.as_deref()?), row.clone())))
        .collect();
    // Replies answer a message of their own chat; a repeat of a stored send is answered as ever.
    let answered = reply_targets(tx, sends).await?;
    let refused: Vec<bool> = sends
        .iter()
        .map(|send| {
            let repeat = send
                .client_msg_id
                .as_deref()
                .is_some_and(|key| stored.contains_key(&(send.chat_id, send.sender_id, key)));
            !repeat && send.reply_to.is_some_and(|to| answered.get(&to) != Some(&send.chat_id))
        })
        .collect();
    let kept: Vec<&NewMessage> =
        sends.iter().zip(&refused).filter(|(_, refused)| !**refused).map(|(send, _)| *send).collect();
    let kept_at: Vec<usize> = (0..sends.len()).filter(|index| !refused[*index]).collect();
    let keys: Vec<SendKey> = kept.iter().map(|send| send.key()).collect();
    let placements = place(&keys, &last_seq, &stored);

    let new: Vec<(&NewMessage, i64)> = kept
        .iter()
        .zip(&placements)
        .filter_map(|(send, placement)| match placement {
            Placement::New { seq } => Some((*send, *seq)),
            _ => None,
        })
        .collect();
    let mut ids: HashMap<(i64, i64), i64> = HashMap::new();
    if !new.is_empty() {
        let sql = format!(
            "INSERT INTO message_metadata \
             (chat_id, seq, sender_id, sender_username, content_id, client_msg_id, created_at_ms, edited_at_ms, is_deleted, reply_to) \
             VALUES {}",
            placeholders(new.len(), "(?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)")
        );
        let mut query = sqlx::query(&sql);
        for (send, seq) in &new {
            query = query
                .bind(send.chat_id)
                .bind(*seq)
                .bind(send.sender_id)
                .bind(send.sender_username.clone())
                .bind(send.content_id.clone())
                .bind(send.client_msg_id.clone())
                .bind(send.created_at_ms)
                .bind(send.reply_to);
        }
        query.execute(&mut *tx).await?;
        // The new ids, by (chat, seq): one range per chat.
        let mut ranges: HashMap<i64, (i64, i64)> = HashMap::new();
        for (send, seq) in &new {
            let range = ranges.entry(send.chat_id).or_insert((*seq, *seq));
            *range = (range.0.min(*seq), range.1.max(*seq));
        }
        let sql = format!(
            "SELECT id, chat_id, seq FROM message_metadata WHERE {}",
            vec!["(chat_id = ? AND seq BETWEEN ? AND ?)"; ranges.len()].join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for (chat, (first, last)) in &ranges {
            query = query.bind(*chat).bind(*first).bind(*last);
        }
        for row in query.fetch_all(&mut *tx).await? {
            ids.insert((row.try_get("chat_id")?, row.try_get("seq")?), row.try_get("id")?);
        }
        if with_content {
            let sql = format!(
                "INSERT INTO message_contents (message_id, chat_id, sender_id, content, timestamp_ms) VALUES {}",
                placeholders(new.len(), "(?, ?, ?, ?, ?)")
            );
            let mut query = sqlx::query(&sql);
            for (send, _) in &new {
                query = query
                    .bind(send.content_id.clone())
                    .bind(send.chat_id)
                    .bind(send.sender_id)
                    .bind(send.content.clone())
                    .bind(send.created_at_ms);
            }
            query.execute(&mut *tx).await?;
        }
        for (chat, last) in last_seqs(&keys, &placements) {
            sqlx::query("UPDATE chat_sequences SET last_seq = ? WHERE chat_id = ?")
                .bind(last)
                .bind(chat)
                .execute(&mut *tx)
                .await?;
        }
    }

    let mut placed: Vec<Placed> = Vec::with_capacity(sends.len());
    let mut placements = placements.into_iter();
    for (send, refused) in sends.iter().zip(refused) {
        let placement = if refused { None } else { placements.next() };
        let Some(placement) = placement else {
            placed.push(Placed::Refused);
            continue;
        };
        let next = match placement {
            Placement::New { seq } => {
                let id = *ids.get(&(send.chat_id, seq)).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("the new message {}/{seq} was not found", send.chat_id))
                })?;
                Placed::Created(MessageRow {
                    id,
                    chat_id: send.chat_id,
                    seq,
                    sender_id: send.sender_id,
                    sender_username: send.sender_username.clone(),
                    content_id: send.content_id.clone(),
                    client_msg_id: send.client_msg_id.clone(),
                    created_at_ms: send.created_at_ms,
                    edited_at_ms: None,
                    is_deleted: false,
                    reply_to: send.reply_to,
                })
            }
            Placement::Stored(row) => Placed::Repeated(row),
            Placement::Earlier(first) => match &placed[kept_at[first]] {
                Placed::Created(row) | Placed::Repeated(row) => Placed::Repeated(row.clone()),
                Placed::Refused => Placed::Refused,
            },
        };
        placed.push(next);
    }
    Ok(placed)
}

/// The chat of each message the sends answer (the ones that exist).
async fn reply_targets(
    tx: &mut AnyConnection,
    sends: &[&NewMessage],
) -> std::result::Result<HashMap<i64, i64>, sqlx::Error> {
    let mut targets: Vec<i64> = sends.iter().filter_map(|send| send.reply_to).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut chats = HashMap::new();
    if targets.is_empty() {
        return Ok(chats);
    }
    let sql = format!("SELECT id, chat_id FROM message_metadata WHERE id IN ({})", placeholders(targets.len(), "?"));
    let mut query = sqlx::query(&sql);
    for target in &targets {
        query = query.bind(*target);
    }
    for row in query.fetch_all(&mut *tx).await? {
        chats.insert(row.try_get::<i64, _>("id")?, row.try_get::<i64, _>("chat_id")?);
    }
    Ok(chats)
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
