//! The replica's WebSocket hub: one room per chat with at least one local
//! socket, each holding one subscription to the chat's bus subjects and
//! fanning events out to its sockets through bounded queues.
//!
//! - **Order.** A room delivers `new_message` in `seq` order, each once: a
//!   message ahead of a gap waits briefly, then the room backfills the gap
//!   from message-store (also after the bus reconnects). The rules are the
//!   pure [`super::sequencer::Sequencer`]'s; the room only feeds it and
//!   broadcasts what it releases.
//! - **Presence.** Each replica announces a user's first and last local socket
//!   of a chat on the chat's presence subject, heartbeats on
//!   `<prefix>.gateway.heartbeat`, and answers "who is online" questions. A
//!   replica whose heartbeats stop is taken as gone, and its users as offline.
//! - **Typing** goes over the bus too; a start with no stop expires after 10 s.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chat_proto::{
    events::{
        ChatEvent, PresenceAnswer, PresenceEvent, PresenceQuery, ReplicaHeartbeat, TypingEvent, chat_event::Kind,
    },
    messages::{
        self as messages_pb, GetHistoryRequest, get_history_request::Cursor,
        message_store_service_client::MessageStoreServiceClient,
    },
};
use event_bus::{Bus, Received, Subjects, Topic, now_ms};
use futures::{StreamExt, stream::BoxStream};
use grpc_channel::GrpcChannel;
use telemetry::propagation::TracePairs;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tracing::Instrument as _;

use super::{close::CloseCode, frames::ServerFrame, sequencer::Sequencer};
use crate::{
    metrics::METRICS,
    models::{Message, timestamp},
};

/// How many frames a socket may have queued before it counts as too slow (closed with 1013).
pub const SOCKET_QUEUE: usize = 256;
/// A typing start with no stop ends after this long.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message after a gap waits for the gap to fill before the room backfills.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// How often rooms look at typing deadlines and gaps.
const TICK: Duration = Duration::from_millis(100);
/// How often a replica says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica not heard of for this long is gone.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a new room waits for the chat's newest message.
const BASELINE_WAIT: Duration = Duration::from_secs(2);
/// How long a presence question waits for the replicas' answers.
const QUERY_WAIT: Duration = Duration::from_millis(500);

/// How long a stopping hub tries to say goodbye to the other replicas.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);
/// How often a draining hub looks whether its sockets are gone.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A frame serialized once for every socket.
#[derive(Debug)]
pub enum Outbound {
    Frame(Box<str>),
    /// A `new_message` frame, with its id so that the socket drops what it already sent.
    Message {
        id: i64,
        json: Box<str>,
    },
}

/// What a socket's queue carries: one pointer a slot (the queue's first block
/// of slots is allocated for every socket, idle or not).
pub type Queued = Arc<Outbound>;

/// The hub's word to a socket that it must close, and with which code.
#[derive(Debug, Default)]
pub struct CloseSignal {
    /// 0 until the hub closes the socket, then the [`CloseCode`]'s number.
    code: AtomicU16,
    notify: Notify,
}

impl CloseSignal {
    /// Tells the socket to close with `code` (a later code replaces an earlier one).
    pub fn close(&self, code: CloseCode) {
        self.code.store(code.code(), Ordering::Release);
        // One waiter at most (the socket); with none, the permit waits for it.
        self.notify.notify_one();
    }

    /// The code, once the hub has closed the socket.
    pub fn code(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Waits until the hub closes the socket; the code.
    pub async fn closed(&self) -> CloseCode {
        loop {
            if let Some(code) = self.code() {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

struct SocketHandle {
    user_id: i64,
    queue: mpsc::Sender<Queued>,
    close: Arc<CloseSignal>,
}

/// A socket's end of its registration in a room.
pub struct Registration {
    pub socket_id: u64,
    pub queue: mpsc::Receiver<Queued>,
    pub close: Arc<CloseSignal>,
}

struct Room {
    chat_id: i64,
    sockets: Mutex<HashMap<u64, SocketHandle>>,
    order: tokio::sync::Mutex<Sequencer>,
    /// Who is online in the chat, and on which replicas (this one included).
    presence: Mutex<HashMap<i64, HashSet<String>>>,
    typing: Mutex<HashMap<i64, Instant>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Set once the room listens on the bus and has its baseline.
    live: tokio::sync::OnceCell<()>,
}

/// Counts of one replica, for `/api/v1/ws/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalStats {
    pub connections: usize,
    pub users: usize,
    pub chats: usize,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    replica: String,
    bus: Arc<dyn Bus>,
    subjects: Subjects,
    messages: MessageStoreServiceClient<GrpcChannel>,
    rooms: tokio::sync::Mutex<HashMap<i64, Arc<Room>>>,
    next_socket: AtomicU64,
    /// Other replicas: their last heartbeat's connection count and when it came.
    replicas: Mutex<HashMap<String, (i64, Instant)>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Set once the replica is shutting down: no socket joins any more.
    draining: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.background.lock().map(|mut tasks| std::mem::take(&mut *tasks)).unwrap_or_default() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Room {
    fn new(chat_id: i64) -> Self {
        Self {
            chat_id,
            sockets: Mutex::new(HashMap::new()),
            order: tokio::sync::Mutex::new(Sequencer::default()),
            presence: Mutex::new(HashMap::new()),
            typing: Mutex::new(HashMap::new()),
            task: Mutex::new(None),
            live: tokio::sync::OnceCell::new(),
        }
    }

    /// Queues a frame on every socket (but those of `except_user`); a full queue closes its socket.
    fn broadcast(&self, outbound: Outbound, except_user: Option<i64>) {
        let outbound = Arc::new(outbound);
        let sockets = lock(&self.sockets);
        for handle in sockets.values() {
            if Some(handle.user_id) == except_user {
                continue;
            }
            if handle.queue.try_send(outbound.clone()).is_ok() {
                METRICS.ws_frames_queued.inc();
            } else {
                METRICS.ws_slow_closes.inc();
                handle.close.close(CloseCode::TryAgain);
            }
        }
    }

    fn broadcast_frame(&self, frame: &ServerFrame, except_user: Option<i64>) {
        self.broadcast(Outbound::Frame(frame.to_json().into()), except_user);
    }

    fn has_local_user(&self, user_id: i64) -> bool {
        lock(&self.sockets).values().any(|handle| handle.user_id == user_id)
    }

    fn local_users(&self) -> Vec<i64> {
        let users: HashSet<i64> = lock(&self.sockets).values().map(|handle| handle.user_id).collect();
        users.into_iter().collect()
    }

    /// Marks `user_id` online (or not) on `replica`; announces a change of the
    /// cluster-wide state to the other users' sockets.
    fn set_presence(&self, user_id: i64, replica: &str, online: bool, at_ms: i64) {
        let changed = {
            let mut presence = lock(&self.presence);
            let replicas = presence.entry(user_id).or_default();
            let was_online = !replicas.is_empty();
            if online {
                replicas.insert(replica.to_owned());
            } else {
                replicas.remove(replica);
            }
            let is_online = !replicas.is_empty();
            if !is_online {
                presence.remove(&user_id);
            }
            was_online != is_online
        };
        if changed {
            let (chat_id, timestamp) = (self.chat_id, timestamp(at_ms));
            let frame = if online {
                ServerFrame::UserJoined { user_id, chat_id, timestamp }
            } else {
                ServerFrame::UserLeft { user_id, chat_id, timestamp }
            };
            self.broadcast_frame(&frame, Some(user_id));
        }
    }

    /// Broadcasts `new_message`s the sequencer released, in order.
    fn deliver(&self, messages: Vec<messages_pb::Message>) {
        for message in messages {
            let (chat_id, id) = (message.chat_id, message.id);
            let json = ServerFrame::NewMessage { chat_id, message: Message::from(message) }.to_json();
            self.broadcast(Outbound::Message { id, json: json.into() }, None);
        }
    }
}

impl Hub {
    /// A hub for this replica; starts its heartbeat and its answering of presence questions.
    pub async fn start(
        replica: String,
        bus: Arc<dyn Bus>,
        subjects: Subjects,
        messages: MessageStoreServiceClient<GrpcChannel>,
    ) -> anyhow::Result<Self> {
        let hub = Self {
            inner: Arc::new(Inner {
                replica,
                bus,
                subjects,
                messages,
                rooms: tokio::sync::Mutex::new(HashMap::new()),
                next_socket: AtomicU64::new(1),
                replicas: Mutex::new(HashMap::new()),
                background: Mutex::new(Vec::new()),
                draining: AtomicBool::new(false),
            }),
        };
        let bus = hub.inner.bus.as_ref();
        let heartbeats = hub.inner.subjects.heartbeat_topic().subscribe(bus).await?;
        let queries = hub.inner.subjects.presence_query_topic().subscribe(bus).await?;
        let _ = hub.inner.bus.flush().await;
        let weak = Arc::downgrade(&hub.inner);
        let heartbeat_task = tokio::spawn(heartbeat_loop(weak.clone(), heartbeats));
        let answer_task = tokio::spawn(answer_loop(weak, queries));
        lock(&hub.inner.background).extend([heartbeat_task, answer_task]);
        hub.publish_heartbeat().await;
        Ok(hub)
    }

    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    async fn publish_heartbeat(&self) {
        self.inner.publish_heartbeat().await;
    }

    /// Registers a socket of `user_id` in the chat's room (subscribing the room
    /// to the bus first if it is new). Events published from now on reach it.
    pub async fn join(&self, chat_id: i64, user_id: i64) -> anyhow::Result<Registration> {
        let socket_id = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue) = mpsc::channel(SOCKET_QUEUE);
        let close = Arc::new(CloseSignal::default());
        // The socket goes into its room under the rooms lock, so a concurrent
        // `leave` cannot retire the room between the two.
        let (room, first_of_user) = {
            let mut rooms = self.inner.rooms.lock().await;
            let room = rooms.entry(chat_id).or_insert_with(|| Arc::new(Room::new(chat_id))).clone();
            let first_of_user = !room.has_local_user(user_id);
            lock(&room.sockets).insert(socket_id, SocketHandle { user_id, queue: queue_tx, close: close.clone() });
            (room, first_of_user)
        };
        // Opening a room (bus subscriptions, baseline) happens outside the lock:
        // a slow message-store delays this chat's first socket, nobody else.
        if let Err(error) = room.live.get_or_try_init(|| self.open(&room)).await {
            self.leave(chat_id, socket_id).await;
            return Err(error);
        }
        if first_of_user {
            let at_ms = now_ms();
            room.set_presence(user_id, &self.inner.replica, true, at_ms);
            self.inner.publish_presence(chat_id, user_id, true, at_ms).await;
        }
        // A socket that joined while `drain` went through the rooms is closed like the others.
        if self.inner.draining.load(Ordering::SeqCst) {
            close.close(CloseCode::Restart);
        }
        Ok(Registration { socket_id, queue, close })
    }

    /// Whether the replica is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// From now on no socket joins (a socket joining meanwhile is closed with [`CloseCode::Restart`]).
    pub fn stop_accepting(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Shuts the hub down: closes every socket with [`CloseCode::Restart`] (and any
    /// that joins later), waits up to `within` for them to leave — each
    /// departure withdraws its user's presence as usual — then tells the other
    /// replicas that this one is gone, so they drop it at once instead of
    /// after [`REPLICA_TIMEOUT`].
    pub async fn drain(&self, within: Duration) {
        self.stop_accepting();
        {
            let rooms = self.inner.rooms.lock().await;
            for room in rooms.values() {
                for handle in lock(&room.sockets).values() {
                    handle.close.close(CloseCode::Restart);
                }
            }
        }
        let deadline = Instant::now() + within;
        loop {
            let open = self.local_stats().await.connections;
            if open == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(open, "sockets still open at the end of the drain");
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        for task in std::mem::take(&mut *lock(&self.inner.background)) {
            task.abort();
        }
        let goodbye =
            ReplicaHeartbeat { replica: self.inner.replica.clone(), connections: 0, at_ms: now_ms(), stopping: true };
        // Best effort: with the bus down the others notice the silence instead (REPLICA_TIMEOUT).
        let _ = tokio::time::timeout(GOODBYE_WAIT, async {
            self.inner.publish(&self.inner.subjects.heartbeat_topic(), &goodbye).await;
            let _ = self.inner.bus.flush().await;
        })
        .await;
    }

    /// Subscribes a new room to the chat's subjects, takes its baseline and starts its loop.
    async fn open(&self, room: &Arc<Room>) -> anyhow::Result<()> {
        let (subjects, bus, chat_id) = (&self.inner.subjects, &self.inner.bus, room.chat_id);
        let events = subjects.events_topic(chat_id).subscribe_traced(bus.as_ref()).await?;
        let typing = subjects.typing_topic(chat_id).subscribe(bus.as_ref()).await?;
        let presence = subjects.presence_topic(chat_id).subscribe(bus.as_ref()).await?;
        let _ = bus.flush().await;
        // The baseline, before the first socket counts as live: what was sent
        // until now is history (a client asks for it with `after`), what comes
        // later is delivered.
        self.inner.baseline(room).await;
        let task = tokio::spawn(room_loop(Arc::downgrade(&self.inner), room.clone(), events, typing, presence));
        *lock(&room.task) = Some(task);
        Ok(())
    }

    /// Takes a socket out of its room (it closed, or the hub closed it).
    pub async fn leave(&self, chat_id: i64, socket_id: u64) {
        let (room, went_offline) = {
            let mut rooms = self.inner.rooms.lock().await;
            let Some(room) = rooms.get(&chat_id).cloned() else { return };
            let removed = lock(&room.sockets).remove(&socket_id);
            let went_offline = removed.map(|handle| handle.user_id).filter(|user| !room.has_local_user(*user));
            if lock(&room.sockets).is_empty() {
                rooms.remove(&chat_id);
                if let Some(task) = lock(&room.task).take() {
                    task.abort();
                }
            }
            (room, went_offline)
        };
        // Announced outside the rooms lock: a slow bus must not hold up every other socket.
        if let Some(user_id) = went_offline {
            let at_ms = now_ms();
            room.set_presence(user_id, &self.inner.replica, false, at_ms);
            self.inner.publish_presence(chat_id, user_id, false, at_ms).await;
        }
    }

    /// Publishes a typing change for the chat's other users, on every replica.
    pub async fn typing(&self, chat_id: i64, user_id: i64, started: bool) {
        let event = TypingEvent { chat_id, user_id, started, at_ms: now_ms() };
        self.inner.publish(&self.inner.subjects.typing_topic(chat_id), &event).await;
    }

    /// Queues a frame for one socket only (pong, error, an idempotent send's original).
    pub async fn send_to(&self, chat_id: i64, socket_id: u64, outbound: Outbound) {
        let rooms = self.inner.rooms.lock().await;
        if let Some(handle) =
            rooms.get(&chat_id).and_then(|room| lock(&room.sockets).get(&socket_id).map(|h| h.queue.clone()))
        {
            let _ = handle.try_send(Arc::new(outbound));
        }
    }

    /// This replica's live connections, distinct users and chats.
    pub async fn local_stats(&self) -> LocalStats {
        let rooms = self.inner.rooms.lock().await;
        let mut users = HashSet::new();
        let mut connections = 0;
        for room in rooms.values() {
            let sockets = lock(&room.sockets);
            connections += sockets.len();
            users.extend(sockets.values().map(|handle| handle.user_id));
        }
        LocalStats { connections, users: users.len(), chats: rooms.len() }
    }

    /// The cluster's connections (this replica's now, the others' at their last
    /// heartbeat) and how many replicas are alive.
    pub async fn cluster_stats(&self) -> (i64, i64) {
        let own = self.local_stats().await.connections as i64;
        let others = self.inner.live_replicas();
        (own + others.values().sum::<i64>(), 1 + others.len() as i64)
    }

    /// Users with a live socket to the chat on any replica.
    pub async fn online(&self, chat_id: i64) -> Vec<i64> {
        let mut users: HashSet<i64> = self.inner.local_users(chat_id).await.into_iter().collect();
        for (_, remote) in self.inner.ask_replicas(chat_id).await {
            users.extend(remote);
        }
        let mut users: Vec<i64> = users.into_iter().collect();
        users.sort_unstable();
        users
    }
}

impl Inner {
    /// Publishes, best effort (typing, presence and heartbeats are ephemeral).
    async fn publish<M: prost::Message + Default + Send + 'static>(&self, topic: &Topic<M>, message: &M) {
        if let Err(error) = topic.publish(self.bus.as_ref(), message).await {
            tracing::debug!(%error, subject = topic.subject(), "cannot publish");
        }
    }

    async fn publish_heartbeat(&self) {
        let connections = {
            let rooms = self.rooms.lock().await;
            rooms.values().map(|room| lock(&room.sockets).len() as i64).sum()
        };
        let beat = ReplicaHeartbeat { replica: self.replica.clone(), connections, at_ms: now_ms(), stopping: false };
        self.publish(&self.subjects.heartbeat_topic(), &beat).await;
    }

    /// Takes these replicas' users offline in every room here.
    async fn forget(&self, replicas: &[String]) {
        if replicas.is_empty() {
            return;
        }
        let rooms: Vec<Arc<Room>> = self.rooms.lock().await.values().cloned().collect();
        for replica in replicas {
            for room in &rooms {
                let users: Vec<i64> =
                    lock(&room.presence).iter().filter(|(_, on)| on.contains(replica)).map(|(user, _)| *user).collect();
                for user in users {
                    room.set_presence(user, replica, false, now_ms());
                }
            }
        }
    }

    async fn publish_presence(&self, chat_id: i64, user_id: i64, online: bool, at_ms: i64) {
        let event = PresenceEvent { chat_id, user_id, online, replica: self.replica.clone(), at_ms };
        self.publish(&self.subjects.presence_topic(chat_id), &event).await;
    }

    fn live_replicas(&self) -> HashMap<String, i64> {
        let replicas = lock(&self.replicas);
        replicas
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() < REPLICA_TIMEOUT)
            .map(|(name, (connections, _))| (name.clone(), *connections))
            .collect()
    }

    async fn local_users(&self, chat_id: i64) -> Vec<i64> {
        let rooms = self.rooms.lock().await;
        rooms.get(&chat_id).map(|room| room.local_users()).unwrap_or_default()
    }

    /// Asks every other replica who is online in the chat; waits for the
    /// replicas known alive, at most [`QUERY_WAIT`].
    async fn ask_replicas(&self, chat_id: i64) -> HashMap<String, Vec<i64>> {
        let mut answers = HashMap::new();
        let expected: HashSet<String> = self.live_replicas().into_keys().collect();
        if expected.is_empty() {
            return answers;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let reply_subject = self.subjects.reply(&token);
        let answers_topic = Subjects::presence_answer_topic(reply_subject.clone());
        let Ok(mut replies) = answers_topic.subscribe(self.bus.as_ref()).await else { return answers };
        let _ = self.bus.flush().await;
        let query = PresenceQuery { chat_id, reply_subject };
        self.publish(&self.subjects.presence_query_topic(), &query).await;
        let deadline = tokio::time::Instant::now() + QUERY_WAIT;
        while !expected.iter().all(|replica| answers.contains_key(replica)) {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(answer)) => {
                    if let Ok(answer) = answer
                        && answer.replica != self.replica
                    {
                        answers.insert(answer.replica, answer.user_ids);
                    }
                }
                _ => break,
            }
        }
        answers
    }

    /// The room's starting point: the chat's newest message now.
    async fn baseline(&self, room: &Room) {
        // A fan-out read (no acting user): the room's sockets were each checked at connect.
        let request = GetHistoryRequest { chat_id: room.chat_id, limit: 1, cursor: None };
        let newest = tokio::time::timeout(BASELINE_WAIT, self.messages.clone().get_history(request)).await;
        match newest.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("baseline"))) {
            Ok(page) => {
                let newest = page.into_inner().messages.pop().map(|newest| (newest.id, newest.seq));
                room.order.lock().await.baseline(newest);
            }
            Err(status) => {
                tracing::warn!(chat_id = room.chat_id, code = ?status.code(), "no history baseline; taking the bus as it comes")
            }
        }
    }

    /// Fetches what the room missed since the last message it delivered.
    async fn backfill(&self, room: &Room) {
        if room.local_users().is_empty() {
            return;
        }
        METRICS.ws_backfills.inc();
        let mut order = room.order.lock().await;
        loop {
            // A fan-out read, like the baseline.
            let request = GetHistoryRequest {
                chat_id: room.chat_id,
                limit: 100,
                cursor: Some(Cursor::AfterId(order.after_id())),
            };
            let page = match self.messages.clone().get_history(request).await {
                Ok(page) => page.into_inner(),
                Err(status) => {
                    tracing::warn!(chat_id = room.chat_id, code = ?status.code(), "backfill failed; will retry");
                    order.backfill_failed(Instant::now());
                    return;
                }
            };
            room.deliver(order.backfilled(page.messages));
            if !page.has_more {
                break;
            }
        }
        room.deliver(order.drain(Instant::now()));
    }

    async fn on_chat_event(&self, room: &Room, event: ChatEvent) {
        let (chat_id, timestamp) = (event.chat_id, timestamp(event.at_ms));
        match event.kind {
            Some(Kind::NewMessage(message)) => {
                let mut order = room.order.lock().await;
                room.deliver(order.accept(message, Instant::now()));
            }
            Some(Kind::MessageEdited(message)) => {
                room.broadcast_frame(&ServerFrame::MessageEdited { chat_id, message: message.into() }, None);
            }
            Some(Kind::MessageDeleted(deleted)) => {
                let frame = ServerFrame::MessageDeleted { chat_id, message_id: deleted.message_id, timestamp };
                room.broadcast_frame(&frame, None);
            }
            Some(Kind::ParticipantAdded(change)) => {
                let frame = ServerFrame::ParticipantAdded {
                    user_id: change.user_id,
                    by_user_id: change.by_user_id,
                    chat_id,
                    timestamp,
                };
                room.broadcast_frame(&frame, None);
            }
            Some(Kind::ParticipantRemoved(change)) => {
                let frame = ServerFrame::ParticipantRemoved {
                    user_id: change.user_id,
                    by_user_id: change.by_user_id,
                    chat_id,
                    timestamp,
                };
                room.broadcast_frame(&frame, None);
                // Their sockets hear that much, then nothing more: out of the room, closed with 4403.
                let had_local = {
                    let mut sockets = lock(&room.sockets);
                    let before = sockets.len();
                    sockets.retain(|_, handle| {
                        let stays = handle.user_id != change.user_id;
                        if !stays {
                            handle.close.close(CloseCode::Forbidden);
                        }
                        stays
                    });
                    sockets.len() < before
                };
                if had_local {
                    room.set_presence(change.user_id, &self.replica, false, now_ms());
                    self.publish_presence(chat_id, change.user_id, false, now_ms()).await;
                }
            }
            None => {}
        }
    }

    fn on_typing(&self, room: &Room, event: TypingEvent) {
        let (user_id, chat_id, timestamp) = (event.user_id, event.chat_id, timestamp(event.at_ms));
        let was_typing = if event.started {
            lock(&room.typing).insert(user_id, Instant::now() + TYPING_TIMEOUT).is_some()
        } else {
            lock(&room.typing).remove(&user_id).is_some()
        };
        let frame = if event.started {
            ServerFrame::TypingStarted { user_id, chat_id, timestamp }
        } else if was_typing {
            ServerFrame::TypingStopped { user_id, chat_id, timestamp }
        } else {
            return;
        };
        room.broadcast_frame(&frame, Some(user_id));
    }

    fn expire_typing(&self, room: &Room) {
        let now = Instant::now();
        let expired: Vec<i64> = {
            let mut typing = lock(&room.typing);
            let expired =
                typing.iter().filter(|(_, deadline)| **deadline <= now).map(|(user, _)| *user).collect::<Vec<_>>();
            for user in &expired {
                typing.remove(user);
            }
            expired
        };
        for user_id in expired {
            let frame = ServerFrame::TypingStopped { user_id, chat_id: room.chat_id, timestamp: timestamp(now_ms()) };
            room.broadcast_frame(&frame, Some(user_id));
        }
    }
}

async fn room_loop(
    hub: std::sync::Weak<Inner>,
    room: Arc<Room>,
    mut events: BoxStream<'static, (Received<ChatEvent>, TracePairs)>,
    mut typing: BoxStream<'static, Received<TypingEvent>>,
    mut presence: BoxStream<'static, Received<PresenceEvent>>,
) {
    let Some(inner) = hub.upgrade() else { return };
    // Who else is online already (no announcement: they were there before us).
    for (replica, users) in inner.ask_replicas(room.chat_id).await {
        let mut known = lock(&room.presence);
        for user in users {
            known.entry(user).or_default().insert(replica.clone());
        }
    }
    let mut reconnections = inner.bus.reconnections();
    drop(inner);
    let mut tick = tokio::time::interval(TICK);
    loop {
        let reconnected = async {
            match reconnections.as_mut() {
                Some(receiver) => receiver.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((event, trace)) = events.next() => {
                let Some(inner) = hub.upgrade() else { return };
                match event {
                    Ok(event) => {
                        // Part of the trace of the request that caused it (a send, an edit…).
                        let span = tracing::info_span!("deliver", chat_id = room.chat_id);
                        telemetry::propagation::continue_trace_from(&span, &trace);
                        inner.on_chat_event(&room, event).instrument(span).await;
                    }
                    Err(error) => tracing::warn!(%error, "an undecodable chat event"),
                }
            }
            Some(event) = typing.next() => {
                let Some(inner) = hub.upgrade() else { return };
                if let Ok(event) = event {
                    inner.on_typing(&room, event);
                }
            }
            Some(event) = presence.next() => {
                let Some(inner) = hub.upgrade() else { return };
                if let Ok(event) = event
                    && event.replica != inner.replica {
                        room.set_presence(event.user_id, &event.replica, event.online, event.at_ms);
                    }
            }
            true = reconnected => {
                let Some(inner) = hub.upgrade() else { return };
                tracing::info!(chat_id = room.chat_id, "the bus reconnected: backfilling");
                inner.backfill(&room).await;
            }
            _ = tick.tick() => {
                let Some(inner) = hub.upgrade() else { return };
                inner.expire_typing(&room);
                let gap = room.order.lock().await.needs_backfill(Instant::now(), GAP_WAIT);
                if gap {
                    inner.backfill(&room).await;
                }
            }
        }
    }
}

async fn heartbeat_loop(hub: std::sync::Weak<Inner>, mut heartbeats: BoxStream<'static, Received<ReplicaHeartbeat>>) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            Some(heartbeat) = heartbeats.next() => {
                let Some(inner) = hub.upgrade() else { return };
                let Ok(heartbeat) = heartbeat else { continue };
                if heartbeat.replica == inner.replica {
                    continue;
                }
                if heartbeat.stopping {
                    lock(&inner.replicas).remove(&heartbeat.replica);
                    tracing::info!(replica = heartbeat.replica, "a gateway replica is shutting down; its users are offline");
                    inner.forget(&[heartbeat.replica]).await;
                    continue;
                }
                let known = lock(&inner.replicas).insert(heartbeat.replica.clone(), (heartbeat.connections, Instant::now())).is_some();
                if !known {
                    // A replica new to us: tell it about us at once.
                    tracing::info!(replica = heartbeat.replica, "a gateway replica joined");
                    inner.publish_heartbeat().await;
                }
            }
            _ = beat.tick() => {
                let Some(inner) = hub.upgrade() else { return };
                inner.publish_heartbeat().await;
                let gone: Vec<String> = {
                    let mut replicas = lock(&inner.replicas);
                    let gone = replicas.iter().filter(|(_, (_, seen))| seen.elapsed() >= REPLICA_TIMEOUT).map(|(name, _)| name.clone()).collect::<Vec<_>>();
                    for name in &gone {
                        replicas.remove(name);
                    }
                    gone
                };
                for replica in &gone {
                    tracing::warn!(replica, "a gateway replica is gone; its users are offline");
                }
                inner.forget(&gone).await;
            }
        }
    }
}

async fn answer_loop(hub: std::sync::Weak<Inner>, mut queries: BoxStream<'static, Received<PresenceQuery>>) {
    while let Some(query) = queries.next().await {
        let Some(inner) = hub.upgrade() else { return };
        let Ok(query) = query else { continue };
        let answer = PresenceAnswer {
            replica: inner.replica.clone(),
            chat_id: query.chat_id,
            user_ids: inner.local_users(query.chat_id).await,
        };
        inner.publish(&Subjects::presence_answer_topic(query.reply_subject), &answer).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_close_before_the_socket_waits_is_not_lost() {
        let signal = CloseSignal::default();
        assert_eq!(signal.code(), None);
        signal.close(CloseCode::TryAgain);
        assert_eq!(tokio::time::timeout(WAIT, signal.closed()).await, Ok(CloseCode::TryAgain));
    }

    #[tokio::test]
    async fn a_waiting_socket_hears_the_close() {
        let signal = Arc::new(CloseSignal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.closed().await }
        });
        tokio::task::yield_now().await;
        signal.close(CloseCode::Forbidden);
        assert_eq!(tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap(), CloseCode::Forbidden);
    }
}
