//! Who is connected to this replica, and which rooms they are in: the only
//! shared maps of the fanout, in [`SHARDS`] shards each (a chat's or a user's
//! shard by its id), so that sockets of different chats and users never wait
//! on one lock. Nothing here awaits while holding a lock.
//!
//! - **Rooms**, by chat: a chat's room exists while at least one socket is in
//!   it; the last one out retires it ([`Room::retire`]).
//! - **Connections**, by user: every socket of the user; a user socket also
//!   keeps the chats it follows (to leave them when it closes), and while it
//!   lists the user's chats at connect, the removals that happen meanwhile (so
//!   that a chat left during the listing is not followed after it).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    outbound::{Registration, SocketHandle, SocketKind},
    room::Room,
};
use crate::ws::close::CloseCode;

/// Shards of each map.
pub const SHARDS: usize = 64;

/// Counts of one replica, for `/api/v1/ws/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalStats {
    pub connections: usize,
    pub users: usize,
    pub chats: usize,
}

pub struct Registry {
    rooms: Vec<Mutex<HashMap<i64, Arc<Room>>>>,
    users: Vec<Mutex<HashMap<i64, Vec<Connection>>>>,
    next_socket: AtomicU64,
}

struct Connection {
    handle: SocketHandle,
    /// A user socket's chats (boxed: a per-chat socket pays one pointer for it).
    follows: Option<Box<Follows>>,
}

#[derive(Default)]
struct Follows {
    chats: Vec<i64>,
    /// `Some` while the socket lists its user's chats: the chats the user left meanwhile.
    listing: Option<Vec<i64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard<T>(shards: &[Mutex<T>], id: i64) -> MutexGuard<'_, T> {
    lock(&shards[id.rem_euclid(SHARDS as i64) as usize])
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            rooms: (0..SHARDS).map(|_| Mutex::default()).collect(),
            users: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_socket: AtomicU64::new(1),
        }
    }
}

impl Registry {
    /// A new socket of `user_id` with a queue of `capacity` frames; a user
    /// socket starts listing (see [`Registry::listed`]).
    pub fn connect(&self, user_id: i64, kind: SocketKind, capacity: usize) -> (SocketHandle, Registration) {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let (handle, registration) = SocketHandle::new(id, user_id, kind, capacity);
        let follows =
            (kind == SocketKind::User).then(|| Box::new(Follows { chats: Vec::new(), listing: Some(Vec::new()) }));
        shard(&self.users, user_id).entry(user_id).or_default().push(Connection { handle: handle.clone(), follows });
        (handle, registration)
    }

    /// Forgets a socket; the chats it followed (a user socket's), to leave.
    pub fn disconnect(&self, socket: &SocketHandle) -> Vec<i64> {
        let mut users = shard(&self.users, socket.user_id);
        let Some(connections) = users.get_mut(&socket.user_id) else { return Vec::new() };
        let Some(at) = connections.iter().position(|connection| connection.handle.id == socket.id) else {
            return Vec::new();
        };
        let connection = connections.swap_remove(at);
        if connections.is_empty() {
            users.remove(&socket.user_id);
        }
        connection.follows.map(|follows| follows.chats).unwrap_or_default()
    }

    /// The user's user sockets (they follow every chat the user joins).
    pub fn followers(&self, user_id: i64) -> Vec<SocketHandle> {
        let users = shard(&self.users, user_id);
        let connections = users.get(&user_id).map(Vec::as_slice).unwrap_or_default();
        connections.iter().filter(|c| c.follows.is_some()).map(|c| c.handle.clone()).collect()
    }

    /// A user socket has listed its user's chats: those still to follow (the
    /// list without the chats the user left while it was being read).
    pub fn listed(&self, socket: &SocketHandle, mut chats: Vec<i64>) -> Vec<i64> {
        self.with_follows(socket, |follows| {
            let left = follows.listing.take().unwrap_or_default();
            chats.retain(|chat| !left.contains(chat));
            chats
        })
        .unwrap_or_default()
    }

    /// Whether a user socket follows the chat now.
    pub fn follows(&self, socket: &SocketHandle, chat_id: i64) -> bool {
        self.with_follows(socket, |follows| follows.chats.contains(&chat_id)).unwrap_or(false)
    }

    /// `act` on what a connected user socket follows; `None` for another socket, or one gone.
    fn with_follows<R>(&self, socket: &SocketHandle, act: impl FnOnce(&mut Follows) -> R) -> Option<R> {
        let mut users = shard(&self.users, socket.user_id);
        let connection = users.get_mut(&socket.user_id)?.iter_mut().find(|c| c.handle.id == socket.id)?;
        connection.follows.as_deref_mut().map(act)
    }

    /// The user left the chat: their user sockets follow it no more (and one
    /// still listing will not start to).
    pub fn left(&self, user_id: i64, chat_id: i64) {
        let mut users = shard(&self.users, user_id);
        for connection in users.get_mut(&user_id).into_iter().flatten() {
            if let Some(follows) = connection.follows.as_mut() {
                follows.chats.retain(|chat| *chat != chat_id);
                if let Some(left) = follows.listing.as_mut() {
                    left.push(chat_id);
                }
            }
        }
    }

    /// Puts a socket in the chat's room (making the room if there is none):
    /// the room, and whether the socket is its user's first there. A user
    /// socket follows the chat from now on. The room may still have to open.
    pub fn enter(&self, chat_id: i64, socket: &SocketHandle) -> (Arc<Room>, bool) {
        let (room, first_of_user) = {
            let mut rooms = shard(&self.rooms, chat_id);
            let room = rooms.entry(chat_id).or_insert_with(|| Arc::new(Room::new(chat_id))).clone();
            // Under the shard lock: a concurrent `exit` cannot retire the room between the two.
            let first_of_user = room.insert(socket.clone());
            (room, first_of_user)
        };
        if socket.kind == SocketKind::User {
            self.followed(socket, chat_id);
        }
        (room, first_of_user)
    }

    /// Notes that a user socket is in the chat's room (it entered it, or the room let it in).
    pub fn followed(&self, socket: &SocketHandle, chat_id: i64) {
        self.with_follows(socket, |follows| {
            if !follows.chats.contains(&chat_id) {
                follows.chats.push(chat_id);
            }
        });
    }

    /// Takes a socket out of the chat's room: the room, and whether the
    /// socket was its user's last there. An empty room is retired.
    pub fn exit(&self, chat_id: i64, socket_id: u64) -> Option<(Arc<Room>, Option<i64>)> {
        let mut rooms = shard(&self.rooms, chat_id);
        let room = rooms.get(&chat_id)?.clone();
        let went_offline = room.remove(socket_id);
        if room.is_empty() {
            rooms.remove(&chat_id);
            room.retire();
        }
        Some((room, went_offline))
    }

    /// Retires the room if nobody is left in it (its last sockets were expelled).
    pub fn retire_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = shard(&self.rooms, room.chat_id);
        if room.is_empty() && rooms.get(&room.chat_id).is_some_and(|current| Arc::ptr_eq(current, room)) {
            rooms.remove(&room.chat_id);
            room.retire();
        }
    }

    /// Whether this room is still the chat's room (not retired).
    pub fn is_current(&self, room: &Arc<Room>) -> bool {
        shard(&self.rooms, room.chat_id).get(&room.chat_id).is_some_and(|current| Arc::ptr_eq(current, room))
    }

    pub fn room(&self, chat_id: i64) -> Option<Arc<Room>> {
        shard(&self.rooms, chat_id).get(&chat_id).cloned()
    }

    /// Every room now.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.iter().flat_map(|rooms| lock(rooms).values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Live sockets (a user socket counts once), distinct users, and chats with a room.
    pub fn stats(&self) -> LocalStats {
        let mut stats = LocalStats::default();
        for users in &self.users {
            let users = lock(users);
            stats.users += users.len();
            stats.connections += users.values().map(Vec::len).sum::<usize>();
        }
        stats.chats = self.rooms.iter().map(|rooms| lock(rooms).len()).sum();
        stats
    }

    /// Tells every socket to close with `code`.
    pub fn close_all(&self, code: CloseCode) {
        for users in &self.users {
            for connection in lock(users).values().flatten() {
                connection.handle.close(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_lives_while_someone_is_in_it_and_counts_users_once() {
        let registry = Registry::default();
        let (alice_1, _r1) = registry.connect(1, SocketKind::Chat, 4);
        let (alice_2, _r2) = registry.connect(1, SocketKind::User, 4);
        let (bob, _r3) = registry.connect(2, SocketKind::Chat, 4);
        assert!(registry.enter(10, &alice_1).1, "alice's first socket in the chat");
        assert!(!registry.enter(10, &alice_2).1, "her second");
        assert!(registry.enter(10, &bob).1);
        assert_eq!(registry.stats(), LocalStats { connections: 3, users: 2, chats: 1 });
        assert_eq!(
            registry.exit(10, alice_1.id).map(|(_, offline)| offline),
            Some(None),
            "her user socket is still in"
        );
        let (room, offline) = registry.exit(10, alice_2.id).unwrap();
        assert_eq!(offline, Some(1));
        assert!(registry.is_current(&room));
        let (room, offline) = registry.exit(10, bob.id).unwrap();
        assert_eq!(offline, Some(2));
        assert!(!registry.is_current(&room) && registry.room(10).is_none(), "the last one out retires it");
        assert!(registry.exit(10, bob.id).is_none());
    }

    #[test]
    fn a_user_socket_leaves_what_it_follows_and_skips_what_its_user_left_while_listing() {
        let registry = Registry::default();
        let (socket, _registration) = registry.connect(1, SocketKind::User, 4);
        let (per_chat, _other) = registry.connect(1, SocketKind::Chat, 4);
        assert_eq!(registry.followers(1).iter().map(|s| s.id).collect::<Vec<_>>(), [socket.id]);
        registry.left(1, 20); // while the socket lists its chats
        assert_eq!(registry.listed(&socket, vec![10, 20, 30]), [10, 30]);
        for chat in [10, 30] {
            registry.enter(chat, &socket);
        }
        assert!(registry.follows(&socket, 10) && !registry.follows(&socket, 20));
        registry.left(1, 10); // after the listing: just no longer followed
        assert!(!registry.follows(&socket, 10));
        registry.enter(40, &per_chat);
        assert_eq!(registry.disconnect(&per_chat), Vec::<i64>::new());
        assert_eq!(registry.disconnect(&socket), [30]);
        assert_eq!(registry.stats().users, 0);
        assert!(registry.followers(1).is_empty());
    }

    #[test]
    fn close_all_reaches_every_kind_of_socket() {
        let registry = Registry::default();
        let registrations: Vec<Registration> = (0..3)
            .map(|user| registry.connect(user, if user == 0 { SocketKind::User } else { SocketKind::Chat }, 4).1)
            .collect();
        registry.close_all(CloseCode::Restart);
        assert!(registrations.iter().all(|r| r.close.code() == Some(CloseCode::Restart)));
    }
}
