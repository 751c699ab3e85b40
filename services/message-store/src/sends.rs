//! The sends of a batch, inside its transaction: the chats' sequence rows
//! locked in chat order, repeats of a stored `client_msg_id` resolved,
//! replies checked, seqs placed ([`crate::placement`]), the rows inserted,
//! the senders' read positions moved to their messages.

use std::collections::HashMap;

use sql_pool::{Backend, placeholders};
use sqlx::{AnyConnection, Row};

use crate::{
    domain::MessageRow,
    placement::{Placement, SendKey, last_seqs, place},
    reading,
    store::{COLUMNS, row_from},
    writer::NewMessage,
};

/// Where a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placed {
    Created(MessageRow),
    Repeated(MessageRow),
    /// A new message answering no message of its chat: not stored, no seq taken.
    Refused,
}

/// Stores the sends of a batch: sequence rows locked (in chat order, so two
/// writers never wait on each other in a cycle), repeats resolved, new rows
/// inserted with gap-free seqs, the chats' last seqs moved.
pub(crate) async fn insert_sends(
    tx: &mut AnyConnection,
    backend: Backend,
    with_content: bool,
    sends: &[&NewMessage],
) -> std::result::Result<Vec<Placed>, sqlx::Error> {
    let mut chats: Vec<i64> = sends.iter().map(|send| send.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    let values = placeholders(chats.len(), "(?, 0)");
    let ensure = match backend {
        Backend::MySql => format!(
            "INSERT INTO chat_sequences (chat_id, last_seq) VALUES {values} ON DUPLICATE KEY UPDATE last_seq = last_seq"
        ),
        Backend::Sqlite => {
            format!("INSERT INTO chat_sequences (chat_id, last_seq) VALUES {values} ON CONFLICT (chat_id) DO NOTHING")
        }
    };
    let mut query = sqlx::query(&ensure);
    for chat in &chats {
        query = query.bind(*chat);
    }
    query.execute(&mut *tx).await?;
    let lock = if backend == Backend::MySql { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT chat_id, last_seq FROM chat_sequences WHERE chat_id IN ({}){lock}",
        placeholders(chats.len(), "?")
    );
    let mut query = sqlx::query(&sql);
    for chat in &chats {
        query = query.bind(*chat);
    }
    let mut last_seq = HashMap::new();
    for row in query.fetch_all(&mut *tx).await? {
        last_seq.insert(row.try_get::<i64, _>("chat_id")?, row.try_get::<i64, _>("last_seq")?);
    }

    let keyed: Vec<&&NewMessage> = sends.iter().filter(|send| send.client_msg_id.is_some()).collect();
    let mut stored_rows = Vec::new();
    if !keyed.is_empty() {
        let sql = format!(
            "SELECT {COLUMNS} FROM message_metadata WHERE {}",
            vec!["(chat_id = ? AND sender_id = ? AND client_msg_id = ?)"; keyed.len()].join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for send in &keyed {
            query = query.bind(send.chat_id).bind(send.sender_id).bind(send.client_msg_id.clone());
        }
        for row in query.fetch_all(&mut *tx).await? {
            stored_rows.push(row_from(&row)?);
        }
    }
    let stored: HashMap<(i64, i64, &str), MessageRow> = stored_rows
        .iter()
        .filter_map(|row| Some(((row.chat_id, row.sender_id, row.client_msg_id.as_deref()?), row.clone())))
        .collect();
    // Replies answer a message of their own chat; a repeat of a stored send is answered as ever.
    let answered = reply_targets(tx, sends).await?;
    let refused: Vec<bool> = sends
        .iter()
        .map(|send| {
            let repeat = send
                .client_msg_id
                .as_deref()
                .is_some_and(|key| stored.contains_key(&(send.chat_id, send.sender_id, key)));
            !repeat && send.reply_to.is_some_and(|to| answered.get(&to) != Some(&send.chat_id))
        })
        .collect();
    let kept: Vec<&NewMessage> =
        sends.iter().zip(&refused).filter(|(_, refused)| !**refused).map(|(send, _)| *send).collect();
    let kept_at: Vec<usize> = (0..sends.len()).filter(|index| !refused[*index]).collect();
    let keys: Vec<SendKey> = kept.iter().map(|send| send.key()).collect();
    let placements = place(&keys, &last_seq, &stored);

    let new: Vec<(&NewMessage, i64)> = kept
        .iter()
        .zip(&placements)
        .filter_map(|(send, placement)| match placement {
            Placement::New { seq } => Some((*send, *seq)),
            _ => None,
        })
        .collect();
    let mut ids: HashMap<(i64, i64), i64> = HashMap::new();
    if !new.is_empty() {
        let sql = format!(
            "INSERT INTO message_metadata \
             (chat_id, seq, sender_id, sender_username, content_id, client_msg_id, created_at_ms, edited_at_ms, is_deleted, reply_to) \
             VALUES {}",
            placeholders(new.len(), "(?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)")
        );
        let mut query = sqlx::query(&sql);
        for (send, seq) in &new {
            query = query
                .bind(send.chat_id)
                .bind(*seq)
                .bind(send.sender_id)
                .bind(send.sender_username.clone())
                .bind(send.content_id.clone())
                .bind(send.client_msg_id.clone())
                .bind(send.created_at_ms)
                .bind(send.reply_to);
        }
        query.execute(&mut *tx).await?;
        // The new ids, by (chat, seq): one range per chat.
        let mut ranges: HashMap<i64, (i64, i64)> = HashMap::new();
        for (send, seq) in &new {
            let range = ranges.entry(send.chat_id).or_insert((*seq, *seq));
            *range = (range.0.min(*seq), range.1.max(*seq));
        }
        let sql = format!(
            "SELECT id, chat_id, seq FROM message_metadata WHERE {}",
            vec!["(chat_id = ? AND seq BETWEEN ? AND ?)"; ranges.len()].join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for (chat, (first, last)) in &ranges {
            query = query.bind(*chat).bind(*first).bind(*last);
        }
        for row in query.fetch_all(&mut *tx).await? {
            ids.insert((row.try_get("chat_id")?, row.try_get("seq")?), row.try_get("id")?);
        }
        if with_content {
            let sql = format!(
                "INSERT INTO message_contents (message_id, chat_id, sender_id, content, timestamp_ms) VALUES {}",
                placeholders(new.len(), "(?, ?, ?, ?, ?)")
            );
            let mut query = sqlx::query(&sql);
            for (send, _) in &new {
                query = query
                    .bind(send.content_id.clone())
                    .bind(send.chat_id)
                    .bind(send.sender_id)
                    .bind(send.content.clone())
                    .bind(send.created_at_ms);
            }
            query.execute(&mut *tx).await?;
        }
        for (chat, last) in last_seqs(&keys, &placements) {
            sqlx::query("UPDATE chat_sequences SET last_seq = ? WHERE chat_id = ?")
                .bind(last)
                .bind(chat)
                .execute(&mut *tx)
                .await?;
        }
        // Each sender has read up to their own message (see [`crate::reading`]).
        let read: Vec<(i64, i64, i64)> = new.iter().map(|(send, seq)| (send.chat_id, send.sender_id, *seq)).collect();
        reading::advance(tx, backend, &read).await?;
    }

    let mut placed: Vec<Placed> = Vec::with_capacity(sends.len());
    let mut placements = placements.into_iter();
    for (send, refused) in sends.iter().zip(refused) {
        let placement = if refused { None } else { placements.next() };
        let Some(placement) = placement else {
            placed.push(Placed::Refused);
            continue;
        };
        let next = match placement {
            Placement::New { seq } => {
                let id = *ids.get(&(send.chat_id, seq)).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("the new message {}/{seq} was not found", send.chat_id))
                })?;
                Placed::Created(MessageRow {
                    id,
                    chat_id: send.chat_id,
                    seq,
                    sender_id: send.sender_id,
                    sender_username: send.sender_username.clone(),
                    content_id: send.content_id.clone(),
                    client_msg_id: send.client_msg_id.clone(),
                    created_at_ms: send.created_at_ms,
                    edited_at_ms: None,
                    is_deleted: false,
                    reply_to: send.reply_to,
                })
            }
            Placement::Stored(row) => Placed::Repeated(row),
            Placement::Earlier(first) => match &placed[kept_at[first]] {
                Placed::Created(row) | Placed::Repeated(row) => Placed::Repeated(row.clone()),
                Placed::Refused => Placed::Refused,
            },
        };
        placed.push(next);
    }
    Ok(placed)
}

/// The chat of each message the sends answer (the ones that exist).
async fn reply_targets(
    tx: &mut AnyConnection,
    sends: &[&NewMessage],
) -> std::result::Result<HashMap<i64, i64>, sqlx::Error> {
    let mut targets: Vec<i64> = sends.iter().filter_map(|send| send.reply_to).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut chats = HashMap::new();
    if targets.is_empty() {
        return Ok(chats);
    }
    let sql = format!("SELECT id, chat_id FROM message_metadata WHERE id IN ({})", placeholders(targets.len(), "?"));
    let mut query = sqlx::query(&sql);
    for target in &targets {
        query = query.bind(*target);
    }
    for row in query.fetch_all(&mut *tx).await? {
        chats.insert(row.try_get::<i64, _>("id")?, row.try_get::<i64, _>("chat_id")?);
    }
    Ok(chats)
}
