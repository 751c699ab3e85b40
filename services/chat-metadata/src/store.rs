//! The chat store: chats and participants in MySQL/MariaDB or SQLite (through
//! `sqlx::Any`). Every membership change runs in a transaction that first
//! locks the chat's row, so concurrent changes to one chat apply one at a time
//! (the 100-member cap and the last-admin rule cannot be raced).

use std::collections::{HashMap, HashSet};

use chat_proto::events::{ChatEvent, ChatUpdated, ParticipantChange, ParticipantUpdated, chat_event::Kind};
use event_bus::{Outbound, Subjects};
use outbox::EventSink;
use sql_pool::{Db, placeholders};
use sqlx::{Any, Row, Transaction, any::AnyRow};

use crate::{
    domain::{Chat, ChatType, GroupName, MAX_GROUP_MEMBERS, Member, Participant, direct_key},
    error::MetadataError,
};

/// The chat store's migrations, for MySQL and for SQLite.
pub fn migrations() -> (sqlx::migrate::Migrator, sqlx::migrate::Migrator) {
    (sqlx::migrate!("./migrations/mysql"), sqlx::migrate!("./migrations/sqlite"))
}

const CHAT_COLUMNS: &str = "c.id, c.chat_type, c.name, c.created_at_ms, c.updated_at_ms, c.is_active";
const PARTICIPANT_COLUMNS: &str = "chat_id, user_id, username, joined_at_ms, is_admin";

type Result<T> = std::result::Result<T, MetadataError>;

fn chat_from_row(row: &AnyRow) -> Result<Chat> {
    let chat_type: String = row.try_get("chat_type")?;
    Ok(Chat {
        id: row.try_get("id")?,
        chat_type: ChatType::parse(&chat_type)
            .ok_or_else(|| anyhow::anyhow!("chat type {chat_type:?} in the database"))?,
        name: row.try_get("name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        participants: Vec::new(),
    })
}

fn participant_from_row(row: &AnyRow) -> Result<(i64, Participant)> {
    Ok((
        row.try_get("chat_id")?,
        Participant {
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            joined_at_ms: row.try_get("joined_at_ms")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        },
    ))
}

/// Chats and participants; a membership change is announced with the
/// change: its events are staged in the same transaction
/// ([`EventSink::stage`], the outbox) and go out once it commits.
#[derive(Clone)]
pub struct ChatStore {
    db: Db,
    sink: EventSink,
    subjects: Subjects,
}

/// Whether a chat exists, and whether (and as what) a user is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub chat_exists: bool,
    /// `Some(is_admin)` for a participant.
    pub participant: Option<bool>,
}

impl ChatStore {
    pub fn new(db: Db, sink: EventSink, subjects: Subjects) -> Self {
        Self { db, sink, subjects }
    }

    /// Stages the events of users added to or removed from a chat in the
    /// change's transaction; hand them to [`ChatStore::announce`] once it commits.
    /// Each goes to the chat's sockets and to membership caches (the membership subject).
    async fn stage_membership(
        &self,
        tx: &mut Transaction<'static, Any>,
        chat_id: i64,
        added: bool,
        user_ids: &[i64],
        by_user_id: i64,
    ) -> Result<Vec<Outbound>> {
        let (trace, at_ms) = (telemetry::propagation::current_trace(), event_bus::now_ms());
        let events: Vec<Outbound> = user_ids
            .iter()
            .flat_map(|user_id| {
                let change = ParticipantChange { user_id: *user_id, by_user_id };
                let kind = if added { Kind::ParticipantAdded(change) } else { Kind::ParticipantRemoved(change) };
                let event = ChatEvent { chat_id, at_ms, kind: Some(kind), ..ChatEvent::default() };
                self.subjects.membership_event(&event, trace.clone())
            })
            .collect();
        self.sink.stage(tx, &events).await?;
        Ok(events)
    }

    /// Stages a change that only the chat's sockets hear of (a rename, admin
    /// rights: no membership cache keeps those), like [`ChatStore::stage_membership`].
    async fn stage_chat_event(&self, tx: &mut Transaction<'static, Any>, chat_id: i64, kind: Kind) -> Result<Outbound> {
        let event = ChatEvent { chat_id, at_ms: event_bus::now_ms(), kind: Some(kind), ..ChatEvent::default() };
        let event = self.subjects.chat_event(&event, telemetry::propagation::current_trace());
        self.sink.stage(tx, std::slice::from_ref(&event)).await?;
        Ok(event)
    }

    /// Publishes the events of a committed change.
    async fn announce(&self, events: Vec<Outbound>) {
        self.sink.committed(events).await;
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Starts a transaction holding the chat's row lock; `NotFound` if there is no such chat.
    ///
    /// The first statement writes, so that SQLite takes its write lock at once
    /// (a read-then-write transaction could fail to upgrade under contention).
    async fn lock_chat(&self, chat_id: i64) -> Result<Transaction<'static, Any>> {
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("UPDATE chats SET id = id WHERE id = ?").bind(chat_id).execute(&mut *tx).await?;
        let exists = sqlx::query("SELECT 1 FROM chats WHERE id = ?").bind(chat_id).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(crate::error::chat_not_found());
        }
        Ok(tx)
    }

    /// Refuses the change unless `admin` (if given) is an admin of the chat
    /// now — read under the chat's row lock that `tx` holds, so a demotion or
    /// removal that commits first cannot be overtaken by this change.
    async fn require_admin(tx: &mut Transaction<'static, Any>, chat_id: i64, admin: Option<i64>) -> Result<()> {
        let Some(admin) = admin else { return Ok(()) };
        let row = sqlx::query("SELECT is_admin FROM participants WHERE chat_id = ? AND user_id = ?")
            .bind(chat_id)
            .bind(admin)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            None => Err(crate::error::not_a_participant()),
            Some(row) if row.try_get::<i64, _>("is_admin")? == 0 => {
                Err(MetadataError::Forbidden("only a chat admin may do this".into()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Each chat's participants, longest-standing first.
    async fn participants_of(&self, chat_ids: &[i64]) -> Result<HashMap<i64, Vec<Participant>>> {
        let mut by_chat: HashMap<i64, Vec<Participant>> = HashMap::new();
        if chat_ids.is_empty() {
            return Ok(by_chat);
        }
        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE chat_id IN ({}) ORDER BY chat_id, joined_at_ms, user_id",
            placeholders(chat_ids.len(), "?")
        );
        let mut query = sqlx::query(&sql);
        for id in chat_ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&self.db.pool).await? {
            let (chat_id, participant) = participant_from_row(&row)?;
            by_chat.entry(chat_id).or_default().push(participant);
        }
        Ok(by_chat)
    }

    /// Chats by id, with their participants, in the order of `rows`.
    async fn with_participants(&self, mut chats: Vec<Chat>) -> Result<Vec<Chat>> {
        let ids: Vec<i64> = chats.iter().map(|chat| chat.id).collect();
        let mut participants = self.participants_of(&ids).await?;
        for chat in &mut chats {
            chat.participants = participants.remove(&chat.id).unwrap_or_default();
        }
        Ok(chats)
    }

    /// One chat with its participants.
    #[tracing::instrument(skip(self))]
    pub async fn chat(&self, chat_id: i64) -> Result<Option<Chat>> {
        let sql = format!("SELECT {CHAT_COLUMNS} FROM chats c WHERE c.id = ?");
        let Some(row) = sqlx::query(&sql).bind(chat_id).fetch_optional(&self.db.pool).await? else {
            return Ok(None);
        };
        Ok(self.with_participants(vec![chat_from_row(&row)?]).await?.pop())
    }

    /// Whether the chat exists, and the user's participation in it.
    #[tracing::instrument(skip(self))]
    pub async fn membership(&self, chat_id: i64, user_id: i64) -> Result<(bool, Option<Participant>)> {
        let row = sqlx::query(
            "SELECT c.id AS id, p.chat_id AS chat_id, p.user_id AS user_id, p.username AS username, \
                    p.joined_at_ms AS joined_at_ms, p.is_admin AS is_admin \
             FROM chats c LEFT JOIN participants p ON p.chat_id = c.id AND p.user_id = ? WHERE c.id = ?",
        )
        .bind(user_id)
        .bind(chat_id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok((false, None)) };
        let participant = match row.try_get::<Option<i64>, _>("user_id")? {
            Some(_) => Some(participant_from_row(&row)?.1),
            None => None,
        };
        Ok((true, participant))
    }

    async fn insert_participants(
        tx: &mut Transaction<'static, Any>,
        chat_id: i64,
        members: &[(&Member, bool)],
        joined_at_ms: i64,
    ) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let rows = placeholders(members.len(), "(?, ?, ?, ?, ?)");
        let sql = format!("INSERT INTO participants ({PARTICIPANT_COLUMNS}) VALUES {rows}");
        let mut query = sqlx::query(&sql);
        for (member, is_admin) in members {
            query = query
                .bind(chat_id)
                .bind(member.user_id)
                .bind(member.username.clone())
                .bind(joined_at_ms)
                .bind(i64::from(*is_admin));
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Creates a group with its creator as admin and the others as members.
    #[tracing::instrument(skip_all, fields(members = others.len()))]
    pub async fn create_group(
        &self,
        name: &GroupName,
        creator: &Member,
        others: &[Member],
        now_ms: i64,
    ) -> Result<Chat> {
        let mut tx = self.db.pool.begin().await?;
        let sql = self.db.returning_id(
            "INSERT INTO chats (chat_type, name, direct_key, created_at_ms, updated_at_ms, is_active) \
             VALUES ('group', ?, NULL, ?, ?, 1)",
        );
        let query = sqlx::query(&sql).bind(name.as_str()).bind(now_ms).bind(now_ms);
        let chat_id = self.db.insert_returning_id(&mut *tx, query).await?;
        let mut members = vec![(creator, true)];
        members.extend(others.iter().map(|member| (member, false)));
        Self::insert_participants(&mut tx, chat_id, &members, now_ms).await?;
        let everyone: Vec<i64> = members.iter().map(|(member, _)| member.user_id).collect();
        let events = self.stage_membership(&mut tx, chat_id, true, &everyone, creator.user_id).await?;
        tx.commit().await?;
        self.announce(events).await;
        self.chat(chat_id).await?.ok_or_else(|| anyhow::anyhow!("chat {chat_id} vanished after its creation").into())
    }

    /// The pair's direct chat, created if there is none (`a` asks). Returns
    /// the chat, whether it was created, and who was (re-)added to it.
    #[tracing::instrument(skip_all, fields(a = a.user_id, b = b.user_id))]
    pub async fn find_or_create_direct(&self, a: &Member, b: &Member, now_ms: i64) -> Result<(Chat, bool, Vec<i64>)> {
        let key = direct_key(a.user_id, b.user_id);
        // Two attempts: a concurrent creator may win the unique key between our look and our insert.
        for _ in 0..2 {
            let existing = sqlx::query("SELECT id FROM chats WHERE direct_key = ?")
                .bind(key.clone())
                .fetch_optional(&self.db.pool)
                .await?;
            if let Some(row) = existing {
                let chat_id: i64 = row.try_get("id")?;
                let added = self.rejoin(chat_id, &[a, b], now_ms, a.user_id).await?;
                let chat = self.chat(chat_id).await?.ok_or_else(crate::error::chat_not_found)?;
                return Ok((chat, false, added));
            }
            let mut tx = self.db.pool.begin().await?;
            let sql = self.db.returning_id(
                "INSERT INTO chats (chat_type, name, direct_key, created_at_ms, updated_at_ms, is_active) \
                 VALUES ('direct', NULL, ?, ?, ?, 1)",
            );
            let query = sqlx::query(&sql).bind(key.clone()).bind(now_ms).bind(now_ms);
            let chat_id = match self.db.insert_returning_id(&mut *tx, query).await {
                Ok(id) => id,
                Err(error) if sql_pool::is_unique_violation(&error) => continue,
                Err(error) => return Err(error.into()),
            };
            Self::insert_participants(&mut tx, chat_id, &[(a, false), (b, false)], now_ms).await?;
            let events = self.stage_membership(&mut tx, chat_id, true, &[a.user_id, b.user_id], a.user_id).await?;
            tx.commit().await?;
            self.announce(events).await;
            let chat = self.chat(chat_id).await?.ok_or_else(crate::error::chat_not_found)?;
            return Ok((chat, true, vec![a.user_id, b.user_id]));
        }
        Err(anyhow::anyhow!("direct chat {key} neither found nor created").into())
    }

    /// Makes these users participants again (a direct chat one of them left) and the chat active.
    async fn rejoin(&self, chat_id: i64, members: &[&Member], now_ms: i64, by: i64) -> Result<Vec<i64>> {
        let mut tx = self.lock_chat(chat_id).await?;
        let current = Self::member_ids(&mut tx, chat_id).await?;
        let missing: Vec<(&Member, bool)> =
            members.iter().filter(|member| !current.contains(&member.user_id)).map(|member| (*member, false)).collect();
        Self::insert_participants(&mut tx, chat_id, &missing, now_ms).await?;
        sqlx::query("UPDATE chats SET is_active = 1 WHERE id = ?").bind(chat_id).execute(&mut *tx).await?;
        let added: Vec<i64> = missing.iter().map(|(member, _)| member.user_id).collect();
        let events = self.stage_membership(&mut tx, chat_id, true, &added, by).await?;
        tx.commit().await?;
        self.announce(events).await;
        Ok(added)
    }

    async fn member_ids(tx: &mut Transaction<'static, Any>, chat_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT user_id FROM participants WHERE chat_id = ?")
            .bind(chat_id)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.iter().map(|row| row.try_get("user_id")).collect::<std::result::Result<_, _>>()?)
    }

    /// The user's chats, most recently active first.
    #[tracing::instrument(skip(self))]
    pub async fn list_for(&self, user_id: i64, limit: u32, offset: u32) -> Result<Vec<Chat>> {
        let sql = format!(
            "SELECT {CHAT_COLUMNS} FROM chats c JOIN participants p ON p.chat_id = c.id \
             WHERE p.user_id = ? ORDER BY c.updated_at_ms DESC, c.id DESC LIMIT ? OFFSET ?"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.db.pool)
            .await?;
        let chats = rows.iter().map(chat_from_row).collect::<Result<Vec<_>>>()?;
        self.with_participants(chats).await
    }

    /// The ids of every chat the user is in, ascending (a participant's chat is active).
    pub async fn chat_ids_of(&self, user_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT chat_id FROM participants WHERE user_id = ? ORDER BY chat_id")
            .bind(user_id)
            .fetch_all(&self.db.pool)
            .await?;
        Ok(rows.iter().map(|row| row.try_get("chat_id")).collect::<std::result::Result<_, _>>()?)
    }

    /// Renames the chat, if `by` is an admin now; a new name is announced as `chat_updated`.
    #[tracing::instrument(skip(self, name))]
    pub async fn rename(&self, chat_id: i64, name: &GroupName, by: i64) -> Result<()> {
        let mut tx = self.lock_chat(chat_id).await?;
        Self::require_admin(&mut tx, chat_id, Some(by)).await?;
        let current: Option<String> = sqlx::query("SELECT name FROM chats WHERE id = ?")
            .bind(chat_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("name")?;
        // Compared here, byte for byte (a case-insensitive collation would call "Team" and "team" equal).
        let event = if current.as_deref() == Some(name.as_str()) {
            None
        } else {
            sqlx::query("UPDATE chats SET name = ? WHERE id = ?")
                .bind(name.as_str())
                .bind(chat_id)
                .execute(&mut *tx)
                .await?;
            let kind = Kind::ChatUpdated(ChatUpdated { name: name.as_str().to_owned(), by_user_id: by });
            Some(self.stage_chat_event(&mut tx, chat_id, kind).await?)
        };
        tx.commit().await?;
        self.announce(event.into_iter().collect()).await;
        Ok(())
    }

    /// Adds these users (members already there are skipped); refuses the
    /// whole change if the group would pass [`MAX_GROUP_MEMBERS`]. Returns who was added.
    #[tracing::instrument(skip_all, fields(chat_id, count = members.len()))]
    pub async fn add(&self, chat_id: i64, members: &[Member], now_ms: i64, by: i64) -> Result<Vec<i64>> {
        let mut tx = self.lock_chat(chat_id).await?;
        Self::require_admin(&mut tx, chat_id, Some(by)).await?;
        let current = Self::member_ids(&mut tx, chat_id).await?;
        let new: Vec<(&Member, bool)> =
            members.iter().filter(|member| !current.contains(&member.user_id)).map(|member| (member, false)).collect();
        if current.len() + new.len() > MAX_GROUP_MEMBERS {
            return Err(MetadataError::Rule(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members; it has {} and {} would be added",
                current.len(),
                new.len()
            )));
        }
        Self::insert_participants(&mut tx, chat_id, &new, now_ms).await?;
        let added: Vec<i64> = new.iter().map(|(member, _)| member.user_id).collect();
        let events = self.stage_membership(&mut tx, chat_id, true, &added, by).await?;
        tx.commit().await?;
        self.announce(events).await;
        Ok(added)
    }

    /// Removes a participant. If they were the last admin, the longest-standing
    /// remaining member becomes admin; if nobody is left, the chat becomes
    /// inactive. `false` when they were not a participant. With `admin`,
    /// only if that user is an admin now. `by` asked for it.
    #[tracing::instrument(skip(self))]
    pub async fn remove(&self, chat_id: i64, user_id: i64, admin: Option<i64>, by: i64) -> Result<bool> {
        let mut tx = self.lock_chat(chat_id).await?;
        Self::require_admin(&mut tx, chat_id, admin).await?;
        let row = sqlx::query("SELECT is_admin FROM participants WHERE chat_id = ? AND user_id = ?")
            .bind(chat_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let was_admin = row.try_get::<i64, _>("is_admin")? != 0;
        sqlx::query("DELETE FROM participants WHERE chat_id = ? AND user_id = ?")
            .bind(chat_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let remaining =
            sqlx::query("SELECT user_id, is_admin FROM participants WHERE chat_id = ? ORDER BY joined_at_ms, user_id")
                .bind(chat_id)
                .fetch_all(&mut *tx)
                .await?;
        let mut promoted = None;
        if remaining.is_empty() {
            sqlx::query("UPDATE chats SET is_active = 0 WHERE id = ?").bind(chat_id).execute(&mut *tx).await?;
        } else if was_admin {
            let admins_left =
                remaining.iter().filter(|row| row.try_get::<i64, _>("is_admin").is_ok_and(|a| a != 0)).count();
            if admins_left == 0 {
                let successor: i64 = remaining[0].try_get("user_id")?;
                sqlx::query("UPDATE participants SET is_admin = 1 WHERE chat_id = ? AND user_id = ?")
                    .bind(chat_id)
                    .bind(successor)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(chat_id, successor, "the last admin left; the longest-standing member is admin now");
                promoted = Some(successor);
            }
        }
        // The removal first: the leaver hears nothing of the chat after it.
        let mut events = self.stage_membership(&mut tx, chat_id, false, &[user_id], by).await?;
        if let Some(successor) = promoted {
            let kind = Kind::ParticipantUpdated(ParticipantUpdated {
                user_id: successor,
                is_admin: true,
                by_user_id: user_id,
            });
            events.push(self.stage_chat_event(&mut tx, chat_id, kind).await?);
        }
        tx.commit().await?;
        self.announce(events).await;
        Ok(true)
    }

    /// Promotes or demotes a participant; the last admin cannot step down.
    #[tracing::instrument(skip(self))]
    pub async fn set_admin(&self, chat_id: i64, user_id: i64, is_admin: bool, by: i64) -> Result<Participant> {
        let mut tx = self.lock_chat(chat_id).await?;
        Self::require_admin(&mut tx, chat_id, Some(by)).await?;
        let sql = format!("SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE chat_id = ? AND user_id = ?");
        let row = sqlx::query(&sql).bind(chat_id).bind(user_id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Err(MetadataError::NotFound("that user is not a participant of this chat".into()));
        };
        let (_, mut participant) = participant_from_row(&row)?;
        if participant.is_admin && !is_admin {
            let admins = sqlx::query("SELECT COUNT(*) AS n FROM participants WHERE chat_id = ? AND is_admin = 1")
                .bind(chat_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>("n")?;
            if admins <= 1 {
                return Err(MetadataError::Rule("the last admin cannot step down; promote someone first".into()));
            }
        }
        sqlx::query("UPDATE participants SET is_admin = ? WHERE chat_id = ? AND user_id = ?")
            .bind(i64::from(is_admin))
            .bind(chat_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let event = if participant.is_admin == is_admin {
            None
        } else {
            let kind = Kind::ParticipantUpdated(ParticipantUpdated { user_id, is_admin, by_user_id: by });
            Some(self.stage_chat_event(&mut tx, chat_id, kind).await?)
        };
        tx.commit().await?;
        self.announce(event.into_iter().collect()).await;
        participant.is_admin = is_admin;
        Ok(participant)
    }

    /// Moves each chat's `updated_at` forward to its time (never back), in
    /// one transaction, chats in id order (two callers never wait on each other in a cycle).
    #[tracing::instrument(skip_all, fields(chats = touches.len()))]
    pub async fn touch(&self, touches: &[(i64, i64)]) -> Result<()> {
        if touches.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        for (chat_id, at_ms) in touches {
            sqlx::query("UPDATE chats SET updated_at_ms = ? WHERE id = ? AND updated_at_ms < ?")
                .bind(*at_ms)
                .bind(*chat_id)
                .bind(*at_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The memberships of many `(chat, user)` pairs, in order, in one query.
    #[tracing::instrument(skip_all, fields(pairs = pairs.len()))]
    pub async fn memberships(&self, pairs: &[(i64, i64)]) -> Result<Vec<Found>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let chats: HashSet<i64> = pairs.iter().map(|(chat_id, _)| *chat_id).collect();
        let users: HashSet<i64> = pairs.iter().map(|(_, user_id)| *user_id).collect();
        let sql = format!(
            "SELECT c.id AS chat_id, p.user_id AS user_id, p.is_admin AS is_admin \
             FROM chats c LEFT JOIN participants p ON p.chat_id = c.id AND p.user_id IN ({}) WHERE c.id IN ({})",
            placeholders(users.len(), "?"),
            placeholders(chats.len(), "?")
        );
        let mut query = sqlx::query(&sql);
        for user_id in &users {
            query = query.bind(*user_id);
        }
        for chat_id in &chats {
            query = query.bind(*chat_id);
        }
        let mut existing = HashSet::new();
        let mut participants = HashMap::new();
        for row in query.fetch_all(&self.db.pool).await? {
            let chat_id: i64 = row.try_get("chat_id")?;
            existing.insert(chat_id);
            if let Some(user_id) = row.try_get::<Option<i64>, _>("user_id")? {
                participants.insert((chat_id, user_id), row.try_get::<i64, _>("is_admin")? != 0);
            }
        }
        Ok(pairs
            .iter()
            .map(|pair| Found { chat_exists: existing.contains(&pair.0), participant: participants.get(pair).copied() })
            .collect())
    }
}
