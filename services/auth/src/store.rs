//! The user store: one set of queries for MySQL/MariaDB and SQLite, through `sqlx::Any`.

use sql_pool::Db;
use sqlx::{Row, any::AnyRow};

use crate::{
    domain::{Email, NewUser, SearchQuery, User},
    error::AuthError,
};

/// The user store's migrations, for MySQL and for SQLite.
pub fn migrations() -> (sqlx::migrate::Migrator, sqlx::migrate::Migrator) {
    (sqlx::migrate!("./migrations/mysql"), sqlx::migrate!("./migrations/sqlite"))
}

const USER_COLUMNS: &str = "id, username, email, full_name, is_active, created_at_ms, last_seen_ms";

/// Users and their password hashes.
#[derive(Debug, Clone)]
pub struct UserStore {
    db: Db,
}

/// A user with the hash needed to check their password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    /// The version new tokens are issued at (a password change moves it up).
    pub token_version: i64,
}

/// A user's token version, and when it last moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenVersionChange {
    pub user_id: i64,
    pub version: i64,
    pub changed_at_ms: i64,
}

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        created_at_ms: row.try_get("created_at_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

fn credentials_from_row(row: &AnyRow) -> Result<Credentials, sqlx::Error> {
    Ok(Credentials {
        user: user_from_row(row)?,
        password_hash: row.try_get("password_hash")?,
        token_version: row.try_get("token_version")?,
    })
}

/// A duplicate-key error as `Taken`, naming the unique key it hit; other errors as they are.
fn unique_or_other(error: sqlx::Error) -> AuthError {
    match &error {
        sqlx::Error::Database(db_error) if sql_pool::is_unique_violation(&error) => {
            AuthError::Taken { field: if db_error.message().contains("email") { "email" } else { "username" } }
        }
        _ => error.into(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl UserStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts a user; `Taken` when the username or email is already registered.
    #[tracing::instrument(skip_all, fields(username = new.username.as_str()))]
    pub async fn insert(&self, new: &NewUser, password_hash: &str) -> Result<User, AuthError> {
        let created_at_ms = now_ms();
        let full_name = new.full_name.clone().map(|name| name.into_inner());
        let sql = self.db.returning_id(
            "INSERT INTO users (username, username_lower, email, full_name, password_hash, is_active, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, 1, ?)",
        );
        let query = sqlx::query(&sql)
            .bind(new.username.as_str())
            .bind(new.username.lowercase())
            .bind(new.email.as_str())
            .bind(full_name.clone())
            .bind(password_hash)
            .bind(created_at_ms);
        let id = self.db.insert_returning_id(&self.db.pool, query).await.map_err(unique_or_other)?;
        Ok(User {
            id,
            username: new.username.as_str().to_owned(),
            email: new.email.as_str().to_owned(),
            full_name,
            is_active: true,
            created_at_ms,
            last_seen_ms: None,
        })
    }

    /// The user with this username (any case) or, when it has an `@`, this email.
    #[tracing::instrument(skip(self))]
    pub async fn credentials(&self, username_or_email: &str) -> Result<Option<Credentials>, AuthError> {
        let key = crate::domain::login_key(username_or_email);
        let column = if key.contains('@') { "email" } else { "username_lower" };
        let sql = format!("SELECT {USER_COLUMNS}, password_hash, token_version FROM users WHERE {column} = ?");
        let row = sqlx::query(&sql).bind(key).fetch_optional(&self.db.pool).await?;
        Ok(row.as_ref().map(credentials_from_row).transpose()?)
    }

    /// The user with this id, with their password hash.
    pub async fn credentials_by_id(&self, id: i64) -> Result<Option<Credentials>, AuthError> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash, token_version FROM users WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.db.pool).await?;
        Ok(row.as_ref().map(credentials_from_row).transpose()?)
    }

    #[tracing::instrument(skip(self))]
    pub async fn by_id(&self, id: i64) -> Result<Option<User>, AuthError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.db.pool).await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// The users with these ids that exist, in id order.
    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    pub async fn by_ids(&self, ids: &[i64]) -> Result<Vec<User>, AuthError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = sql_pool::placeholders(ids.len(), "?");
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ({placeholders}) ORDER BY id");
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    /// Records a successful login.
    pub async fn touch_last_seen(&self, id: i64, at_ms: i64) -> Result<(), AuthError> {
        sqlx::query("UPDATE users SET last_seen_ms = ? WHERE id = ?")
            .bind(at_ms)
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Applies the given changes (a `None` leaves a column as it is).
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn update(
        &self,
        id: i64,
        email: Option<&Email>,
        full_name: Option<Option<String>>,
        password_hash: Option<&str>,
    ) -> Result<User, AuthError> {
        let mut sets = Vec::new();
        if email.is_some() {
            sets.push("email = ?");
        }
        if full_name.is_some() {
            sets.push("full_name = ?");
        }
        if password_hash.is_some() {
            // Every token issued before stops working (see access_token::TokenVersions).
            sets.push("password_hash = ?, token_version = token_version + 1, tokens_changed_at_ms = ?");
        }
        if !sets.is_empty() {
            let sql = format!("UPDATE users SET {} WHERE id = ?", sets.join(", "));
            let mut query = sqlx::query(&sql);
            if let Some(email) = email {
                query = query.bind(email.as_str().to_owned());
            }
            if let Some(full_name) = full_name {
                query = query.bind(full_name);
            }
            if let Some(hash) = password_hash {
                query = query.bind(hash.to_owned()).bind(now_ms());
            }
            query.bind(id).execute(&self.db.pool).await.map_err(unique_or_other)?;
        }
        self.by_id(id).await?.ok_or(AuthError::NotFound)
    }

    /// The token versions that moved after the cursor `(since_ms, after_user_id)`
    /// (at `since_ms` only above that user), in cursor order (at most `limit`).
    #[tracing::instrument(skip(self))]
    pub async fn token_versions_since(
        &self,
        since_ms: i64,
        after_user_id: i64,
        limit: u32,
    ) -> Result<Vec<TokenVersionChange>, AuthError> {
        let rows = sqlx::query(
            "SELECT id, token_version, tokens_changed_at_ms FROM users \
             WHERE tokens_changed_at_ms >= ? AND (tokens_changed_at_ms > ? OR id > ?) \
             ORDER BY tokens_changed_at_ms, id LIMIT ?",
        )
        .bind(since_ms)
        .bind(since_ms)
        .bind(after_user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenVersionChange {
                    user_id: row.try_get("id")?,
                    version: row.try_get("token_version")?,
                    changed_at_ms: row.try_get("tokens_changed_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AuthError::from)
    }

    /// Users whose username or full name contains the query (any case), those
    /// starting with it first, each group by username in any case.
    #[tracing::instrument(skip(self))]
    pub async fn search(
        &self,
        query: &SearchQuery,
        limit: u32,
        offset: u32,
        exclude_user_id: i64,
    ) -> Result<Vec<User>, AuthError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE id <> ? AND (instr(username_lower, ?) > 0 OR instr(lower(coalesce(full_name, '')), ?) > 0) \
             ORDER BY CASE WHEN instr(username_lower, ?) = 1 OR instr(lower(coalesce(full_name, '')), ?) = 1 \
                      THEN 0 ELSE 1 END, username_lower \
             LIMIT ? OFFSET ?"
        );
        let needle = query.needle();
        let rows = sqlx::query(&sql)
            .bind(exclude_user_id)
            .bind(needle)
            .bind(needle)
            .bind(needle)
            .bind(needle)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.db.pool)
            .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }
}
