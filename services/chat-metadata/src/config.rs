//! The chat-metadata service's settings, read from the environment.

use std::net::SocketAddr;

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use sql_pool::PoolSettings;
use url::Url;

/// Where `/metrics` is served when `METRICS_ADDR` is not set (the distributed binary only).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9102";
/// Where chat-metadata listens when `METADATA_GRPC_ADDR` is not set.
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50052";
/// Where auth is reached when `AUTH_GRPC_URL` is not set.
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:50051";

#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` is served (`METRICS_ADDR`; `off` or unset in tests and the standalone server: none).
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: Url,
    pub pool: PoolSettings,
    pub auth_url: Url,
    /// The auth service of this process, called without a socket (the standalone server).
    pub auth_in_process: Option<grpc_channel::InProcess>,
    /// How forwarded user tokens are verified.
    pub tokens: TokenSettings,
    /// The internal credential calls must carry.
    pub security: grpc_channel::Security,
    /// How long calls in flight may take after SIGTERM (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: std::time::Duration,
}

impl Settings {
    /// The database from `DATABASE_URL` or the `MYSQL_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let database_url = match sql_pool::url_from_env()? {
            Some(url) => url,
            None => sql_pool::mysql_url_from_env()?,
        };
        let secret = access_token::secret_from_env()?;
        let mut settings = Self::from_env_with(database_url, secret, grpc_channel::Security::from_env()?)?;
        settings.metrics_addr =
            env_config::listen_addr_or_off("METRICS_ADDR", DEFAULT_METRICS_ADDR.parse().expect("valid default"))?;
        Ok(settings)
    }

    pub fn from_env_with(
        database_url: Url,
        secret: SecretString,
        security: grpc_channel::Security,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            grpc_addr: env_config::parsed_or("METADATA_GRPC_ADDR", DEFAULT_GRPC_ADDR.parse().expect("valid default"))?,
            metrics_addr: None,
            database_url,
            pool: PoolSettings::default(),
            auth_url: env_config::url("AUTH_GRPC_URL", &["http", "https"])?
                .unwrap_or_else(|| Url::parse(DEFAULT_AUTH_URL).expect("valid default")),
            auth_in_process: None,
            tokens: TokenSettings::from_env(secret)?,
            security,
            shutdown_grace: shutdown::grace_from_env()?,
        })
    }
}
