//! How a room gets back what it did not hear live.
//!
//! - **Baseline**: a new room starts after the chat's newest message; what
//!   was sent before is history (a client asks for it with `after`).
//! - **Backfill**: messages behind a gap in `seq` come from message-store.
//! - **Catch-up**: after the bus reconnects, the room reads every event of
//!   its chat that the events stream (JetStream) kept since shortly before
//!   the connection was lost — messages, edits, deletes, membership and chat
//!   changes alike — and handles them like live ones: what it had already
//!   handled is dropped (by seq, or by event id), the rest is delivered in
//!   the stream's order before anything newer. Events from before the room
//!   opened are left out (the catch-up starts a little before the outage; the
//!   room may be younger than that). Then a backfill, for messages
//!   the stream no longer holds. Typing and presence are not kept: best effort.

use std::time::{Duration, Instant};

use chat_proto::messages::{GetHistoryRequest, get_history_request::Cursor};

use super::{Inner, room::Room};
use crate::metrics::METRICS;

/// How long a new room waits for the chat's newest message.
const BASELINE_WAIT: Duration = Duration::from_secs(2);
/// A catch-up starts this long before the connection was lost: clocks of
/// the gateway and of NATS may differ a little, and a repeat is dropped anyway.
pub const CATCH_UP_MARGIN_MS: i64 = 2_000;

impl Inner {
    /// The room's starting point: the chat's newest message now.
    pub(super) async fn baseline(&self, room: &Room) {
        // A fan-out read (no acting user): the room's sockets were each checked at connect.
        let request = GetHistoryRequest { chat_id: room.chat_id, limit: 1, cursor: None };
        let newest = tokio::time::timeout(BASELINE_WAIT, self.messages.clone().get_history(request)).await;
        match newest.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("baseline"))) {
            Ok(page) => {
                let newest = page.into_inner().messages.pop().map(|newest| (newest.id, newest.seq));
                room.state.lock().await.order.baseline(newest);
            }
            Err(status) => {
                tracing::warn!(chat_id = room.chat_id, code = ?status.code(), "no history baseline; taking the bus as it comes")
            }
        }
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

    /// After the bus was away: the catch-up from the stream, then a backfill.
    /// False when the stream could not be read (the room tries again shortly).
    pub(super) async fn recover(&self, room: &std::sync::Arc<Room>) -> bool {
        let since_ms = self.bus.lost_at_ms() - CATCH_UP_MARGIN_MS;
        let replayed = self.subjects.replay_chat_events(self.bus.as_ref(), room.chat_id, since_ms).await;
        let caught_up = match replayed {
            Ok(Some(events)) => {
                METRICS.ws_catch_ups.inc();
                let mut missed = 0;
                for (event, _trace) in events {
                    match event {
                        Ok(event) if room.heard_since_open(&event) => {
                            missed += u64::from(self.handle(room, event).await)
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, chat_id = room.chat_id, "an undecodable event in the stream")
                        }
                    }
                }
                METRICS.ws_caught_up_events.inc_by(missed);
                true
            }
            // A bus that keeps nothing cannot have lost anything either.
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(%error, chat_id = room.chat_id, "cannot read the events stream; will retry");
                false
            }
        };
        self.backfill(room).await;
        caught_up
    }
}
