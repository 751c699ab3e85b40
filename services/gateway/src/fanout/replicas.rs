//! The other gateway replicas: each says every [`HEARTBEAT`] that it is alive
//! and how many sockets it has (for the cluster's `/ws/stats`); one not heard
//! of for [`REPLICA_TIMEOUT`] — or that says goodbye — is gone, and its users
//! are offline in every room here. Each also answers "who is online in this
//! chat" for its own sockets (a new room asks, and so does `/online`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, Weak},
    time::{Duration, Instant},
};

use chat_proto::events::{PresenceAnswer, PresenceEvent, PresenceQuery, ReplicaHeartbeat};
use event_bus::{Received, Subjects, Topic, now_ms};
use futures::{StreamExt, stream::BoxStream};

use super::Inner;

/// How often a replica says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica not heard of for this long is gone.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a presence question waits for the replicas' answers.
const QUERY_WAIT: Duration = Duration::from_millis(500);

/// The other replicas: their last heartbeat's connection count and when it came.
#[derive(Debug, Default)]
pub struct Replicas {
    known: Mutex<HashMap<String, (i64, Instant)>>,
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Instant)>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A heartbeat; whether the replica is new to us.
    fn heard(&self, replica: String, connections: i64, now: Instant) -> bool {
        self.lock().insert(replica, (connections, now)).is_none()
    }

    fn forget(&self, replica: &str) {
        self.lock().remove(replica);
    }

    /// The replicas not heard of for [`REPLICA_TIMEOUT`], forgotten.
    fn expire(&self, now: Instant) -> Vec<String> {
        let mut known = self.lock();
        let gone: Vec<String> = known
            .iter()
            .filter(|(_, (_, seen))| now.duration_since(*seen) >= REPLICA_TIMEOUT)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            known.remove(name);
        }
        gone
    }

    /// The replicas alive now, with their connection counts.
    pub fn live(&self) -> HashMap<String, i64> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, (_, seen))| now.duration_since(*seen) < REPLICA_TIMEOUT)
            .map(|(name, (connections, _))| (name.clone(), *connections))
            .collect()
    }
}

impl Inner {
    /// Publishes, best effort (typing, presence and heartbeats are ephemeral).
    pub(super) async fn publish<M: prost::Message + Default + Send + 'static>(&self, topic: &Topic<M>, message: &M) {
        if let Err(error) = topic.publish(self.bus.as_ref(), message).await {
            tracing::debug!(%error, subject = topic.subject(), "cannot publish");
        }
    }

    pub(super) async fn publish_presence(&self, chat_id: i64, user_id: i64, online: bool, at_ms: i64) {
        let event = PresenceEvent { chat_id, user_id, online, replica: self.replica.clone(), at_ms };
        self.publish(&self.subjects.presence_topic(chat_id), &event).await;
    }

    pub(super) async fn publish_heartbeat(&self, stopping: bool) {
        let connections = if stopping { 0 } else { self.registry.stats().connections as i64 };
        let beat = ReplicaHeartbeat { replica: self.replica.clone(), connections, at_ms: now_ms(), stopping };
        self.publish(&self.subjects.heartbeat_topic(), &beat).await;
    }

    /// Takes these replicas' users offline in every room here.
    fn forget(&self, replicas: &[String]) {
        if replicas.is_empty() {
            return;
        }
        let rooms = self.registry.rooms();
        for replica in replicas {
            for room in &rooms {
                for user in room.users_on(replica) {
                    room.set_presence(user, replica, false, now_ms());
                }
            }
        }
    }

    /// Asks every other replica who is online in the chat; waits for the
    /// replicas known alive, at most [`QUERY_WAIT`].
    pub(super) async fn ask_replicas(&self, chat_id: i64) -> HashMap<String, Vec<i64>> {
        let mut answers = HashMap::new();
        let expected: HashSet<String> = self.replicas.live().into_keys().collect();
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
}

/// Says this replica is alive, hears the others, and drops the silent ones.
pub(super) async fn heartbeat_loop(hub: Weak<Inner>, mut heartbeats: BoxStream<'static, Received<ReplicaHeartbeat>>) {
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
                    inner.replicas.forget(&heartbeat.replica);
                    tracing::info!(replica = heartbeat.replica, "a gateway replica is shutting down; its users are offline");
                    inner.forget(&[heartbeat.replica]);
                    continue;
                }
                if inner.replicas.heard(heartbeat.replica.clone(), heartbeat.connections, Instant::now()) {
                    // A replica new to us: tell it about us at once.
                    tracing::info!(replica = heartbeat.replica, "a gateway replica joined");
                    inner.publish_heartbeat(false).await;
                }
            }
            _ = beat.tick() => {
                let Some(inner) = hub.upgrade() else { return };
                inner.publish_heartbeat(false).await;
                let gone = inner.replicas.expire(Instant::now());
                for replica in &gone {
                    tracing::warn!(replica, "a gateway replica is gone; its users are offline");
                }
                inner.forget(&gone);
            }
        }
    }
}

/// Answers the other replicas' "who is online" questions with this replica's sockets.
pub(super) async fn answer_loop(hub: Weak<Inner>, mut queries: BoxStream<'static, Received<PresenceQuery>>) {
    while let Some(query) = queries.next().await {
        let Some(inner) = hub.upgrade() else { return };
        let Ok(query) = query else { continue };
        let user_ids = inner.registry.room(query.chat_id).map(|room| room.local_users()).unwrap_or_default();
        let answer = PresenceAnswer { replica: inner.replica.clone(), chat_id: query.chat_id, user_ids };
        inner.publish(&Subjects::presence_answer_topic(query.reply_subject), &answer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_alive_until_it_is_silent_for_the_timeout() {
        let replicas = Replicas::default();
        let t0 = Instant::now();
        assert!(replicas.heard("b".into(), 3, t0));
        assert!(!replicas.heard("b".into(), 4, t0), "known already");
        assert!(replicas.heard("c".into(), 1, t0 + REPLICA_TIMEOUT / 2));
        assert_eq!(replicas.live(), HashMap::from([("b".into(), 4), ("c".into(), 1)]));
        assert_eq!(replicas.expire(t0 + REPLICA_TIMEOUT), ["b"]);
        assert!(replicas.expire(t0 + REPLICA_TIMEOUT).is_empty(), "forgotten once");
        replicas.forget("c");
        assert!(replicas.live().is_empty());
    }
}
