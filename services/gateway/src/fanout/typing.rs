//! Who is typing in one chat. Pure: the room feeds it typing events and the
//! clock, and sends the frames its answers call for. A start with no stop
//! ends after [`TYPING_TIMEOUT`].

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// A typing start with no stop ends after this long.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Typing {
    until: HashMap<i64, Instant>,
}

impl Typing {
    /// A start (sent on as `typing_started`, a repeat too: it keeps the typist typing).
    pub fn started(&mut self, user_id: i64, now: Instant) {
        self.until.insert(user_id, now + TYPING_TIMEOUT);
    }

    /// A stop: whether the user was typing (only then is `typing_stopped` sent).
    pub fn stopped(&mut self, user_id: i64) -> bool {
        self.until.remove(&user_id).is_some()
    }

    /// The users whose start ran out by `now` (each gets a `typing_stopped`).
    pub fn expire(&mut self, now: Instant) -> Vec<i64> {
        let mut expired: Vec<i64> = self.until.iter().filter(|(_, until)| **until <= now).map(|(u, _)| *u).collect();
        expired.sort_unstable();
        for user in &expired {
            self.until.remove(user);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_lasts_ten_seconds_a_repeat_renews_it_and_a_stop_ends_it_once() {
        let t0 = Instant::now();
        let at = |seconds: u64| t0 + Duration::from_secs(seconds);
        let mut typing = Typing::default();
        typing.started(1, at(0));
        typing.started(2, at(0));
        typing.started(2, at(5)); // renewed: until 15
        assert_eq!(typing.expire(at(9)), Vec::<i64>::new());
        assert_eq!(typing.expire(at(10)), [1]);
        assert!(!typing.stopped(1), "expired already: no second typing_stopped");
        assert_eq!(typing.expire(at(14)), Vec::<i64>::new());
        assert!(typing.stopped(2));
        assert!(!typing.stopped(2));
        assert_eq!(typing.expire(at(100)), Vec::<i64>::new());
    }
}
