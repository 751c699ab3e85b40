//! The message-store service's settings, read from the environment.

use std::{net::SocketAddr, time::Duration};

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use sql_pool::PoolSettings;
use url::Url;

/// Where `/metrics` is served when `METRICS_ADDR` is not set (the distributed binary only).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9103";
/// Where message-store listens when `MESSAGES_GRPC_ADDR` is not set.
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50053";
/// Where chat-metadata is reached when `METADATA_GRPC_URL` is not set.
pub const DEFAULT_METADATA_URL: &str = "http://127.0.0.1:50052";

/// Where message content lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentBackend {
    /// The `messages` collection of MongoDB (`MONGODB_URL`, `MONGODB_DATABASE`).
    MongoDb { url: String, database: String },
    /// The `message_contents` table of the service's own SQL database.
    Sql,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` is served (`METRICS_ADDR`; `off` or unset in tests and the standalone server: none).
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: Url,
    pub pool: PoolSettings,
    pub metadata_url: Url,
    /// The chat-metadata service of this process, called without a socket (the standalone server).
    pub metadata_in_process: Option<grpc_channel::InProcess>,
    pub content: ContentBackend,
    /// How long a membership answer may be reused (`MEMBERSHIP_CACHE_SECONDS`, 0: never).
    pub membership_ttl: Duration,
    /// How forwarded user tokens are verified.
    pub tokens: TokenSettings,
    /// The internal credential calls must carry.
    pub security: grpc_channel::Security,
    /// How long calls in flight may take after SIGTERM (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: std::time::Duration,
}

impl Settings {
    /// For the distributed deployment: metadata from `DATABASE_URL` or the
    /// `MYSQL_*` variables; content in MongoDB unless `CONTENT_STORE=sql`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let database_url = match sql_pool::url_from_env()? {
            Some(url) => url,
            None => sql_pool::mysql_url_from_env()?,
        };
        let content = match env_config::string("CONTENT_STORE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("mongodb") => ContentBackend::MongoDb {
                url: env_config::url("MONGODB_URL", &["mongodb", "mongodb+srv"])?
                    .map_or_else(|| "mongodb://localhost:27017".to_owned(), |url| url.to_string()),
                database: env_config::string("MONGODB_DATABASE").unwrap_or_else(|| "chat".into()),
            },
            Some("sql") => ContentBackend::Sql,
            Some(other) => return Err(ConfigError::invalid("CONTENT_STORE", other, "expected mongodb or sql")),
        };
        let secret = access_token::secret_from_env()?;
        let mut settings = Self::from_env_with(database_url, content, secret, grpc_channel::Security::from_env()?)?;
        settings.metrics_addr =
            env_config::listen_addr_or_off("METRICS_ADDR", DEFAULT_METRICS_ADDR.parse().expect("valid default"))?;
        Ok(settings)
    }

    pub fn from_env_with(
        database_url: Url,
        content: ContentBackend,
        secret: SecretString,
        security: grpc_channel::Security,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            grpc_addr: env_config::parsed_or("MESSAGES_GRPC_ADDR", DEFAULT_GRPC_ADDR.parse().expect("valid default"))?,
            metrics_addr: None,
            database_url,
            pool: PoolSettings::default(),
            metadata_url: env_config::url("METADATA_GRPC_URL", &["http", "https"])?
                .unwrap_or_else(|| Url::parse(DEFAULT_METADATA_URL).expect("valid default")),
            metadata_in_process: None,
            content,
            membership_ttl: Duration::from_secs(env_config::parsed_or(
                "MEMBERSHIP_CACHE_SECONDS",
                crate::membership::DEFAULT_TTL.as_secs(),
            )?),
            tokens: TokenSettings::from_env(secret)?,
            security,
            shutdown_grace: shutdown::grace_from_env()?,
        })
    }
}
