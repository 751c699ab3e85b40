//! Who is online in one chat, and on which gateway replicas. Pure: the room
//! tells it what it learns (its own sockets, the other replicas' presence
//! events and answers, replicas that went away) and announces what it returns.
//!
//! A user is online while at least one replica has a live connection of
//! theirs to the chat; `user_joined` / `user_left` mark the cluster-wide
//! changes only (a second device, or a second replica, changes nothing).

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Presence {
    /// The replicas each online user is connected through (never empty).
    online: HashMap<i64, Vec<Box<str>>>,
}

impl Presence {
    /// Marks `user_id` online (or not) on `replica`; `Some(online)` when that
    /// changed whether the user is online at all.
    pub fn set(&mut self, user_id: i64, replica: &str, online: bool) -> Option<bool> {
        let was_online = self.online.contains_key(&user_id);
        if online {
            let replicas = self.online.entry(user_id).or_default();
            if !replicas.iter().any(|known| &**known == replica) {
                replicas.push(replica.into());
            }
        } else if let Some(replicas) = self.online.get_mut(&user_id) {
            replicas.retain(|known| &**known != replica);
            if replicas.is_empty() {
                self.online.remove(&user_id);
            }
        }
        let is_online = self.online.contains_key(&user_id);
        (was_online != is_online).then_some(is_online)
    }

    /// What a replica answered about who was online before we asked: no change to announce.
    pub fn learn(&mut self, replica: &str, user_ids: &[i64]) {
        for user_id in user_ids {
            self.set(*user_id, replica, true);
        }
    }

    /// Users connected through `replica`.
    pub fn users_on(&self, replica: &str) -> Vec<i64> {
        let mut users: Vec<i64> = self
            .online
            .iter()
            .filter(|(_, replicas)| replicas.iter().any(|known| &**known == replica))
            .map(|(user, _)| *user)
            .collect();
        users.sort_unstable();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (user, replica, online) → the announced change.
    type Step = ((i64, &'static str, bool), Option<bool>);

    #[test]
    fn only_the_first_connection_and_the_last_are_announced() {
        let steps: &[Step] = &[
            ((1, "a", true), Some(true)),
            ((1, "a", true), None),  // the same replica again (a second socket there)
            ((1, "b", true), None),  // a second replica
            ((1, "a", false), None), // still on b
            ((1, "b", false), Some(false)),
            ((1, "b", false), None), // already offline
            ((2, "a", false), None), // never online
            ((2, "a", true), Some(true)),
        ];
        let mut presence = Presence::default();
        for ((user, replica, online), announced) in steps {
            assert_eq!(presence.set(*user, replica, *online), *announced, "{user} {replica} {online}");
        }
    }

    #[test]
    fn a_gone_replica_s_users_are_found_and_learnt_users_are_not_announced_again() {
        let mut presence = Presence::default();
        presence.learn("b", &[5, 3]);
        presence.learn("a", &[3]);
        assert_eq!(presence.users_on("b"), [3, 5]);
        assert_eq!(presence.set(5, "b", true), None, "known already");
        assert_eq!(presence.set(5, "b", false), Some(false));
        assert_eq!(presence.set(3, "b", false), None, "still on a");
        assert_eq!(presence.users_on("b"), Vec::<i64>::new());
    }
}
