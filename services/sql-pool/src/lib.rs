//! Chooses and opens the SQL database of a chat service — MySQL/MariaDB for
//! the distributed deployment, SQLite for the standalone default — and runs
//! the service's migrations for that backend.
//!
//! Queries go through `sqlx::Any` so one statement serves both backends;
//! the few statements that differ ask [`Db::backend`].

use std::time::Duration;

use env_config::ConfigError;
use sqlx::{
    Any, AnyPool, ConnectOptions, Connection, Executor, Row,
    any::{AnyArguments, AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
    query::Query,
};
use url::Url;

/// Which SQL dialect a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MySql,
    Sqlite,
}

/// A connection pool with the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach the database at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The database URL from the environment: `DATABASE_URL` (`mysql:` or
/// `sqlite:`) when set, else a MySQL URL built from `MYSQL_HOST`,
/// `MYSQL_PORT`, `MYSQL_USER`, `MYSQL_PASSWORD` and `MYSQL_DATABASE` when any
/// of them is set, else `None`.
pub fn url_from_env() -> Result<Option<Url>, ConfigError> {
    if let Some(url) = env_config::url("DATABASE_URL", &["mysql", "mariadb", "sqlite"])? {
        return Ok(Some(url));
    }
    let any_mysql = ["MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"]
        .iter()
        .any(|name| env_config::string(name).is_some());
    if any_mysql { mysql_url_from_env().map(Some) } else { Ok(None) }
}

/// A MySQL URL from the `MYSQL_*` variables, with the defaults
/// `localhost:3306`, user `root`, no password, database `chat`.
pub fn mysql_url_from_env() -> Result<Url, ConfigError> {
    let host = env_config::string("MYSQL_HOST").unwrap_or_else(|| "localhost".into());
    let port: u16 = env_config::parsed_or("MYSQL_PORT", 3306)?;
    let user = env_config::string("MYSQL_USER").unwrap_or_else(|| "root".into());
    let password = env_config::string("MYSQL_PASSWORD");
    let database = env_config::string("MYSQL_DATABASE").unwrap_or_else(|| "chat".into());
    let mut url = Url::parse("mysql://localhost/").map_err(|e| ConfigError::invalid("MYSQL_HOST", &host, e))?;
    url.set_host(Some(&host)).map_err(|e| ConfigError::invalid("MYSQL_HOST", &host, e))?;
    let _ = url.set_port(Some(port));
    let _ = url.set_username(&user);
    let _ = url.set_password(password.as_deref());
    if !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ConfigError::invalid("MYSQL_DATABASE", &database, "use letters, digits and _ only"));
    }
    url.set_path(&database);
    Ok(url)
}

/// The URL with its password hidden, for logs.
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// Pool sizing and waiting.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a query waits for a connection before the service answers "unavailable".
    pub acquire_timeout: Duration,
    /// How long start-up keeps trying to reach the database.
    pub startup_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(3), startup_timeout: Duration::from_secs(30) }
    }
}

impl Db {
    /// Opens the database at `url`, creating it (SQLite file or MySQL database)
    /// when it does not exist yet, and retrying for `startup_timeout` while the
    /// server is unreachable.
    pub async fn connect(url: &Url, settings: &PoolSettings) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = match url.scheme() {
            "sqlite" => Backend::Sqlite,
            _ => Backend::MySql,
        };
        let url = normalized(url, backend);
        let deadline = tokio::time::Instant::now() + settings.startup_timeout;
        loop {
            match Self::try_connect(&url, backend, settings).await {
                Ok(db) => return Ok(db),
                Err(source) if tokio::time::Instant::now() < deadline && is_transient(&source) => {
                    tracing::warn!(url = %redacted(&url), error = %source, "database not reachable yet, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(source) => return Err(DbError::Connect { url: redacted(&url), source }),
            }
        }
    }

    async fn try_connect(url: &Url, backend: Backend, settings: &PoolSettings) -> Result<Self, sqlx::Error> {
        if backend == Backend::MySql {
            create_mysql_database(url).await?;
        }
        let options: AnyConnectOptions = url.as_str().parse()?;
        let options = options.disable_statement_logging();
        let mut pool_options =
            AnyPoolOptions::new().max_connections(settings.max_connections).acquire_timeout(settings.acquire_timeout);
        if backend == Backend::Sqlite {
            // WAL with synchronous = FULL: a commit is fsynced before it is
            // answered (it survives a power cut). Checkpoints run in the
            // background (`checkpoint_in_background`), not in whichever commit
            // happens to fill the WAL; the automatic one is only a backstop.
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                         PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 20000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await?;
        if backend == Backend::Sqlite {
            checkpoint_in_background(pool.clone());
        }
        Ok(Self { pool, backend })
    }

    /// Runs the migrations of this backend.
    ///
    /// Services may share one database (the standalone binary does): each
    /// numbers its migrations in a range of its own (auth 1xxx, chat-metadata
    /// 2xxx, message-store 3xxx) and ignores the others' in the shared table.
    pub async fn migrate(&self, mysql: Migrator, sqlite: Migrator) -> Result<(), DbError> {
        let mut migrator = match self.backend {
            Backend::MySql => mysql,
            Backend::Sqlite => sqlite,
        };
        migrator.set_ignore_missing(true);
        // Services sharing a database start together; a migration another one is
        // applying right now looks "dirty" for a moment (seen on MariaDB despite
        // the migrator's advisory lock), so wait for it rather than fail.
        let mut attempts = 0;
        loop {
            match migrator.run(&self.pool).await {
                Err(sqlx::migrate::MigrateError::Dirty(version)) if attempts < 40 => {
                    attempts += 1;
                    tracing::info!(version, "another service is applying a migration; waiting");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                result => return result.map_err(DbError::from),
            }
        }
    }

    /// The INSERT statement with what this backend needs to report the new row's id
    /// (SQLite through `Any` reports no last insert id; MySQL has no `RETURNING`).
    pub fn returning_id(&self, insert: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("{insert} RETURNING id"),
            Backend::MySql => insert.to_owned(),
        }
    }

    /// Runs an INSERT built from [`Db::returning_id`] on `executor` (the pool
    /// or a transaction); the new row's id.
    pub async fn insert_returning_id<'q, 'e, E>(
        &self,
        executor: E,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<i64, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        match self.backend {
            Backend::Sqlite => query.fetch_one(executor).await?.try_get(0),
            Backend::MySql => query
                .execute(executor)
                .await?
                .last_insert_id()
                .ok_or_else(|| sqlx::Error::Protocol("the database reported no id for the new row".into())),
        }
    }

    /// Opens the database (as [`Db::connect`]) and runs this service's migrations.
    pub async fn open(url: &Url, settings: &PoolSettings, migrations: (Migrator, Migrator)) -> Result<Self, DbError> {
        let db = Self::connect(url, settings).await?;
        db.migrate(migrations.0, migrations.1).await?;
        Ok(db)
    }

    /// A health check for `grpc_channel::GrpcServer::serve`: whether the database answers now.
    pub fn health_check(&self) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + 'static {
        let db = self.clone();
        move || {
            let db = db.clone();
            Box::pin(async move { db.ping().await })
        }
    }

    /// Whether the database answers a trivial query now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// `count` copies of `one`, comma-separated: the `?`s of an `IN (…)`, or the
/// row tuples of a multi-row `VALUES` (`placeholders(2, "(?, ?)")`).
pub fn placeholders(count: usize, one: &str) -> String {
    vec![one; count].join(", ")
}

/// How often SQLite's WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies SQLite's WAL into the database file every [`CHECKPOINT_EVERY`],
/// without waiting for readers or writers (`PASSIVE`), on a connection of its
/// own, for as long as the pool is open: a commit never pays for a
/// checkpoint (seen as 50–100 ms stalls of a send every few seconds).
fn checkpoint_in_background(pool: AnyPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!(%error, "background WAL checkpoint failed; the next one tries again");
            }
        }
    });
}

/// Whether an error means "the database is not reachable (yet)" rather than a bug.
pub fn is_transient(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
    ) || matches!(error, sqlx::Error::Tls(_))
        // Contention that outlasted the lock wait (SQLite busy past busy_timeout,
        // a MySQL lock wait timeout or deadlock): the client may retry (503), it is no bug (500).
        || is_retryable(error)
}

/// Whether an error is a unique-key violation (a duplicate that a unique index refused).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db_error) if matches!(db_error.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// Whether a transaction failed only because of contention and may simply be
/// run again: a MySQL deadlock or lock wait timeout, or SQLite being busy.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db_error) = error else { return false };
    let code = db_error.code();
    let code = code.as_deref().unwrap_or_default();
    // MySQL SQLSTATE 40001 (deadlock), HY000 with "Lock wait timeout"; SQLite 5 (BUSY), 6 (LOCKED), 517 (BUSY_SNAPSHOT).
    matches!(code, "40001" | "5" | "6" | "261" | "517") || db_error.message().contains("Lock wait timeout")
}

/// SQLite files are created on first use.
fn normalized(url: &Url, backend: Backend) -> Url {
    let mut url = url.clone();
    if backend == Backend::Sqlite && !url.query_pairs().any(|(key, _)| key == "mode") {
        url.query_pairs_mut().append_pair("mode", "rwc");
    }
    url
}

/// `CREATE DATABASE IF NOT EXISTS` for the database named in a MySQL URL.
async fn create_mysql_database(url: &Url) -> Result<(), sqlx::Error> {
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        database_name(url)?
    );
    on_mysql_server(url, &sql).await
}

/// Drops a MySQL database (tests clean up the databases they made).
pub async fn drop_mysql_database(url: &Url) -> Result<(), sqlx::Error> {
    let sql = format!("DROP DATABASE IF EXISTS `{}`", database_name(url)?);
    on_mysql_server(url, &sql).await
}

/// The database named in a MySQL URL, checked to be safe to quote.
fn database_name(url: &Url) -> Result<String, sqlx::Error> {
    let database = url.path().trim_start_matches('/').to_owned();
    if database.is_empty() || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(sqlx::Error::Configuration(
            format!("database name {database:?}: use letters, digits and _ only").into(),
        ));
    }
    Ok(database)
}

/// Runs one statement on the server of a MySQL URL, outside any database.
async fn on_mysql_server(url: &Url, sql: &str) -> Result<(), sqlx::Error> {
    let mut server = url.clone();
    server.set_path("");
    let options: sqlx::mysql::MySqlConnectOptions = server.as_str().parse()?;
    let mut conn = options.disable_statement_logging().connect().await?;
    conn.execute(sql).await?;
    conn.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_opened_read_write_create() {
        let url = Url::parse("sqlite:///tmp/chat.db").unwrap();
        assert_eq!(normalized(&url, Backend::Sqlite).as_str(), "sqlite:///tmp/chat.db?mode=rwc");
    }

    #[test]
    fn passwords_are_hidden_in_logs() {
        let url = Url::parse("mysql://root:hunter2@db:3306/chat").unwrap();
        assert_eq!(redacted(&url), "mysql://root:***@db:3306/chat");
    }
}

#[cfg(feature = "testing")]
pub mod testing;
