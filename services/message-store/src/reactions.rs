//! Reactions: one row per (message, user, emoji) in `message_reactions`.
//!
//! - The unique key (message, user, emoji) makes a repeated or concurrent
//!   identical reaction one row: it cannot count twice.
//! - At most [`MAX_EMOJI`] distinct emoji per message, decided under the
//!   message's row lock (`FOR UPDATE` on MySQL; SQLite has one writer), so
//!   two concurrent "20th" reactions cannot both pass.
//! - Order: `id` (insertion order). An emoji's place is its first standing
//!   reaction's, its users in the order they reacted ([`group`]).
//! - A deleted message's reactions are erased in the delete's transaction.
//!
//! Every change here runs inside the writer's batch transaction.

use std::collections::HashMap;

use sql_pool::{Backend, placeholders};
use sqlx::{AnyConnection, Row};

use crate::error::MessageError;

/// The most distinct emoji a message holds.
pub const MAX_EMOJI: i64 = 20;
/// The longest emoji, in Unicode scalar values.
pub const MAX_EMOJI_CHARS: usize = 32;

/// An emoji as API.md takes it: 1–32 Unicode scalar values, none of them
/// whitespace (Unicode's White_Space, so U+00A0 and U+3000 too) or a control
/// character (category Cc); joiners and variation selectors are fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(value: String) -> Result<Self, MessageError> {
        let count = value.chars().count();
        if count == 0 || count > MAX_EMOJI_CHARS {
            return Err(MessageError::invalid("emoji", format!("must be 1 to {MAX_EMOJI_CHARS} characters")));
        }
        // `char::is_whitespace` is exactly White_Space; `is_control` exactly Cc.
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(MessageError::invalid("emoji", "must not contain whitespace or control characters"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One emoji's standing reactions: the users in the order they reacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<i64>,
}

impl From<Reaction> for chat_proto::messages::Reaction {
    fn from(reaction: Reaction) -> Self {
        Self { emoji: reaction.emoji, user_ids: reaction.user_ids }
    }
}

/// Reactions `(emoji, user)` in the order they were made, grouped by emoji:
/// each emoji where its first reaction was, its users in order.
pub fn group(rows: impl IntoIterator<Item = (String, i64)>) -> Vec<Reaction> {
    let mut reactions: Vec<Reaction> = Vec::new();
    for (emoji, user_id) in rows {
        match reactions.iter_mut().find(|reaction| reaction.emoji == emoji) {
            Some(reaction) => reaction.user_ids.push(user_id),
            None => reactions.push(Reaction { emoji, user_ids: vec![user_id] }),
        }
    }
    reactions
}

/// The reactions of these messages, in one query.
pub async fn of_messages<'c, E>(executor: E, message_ids: &[i64]) -> Result<HashMap<i64, Vec<Reaction>>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if message_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT message_id, user_id, emoji FROM message_reactions WHERE message_id IN ({}) ORDER BY id",
        placeholders(message_ids.len(), "?")
    );
    let mut query = sqlx::query(&sql);
    for id in message_ids {
        query = query.bind(*id);
    }
    let mut rows: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for row in query.fetch_all(executor).await? {
        let message_id: i64 = row.try_get("message_id")?;
        rows.entry(message_id).or_default().push((row.try_get("emoji")?, row.try_get("user_id")?));
    }
    Ok(rows.into_iter().map(|(message_id, rows)| (message_id, group(rows))).collect())
}

/// What a reaction change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reacted {
    Changed,
    /// Already there (add) or not there (remove): nothing to announce.
    Unchanged,
    /// The message is deleted: an add is refused, a remove changes nothing.
    Deleted,
    /// A new emoji on a message that has [`MAX_EMOJI`] already.
    Full,
}

/// Whether a message with these distinct emoji takes a reaction with `emoji`:
/// one it has, or a new one while it has fewer than [`MAX_EMOJI`].
pub fn admits(present: &[String], emoji: &str) -> bool {
    present.iter().any(|there| there == emoji) || (present.len() as i64) < MAX_EMOJI
}

/// Locks the message's row for the rest of the transaction; whether it is deleted (`None`: no such message).
async fn lock_message(tx: &mut AnyConnection, backend: Backend, message_id: i64) -> Result<Option<bool>, sqlx::Error> {
    let lock = if backend == Backend::MySql { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT is_deleted FROM message_metadata WHERE id = ?{lock}");
    let row = sqlx::query(&sql).bind(message_id).fetch_optional(&mut *tx).await?;
    row.map(|row| row.try_get::<i64, _>("is_deleted").map(|deleted| deleted != 0)).transpose()
}

/// The user reacts with `emoji`, unless it is there already, the message is
/// deleted, or it would be the message's 21st distinct emoji.
pub async fn add(
    tx: &mut AnyConnection,
    backend: Backend,
    message_id: i64,
    user_id: i64,
    emoji: &str,
    at_ms: i64,
) -> Result<Reacted, sqlx::Error> {
    if lock_message(tx, backend, message_id).await? != Some(false) {
        return Ok(Reacted::Deleted);
    }
    let mine =
        sqlx::query("SELECT COUNT(*) AS n FROM message_reactions WHERE message_id = ? AND user_id = ? AND emoji = ?")
            .bind(message_id)
            .bind(user_id)
            .bind(emoji.to_owned())
            .fetch_one(&mut *tx)
            .await?;
    if mine.try_get::<i64, _>("n")? > 0 {
        return Ok(Reacted::Unchanged);
    }
    let present = sqlx::query("SELECT DISTINCT emoji FROM message_reactions WHERE message_id = ?")
        .bind(message_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("emoji"))
        .collect::<Result<Vec<_>, _>>()?;
    if !admits(&present, emoji) {
        return Ok(Reacted::Full);
    }
    sqlx::query("INSERT INTO message_reactions (message_id, user_id, emoji, created_at_ms) VALUES (?, ?, ?, ?)")
        .bind(message_id)
        .bind(user_id)
        .bind(emoji.to_owned())
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(Reacted::Changed)
}

/// The user's reaction taken back, if it was there (and the message is not deleted).
pub async fn remove(
    tx: &mut AnyConnection,
    backend: Backend,
    message_id: i64,
    user_id: i64,
    emoji: &str,
) -> Result<Reacted, sqlx::Error> {
    if lock_message(tx, backend, message_id).await? != Some(false) {
        return Ok(Reacted::Deleted);
    }
    let done = sqlx::query("DELETE FROM message_reactions WHERE message_id = ? AND user_id = ? AND emoji = ?")
        .bind(message_id)
        .bind(user_id)
        .bind(emoji.to_owned())
        .execute(&mut *tx)
        .await?;
    Ok(if done.rows_affected() == 1 { Reacted::Changed } else { Reacted::Unchanged })
}

/// Erases a deleted message's reactions.
pub async fn erase(tx: &mut AnyConnection, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM message_reactions WHERE message_id = ?").bind(message_id).execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_1_to_32_scalar_values_without_whitespace_or_controls() {
        let cases: &[(&str, bool)] = &[
            ("👍", true),
            ("👍🏽", true),           // skin tone modifier: two scalar values
            ("👩\u{200d}💻", true), // a zero-width joiner is fine
            ("❤\u{fe0f}", true),    // and a variation selector
            ("+1", true),
            (":party_parrot:", true),
            (&"x".repeat(32), true),
            (&"x".repeat(33), false),
            (&"😀".repeat(32), true),
            (&"😀".repeat(33), false),
            ("", false),
            (" ", false),
            ("👍 ", false),
            ("a\u{00a0}b", false), // no-break space is White_Space
            ("\u{3000}", false),   // ideographic space
            ("\u{2028}", false),   // line separator
            ("a\tb", false),
            ("\u{7}", false),  // BEL: Cc
            ("\u{85}", false), // NEL: Cc and White_Space
            ("\u{9f}", false), // APC: Cc
        ];
        for (emoji, ok) in cases {
            assert_eq!(Emoji::parse((*emoji).to_owned()).is_ok(), *ok, "{emoji:?}");
        }
    }

    #[test]
    fn a_message_takes_twenty_distinct_emoji_and_more_of_those_it_has() {
        let emoji = |n: usize| (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>();
        let cases = [(0, "new", true), (19, "new", true), (20, "new", false), (20, "e0", true), (20, "e19", true)];
        for (present, asked, admitted) in cases {
            assert_eq!(admits(&emoji(present), asked), admitted, "{present} present, {asked}");
        }
    }

    #[test]
    fn reactions_group_by_emoji_in_the_order_of_each_first_reaction() {
        let rows = |list: &[(&str, i64)]| list.iter().map(|(e, u)| ((*e).to_owned(), *u)).collect::<Vec<_>>();
        let reaction = |emoji: &str, user_ids: &[i64]| Reaction { emoji: emoji.into(), user_ids: user_ids.to_vec() };
        type Rows = Vec<(String, i64)>;
        let cases: Vec<(Rows, Vec<Reaction>)> = vec![
            (rows(&[]), vec![]),
            (rows(&[("👍", 1)]), vec![reaction("👍", &[1])]),
            (
                rows(&[("👍", 1), ("🎉", 2), ("👍", 3), ("🎉", 1)]),
                vec![reaction("👍", &[1, 3]), reaction("🎉", &[2, 1])],
            ),
            // The first 👍 was taken back: 🎉's first reaction is now the older one.
            (rows(&[("🎉", 2), ("👍", 3)]), vec![reaction("🎉", &[2]), reaction("👍", &[3])]),
        ];
        for (input, expected) in cases {
            assert_eq!(group(input.clone()), expected, "{input:?}");
        }
    }
}
