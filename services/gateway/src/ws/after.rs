//! The `after` parameter of a socket: where replay starts. Pure.

/// At most this many `<chat_id>:<message_id>` pairs in a user socket's `after`.
pub const MAX_AFTER_PAIRS: usize = 500;

/// A per-chat socket's `after=ID`: a non-negative integer.
pub fn parse_after_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|after| *after >= 0)
}

/// A user socket's `after=<chat_id>:<message_id>,…`: the pairs in order, or
/// why not. Empty is none; a chat listed twice, more than
/// [`MAX_AFTER_PAIRS`] pairs, or a pair that is not `<int>:<int ≥ 0>` is malformed.
pub fn parse_after_map(raw: &str) -> Result<Vec<(i64, i64)>, &'static str> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs: Vec<(i64, i64)> = Vec::new();
    for pair in raw.split(',') {
        if pairs.len() == MAX_AFTER_PAIRS {
            return Err("after lists at most 500 chats");
        }
        let (chat, message) = pair.split_once(':').ok_or("after is <chat_id>:<message_id>,…")?;
        let chat: i64 = chat.parse().map_err(|_| "after: a chat id is an integer")?;
        let message = parse_after_id(message).ok_or("after: a message id is a non-negative integer")?;
        if pairs.iter().any(|(listed, _)| *listed == chat) {
            return Err("after lists a chat twice");
        }
        pairs.push((chat, message));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_chat_after_is_a_non_negative_integer() {
        let table = [("0", Some(0)), ("42", Some(42)), ("-1", None), ("", None), ("1.0", None), (" 1", None)];
        for (raw, parsed) in table {
            assert_eq!(parse_after_id(raw), parsed, "{raw:?}");
        }
    }

    #[test]
    fn a_user_socket_s_after_maps_chats_to_message_ids() {
        let good: &[(&str, &[(i64, i64)])] =
            &[("", &[]), ("5:0", &[(5, 0)]), ("5:10,3:7", &[(5, 10), (3, 7)]), ("-2:1", &[(-2, 1)])];
        for (raw, pairs) in good {
            assert_eq!(parse_after_map(raw).as_deref(), Ok(*pairs), "{raw:?}");
        }
        let malformed =
            ["5", "5:", ":5", "5:-1", "5:x", "x:5", "5:1,", ",5:1", "5:1,5:2", "5:1:2", "5 :1", "5:1;6:2", "5:1.0"];
        for raw in malformed {
            assert!(parse_after_map(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn at_most_five_hundred_pairs() {
        let pairs = |n: usize| (1..=n).map(|chat| format!("{chat}:0")).collect::<Vec<_>>().join(",");
        assert_eq!(parse_after_map(&pairs(MAX_AFTER_PAIRS)).map(|p| p.len()), Ok(MAX_AFTER_PAIRS));
        assert!(parse_after_map(&pairs(MAX_AFTER_PAIRS + 1)).is_err());
    }
}
