//! User sockets follow their user's chats: every chat at connect, then each
//! chat the user joins — whichever replica handled the join — until they
//! leave it.
//!
//! A replica hears every chat's membership changes on one subscription (the
//! membership subject, which membership caches listen to as well): they are
//! rare next to messages, and a replica cannot know beforehand which chats
//! its users will join. For a user with a user socket here:
//!
//! - `participant_added` lets their user sockets into the chat's room —
//!   made for them if the replica had none — and the room delivers that
//!   event to them first (the room's event-id memory drops the copy that
//!   comes on the chat's own subject).
//! - `participant_removed` is handled by the room like any event of the chat,
//!   from the chat's own subject (the user's sockets get it, then nothing
//!   more); here, a socket still listing its chats at connect notes it, so as
//!   not to follow that chat after all.
//!
//! After the bus reconnects, the listener catches up on the membership
//! changes the stream kept since shortly before the connection was lost.

use std::sync::{Arc, Weak};

use chat_proto::events::{ChatEvent, chat_event::Kind};
use event_bus::Received;
use futures::{StreamExt, stream::BoxStream};

use super::{
    Inner,
    catchup::CATCH_UP_MARGIN_MS,
    outbound::SocketHandle,
    room::{self, Room},
};

/// How many of a new user socket's rooms open at once.
const OPENING_AT_ONCE: usize = 8;

impl Inner {
    /// Makes sure the room listens (opening it if it is new) and has handled `event`.
    pub(super) async fn make_live(&self, room: &Arc<Room>, event: Option<ChatEvent>) -> anyhow::Result<()> {
        let mut event = event;
        room.live.get_or_try_init(|| self.open(room, event.take())).await?;
        // The room was open already: the event is handled like any other (a repeat is dropped).
        if let Some(event) = event {
            self.handle(room, event).await;
        }
        Ok(())
    }

    /// A membership change of any chat, live or `caught_up` from the stream.
    fn on_membership(self: &Arc<Self>, event: ChatEvent, caught_up: bool) {
        let chat_id = event.chat_id;
        match &event.kind {
            Some(Kind::ParticipantAdded(change)) => {
                let mut followers = self.registry.followers(change.user_id);
                if caught_up {
                    // Only sockets that were there then and do not follow the chat yet missed it.
                    followers.retain(|socket| {
                        socket.connected_at_ms <= event.at_ms && !self.registry.follows(socket, chat_id)
                    });
                }
                if !followers.is_empty() {
                    let inner = self.clone();
                    tokio::spawn(async move {
                        if caught_up {
                            inner.follow_missed(event, followers).await;
                        } else {
                            inner.follow(event, followers).await;
                        }
                    });
                }
            }
            Some(Kind::ParticipantRemoved(change)) => {
                // A socket still listing its chats will not follow this one; the
                // room itself hears the removal on the chat's subject (or in its catch-up).
                self.registry.left(change.user_id, chat_id);
            }
            _ => {}
        }
    }

    /// The user of `followers` joined the event's chat: the sockets follow it,
    /// beginning with this event.
    async fn follow(&self, event: ChatEvent, followers: Vec<SocketHandle>) {
        let chat_id = event.chat_id;
        if let Some(room) = self.registry.room(chat_id)
            && room.live.initialized()
        {
            // The room lets them in as it handles the event.
            self.handle(&room, event).await;
            return;
        }
        let Some(user_id) = followers.first().map(|socket| socket.user_id) else { return };
        let mut entered = None;
        let mut first_of_user = false;
        for socket in &followers {
            let (room, first) = self.registry.enter(chat_id, socket);
            first_of_user |= first;
            entered = Some(room);
        }
        let Some(room) = entered else { return };
        if let Err(error) = self.make_live(&room, Some(event)).await {
            tracing::warn!(%error, chat_id, "cannot open the room of a chat a user joined");
            for socket in &followers {
                self.exit(chat_id, socket).await;
            }
            return;
        }
        if first_of_user {
            self.came_online(&room, user_id).await;
        }
    }

    /// A join the replica missed (it was away from the bus) and caught up on:
    /// the sockets enter the room and are told of the join themselves — the
    /// rest of the room heard of it, or has caught up on it, already.
    async fn follow_missed(&self, event: ChatEvent, followers: Vec<SocketHandle>) {
        let chat_id = event.chat_id;
        if self.registry.room(chat_id).is_none_or(|room| !room.live.initialized()) {
            // No room here yet: one opened for them starts at the join, as for a live one.
            return self.follow(event, followers).await;
        }
        let Some(frame) = event.kind.and_then(|kind| room::frame_of(chat_id, event.at_ms, kind)) else { return };
        let frame: super::Queued = Arc::new(super::Outbound::Frame(frame.to_json().into()));
        for socket in followers {
            // Its own frame first, then whatever the room brings.
            socket.offer(&frame);
            if let Err(error) = self.enter_live(chat_id, &socket).await {
                tracing::warn!(%error, chat_id, "cannot open the room of a chat a user joined");
            }
        }
    }

    /// A user socket's chats at connect: it enters each room (opening the new
    /// ones, a few at a time).
    pub(super) async fn follow_listed(&self, socket: &SocketHandle, chats: Vec<i64>) -> anyhow::Result<()> {
        let chats = self.registry.listed(socket, chats);
        let opened: Vec<anyhow::Result<()>> = futures::stream::iter(chats)
            .map(|chat_id| self.enter_live(chat_id, socket))
            .buffer_unordered(OPENING_AT_ONCE)
            .collect()
            .await;
        opened.into_iter().collect()
    }

    /// Puts a socket in the chat's room and makes sure the room listens
    /// (opening it if it is new); its user comes online there with their
    /// first socket. When the room cannot open, the socket is out again.
    pub(super) async fn enter_live(&self, chat_id: i64, socket: &SocketHandle) -> anyhow::Result<()> {
        let (room, first_of_user) = self.registry.enter(chat_id, socket);
        // Opening a room (bus subscription, baseline) happens outside every lock:
        // a slow message-store delays this chat's first socket, nobody else.
        if let Err(error) = self.make_live(&room, None).await {
            self.exit(chat_id, socket).await;
            return Err(error);
        }
        if first_of_user {
            self.came_online(&room, socket.user_id).await;
        }
        Ok(())
    }

    /// Takes a socket out of one room; its user's presence there ends with their last socket.
    pub(super) async fn exit(&self, chat_id: i64, socket: &SocketHandle) {
        if let Some((room, Some(user_id))) = self.registry.exit(chat_id, socket.id) {
            self.went_offline(&room, user_id).await;
        }
    }
}

/// Hears every chat's membership changes; catches up after a reconnection.
pub(super) async fn membership_loop(hub: Weak<Inner>, mut changes: BoxStream<'static, Received<ChatEvent>>) {
    let Some(inner) = hub.upgrade() else { return };
    let mut reconnections = inner.bus.reconnections();
    drop(inner);
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return };
                let Some(inner) = hub.upgrade() else { return };
                match change {
                    Ok(event) => inner.on_membership(event, false),
                    Err(error) => tracing::warn!(%error, "an undecodable membership event"),
                }
            }
            Some(_) = super::reconnected(&mut reconnections) => {
                let Some(inner) = hub.upgrade() else { return };
                let since_ms = inner.bus.lost_at_ms() - CATCH_UP_MARGIN_MS;
                let topic = inner.subjects.membership_topic();
                match topic.replay(inner.bus.as_ref(), inner.subjects.events_stream(), since_ms).await {
                    Ok(kept) => {
                        let mut kept = kept.unwrap_or_else(|| futures::stream::empty().boxed());
                        while let Some(change) = kept.next().await {
                            match change {
                                Ok(Ok(event)) => inner.on_membership(event, true),
                                Ok(Err(error)) => tracing::warn!(%error, "an undecodable membership event"),
                                Err(error) => {
                                    tracing::warn!(%error, "cannot catch up on membership changes");
                                    break;
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot catch up on membership changes"),
                }
            }
        }
    }
}
