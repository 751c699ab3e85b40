//! Chats, participants and the rules about them.

use crate::error::MetadataError;

/// The most members a group may have, its creator included.
pub const MAX_GROUP_MEMBERS: usize = 100;

/// What a batch of `(chat, at_ms)` touches moves: each chat once, to its
/// latest time (times ≤ 0 move nothing), chats in id order (the order their
/// rows are locked in).
pub fn touches(asked: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut latest = std::collections::BTreeMap::new();
    for (chat_id, at_ms) in asked {
        if *at_ms > 0 {
            let at = latest.entry(*chat_id).or_insert(*at_ms);
            *at = (*at).max(*at_ms);
        }
    }
    latest.into_iter().collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatType {
    Direct,
    Group,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user_id: i64,
    pub username: String,
    pub joined_at_ms: i64,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: i64,
    pub chat_type: ChatType,
    pub name: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub is_active: bool,
    pub participants: Vec<Participant>,
}

/// A user known to auth, about to become a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: i64,
    pub username: String,
}

/// A group's name: 1–100 characters, not only whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(value: Option<String>) -> Result<Self, MetadataError> {
        let value = value.ok_or_else(|| MetadataError::invalid("name", "a group needs a name"))?;
        let length = value.chars().count();
        if !(1..=100).contains(&length) || value.trim().is_empty() {
            return Err(MetadataError::invalid("name", "must be 1 to 100 characters, not only whitespace"));
        }
        if value.chars().any(char::is_control) {
            return Err(MetadataError::invalid("name", "must not contain control characters"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key that makes a pair's direct chat unique, whichever of them creates it.
pub fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

/// The distinct positive ids, in the order first given.
pub fn distinct_ids(ids: &[i64]) -> Vec<i64> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_touches_moves_each_chat_once_to_its_latest_time() {
        type Case = (&'static str, Vec<(i64, i64)>, Vec<(i64, i64)>);
        let cases: Vec<Case> = vec![
            ("no touches", vec![], vec![]),
            ("no time, no move", vec![(1, 0), (2, -5)], vec![]),
            ("one chat", vec![(1, 500)], vec![(1, 500)]),
            (
                "the latest time per chat, chats in id order",
                vec![(2, 700), (1, 500), (2, 600), (1, 400)],
                vec![(1, 500), (2, 700)],
            ),
        ];
        for (name, checks, expected) in cases {
            assert_eq!(touches(&checks), expected, "{name}");
        }
    }

    #[test]
    fn a_pair_has_one_direct_key_in_either_order() {
        assert_eq!(direct_key(7, 3), direct_key(3, 7));
        assert_eq!(direct_key(3, 7), "3:7");
    }

    #[test]
    fn group_names_are_1_to_100_characters_not_blank() {
        assert!(GroupName::parse(Some("x".into())).is_ok());
        assert!(GroupName::parse(Some("é".repeat(100))).is_ok());
        for bad in [None, Some(String::new()), Some("   ".into()), Some("x".repeat(101))] {
            assert!(GroupName::parse(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_ids_are_dropped_keeping_the_first_order() {
        assert_eq!(distinct_ids(&[3, 1, 3, 2, 1]), vec![3, 1, 2]);
    }
}
