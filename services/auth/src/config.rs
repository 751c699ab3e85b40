//! The auth service's settings, read from the environment.

use std::net::SocketAddr;

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use sql_pool::PoolSettings;
use url::Url;

/// Where `/metrics` is served when `METRICS_ADDR` is not set (the distributed binary only).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9101";
/// Where the auth service listens when `AUTH_GRPC_ADDR` is not set.
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The gRPC listen address; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` is served (`METRICS_ADDR`; `off` or unset in tests and the standalone server: none).
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: Url,
    pub pool: PoolSettings,
    pub tokens: TokenSettings,
    /// How many argon2 hashes may run at once.
    pub max_concurrent_hashes: usize,
    /// Failed-login limits (`LOGIN_FAILURES_PER_MINUTE`, `LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS`).
    pub login_limits: crate::login_limits::LoginLimitSettings,
    /// The internal credential calls must carry.
    pub security: grpc_channel::Security,
    /// How long calls in flight may take after SIGTERM (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: std::time::Duration,
}

impl Settings {
    /// For the distributed deployment: `SECRET_KEY` is required, the database
    /// comes from `DATABASE_URL` or the `MYSQL_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = access_token::secret_from_env()?;
        let database_url = match sql_pool::url_from_env()? {
            Some(url) => url,
            None => sql_pool::mysql_url_from_env()?,
        };
        let mut settings = Self::from_env_with(database_url, secret, grpc_channel::Security::from_env()?)?;
        settings.metrics_addr =
            env_config::listen_addr_or_off("METRICS_ADDR", DEFAULT_METRICS_ADDR.parse().expect("valid default"))?;
        Ok(settings)
    }

    /// The rest of the settings from the environment, around a given database and secret.
    pub fn from_env_with(
        database_url: Url,
        secret: SecretString,
        security: grpc_channel::Security,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            grpc_addr: env_config::parsed_or("AUTH_GRPC_ADDR", DEFAULT_GRPC_ADDR.parse().expect("valid default"))?,
            metrics_addr: None,
            database_url,
            pool: PoolSettings::default(),
            tokens: TokenSettings::from_env(secret)?,
            max_concurrent_hashes: env_config::parsed_or("AUTH_MAX_CONCURRENT_HASHES", default_hash_concurrency())?,
            login_limits: crate::login_limits::LoginLimitSettings::from_env()?,
            security,
            shutdown_grace: shutdown::grace_from_env()?,
        })
    }
}

/// One hash per core: argon2 is CPU-bound, more would only queue in memory.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}
