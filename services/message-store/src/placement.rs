//! Where each send of a batch lands: its chat's next seq, or the message it
//! repeats (the same `client_msg_id` from the same sender to the same chat,
//! stored before or earlier in the same batch).
//!
//! Pure: the writer reads each chat's last seq and the messages already
//! stored under the batch's keys (with the chats' sequence rows locked), asks
//! [`place`], then writes exactly the new rows. So seqs stay gap-free (a
//! repeat takes no seq) and a key is stored once, however the sends of a
//! batch interleave.

use std::collections::HashMap;

/// What a send is, for placing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendKey<'a> {
    pub chat_id: i64,
    pub sender_id: i64,
    pub client_msg_id: Option<&'a str>,
}

/// Where one send goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement<T> {
    /// A new message with this seq.
    New { seq: i64 },
    /// A repeat of a message stored before this batch.
    Stored(T),
    /// A repeat of the send at this index of the same batch (always a `New` one).
    Earlier(usize),
}

/// Places the batch's sends in order. `last_seq` has every chat of the batch
/// (0 for a chat without messages); `stored` has the messages already stored
/// under the batch's keys, by `(chat, sender, key)`.
pub fn place<T: Clone>(
    sends: &[SendKey<'_>],
    last_seq: &HashMap<i64, i64>,
    stored: &HashMap<(i64, i64, &str), T>,
) -> Vec<Placement<T>> {
    let mut next: HashMap<i64, i64> = HashMap::new();
    let mut first_with_key: HashMap<(i64, i64, &str), usize> = HashMap::new();
    sends
        .iter()
        .enumerate()
        .map(|(index, send)| {
            if let Some(key) = send.client_msg_id {
                let key = (send.chat_id, send.sender_id, key);
                if let Some(original) = stored.get(&key) {
                    return Placement::Stored(original.clone());
                }
                if let Some(first) = first_with_key.get(&key) {
                    return Placement::Earlier(*first);
                }
                first_with_key.insert(key, index);
            }
            let seq = next.entry(send.chat_id).or_insert_with(|| last_seq.get(&send.chat_id).copied().unwrap_or(0));
            *seq += 1;
            Placement::New { seq: *seq }
        })
        .collect()
}

/// The last seq of each chat once the batch is written (only chats that got a new message).
pub fn last_seqs<T>(sends: &[SendKey<'_>], placements: &[Placement<T>]) -> HashMap<i64, i64> {
    let mut last = HashMap::new();
    for (send, placement) in sends.iter().zip(placements) {
        if let Placement::New { seq } = placement {
            let entry = last.entry(send.chat_id).or_insert(*seq);
            *entry = (*entry).max(*seq);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(chat_id: i64, sender_id: i64, key: Option<&str>) -> SendKey<'_> {
        SendKey { chat_id, sender_id, client_msg_id: key }
    }

    #[test]
    fn placements() {
        use Placement::{Earlier, New, Stored};
        let last: HashMap<i64, i64> = [(1, 0), (2, 41)].into();
        let stored: HashMap<(i64, i64, &str), &str> = [((1, 7, "done"), "stored message")].into();
        type Case<'a> = (&'a str, Vec<SendKey<'a>>, Vec<Placement<&'a str>>);
        let cases: Vec<Case> = vec![
            ("a chat's first message is seq 1", vec![send(1, 7, None)], vec![New { seq: 1 }]),
            (
                "seqs follow the chat's last",
                vec![send(2, 7, None), send(2, 8, None)],
                vec![New { seq: 42 }, New { seq: 43 }],
            ),
            (
                "chats count apart",
                vec![send(1, 7, None), send(2, 7, None), send(1, 8, None)],
                vec![New { seq: 1 }, New { seq: 42 }, New { seq: 2 }],
            ),
            (
                "a stored key repeats the stored message and takes no seq",
                vec![send(1, 7, Some("done")), send(1, 7, None)],
                vec![Stored("stored message"), New { seq: 1 }],
            ),
            (
                "a key twice in one batch: the second repeats the first",
                vec![send(1, 7, Some("k")), send(1, 7, Some("k")), send(1, 7, None)],
                vec![New { seq: 1 }, Earlier(0), New { seq: 2 }],
            ),
            (
                "the same key from another sender is another message",
                vec![send(1, 7, Some("k")), send(1, 8, Some("k"))],
                vec![New { seq: 1 }, New { seq: 2 }],
            ),
            (
                "the same key in another chat is another message",
                vec![send(1, 7, Some("done")), send(2, 7, Some("done"))],
                vec![Stored("stored message"), New { seq: 42 }],
            ),
            ("no sends, no placements", vec![], vec![]),
        ];
        for (name, sends, expected) in cases {
            assert_eq!(place(&sends, &last, &stored), expected, "{name}");
        }
    }

    #[test]
    fn the_last_seq_of_each_chat_counts_only_new_messages() {
        let sends = [send(1, 7, None), send(2, 7, Some("k")), send(1, 7, None), send(2, 7, Some("k"))];
        let placements: Vec<Placement<()>> = vec![
            Placement::New { seq: 5 },
            Placement::New { seq: 9 },
            Placement::New { seq: 6 },
            Placement::Earlier(1),
        ];
        assert_eq!(last_seqs(&sends, &placements), [(1, 6), (2, 9)].into());
        let only_repeats: Vec<Placement<()>> = vec![Placement::Stored(())];
        assert!(last_seqs(&sends[..1], &only_repeats).is_empty());
    }
}
