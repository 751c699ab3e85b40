//! Read state: each participant's position in each chat (`read_positions`),
//! the seq up to which they have read, and the unread counts it gives.
//!
//! Why here, in message-store: a send moves its sender's position in the
//! send's own commit, and counting unread messages needs the seqs, senders
//! and deletes — all of which live here. Chat-metadata knows joins, so the
//! gateway calls `StartReading` right after a join commits there.
//!
//! A position moves:
//!
//! - at a join: to the chat's last seq (nothing from before counts as unread);
//! - at a send: to the new message's seq, inside the batch's commit;
//! - at a mark: forward only, clamped to the chat's last seq ([`target`]).
//!
//! A participant without a row (joined before read state existed, or whose
//! join's position could not be written) is taken to be at the chat's last
//! seq, and gets a row there the first time their state is asked for.
//!
//! **Counting stays cheap** for a chat of 1 M messages and a reader 100 k
//! behind: `unread = last_seq − position − deleted messages past the
//! position` ([`unread`]). The last seq is one row (`chat_sequences`); the
//! deleted ones are counted on the index `(chat_id, is_deleted, seq)`, which
//! reads only deleted messages. The reader's own messages need no
//! subtracting: a send moves its sender's position to it in the same commit,
//! so none of them is ever past the position. Nothing reads the messages in
//! between.

use std::collections::HashMap;

use sql_pool::{Backend, Db, placeholders};
use sqlx::{AnyConnection, Row};

/// One participant's read state in one chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub chat_id: i64,
    pub last_read_seq: i64,
    pub unread_count: i64,
}

/// Where a mark at `asked` moves a position now at `current`, in a chat whose
/// last seq is `last_seq`: `None` when it does not move (never backwards).
pub fn target(current: i64, asked: i64, last_seq: i64) -> Option<i64> {
    let to = asked.min(last_seq);
    (to > current).then_some(to)
}

/// Unread messages: those past the position, less the deleted ones among them.
pub fn unread(last_seq: i64, position: i64, deleted_past: i64) -> i64 {
    (last_seq - position - deleted_past).max(0)
}

/// The upsert that moves positions forward only (one statement for many rows).
fn upsert_forward(backend: Backend, rows: usize) -> String {
    let values = placeholders(rows, "(?, ?, ?)");
    match backend {
        Backend::MySql => format!(
            "INSERT INTO read_positions (chat_id, user_id, last_read_seq) VALUES {values} \
             ON DUPLICATE KEY UPDATE last_read_seq = GREATEST(last_read_seq, VALUES(last_read_seq))"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO read_positions (chat_id, user_id, last_read_seq) VALUES {values} \
             ON CONFLICT (chat_id, user_id) DO UPDATE SET last_read_seq = MAX(last_read_seq, excluded.last_read_seq)"
        ),
    }
}

/// Moves positions `(chat, user, seq)` forward (a batch's senders, joins).
/// Rows are written in key order, so two batches never wait on each other in a cycle.
pub async fn advance(tx: &mut AnyConnection, backend: Backend, moves: &[(i64, i64, i64)]) -> Result<(), sqlx::Error> {
    let mut latest: HashMap<(i64, i64), i64> = HashMap::new();
    for (chat_id, user_id, seq) in moves {
        let at = latest.entry((*chat_id, *user_id)).or_insert(*seq);
        *at = (*at).max(*seq);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<((i64, i64), i64)> = latest.into_iter().collect();
    rows.sort_unstable();
    let sql = upsert_forward(backend, rows.len());
    let mut query = sqlx::query(&sql);
    for ((chat_id, user_id), seq) in rows {
        query = query.bind(chat_id).bind(user_id).bind(seq);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// The chat's last seq (0 before its first message).
pub async fn last_seq<'c, E>(executor: E, chat_id: i64) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT last_seq FROM chat_sequences WHERE chat_id = ?")
        .bind(chat_id)
        .fetch_optional(executor)
        .await?;
    row.map_or(Ok(0), |row| row.try_get("last_seq"))
}

/// Users who joined a chat start at its last seq.
pub async fn start(
    tx: &mut AnyConnection,
    backend: Backend,
    chat_id: i64,
    user_ids: &[i64],
) -> Result<(), sqlx::Error> {
    let last = last_seq(&mut *tx, chat_id).await?;
    let moves: Vec<(i64, i64, i64)> = user_ids.iter().map(|user_id| (chat_id, *user_id, last)).collect();
    advance(tx, backend, &moves).await
}

/// Marks the chat read up to `seq` for the user: the position afterwards and whether it moved.
pub async fn mark(
    tx: &mut AnyConnection,
    backend: Backend,
    chat_id: i64,
    user_id: i64,
    seq: i64,
) -> Result<(i64, bool), sqlx::Error> {
    let last = last_seq(&mut *tx, chat_id).await?;
    // No row yet means "at the last seq": write it so, then move from there.
    ensure(&mut *tx, backend, &[(chat_id, user_id, last)]).await?;
    let current: i64 = sqlx::query("SELECT last_read_seq FROM read_positions WHERE chat_id = ? AND user_id = ?")
        .bind(chat_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last_read_seq")?;
    let Some(to) = target(current, seq, last) else { return Ok((current, false)) };
    // Guarded: of two marks at once, the larger wins whichever commits last.
    let done = sqlx::query(
        "UPDATE read_positions SET last_read_seq = ? WHERE chat_id = ? AND user_id = ? AND last_read_seq < ?",
    )
    .bind(to)
    .bind(chat_id)
    .bind(user_id)
    .bind(to)
    .execute(&mut *tx)
    .await?;
    Ok((to, done.rows_affected() == 1))
}

/// Rows `(chat, user, seq)` written where there are none (existing ones are left alone).
async fn ensure<'c, E>(executor: E, backend: Backend, rows: &[(i64, i64, i64)]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let values = placeholders(rows.len(), "(?, ?, ?)");
    let sql = match backend {
        Backend::MySql => format!(
            "INSERT INTO read_positions (chat_id, user_id, last_read_seq) VALUES {values} \
             ON DUPLICATE KEY UPDATE last_read_seq = last_read_seq"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO read_positions (chat_id, user_id, last_read_seq) VALUES {values} \
             ON CONFLICT (chat_id, user_id) DO NOTHING"
        ),
    };
    let mut query = sqlx::query(&sql);
    for (chat_id, user_id, seq) in rows {
        query = query.bind(*chat_id).bind(*user_id).bind(*seq);
    }
    query.execute(executor).await?;
    Ok(())
}

/// The user's read state in each of these chats, in one query (chats without
/// a message are at 0 with nothing unread). Missing positions are written at
/// the chat's last seq.
pub async fn states(db: &Db, user_id: i64, chat_ids: &[i64]) -> Result<Vec<ReadState>, sqlx::Error> {
    if chat_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT s.chat_id AS chat_id, s.last_seq AS last_seq, r.last_read_seq AS last_read_seq, \
         (SELECT COUNT(*) FROM message_metadata d \
          WHERE d.chat_id = s.chat_id AND d.is_deleted = 1 AND d.seq > r.last_read_seq) AS deleted_past \
         FROM chat_sequences s LEFT JOIN read_positions r ON r.chat_id = s.chat_id AND r.user_id = ? \
         WHERE s.chat_id IN ({})",
        placeholders(chat_ids.len(), "?")
    );
    let mut query = sqlx::query(&sql).bind(user_id);
    for chat_id in chat_ids {
        query = query.bind(*chat_id);
    }
    let mut found: HashMap<i64, ReadState> = HashMap::new();
    let mut missing = Vec::new();
    for row in query.fetch_all(&db.pool).await? {
        let chat_id: i64 = row.try_get("chat_id")?;
        let last: i64 = row.try_get("last_seq")?;
        let state = match row.try_get::<Option<i64>, _>("last_read_seq")? {
            Some(position) => ReadState {
                chat_id,
                last_read_seq: position,
                unread_count: unread(last, position, row.try_get("deleted_past")?),
            },
            None => {
                missing.push((chat_id, user_id, last));
                ReadState { chat_id, last_read_seq: last, unread_count: 0 }
            }
        };
        found.insert(chat_id, state);
    }
    ensure(&db.pool, db.backend, &missing).await?;
    Ok(chat_ids
        .iter()
        .map(|chat_id| {
            found.remove(chat_id).unwrap_or(ReadState { chat_id: *chat_id, last_read_seq: 0, unread_count: 0 })
        })
        .collect())
}

/// These users' positions in the chat, by user id ascending; missing ones
/// are written (and given) at the chat's last seq.
pub async fn positions(db: &Db, chat_id: i64, user_ids: &[i64]) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT user_id, last_read_seq FROM read_positions WHERE chat_id = ? AND user_id IN ({})",
        placeholders(user_ids.len(), "?")
    );
    let mut query = sqlx::query(&sql).bind(chat_id);
    for user_id in user_ids {
        query = query.bind(*user_id);
    }
    let mut found: HashMap<i64, i64> = HashMap::new();
    for row in query.fetch_all(&db.pool).await? {
        found.insert(row.try_get("user_id")?, row.try_get("last_read_seq")?);
    }
    let mut users = user_ids.to_vec();
    users.sort_unstable();
    users.dedup();
    if users.iter().any(|user_id| !found.contains_key(user_id)) {
        let last = last_seq(&db.pool, chat_id).await?;
        let missing: Vec<(i64, i64, i64)> = users
            .iter()
            .filter(|user_id| !found.contains_key(user_id))
            .map(|user_id| (chat_id, *user_id, last))
            .collect();
        ensure(&db.pool, db.backend, &missing).await?;
        for (_, user_id, seq) in missing {
            found.insert(user_id, seq);
        }
    }
    Ok(users.into_iter().map(|user_id| (user_id, found[&user_id])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_moves_forward_only_and_never_past_the_last_message() {
        // (current, asked, last_seq) → new position
        let cases = [
            ((0, 5, 10), Some(5)),
            ((5, 5, 10), None),
            ((7, 5, 10), None),
            ((5, 42, 10), Some(10)),
            ((10, 42, 10), None),
            ((0, 0, 0), None),
            ((0, 3, 0), None),
        ];
        for ((current, asked, last), expected) in cases {
            assert_eq!(target(current, asked, last), expected, "at {current}, asked {asked}, last {last}");
        }
    }

    #[test]
    fn unread_is_what_lies_past_the_position_less_the_deleted() {
        // (last_seq, position, deleted past it) → unread
        let cases =
            [((10, 10, 0), 0), ((10, 4, 0), 6), ((10, 4, 2), 4), ((1_000_000, 900_000, 10), 99_990), ((3, 3, 1), 0)];
        for ((last, position, deleted), expected) in cases {
            assert_eq!(unread(last, position, deleted), expected, "last {last}, at {position}, {deleted} deleted");
        }
    }
}
