//! The gateway's rate limits: token buckets per key, in this replica's memory.
//!
//! - **Writes** (sending and editing messages, over REST or WebSocket): per
//!   user, `MESSAGE_RATE_PER_SECOND` (default 10) with bursts of
//!   `MESSAGE_BURST` (default 30). Over it: 429 with `Retry-After`, or an
//!   `error` frame with code `rate_limited` on a socket (which stays open).
//! - **Registrations**: per client address, `REGISTRATIONS_PER_MINUTE`
//!   (default 30) with bursts of `REGISTRATION_BURST` (default 300: an office
//!   behind one NAT signing up at once).
//! - Failed logins are limited by auth, which knows the accounts (see
//!   `auth::login_limits`).
//!
//! A limit of 0 turns it off. The buckets are per replica: behind N replicas
//! a client that spreads its requests gets up to N times the limit (a load
//! balancer with sticky sessions, or a shared store, would close that gap).

use std::net::IpAddr;

use env_config::ConfigError;
pub use rate_limit::{Limiter, Rate, retry_after_secs};

/// The gateway's limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    pub writes: Rate,
    pub registrations: Rate,
}

impl LimitSettings {
    pub const OFF: Self = Self { writes: Rate::OFF, registrations: Rate::OFF };

    pub fn from_env() -> Result<Self, ConfigError> {
        let writes_per_second: f64 = env_config::parsed_or("MESSAGE_RATE_PER_SECOND", 10.0)?;
        let burst: f64 = env_config::parsed_or("MESSAGE_BURST", 30.0)?;
        let registrations_per_minute: f64 = env_config::parsed_or("REGISTRATIONS_PER_MINUTE", 30.0)?;
        let registration_burst: f64 = env_config::parsed_or("REGISTRATION_BURST", 300.0)?;
        for (variable, value) in [
            ("MESSAGE_RATE_PER_SECOND", writes_per_second),
            ("MESSAGE_BURST", burst),
            ("REGISTRATIONS_PER_MINUTE", registrations_per_minute),
            ("REGISTRATION_BURST", registration_burst),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::invalid(variable, &value.to_string(), "expected a number ≥ 0 (0: no limit)"));
            }
        }
        for (rate, variable, burst) in [
            (writes_per_second, "MESSAGE_BURST", burst),
            (registrations_per_minute, "REGISTRATION_BURST", registration_burst),
        ] {
            if rate > 0.0 && burst < 1.0 {
                return Err(ConfigError::invalid(variable, &burst.to_string(), "expected at least 1"));
            }
        }
        Ok(Self {
            writes: Rate { per_second: writes_per_second, burst },
            registrations: Rate { per_second: registrations_per_minute / 60.0, burst: registration_burst },
        })
    }
}

/// The gateway's limiters.
#[derive(Debug)]
pub struct Limits {
    /// Sends and edits, by user id.
    pub writes: Limiter<i64>,
    /// Registrations, by client address.
    pub registrations: Limiter<IpAddr>,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Self { writes: Limiter::new(settings.writes), registrations: Limiter::new(settings.registrations) }
    }
}
