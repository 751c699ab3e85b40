//! The order of one chat's `new_message`s on this replica: each delivered
//! once, in `seq` order, whatever order the bus and the backfills bring them
//! in. Pure: the room feeds it what arrives and broadcasts what it returns;
//! time comes in as `now`, so every rule is a table-driven test below.
//!
//! - A message at or below what was delivered (by id, or by seq) is a
//!   duplicate: dropped.
//! - The next seq is delivered at once, with whatever held messages follow it.
//! - A message past a gap is held; once the gap has waited
//!   [`Sequencer::needs_backfill`] long, the room reads the history after
//!   [`Sequencer::after_id`] and hands the page to [`Sequencer::backfilled`].
//! - Before its baseline (the chat's newest message when the room opened)
//!   is known, whatever comes is delivered as it comes.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chat_proto::messages::Message;

#[derive(Debug, Default)]
pub struct Sequencer {
    last_id: i64,
    /// `None` until the baseline is known.
    last_seq: Option<i64>,
    /// Held behind a gap, by seq.
    pending: BTreeMap<i64, Message>,
    gap_since: Option<Instant>,
}

impl Sequencer {
    /// Starts after the chat's newest message, `(id, seq)` (`None`: the chat has none yet).
    pub fn baseline(&mut self, newest: Option<(i64, i64)>) {
        match newest {
            Some((id, seq)) => {
                self.last_id = id;
                self.last_seq = Some(seq);
            }
            None => self.last_seq = Some(0),
        }
    }

    /// The id a backfill reads after.
    pub fn after_id(&self) -> i64 {
        self.last_id
    }

    /// Whether a gap has been open for `wait` (or a backfill failed that long ago).
    pub fn needs_backfill(&self, now: Instant, wait: Duration) -> bool {
        self.gap_since.is_some_and(|since| now.duration_since(since) >= wait)
    }

    /// A backfill failed: try again once the gap has waited again.
    pub fn backfill_failed(&mut self, now: Instant) {
        self.gap_since = Some(now);
    }

    /// A message from the bus: the messages deliverable now, in order.
    pub fn accept(&mut self, message: Message, now: Instant) -> Vec<Message> {
        if message.id <= self.last_id {
            return Vec::new();
        }
        match self.last_seq {
            Some(last) if message.seq <= last => Vec::new(),
            Some(last) if message.seq > last + 1 => {
                self.gap_since.get_or_insert(now);
                self.pending.insert(message.seq, message);
                Vec::new()
            }
            _ => {
                let mut deliverable = vec![self.deliver(message)];
                deliverable.extend(self.drain(now));
                deliverable
            }
        }
    }

    /// A page of the history after [`Sequencer::after_id`], oldest first:
    /// the messages not delivered yet, in order. Call [`Sequencer::drain`]
    /// after the last page.
    pub fn backfilled(&mut self, page: Vec<Message>) -> Vec<Message> {
        page.into_iter()
            .filter_map(|message| {
                let new = message.id > self.last_id && self.last_seq.is_none_or(|last| message.seq > last);
                new.then(|| self.deliver(message))
            })
            .collect()
    }

    /// The held messages that follow on now, in order.
    pub fn drain(&mut self, now: Instant) -> Vec<Message> {
        let mut deliverable = Vec::new();
        while let Some(last) = self.last_seq {
            let Some(entry) = self.pending.first_entry() else { break };
            if *entry.key() <= last {
                entry.remove();
            } else if *entry.key() == last + 1 {
                let message = entry.remove();
                deliverable.push(self.deliver(message));
            } else {
                break;
            }
        }
        self.gap_since = if self.pending.is_empty() { None } else { Some(now) };
        deliverable
    }

    fn deliver(&mut self, message: Message) -> Message {
        self.last_id = self.last_id.max(message.id);
        self.last_seq = Some(message.seq);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message `id` with `seq` (ids grow with seqs in a chat, as message-store makes them).
    fn message(id: i64, seq: i64) -> Message {
        Message { id, seq, chat_id: 1, ..Message::default() }
    }

    fn seqs(messages: &[Message]) -> Vec<i64> {
        messages.iter().map(|message| message.seq).collect()
    }

    /// Feeds `arrivals` (id, seq) to a sequencer that starts after `baseline`; what each arrival delivers.
    fn run(baseline: Option<Option<(i64, i64)>>, arrivals: &[(i64, i64)]) -> Vec<Vec<i64>> {
        let mut sequencer = Sequencer::default();
        if let Some(newest) = baseline {
            sequencer.baseline(newest);
        }
        let now = Instant::now();
        arrivals.iter().map(|(id, seq)| seqs(&sequencer.accept(message(*id, *seq), now))).collect()
    }

    #[test]
    fn arrivals_are_delivered_once_in_seq_order() {
        type Case = (&'static str, Option<Option<(i64, i64)>>, Vec<(i64, i64)>, Vec<Vec<i64>>);
        let cases: Vec<Case> = vec![
            ("in order", Some(None), vec![(10, 1), (11, 2), (12, 3)], vec![vec![1], vec![2], vec![3]]),
            ("after the baseline", Some(Some((50, 7))), vec![(51, 8), (52, 9)], vec![vec![8], vec![9]]),
            ("at or before the baseline: old", Some(Some((50, 7))), vec![(50, 7), (49, 6)], vec![vec![], vec![]]),
            (
                "a repeat is dropped",
                Some(None),
                vec![(10, 1), (10, 1), (11, 2), (11, 2)],
                vec![vec![1], vec![], vec![2], vec![]],
            ),
            (
                "a gap holds what follows, then releases it in order",
                Some(None),
                vec![(12, 3), (11, 2), (10, 1)],
                vec![vec![], vec![], vec![1, 2, 3]],
            ),
            (
                "held twice is delivered once",
                Some(None),
                vec![(12, 3), (12, 3), (10, 1), (11, 2)],
                vec![vec![], vec![], vec![1], vec![2, 3]],
            ),
            ("no baseline yet: delivered as it comes", None, vec![(12, 3), (14, 5)], vec![vec![3], vec![]]),
        ];
        for (name, baseline, arrivals, expected) in cases {
            assert_eq!(run(baseline, &arrivals), expected, "{name}");
        }
    }

    #[test]
    fn a_gap_asks_for_a_backfill_once_it_has_waited() {
        let wait = Duration::from_millis(250);
        let start = Instant::now();
        let mut sequencer = Sequencer::default();
        sequencer.baseline(None);
        assert!(!sequencer.needs_backfill(start, wait), "no gap, no backfill");
        assert!(sequencer.accept(message(12, 3), start).is_empty());
        assert!(!sequencer.needs_backfill(start + Duration::from_millis(100), wait), "not yet");
        assert!(sequencer.needs_backfill(start + wait, wait));
        assert_eq!(sequencer.after_id(), 0, "the backfill reads from the last delivered message");

        // The backfill brings the missing messages; the held one follows them.
        let page = vec![message(10, 1), message(11, 2), message(12, 3)];
        let later = start + wait;
        assert_eq!(seqs(&sequencer.backfilled(page)), vec![1, 2, 3]);
        assert!(sequencer.drain(later).is_empty(), "the held copy of 3 is dropped, not delivered twice");
        assert!(!sequencer.needs_backfill(later + wait, wait), "the gap is closed");
        assert_eq!(sequencer.after_id(), 12);
    }

    #[test]
    fn a_failed_backfill_is_tried_again_after_the_wait() {
        let wait = Duration::from_millis(250);
        let start = Instant::now();
        let mut sequencer = Sequencer::default();
        sequencer.baseline(None);
        sequencer.backfill_failed(start);
        assert!(!sequencer.needs_backfill(start, wait));
        assert!(sequencer.needs_backfill(start + wait, wait));
    }

    #[test]
    fn a_backfill_skips_what_was_delivered_and_releases_what_it_unblocks() {
        let now = Instant::now();
        let mut sequencer = Sequencer::default();
        sequencer.baseline(Some((10, 1)));
        assert_eq!(seqs(&sequencer.accept(message(11, 2), now)), vec![2]);
        assert!(sequencer.accept(message(15, 6), now).is_empty(), "held behind 3–5");
        let page = vec![message(11, 2), message(12, 3), message(13, 4)];
        assert_eq!(seqs(&sequencer.backfilled(page)), vec![3, 4], "2 was delivered already");
        assert!(sequencer.drain(now).is_empty(), "5 is still missing");
        assert_eq!(seqs(&sequencer.backfilled(vec![message(14, 5)])), vec![5]);
        assert_eq!(seqs(&sequencer.drain(now)), vec![6]);
    }
}
