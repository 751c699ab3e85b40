//! Failed-login limits, kept by auth because auth knows which account a
//! login names (a username in any case or spacing, or the email: the same
//! account, the same bucket).
//!
//! Two buckets pay for each attempt:
//!
//! - **per account and client address** (`LOGIN_FAILURES_PER_MINUTE`,
//!   default 10): a guesser gets a few tries a minute at one account, and a
//!   guesser elsewhere cannot lock the owner out — the owner's own address has
//!   a bucket of its own;
//! - **per client address** (`LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS`,
//!   default 100): one address cannot spray guesses over many accounts.
//!
//! The tokens are taken *before* the password is checked, so concurrent
//! attempts cannot exceed the limit, and given back when the password was
//! right: a user who types it right is never slowed. A login naming no
//! account pays only the address bucket. The client address comes from the
//! gateway (`LoginRequest.client_addr`); calls without one share one bucket.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use env_config::ConfigError;
use rate_limit::{Limiter, Rate};

/// The limits' settings (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginLimitSettings {
    pub per_account: Rate,
    pub per_address: Rate,
}

impl LoginLimitSettings {
    pub const OFF: Self = Self { per_account: Rate::OFF, per_address: Rate::OFF };

    pub fn from_env() -> Result<Self, ConfigError> {
        let rate = |variable: &str, default: f64| -> Result<Rate, ConfigError> {
            let per_minute: f64 = env_config::parsed_or(variable, default)?;
            if !per_minute.is_finite() || per_minute < 0.0 {
                return Err(ConfigError::invalid(
                    variable,
                    &per_minute.to_string(),
                    "expected a number ≥ 0 (0: no limit)",
                ));
            }
            Ok(Rate::per_minute(per_minute))
        };
        Ok(Self {
            per_account: rate("LOGIN_FAILURES_PER_MINUTE", 10.0)?,
            per_address: rate("LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS", 100.0)?,
        })
    }
}

/// The two limiters.
#[derive(Debug)]
pub struct LoginLimits {
    per_account: Limiter<(i64, Option<IpAddr>)>,
    per_address: Limiter<Option<IpAddr>>,
}

/// An attempt that has paid; [`LoginLimits::succeeded`] refunds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    account: Option<i64>,
    address: Option<IpAddr>,
}

impl LoginLimits {
    pub fn new(settings: LoginLimitSettings) -> Self {
        Self { per_account: Limiter::new(settings.per_account), per_address: Limiter::new(settings.per_address) }
    }

    /// Pays for one attempt at `account` (None: the login names no account)
    /// from `address`, or says how long until one may be made.
    pub fn attempt(&self, account: Option<i64>, address: Option<IpAddr>, now: Instant) -> Result<Attempt, Duration> {
        if let Some(account) = account {
            self.per_account.take(&(account, address), now)?;
        }
        if let Err(wait) = self.per_address.take(&address, now) {
            if let Some(account) = account {
                self.per_account.give_back(&(account, address), now);
            }
            return Err(wait);
        }
        Ok(Attempt { account, address })
    }

    /// The password was right: the attempt costs nothing.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        if let Some(account) = attempt.account {
            self.per_account.give_back(&(account, attempt.address), now);
        }
        self.per_address.give_back(&attempt.address, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_account: f64, per_address: f64) -> LoginLimits {
        LoginLimits::new(LoginLimitSettings {
            per_account: Rate::per_minute(per_account),
            per_address: Rate::per_minute(per_address),
        })
    }

    fn addr(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([203, 0, 113, last]))
    }

    #[test]
    fn an_account_gets_its_tries_per_address_and_the_owner_keeps_theirs() {
        let limits = limits(3.0, 100.0);
        let now = Instant::now();
        for _ in 0..3 {
            limits.attempt(Some(7), addr(1), now).unwrap();
        }
        assert!(limits.attempt(Some(7), addr(1), now).is_err(), "the guesser is out of tries");
        assert!(limits.attempt(Some(7), addr(2), now).is_ok(), "the owner, elsewhere, is not locked out");
        assert!(limits.attempt(Some(8), addr(1), now).is_ok(), "another account has its own bucket");
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let limits = limits(10.0, 5.0);
        let now = Instant::now();
        for account in 0..5 {
            limits.attempt(Some(account), addr(1), now).unwrap();
        }
        assert!(limits.attempt(Some(99), addr(1), now).is_err());
        assert!(limits.attempt(None, addr(1), now).is_err(), "unknown accounts count too");
        assert!(limits.attempt(Some(99), addr(2), now).is_ok());
    }

    #[test]
    fn a_refused_attempt_costs_the_account_nothing() {
        let limits = limits(2.0, 1.0);
        let now = Instant::now();
        limits.attempt(Some(1), addr(1), now).unwrap();
        assert!(limits.attempt(Some(2), addr(1), now).is_err(), "the address is spent");
        // Account 2 from address 1 still has both its tries once the address refills.
        let later = now + Duration::from_secs(60);
        limits.attempt(Some(2), addr(1), later).unwrap();
        limits.attempt(Some(2), addr(3), later).unwrap();
    }

    #[test]
    fn a_right_password_gives_the_tokens_back() {
        let limits = limits(1.0, 1.0);
        let now = Instant::now();
        for _ in 0..10 {
            let attempt = limits.attempt(Some(1), addr(1), now).unwrap();
            limits.succeeded(attempt, now);
        }
    }

    #[test]
    fn off_is_no_limit() {
        let limits = LoginLimits::new(LoginLimitSettings::OFF);
        for _ in 0..1000 {
            limits.attempt(Some(1), addr(1), Instant::now()).unwrap();
        }
    }
}
