//! The standalone server's settings: everything has a default.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rand::Rng;
use secrecy::SecretString;
use url::Url;

/// Where data lives when `DATA_DIR` is not set.
pub const DEFAULT_DATA_DIR: &str = "data";
const SECRET_FILE: &str = "secret_key";
/// The one SQLite file every service shared before each got its own (still used where it exists).
const SHARED_DATABASE: &str = "chat.db";

pub struct Settings {
    pub auth: auth::Settings,
    pub metadata: chat_metadata::Settings,
    pub messages: message_store::Settings,
    pub gateway: gateway::Settings,
    /// `NATS_SUBJECT_PREFIX` of the in-process bus (kept for symmetry with the distributed deployment).
    pub subjects: event_bus::Subjects,
}

impl Settings {
    /// `DATA_DIR` (default `./data`) holds the SQLite files and, unless
    /// `SECRET_KEY` is set, the generated signing key. `DATABASE_URL` may point
    /// elsewhere (SQLite or MySQL). The internal gRPC services listen on
    /// loopback ports of their own choosing.
    pub fn from_env() -> anyhow::Result<Self> {
        let data_dir = PathBuf::from(env_config::string("DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create DATA_DIR={}", data_dir.display()))?;
        let secret = match env_config::string("SECRET_KEY") {
            Some(secret) => SecretString::from(secret),
            None => load_or_create_secret(&data_dir)?,
        };
        let [auth_db, chats_db, messages_db] = databases(&data_dir)?;
        tracing::info!(
            auth = %sql_pool::redacted(&auth_db),
            chats = %sql_pool::redacted(&chats_db),
            messages = %sql_pool::redacted(&messages_db),
            "standalone storage"
        );
        // The internal services listen on loopback ports of their own; the
        // addresses they are reached at are filled in once they are bound.
        let loopback = "127.0.0.1:0".parse()?;
        // Only these services call each other: a fresh credential every start.
        let security = grpc_channel::Security::generated();
        let mut auth = auth::Settings::from_env_with(auth_db, secret.clone(), security.clone())?;
        auth.grpc_addr = loopback;
        let mut metadata = chat_metadata::Settings::from_env_with(chats_db, secret.clone(), security.clone())?;
        metadata.grpc_addr = loopback;
        let sql = message_store::ContentBackend::Sql;
        let mut messages = message_store::Settings::from_env_with(messages_db, sql, secret.clone(), security.clone())?;
        messages.grpc_addr = loopback;
        let mut gateway = gateway::Settings::from_env_with(secret, security)?;
        // Every service's metrics, on an admin listener of loopback by default;
        // a default port that is taken (node_exporter's is 9100 too) only costs the metrics.
        gateway.metrics_addr = env_config::listen_addr_or_off("METRICS_ADDR", "127.0.0.1:9100".parse()?)?;
        gateway.metrics_optional = env_config::string("METRICS_ADDR").is_none();
        Ok(Self { auth, metadata, messages, gateway, subjects: event_bus::Subjects::from_env()? })
    }
}

/// The databases of auth, chat-metadata and message-store: `DATABASE_URL`
/// (or `MYSQL_*`) for all three when set; else one SQLite file each in the
/// data directory (`auth.db`, `chats.db`, `messages.db`: each service commits
/// without waiting for another's write lock), or the one `chat.db` a data
/// directory from before this layout holds.
fn databases(data_dir: &Path) -> anyhow::Result<[Url; 3]> {
    if let Some(url) = sql_pool::url_from_env()? {
        return Ok([url.clone(), url.clone(), url]);
    }
    let shared = data_dir.join(SHARED_DATABASE);
    if shared.exists() {
        let url = sqlite_url(&shared)?;
        return Ok([url.clone(), url.clone(), url]);
    }
    Ok([
        sqlite_url(&data_dir.join("auth.db"))?,
        sqlite_url(&data_dir.join("chats.db"))?,
        sqlite_url(&data_dir.join("messages.db"))?,
    ])
}

fn sqlite_url(path: &Path) -> anyhow::Result<Url> {
    let absolute = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Url::parse(&format!("sqlite://{}", absolute.display())).context("the SQLite path is not a valid URL")
}

/// The signing key kept in the data directory, made on first run.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join(SECRET_FILE);
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= access_token::MIN_SECRET_LEN {
            tracing::info!(path = %path.display(), "SECRET_KEY not set: using the key kept in the data directory");
            return Ok(SecretString::from(secret));
        }
        anyhow::bail!(
            "{} holds a key shorter than {} characters; delete it or set SECRET_KEY",
            path.display(),
            access_token::MIN_SECRET_LEN
        );
    }
    let secret: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(64).map(char::from).collect();
    let mut file = create_private(&path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "SECRET_KEY not set: generated a random signing key and kept it in the data directory"
    );
    Ok(SecretString::from(secret))
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}
