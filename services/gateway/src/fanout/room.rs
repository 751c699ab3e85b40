//! A chat's room on this replica: the sockets in it (per-chat sockets of the
//! chat, user sockets of its members), its one bus subscription, and the task
//! that turns what the subscription brings into frames for them.
//!
//! Events are handled one at a time under the room's state lock, whoever
//! brings them (the subscription, a catch-up from the stream, the membership
//! listener letting a user socket in): the [`Sequencer`] orders
//! `new_message`s, [`Seen`] drops any other event that comes twice.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use chat_proto::{
    events::{ChatEvent, PresenceEvent, TypingEvent, chat_event::Kind},
    messages as messages_pb,
};
use event_bus::{ChatTraffic, now_ms};
use futures::{StreamExt, stream::BoxStream};
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::{
    Inner,
    outbound::{Outbound, SocketHandle, SocketKind},
    presence::Presence,
    seen::Seen,
    sequencer::Sequencer,
    typing::Typing,
};
use crate::{
    models::{Message, timestamp},
    ws::{close::CloseCode, frames::ServerFrame},
};

/// How long a message after a gap waits for the gap to fill before the room backfills.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// How often rooms look at typing deadlines and gaps.
const TICK: Duration = Duration::from_millis(100);

/// What only one event at a time may touch.
#[derive(Debug, Default)]
pub struct RoomState {
    pub order: Sequencer,
    pub seen: Seen,
}

pub struct Room {
    pub chat_id: i64,
    sockets: Mutex<HashMap<u64, SocketHandle>>,
    pub state: tokio::sync::Mutex<RoomState>,
    /// Who is online in the chat, and on which replicas (this one included).
    presence: Mutex<Presence>,
    typing: Mutex<Typing>,
    /// Set once the room listens on the bus and has its baseline.
    pub live: tokio::sync::OnceCell<()>,
    /// Told once the room is retired: its task ends.
    retired: Notify,
    /// When the room started to listen (ms since the epoch): a catch-up
    /// leaves out what happened before (history, as for the baseline).
    opened_at_ms: AtomicI64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Room {
    pub fn new(chat_id: i64) -> Self {
        Self {
            chat_id,
            sockets: Mutex::default(),
            state: tokio::sync::Mutex::default(),
            presence: Mutex::default(),
            typing: Mutex::default(),
            live: tokio::sync::OnceCell::new(),
            retired: Notify::new(),
            opened_at_ms: AtomicI64::new(i64::MAX),
        }
    }

    /// Whether an event happened while the room listened (a catch-up's events
    /// from before are history to it).
    pub fn heard_since_open(&self, event: &ChatEvent) -> bool {
        event.at_ms >= self.opened_at_ms.load(Ordering::Relaxed)
    }

    /// Lets a socket in; whether it is its user's first here.
    pub fn insert(&self, socket: SocketHandle) -> bool {
        let mut sockets = lock(&self.sockets);
        let first_of_user = !sockets.values().any(|other| other.user_id == socket.user_id);
        sockets.insert(socket.id, socket);
        first_of_user
    }

    /// Takes a socket out; its user, if it was their last here.
    pub fn remove(&self, socket_id: u64) -> Option<i64> {
        let mut sockets = lock(&self.sockets);
        let user_id = sockets.remove(&socket_id)?.user_id;
        (!sockets.values().any(|other| other.user_id == user_id)).then_some(user_id)
    }

    pub fn contains(&self, socket_id: u64) -> bool {
        lock(&self.sockets).contains_key(&socket_id)
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.sockets).is_empty()
    }

    /// The users with a socket here.
    pub fn local_users(&self) -> Vec<i64> {
        let mut users: Vec<i64> = lock(&self.sockets).values().map(|socket| socket.user_id).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Ends the room's task (the registry no longer has it).
    pub fn retire(&self) {
        self.retired.notify_one();
    }

    /// Queues a frame on every socket (but those of `except_user`); a full queue closes its socket.
    pub fn broadcast(&self, outbound: Outbound, except_user: Option<i64>) {
        let outbound = Arc::new(outbound);
        for socket in lock(&self.sockets).values() {
            if Some(socket.user_id) != except_user {
                socket.offer(&outbound);
            }
        }
    }

    fn broadcast_frame(&self, frame: &ServerFrame, except_user: Option<i64>) {
        self.broadcast(Outbound::Frame(frame.to_json().into()), except_user);
    }

    /// Broadcasts `new_message`s the sequencer released, in order.
    pub fn deliver(&self, messages: Vec<messages_pb::Message>) {
        for message in messages {
            let (chat_id, id) = (message.chat_id, message.id);
            let json = ServerFrame::NewMessage { chat_id, message: Message::from(message) }.to_json();
            self.broadcast(Outbound::Message { chat_id, id, json: json.into() }, None);
        }
    }

    /// Takes every socket of the user out, after their `participant_removed`:
    /// a per-chat socket is closed with 4403, a user socket just stops
    /// hearing of the chat. Whether the user had any here.
    fn expel(&self, user_id: i64) -> bool {
        let mut sockets = lock(&self.sockets);
        let before = sockets.len();
        sockets.retain(|_, socket| {
            let stays = socket.user_id != user_id;
            if !stays && socket.kind == SocketKind::Chat {
                socket.close(CloseCode::Forbidden);
            }
            stays
        });
        sockets.len() < before
    }

    /// Marks `user_id` online (or not) on `replica`; announces a change of the
    /// cluster-wide state to the other users' sockets.
    pub fn set_presence(&self, user_id: i64, replica: &str, online: bool, at_ms: i64) {
        let Some(online) = lock(&self.presence).set(user_id, replica, online) else { return };
        let (chat_id, timestamp) = (self.chat_id, timestamp(at_ms));
        let frame = if online {
            ServerFrame::UserJoined { user_id, chat_id, timestamp }
        } else {
            ServerFrame::UserLeft { user_id, chat_id, timestamp }
        };
        self.broadcast_frame(&frame, Some(user_id));
    }

    /// Who another replica said was online before this room asked (nothing to announce).
    pub fn learn_presence(&self, replica: &str, user_ids: &[i64]) {
        lock(&self.presence).learn(replica, user_ids);
    }

    /// The users this room takes as online through `replica`.
    pub fn users_on(&self, replica: &str) -> Vec<i64> {
        lock(&self.presence).users_on(replica)
    }

    fn on_typing(&self, event: TypingEvent) {
        let (user_id, chat_id, timestamp) = (event.user_id, event.chat_id, timestamp(event.at_ms));
        let frame = if event.started {
            lock(&self.typing).started(user_id, Instant::now());
            ServerFrame::TypingStarted { user_id, chat_id, timestamp }
        } else if lock(&self.typing).stopped(user_id) {
            ServerFrame::TypingStopped { user_id, chat_id, timestamp }
        } else {
            return;
        };
        self.broadcast_frame(&frame, Some(user_id));
    }

    fn expire_typing(&self) {
        let expired = lock(&self.typing).expire(Instant::now());
        for user_id in expired {
            let frame = ServerFrame::TypingStopped { user_id, chat_id: self.chat_id, timestamp: timestamp(now_ms()) };
            self.broadcast_frame(&frame, Some(user_id));
        }
    }
}

/// The frame a chat event becomes (`new_message`s go through the sequencer instead).
pub fn frame_of(chat_id: i64, at_ms: i64, kind: Kind) -> Option<ServerFrame> {
    let timestamp = timestamp(at_ms);
    Some(match kind {
        Kind::NewMessage(_) => return None,
        Kind::MessageEdited(message) => ServerFrame::MessageEdited { chat_id, message: message.into() },
        Kind::MessageDeleted(deleted) => {
            ServerFrame::MessageDeleted { chat_id, message_id: deleted.message_id, timestamp }
        }
        Kind::ParticipantAdded(change) => {
            ServerFrame::ParticipantAdded { user_id: change.user_id, by_user_id: change.by_user_id, chat_id, timestamp }
        }
        Kind::ParticipantRemoved(change) => ServerFrame::ParticipantRemoved {
            user_id: change.user_id,
            by_user_id: change.by_user_id,
            chat_id,
            timestamp,
        },
        Kind::ParticipantUpdated(change) => ServerFrame::ParticipantUpdated {
            user_id: change.user_id,
            is_admin: change.is_admin,
            by_user_id: change.by_user_id,
            chat_id,
            timestamp,
        },
        Kind::ChatUpdated(change) => {
            ServerFrame::ChatUpdated { chat_id, name: change.name, by_user_id: change.by_user_id, timestamp }
        }
        Kind::Read(read) => ServerFrame::Read { chat_id, user_id: read.user_id, seq: read.seq, timestamp },
        Kind::ReactionAdded(change) => ServerFrame::ReactionAdded {
            chat_id,
            message_id: change.message_id,
            user_id: change.user_id,
            emoji: change.emoji,
            timestamp,
        },
        Kind::ReactionRemoved(change) => ServerFrame::ReactionRemoved {
            chat_id,
            message_id: change.message_id,
            user_id: change.user_id,
            emoji: change.emoji,
            timestamp,
        },
    })
}

impl Inner {
    /// Subscribes a new room to the chat, takes its baseline, handles `first`
    /// (the event that made the room, if one did) and starts its task.
    pub(super) async fn open(&self, room: &Arc<Room>, first: Option<ChatEvent>) -> anyhow::Result<()> {
        room.opened_at_ms.store(now_ms(), Ordering::Relaxed);
        let traffic = self.subjects.subscribe_chat(self.bus.as_ref(), room.chat_id).await?;
        let _ = self.bus.flush().await;
        // The baseline, before the first socket counts as live: what was sent
        // until now is history (a client asks for it with `after`), what comes
        // later is delivered. A room that a join opened starts at the join
        // instead: what was sent while it opened follows the join's frame.
        let joined_at = first.as_ref().filter(|event| matches!(event.kind, Some(Kind::ParticipantAdded(_))));
        let since_join = match joined_at {
            Some(join) => self.baseline_before(room, join.at_ms).await,
            None => {
                self.baseline(room).await;
                Vec::new()
            }
        };
        if let Some(first) = first {
            self.handle(room, first).await;
        }
        room.deliver(since_join);
        let hub = self.weak.clone();
        tokio::spawn(room_loop(hub, room.clone(), traffic));
        Ok(())
    }

    /// Handles one event of the room's chat; false when it was a repeat (or held behind a gap).
    pub(super) async fn handle(&self, room: &Arc<Room>, event: ChatEvent) -> bool {
        let mut state = room.state.lock().await;
        let Some(kind) = event.kind else { return false };
        if let Kind::NewMessage(message) = kind {
            let deliverable = state.order.accept(message, Instant::now());
            let delivered = !deliverable.is_empty();
            room.deliver(deliverable);
            return delivered;
        }
        if !state.seen.first_time(&event.event_id) {
            return false;
        }
        let (chat_id, at_ms) = (event.chat_id, event.at_ms);
        let removed = match &kind {
            // The user's user sockets follow the chat from this frame on.
            Kind::ParticipantAdded(change) => {
                self.let_followers_in(room, change.user_id).await;
                None
            }
            Kind::ParticipantRemoved(change) => Some(change.user_id),
            _ => None,
        };
        if let Some(frame) = frame_of(chat_id, at_ms, kind) {
            room.broadcast_frame(&frame, None);
        }
        // A removed user's sockets heard that much, then nothing more.
        if let Some(user_id) = removed {
            self.registry.left(user_id, chat_id);
            if room.expel(user_id) {
                self.went_offline(room, user_id).await;
            }
            self.registry.retire_if_empty(room);
        }
        true
    }

    /// Lets the user's user sockets that are not in the room yet in.
    async fn let_followers_in(&self, room: &Arc<Room>, user_id: i64) {
        if !self.registry.is_current(room) {
            return;
        }
        let mut first_of_user = false;
        for socket in self.registry.followers(user_id) {
            if !room.contains(socket.id) {
                self.registry.followed(&socket, room.chat_id);
                first_of_user |= room.insert(socket);
            }
        }
        if first_of_user {
            self.came_online(room, user_id).await;
        }
    }

    /// The user's first socket here is in: online on this replica, told to the others.
    pub(super) async fn came_online(&self, room: &Room, user_id: i64) {
        let at_ms = now_ms();
        room.set_presence(user_id, &self.replica, true, at_ms);
        self.publish_presence(room.chat_id, user_id, true, at_ms).await;
    }

    /// The user's last socket here is gone.
    pub(super) async fn went_offline(&self, room: &Room, user_id: i64) {
        let at_ms = now_ms();
        room.set_presence(user_id, &self.replica, false, at_ms);
        self.publish_presence(room.chat_id, user_id, false, at_ms).await;
    }

    fn on_presence(&self, room: &Room, event: PresenceEvent) {
        if event.replica != self.replica {
            room.set_presence(event.user_id, &event.replica, event.online, event.at_ms);
        }
    }
}

/// The room's task: what its subscription brings, the bus reconnecting, and
/// the clock (typing deadlines, gaps).
///
/// A task is as big as the largest state of its future, and a room idles
/// most of its life: every step that calls out (gRPC, the bus, the socket
/// queues) is boxed, so that an idle room holds only the loop's own state.
async fn room_loop(hub: std::sync::Weak<Inner>, room: Arc<Room>, mut traffic: BoxStream<'static, ChatTraffic>) {
    let Some(inner) = hub.upgrade() else { return };
    // Who else is online already (no announcement: they were there before us).
    for (replica, users) in Box::pin(inner.ask_replicas(room.chat_id)).await {
        room.learn_presence(&replica, &users);
    }
    let mut reconnections = inner.bus.reconnections();
    drop(inner);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            () = room.retired.notified() => return,
            Some(traffic) = traffic.next() => {
                let Some(inner) = hub.upgrade() else { return };
                match traffic {
                    ChatTraffic::Event(Ok(event), trace) => {
                        // Part of the trace of the request that caused it (a send, an edit…).
                        let span = tracing::info_span!("deliver", chat_id = room.chat_id);
                        telemetry::propagation::continue_trace_from(&span, &trace);
                        Box::pin(inner.handle(&room, event).instrument(span)).await;
                    }
                    ChatTraffic::Typing(Ok(event)) => room.on_typing(event),
                    ChatTraffic::Presence(Ok(event)) => inner.on_presence(&room, event),
                    ChatTraffic::Event(Err(error), _) | ChatTraffic::Typing(Err(error)) | ChatTraffic::Presence(Err(error)) => {
                        tracing::warn!(%error, chat_id = room.chat_id, "an undecodable payload on the chat's subjects");
                    }
                }
            }
            Some(generation) = super::reconnected(&mut reconnections) => {
                let Some(inner) = hub.upgrade() else { return };
                tracing::debug!(chat_id = room.chat_id, "the bus reconnected: catching up");
                // Live events wait meanwhile: what the stream kept comes first.
                Box::pin(inner.recover(&room, generation)).await;
            }
            _ = tick.tick() => {
                let Some(inner) = hub.upgrade() else { return };
                room.expire_typing();
                let gap = room.state.lock().await.order.needs_backfill(Instant::now(), GAP_WAIT);
                if gap {
                    Box::pin(inner.backfill(&room)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_room_s_task_is_small() {
        let idle = room_loop(std::sync::Weak::new(), Arc::new(Room::new(1)), futures::stream::empty().boxed());
        // What a room costs on top of its subscription (a tokio task's state).
        assert!(std::mem::size_of_val(&idle) <= 768, "{} bytes", std::mem::size_of_val(&idle));
    }
}
