//! Memberships asked of chat-metadata, remembered until the chat's next
//! membership event arrives on the bus — for `GetChatSummaries` and `CountUnread`, which check
//! up to 100 chats per call (a chat list's previews), so that listing chats
//! again costs no call per chat.
//!
//! Nothing that decides what a caller may do reads it: a send, a history
//! page, an edit or a delete asks chat-metadata afresh, because a membership
//! event reaches this service only shortly *after* the removal's response —
//! a client told "removed" must not get one more message in. A preview is
//! asked for chats the gateway has just listed for the caller from
//! chat-metadata, so a stale entry cannot show a chat the caller left.
//!
//! Only "is a participant" answers are kept (a stale "no" would hide a new
//! member's previews). Four things bound a stale "yes":
//!
//! - a `participant_added` / `participant_removed` event of the chat (on
//!   `<prefix>.membership`) forgets every entry of the chat;
//! - an answer fetched while an event arrived is not kept (the epoch check), so
//!   a removal racing a lookup cannot be undone by the lookup;
//! - while the bus is disconnected nothing is read from the cache, and what
//!   was learnt before a reconnection (events may have been missed meanwhile)
//!   is forgotten;
//! - an entry lives at most `MEMBERSHIP_CACHE_SECONDS` (default 30; 0 turns
//!   the cache off), for an event lost in transit.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chat_proto::{
    events::{ChatEvent, chat_event::Kind},
    metadata::Membership,
};
use event_bus::{Bus, Subjects};
use futures::StreamExt;
use telemetry::metrics::{Counter, EncodeLabelSet, Family, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Lookups answered from the cache (`hit`) or not (`miss`; `off` while the cache cannot be trusted).
static LOOKUPS: std::sync::LazyLock<Family<Outcome, Counter>> = std::sync::LazyLock::new(|| {
    let lookups = Family::default();
    register(|registry| {
        registry.register("membership_cache_lookups", "Membership lookups, by outcome", lookups.clone());
    });
    lookups
});

/// The default lifetime of an entry (`MEMBERSHIP_CACHE_SECONDS`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; past this the cache starts over (a bound, not an LRU).
const CAPACITY: usize = 100_000;

#[derive(Default)]
struct Entries {
    chats: HashMap<i64, HashMap<i64, (Membership, Instant)>>,
    len: usize,
    /// Moves on every invalidation; an answer fetched across a move is not kept.
    epoch: u64,
    /// The bus connection the entries were learnt on (its reconnection count).
    connection: u64,
}

impl Entries {
    fn clear(&mut self) {
        *self = Self { epoch: self.epoch + 1, connection: self.connection, ..Self::default() };
    }
}

pub struct MembershipCache {
    ttl: Duration,
    entries: Mutex<Entries>,
    /// Set while the invalidating subscription is live.
    enabled: AtomicBool,
    bus: Option<Arc<dyn Bus>>,
    reconnections: Option<tokio::sync::watch::Receiver<u64>>,
}

impl MembershipCache {
    /// A cache that stays off until [`MembershipCache::listen`] succeeds.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default(), enabled: AtomicBool::new(false), bus: None, reconnections: None }
    }

    /// The entries, forgotten first if the bus reconnected since they were learnt.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries are plain data: a panic elsewhere cannot leave them inconsistent.
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let connection = self.reconnections.as_ref().map_or(0, |count| *count.borrow());
        if entries.connection != connection {
            entries.connection = connection;
            entries.clear();
        }
        entries
    }

    fn usable(&self) -> bool {
        self.enabled.load(Ordering::Acquire) && self.bus.as_ref().is_none_or(|bus| bus.is_connected())
    }

    /// The epoch to hand back to [`MembershipCache::keep`] with the answer of a lookup started now.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// A remembered membership that is still fresh.
    pub fn get(&self, chat_id: i64, user_id: i64) -> Option<Membership> {
        if !self.usable() {
            LOOKUPS.get_or_create(&Outcome { outcome: "off" }).inc();
            return None;
        }
        let entries = self.lock();
        let fresh = entries
            .chats
            .get(&chat_id)
            .and_then(|chat| chat.get(&user_id))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(membership, _)| *membership);
        LOOKUPS.get_or_create(&Outcome { outcome: if fresh.is_some() { "hit" } else { "miss" } }).inc();
        fresh
    }

    /// Remembers a participant's membership, unless an invalidation came since `epoch`.
    pub fn keep(&self, epoch: u64, chat_id: i64, user_id: i64, membership: Membership) {
        if !membership.is_participant || !self.usable() {
            return;
        }
        let mut entries = self.lock();
        if entries.epoch != epoch {
            return;
        }
        if entries.len >= CAPACITY {
            let epoch = entries.epoch;
            entries.clear();
            entries.epoch = epoch;
        }
        if entries.chats.entry(chat_id).or_default().insert(user_id, (membership, Instant::now())).is_none() {
            entries.len += 1;
        }
    }

    /// Forgets the chat's memberships (a member joined or left).
    pub fn forget_chat(&self, chat_id: i64) {
        let mut entries = self.lock();
        entries.epoch += 1;
        if let Some(chat) = entries.chats.remove(&chat_id) {
            entries.len -= chat.len();
        }
    }

    /// Forgets everything (events may have been missed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Subscribes to the membership events and turns the cache on; it turns
    /// itself off again if the subscription ends. A zero `ttl` leaves it off.
    pub async fn listen(ttl: Duration, bus: Arc<dyn Bus>, subjects: &Subjects) -> Arc<Self> {
        let cache = Arc::new(Self { bus: Some(bus.clone()), reconnections: bus.reconnections(), ..Self::new(ttl) });
        if ttl.is_zero() {
            tracing::info!("membership cache off (MEMBERSHIP_CACHE_SECONDS=0)");
            return cache;
        }
        let topic = subjects.membership_topic();
        let mut events = match topic.subscribe(bus.as_ref()).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, subject = topic.subject(), "membership cache off: cannot subscribe to membership events");
                return cache;
            }
        };
        cache.enabled.store(true, Ordering::Release);
        let listener = cache.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                listener.apply(event);
            }
            tracing::warn!("membership events ended: membership cache off");
            listener.enabled.store(false, Ordering::Release);
            listener.clear();
        });
        cache
    }

    /// Acts on one message of the membership subject.
    fn apply(&self, event: event_bus::Received<ChatEvent>) {
        match event {
            Ok(ChatEvent { chat_id, kind: Some(Kind::ParticipantAdded(_) | Kind::ParticipantRemoved(_)), .. }) => {
                self.forget_chat(chat_id);
            }
            Ok(_) => {}
            Err(error) => {
                // Not knowing what changed, forget everything.
                tracing::warn!(%error, "undecodable membership event");
                self.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_proto::events::ParticipantChange;
    use event_bus::LocalBus;

    use super::*;

    const MEMBER: Membership = Membership { chat_exists: true, is_participant: true, is_admin: false };

    fn enabled(ttl: Duration) -> MembershipCache {
        let cache = MembershipCache::new(ttl);
        cache.enabled.store(true, Ordering::Release);
        cache
    }

    #[test]
    fn a_kept_participant_is_remembered_until_its_chat_is_forgotten() {
        let cache = enabled(DEFAULT_TTL);
        cache.keep(cache.epoch(), 1, 10, MEMBER);
        cache.keep(cache.epoch(), 2, 10, MEMBER);
        assert_eq!(cache.get(1, 10), Some(MEMBER));
        cache.forget_chat(1);
        assert_eq!(cache.get(1, 10), None);
        assert_eq!(cache.get(2, 10), Some(MEMBER), "other chats stay");
        cache.clear();
        assert_eq!(cache.get(2, 10), None);
    }

    #[test]
    fn an_outsider_is_never_remembered() {
        let cache = enabled(DEFAULT_TTL);
        let outsider = Membership { is_participant: false, ..MEMBER };
        cache.keep(cache.epoch(), 1, 10, outsider);
        assert_eq!(cache.get(1, 10), None);
    }

    #[test]
    fn an_answer_fetched_across_an_invalidation_is_not_kept() {
        let cache = enabled(DEFAULT_TTL);
        let epoch = cache.epoch();
        // The removal's event arrives while the lookup is in flight.
        cache.forget_chat(1);
        cache.keep(epoch, 1, 10, MEMBER);
        assert_eq!(cache.get(1, 10), None);
    }

    #[test]
    fn entries_expire() {
        let cache = enabled(Duration::from_millis(20));
        cache.keep(cache.epoch(), 1, 10, MEMBER);
        assert_eq!(cache.get(1, 10), Some(MEMBER));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(1, 10), None);
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let cache = MembershipCache::new(DEFAULT_TTL);
        cache.keep(cache.epoch(), 1, 10, MEMBER);
        assert_eq!(cache.get(1, 10), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = enabled(DEFAULT_TTL);
        for user_id in 0..=i64::try_from(CAPACITY).unwrap() {
            cache.keep(cache.epoch(), 1, user_id, MEMBER);
        }
        assert!(cache.lock().len <= CAPACITY);
        assert_eq!(cache.get(1, i64::try_from(CAPACITY).unwrap()), Some(MEMBER), "the newest is kept");
    }

    #[tokio::test]
    async fn membership_events_on_the_bus_forget_the_chat() {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let subjects = Subjects::new("cache-test").unwrap();
        let cache = MembershipCache::listen(DEFAULT_TTL, bus.clone(), &subjects).await;
        cache.keep(cache.epoch(), 7, 10, MEMBER);
        cache.keep(cache.epoch(), 8, 10, MEMBER);
        let removed = ChatEvent {
            chat_id: 7,
            at_ms: 0,
            kind: Some(Kind::ParticipantRemoved(ParticipantChange { user_id: 10, by_user_id: 1 })),
            ..ChatEvent::default()
        };
        subjects.membership_topic().publish(bus.as_ref(), &removed).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while cache.get(7, 10).is_some() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the removal reaches the cache");
        assert_eq!(cache.get(8, 10), Some(MEMBER));
    }

    #[tokio::test]
    async fn a_zero_ttl_turns_the_cache_off() {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let cache = MembershipCache::listen(Duration::ZERO, bus, &Subjects::new("cache-test").unwrap()).await;
        cache.keep(cache.epoch(), 1, 10, MEMBER);
        assert_eq!(cache.get(1, 10), None);
    }
}
