//! The fanout layer: how events of the bus reach this replica's sockets.
//!
//! | part | owns |
//! |---|---|
//! | [`registry`] | who is connected and which rooms exist (64 shards each) |
//! | [`room`] | one chat's sockets, its one bus subscription and its task |
//! | [`sequencer`] | the order of a chat's `new_message`s (pure) |
//! | [`seen`] | the ids of a room's latest events, to drop repeats (pure) |
//! | [`catchup`] | baseline, backfill from message-store, catch-up from the events stream |
//! | [`follow`] | user sockets following their user's chats (the membership subject) |
//! | [`presence`] / [`typing`] | who is online / typing in a chat (pure) |
//! | [`replicas`] | the other gateway replicas: heartbeats, presence questions |
//! | [`outbound`] | a socket's queue and close signal |
//!
//! A socket is either a chat's (`GET /ws/{chat_id}`: in one room) or a
//! user's (`GET /ws`: in the room of every chat its user is in). Either way
//! a replica holds one subscription per chat with a socket here, whatever the
//! number of sockets.

pub mod catchup;
pub mod follow;
pub mod outbound;
pub mod presence;
pub mod registry;
pub mod replicas;
pub mod room;
pub mod seen;
pub mod sequencer;
pub mod typing;

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chat_proto::{events::TypingEvent, messages::message_store_service_client::MessageStoreServiceClient};
use event_bus::{Bus, Subjects, now_ms};
use grpc_channel::GrpcChannel;
use tokio::task::JoinHandle;

pub use outbound::{Outbound, Queued, Registration, SocketHandle, SocketKind};
pub use registry::LocalStats;

use crate::ws::close::CloseCode;

/// How many frames a per-chat socket may have queued before it counts as too slow (closed with 1013).
pub const SOCKET_QUEUE: usize = 256;
/// The same for a user socket, which carries many chats (slots are allocated as they fill).
pub const USER_SOCKET_QUEUE: usize = 1024;
/// How long a stopping hub tries to say goodbye to the other replicas.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);
/// How often a draining hub looks whether its sockets are gone.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// The replica's fanout.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

pub struct Inner {
    replica: String,
    bus: Arc<dyn Bus>,
    subjects: Subjects,
    messages: MessageStoreServiceClient<GrpcChannel>,
    registry: registry::Registry,
    replicas: replicas::Replicas,
    /// Itself, for the tasks it starts (they end when the hub is gone).
    weak: Weak<Inner>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The latest catch-up from the events stream (after a bus reconnection).
    recovered: tokio::sync::watch::Sender<Arc<catchup::Recovery>>,
    /// Set once the replica is shutting down: no socket joins any more.
    draining: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.background.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

/// The bus's next reconnection (its count); never, for a bus that cannot lose its connection.
async fn reconnected(reconnections: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<u64> {
    match reconnections {
        Some(receiver) => {
            receiver.changed().await.ok()?;
            Some(*receiver.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

impl Hub {
    /// A hub for this replica; starts its heartbeat, its answering of
    /// presence questions and its membership listener.
    pub async fn start(
        replica: String,
        bus: Arc<dyn Bus>,
        subjects: Subjects,
        messages: MessageStoreServiceClient<GrpcChannel>,
    ) -> anyhow::Result<Self> {
        let inner = Arc::new_cyclic(|weak| Inner {
            replica,
            bus,
            subjects,
            messages,
            registry: registry::Registry::default(),
            replicas: replicas::Replicas::default(),
            weak: weak.clone(),
            background: Mutex::default(),
            recovered: tokio::sync::watch::Sender::new(Arc::default()),
            draining: AtomicBool::new(false),
        });
        let bus = inner.bus.as_ref();
        let heartbeats = inner.subjects.heartbeat_topic().subscribe(bus).await?;
        let queries = inner.subjects.presence_query_topic().subscribe(bus).await?;
        let membership = inner.subjects.membership_topic().subscribe(bus).await?;
        let _ = inner.bus.flush().await;
        let weak = Arc::downgrade(&inner);
        let tasks = [
            tokio::spawn(replicas::heartbeat_loop(weak.clone(), heartbeats)),
            tokio::spawn(replicas::answer_loop(weak.clone(), queries)),
            tokio::spawn(follow::membership_loop(weak.clone(), membership)),
            tokio::spawn(catchup::recovery_loop(weak)),
        ];
        inner.background.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(tasks);
        inner.publish_heartbeat(false).await;
        Ok(Self { inner })
    }

    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Puts a new socket of `user_id` in the chat's room (opening the room if
    /// it is new). Events published from now on reach it.
    pub async fn join(&self, chat_id: i64, user_id: i64) -> anyhow::Result<(SocketHandle, Registration)> {
        let (socket, registration) = self.inner.registry.connect(user_id, SocketKind::Chat, SOCKET_QUEUE);
        if let Err(error) = self.inner.enter_live(chat_id, &socket).await {
            self.inner.registry.disconnect(&socket);
            return Err(error);
        }
        self.closed_if_draining(&socket);
        Ok((socket, registration))
    }

    /// Takes a per-chat socket out (it closed, or the hub closed it).
    pub async fn leave(&self, chat_id: i64, socket: &SocketHandle) {
        self.inner.exit(chat_id, socket).await;
        self.inner.registry.disconnect(socket);
    }

    /// A new user socket of `user_id`: call [`Hub::follow`] with the user's
    /// chats next (membership changes from now on are not missed meanwhile).
    pub fn connect_user(&self, user_id: i64) -> (SocketHandle, Registration) {
        self.inner.registry.connect(user_id, SocketKind::User, USER_SOCKET_QUEUE)
    }

    /// The user socket enters the room of each of its user's chats (`chats`,
    /// as listed after [`Hub::connect_user`]), and of every chat they join later.
    pub async fn follow(&self, socket: &SocketHandle, chats: Vec<i64>) -> anyhow::Result<()> {
        self.inner.follow_listed(socket, chats).await?;
        self.closed_if_draining(socket);
        Ok(())
    }

    /// Whether a user socket carries the chat now (its user is in it).
    pub fn follows(&self, socket: &SocketHandle, chat_id: i64) -> bool {
        self.inner.registry.follows(socket, chat_id)
    }

    /// Takes a user socket out of every room it is in.
    pub async fn disconnect_user(&self, socket: &SocketHandle) {
        for chat_id in self.inner.registry.disconnect(socket) {
            self.inner.exit(chat_id, socket).await;
        }
    }

    /// A socket that joined while `drain` went through the sockets is closed like the others.
    fn closed_if_draining(&self, socket: &SocketHandle) {
        if self.inner.draining.load(Ordering::SeqCst) {
            socket.close(CloseCode::Restart);
        }
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
    /// after the heartbeat timeout.
    pub async fn drain(&self, within: Duration) {
        self.stop_accepting();
        self.inner.registry.close_all(CloseCode::Restart);
        let deadline = Instant::now() + within;
        loop {
            let open = self.local_stats().connections;
            if open == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(open, "sockets still open at the end of the drain");
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        for task in
            std::mem::take(&mut *self.inner.background.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
        {
            task.abort();
        }
        // Best effort: with the bus down the others notice the silence instead.
        let _ = tokio::time::timeout(GOODBYE_WAIT, async {
            self.inner.publish_heartbeat(true).await;
            let _ = self.inner.bus.flush().await;
        })
        .await;
    }

    /// Publishes a typing change for the chat's other users, on every replica.
    pub async fn typing(&self, chat_id: i64, user_id: i64, started: bool) {
        let event = TypingEvent { chat_id, user_id, started, at_ms: now_ms() };
        self.inner.publish(&self.inner.subjects.typing_topic(chat_id), &event).await;
    }

    /// This replica's live connections, distinct users and chats.
    pub fn local_stats(&self) -> LocalStats {
        self.inner.registry.stats()
    }

    /// The cluster's connections (this replica's now, the others' at their last
    /// heartbeat) and how many replicas are alive.
    pub fn cluster_stats(&self) -> (i64, i64) {
        let own = self.local_stats().connections as i64;
        let others = self.inner.replicas.live();
        (own + others.values().sum::<i64>(), 1 + others.len() as i64)
    }

    /// Users with a live socket to the chat on any replica.
    pub async fn online(&self, chat_id: i64) -> Vec<i64> {
        let mut users = self.inner.registry.room(chat_id).map(|room| room.local_users()).unwrap_or_default();
        for (_, remote) in self.inner.ask_replicas(chat_id).await {
            users.extend(remote);
        }
        users.sort_unstable();
        users.dedup();
        users
    }
}
