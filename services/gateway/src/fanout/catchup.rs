//! How a room gets back what it did not hear live.
//!
//! - **Baseline**: a new room starts after the chat's newest message; what
//!   was sent before is history (a client asks for it with `after`).
//! - **Backfill**: messages behind a gap in `seq` come from message-store.
//! - **Catch-up**: after the bus reconnects, the replica reads the events
//!   stream (JetStream) once — every chat's events since shortly before the
//!   connection was lost, kept for the chats with a room here — and each room
//!   handles its share like live events — messages, edits, deletes,
//!   membership and chat changes alike: what it had already handled is
//!   dropped (by seq, or by event id), the rest is delivered in the stream's
//!   order before anything newer (the room waits for the read before it
//!   takes its next live event). One read per replica, not per room: a
//!   replica with thousands of rooms makes one consumer, not thousands. Events from before the room
//!   opened are left out (the catch-up starts a little before the outage; the
//!   room may be younger than that). Then a backfill, for messages
//!   the stream no longer holds. Typing and presence are not kept: best effort.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use chat_proto::{
    events::ChatEvent,
    messages::{self, GetHistoryRequest, get_history_request::Cursor},
};
use event_bus::BusError;
use futures::StreamExt;

use super::{Inner, room::Room};
use crate::metrics::METRICS;

/// How long a room waits for the replica's catch-up before it goes on with a backfill alone.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);
/// How often, and how long apart, the replica tries to read the stream after a reconnection.
const READ_ATTEMPTS: u32 = 5;
const READ_RETRY: Duration = Duration::from_secs(1);

/// What the replica caught up on after a reconnection of its bus.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The reconnection it follows (the bus's count).
    pub generation: u64,
    /// Per chat with a room here: the events the stream kept since shortly
    /// before the connection was lost, oldest first (none when it could not be read).
    pub events: HashMap<i64, Vec<ChatEvent>>,
}

/// Reads the stream once per reconnection, for every room at once.
pub(super) async fn recovery_loop(hub: Weak<Inner>) {
    let Some(mut reconnections) = hub.upgrade().and_then(|inner| inner.bus.reconnections()) else { return };
    while reconnections.changed().await.is_ok() {
        let generation = *reconnections.borrow_and_update();
        let Some(inner) = hub.upgrade() else { return };
        let since_ms = inner.bus.lost_at_ms() - CATCH_UP_MARGIN_MS;
        let mut events = HashMap::new();
        for attempt in 1..=READ_ATTEMPTS {
            match inner.read_stream_since(since_ms).await {
                Ok(read) => {
                    METRICS.ws_catch_ups.inc();
                    events = read;
                    break;
                }
                Err(error) if attempt < READ_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "cannot read the events stream; trying again");
                    tokio::time::sleep(READ_RETRY).await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the events stream: rooms backfill messages only");
                }
            }
        }
        inner.recovered.send_replace(Arc::new(Recovery { generation, events }));
    }
}

/// How long a new room waits for the chat's newest message.
const BASELINE_WAIT: Duration = Duration::from_secs(2);
/// A catch-up starts this long before the connection was lost: clocks of
/// the gateway and of NATS may differ a little, and a repeat is dropped anyway.
pub const CATCH_UP_MARGIN_MS: i64 = 2_000;

impl Inner {
    /// The chat's newest `limit` messages, for a baseline; `None` (logged)
    /// when message-store does not answer in time: the room then takes the
    /// bus as it comes.
    async fn newest_page(&self, room: &Room, limit: u32) -> Option<messages::HistoryPage> {
        // A fan-out read (no acting user): the room's sockets were each checked at connect.
        let request = GetHistoryRequest { chat_id: room.chat_id, limit, cursor: None };
        let newest = tokio::time::timeout(BASELINE_WAIT, self.messages.clone().get_history(request)).await;
        match newest.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("baseline"))) {
            Ok(page) => Some(page.into_inner()),
            Err(status) => {
                tracing::warn!(chat_id = room.chat_id, code = ?status.code(), "no history baseline; taking the bus as it comes");
                None
            }
        }
    }

    /// The room's starting point: the chat's newest message now.
    pub(super) async fn baseline(&self, room: &Room) {
        if let Some(mut page) = self.newest_page(room, 1).await {
            let newest = page.messages.pop().map(|newest| (newest.id, newest.seq));
            room.state.lock().await.order.baseline(newest);
        }
    }

    /// The starting point of a room that a join opened: the chat's last
    /// message from before `joined_at_ms`; the messages after it (sent while
    /// the room opened) are returned, to deliver after the join's frame.
    /// (Message and join times come from two services' clocks.)
    pub(super) async fn baseline_before(&self, room: &Room, joined_at_ms: i64) -> Vec<messages::Message> {
        let Some(page) = self.newest_page(room, 100).await else { return Vec::new() };
        let (before, since_join) = split_at_join(page.messages, page.has_more, joined_at_ms);
        let mut state = room.state.lock().await;
        state.order.baseline(before);
        state.order.backfilled(since_join)
    }

    /// Fetches the messages after the last one the room delivered.
    pub(super) async fn backfill(&self, room: &Room) {
        if room.is_empty() {
            return;
        }
        METRICS.ws_backfills.inc();
        let mut state = room.state.lock().await;
        loop {
            // A fan-out read, like the baseline.
            let request = GetHistoryRequest {
                chat_id: room.chat_id,
                limit: 100,
                cursor: Some(Cursor::AfterId(state.order.after_id())),
            };
            let page = match self.messages.clone().get_history(request).await {
                Ok(page) => page.into_inner(),
                Err(status) => {
                    tracing::warn!(chat_id = room.chat_id, code = ?status.code(), "backfill failed; will retry");
                    state.order.backfill_failed(Instant::now());
                    return;
                }
            };
            room.deliver(state.order.backfilled(page.messages));
            if !page.has_more {
                break;
            }
        }
        room.deliver(state.order.drain(Instant::now()));
    }

    /// Every chat's events since `since_ms`, kept for the chats with a room here.
    async fn read_stream_since(&self, since_ms: i64) -> Result<HashMap<i64, Vec<ChatEvent>>, BusError> {
        let topic = self.subjects.all_chat_events_topic();
        let mut events: HashMap<i64, Vec<ChatEvent>> = HashMap::new();
        let Some(mut replay) = topic.replay(self.bus.as_ref(), self.subjects.events_stream(), since_ms).await? else {
            return Ok(events);
        };
        while let Some(kept) = replay.next().await {
            match kept? {
                Ok(event) if self.registry.room(event.chat_id).is_some() => {
                    events.entry(event.chat_id).or_default().push(event);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "an undecodable event in the stream"),
            }
        }
        Ok(events)
    }

    /// A room after the bus reconnected (`generation`): its share of the
    /// replica's catch-up, then a backfill.
    pub(super) async fn recover(&self, room: &Arc<Room>, generation: u64) {
        let mut recovered = self.recovered.subscribe();
        let waited = tokio::time::timeout(RECOVERY_WAIT, recovered.wait_for(|r| r.generation >= generation)).await;
        let events = match waited.map(|found| found.map(|recovery| recovery.events.get(&room.chat_id).cloned())) {
            Ok(Ok(events)) => events.unwrap_or_default(),
            _ => {
                tracing::warn!(
                    chat_id = room.chat_id,
                    "no catch-up from the stream in time: backfilling messages only"
                );
                Vec::new()
            }
        };
        let mut missed = 0;
        for event in events {
            if room.heard_since_open(&event) {
                missed += u64::from(self.handle(room, event).await);
            }
        }
        METRICS.ws_caught_up_events.inc_by(missed);
        self.backfill(room).await;
    }
}

/// A page of the chat's newest messages (oldest first) cut at a join: the
/// `(id, seq)` to start after — the last message from before the join — and
/// the messages from the join on. `None` when no message precedes the join
/// (a chat with no history before it: every message counts).
fn split_at_join(
    mut page: Vec<messages::Message>,
    has_more: bool,
    joined_at_ms: i64,
) -> (Option<(i64, i64)>, Vec<messages::Message>) {
    let split = page.partition_point(|message| message.timestamp_ms < joined_at_ms);
    let since_join = page.split_off(split);
    let before = match (page.last(), since_join.first()) {
        (Some(last), _) => Some((last.id, last.seq)),
        // Older messages exist but the whole page is newer than the join: start right before it.
        (None, Some(first)) if has_more => Some((first.id - 1, first.seq - 1)),
        (None, _) => None,
    };
    (before, since_join)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(times: &[i64]) -> Vec<messages::Message> {
        let at = |n: usize| messages::Message {
            id: 10 * (n as i64 + 1),
            seq: n as i64 + 1,
            timestamp_ms: times[n],
            ..Default::default()
        };
        (0..times.len()).map(at).collect()
    }

    /// (message times, more before the page, join time, start after, ids delivered after the join's frame)
    type Case = (&'static [i64], bool, i64, Option<(i64, i64)>, &'static [i64]);

    #[test]
    fn a_room_opened_by_a_join_starts_at_the_last_message_before_it() {
        let table: &[Case] = &[
            (&[100, 200, 300], false, 250, Some((20, 2)), &[30]),
            (&[100, 200, 300], false, 400, Some((30, 3)), &[]),
            (&[100, 200, 300], false, 200, Some((10, 1)), &[20, 30]), // a message at the join's time counts after it
            (&[100, 200, 300], false, 50, None, &[10, 20, 30]),       // the whole chat is newer
            (&[100, 200, 300], true, 50, Some((9, 0)), &[10, 20, 30]), // older ones exist: right before the page
            (&[], false, 50, None, &[]),
        ];
        for (times, has_more, joined_at, before, after) in table {
            let (start, since) = split_at_join(page(times), *has_more, *joined_at);
            let ids: Vec<i64> = since.iter().map(|message| message.id).collect();
            assert_eq!((start, ids.as_slice()), (*before, *after), "{times:?} {has_more} {joined_at}");
        }
    }
}
