//! The ids of a room's latest events, so that one that comes twice — live and
//! again in a catch-up from the stream, or from both of the subjects that
//! carry membership changes — is delivered once. Pure and bounded.
//!
//! `new_message`s are not kept here: the sequencer drops a repeat by its seq,
//! however old. The other kinds are rare next to messages, so the last
//! [`SEEN_EVENTS`] of them reach back much further than a catch-up's margin.

use std::collections::VecDeque;

/// How many event ids a room remembers.
pub const SEEN_EVENTS: usize = 256;

#[derive(Debug, Default)]
pub struct Seen {
    ids: VecDeque<u128>,
}

impl Seen {
    /// Whether the event is new (and remembers it). An event without a
    /// readable id (from a service older than event ids) is always new.
    pub fn first_time(&mut self, event_id: &str) -> bool {
        let Ok(id) = uuid::Uuid::parse_str(event_id) else { return true };
        let id = id.as_u128();
        if self.ids.contains(&id) {
            return false;
        }
        if self.ids.len() == SEEN_EVENTS {
            self.ids.pop_front();
        }
        self.ids.push_back(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_dropped_until_it_is_out_of_reach() {
        let ids: Vec<String> = (0..=SEEN_EVENTS).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut seen = Seen::default();
        assert!(seen.first_time(&ids[0]));
        assert!(!seen.first_time(&ids[0]));
        assert!(seen.first_time("") && seen.first_time(""), "no id: nothing to compare");
        for id in &ids[1..SEEN_EVENTS] {
            assert!(seen.first_time(id));
        }
        assert!(!seen.first_time(&ids[0]), "the oldest of a full memory is still known");
        assert!(seen.first_time(&ids[SEEN_EVENTS]));
        assert!(seen.first_time(&ids[0]), "pushed out by the newest");
    }
}
