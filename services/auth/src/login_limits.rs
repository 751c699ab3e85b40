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
//! account pays into a bucket of the name it gave (normalised, hashed), so
//! the limit says nothing about which accounts exist. The client address
//! comes from the gateway (`LoginRequest.client_addr`), IPv6 counted by its
//! /64; calls without one share one bucket. A password change's check of the
//! current password pays like a login (`UpdateUser` has no address: one
//! bucket per account), so a stolen token cannot guess it at leisure.

use std::{
    hash::{BuildHasher as _, Hasher as _},
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
            if !per_minute.is_finite() || per_minute < 0.0 || (per_minute > 0.0 && per_minute < 1.0) {
                return Err(ConfigError::invalid(
                    variable,
                    &per_minute.to_string(),
                    "expected 0 (no limit) or at least 1",
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

/// What a login names.
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    /// An account that exists.
    Known(i64),
    /// A name (or email) no account has, as given.
    Unknown(&'a str),
}

/// The per-account bucket's key: the account, or the hash of an unknown name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AccountKey {
    Id(i64),
    Name(u64),
}

/// The two limiters.
#[derive(Debug)]
pub struct LoginLimits {
    per_account: Limiter<(AccountKey, Option<IpAddr>)>,
    per_address: Limiter<Option<IpAddr>>,
    /// Keys unknown names (random per process: nobody can aim at a bucket).
    names: std::collections::hash_map::RandomState,
}

/// An attempt that has paid; [`LoginLimits::succeeded`] refunds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    account: AccountKey,
    address: Option<IpAddr>,
}

impl LoginLimits {
    pub fn new(settings: LoginLimitSettings) -> Self {
        Self {
            per_account: Limiter::new(settings.per_account),
            per_address: Limiter::new(settings.per_address),
            names: Default::default(),
        }
    }

    fn key(&self, account: Account<'_>) -> AccountKey {
        match account {
            Account::Known(id) => AccountKey::Id(id),
            Account::Unknown(name) => {
                let mut hasher = self.names.build_hasher();
                hasher.write(crate::domain::login_key(name).as_bytes());
                AccountKey::Name(hasher.finish())
            }
        }
    }

    /// Pays for one attempt at `account` from `address`, or says how long until one may be made.
    pub fn attempt(&self, account: Account<'_>, address: Option<IpAddr>, now: Instant) -> Result<Attempt, Duration> {
        let (account, address) = (self.key(account), address.map(rate_limit::address_key));
        self.per_account.take(&(account, address), now)?;
        if let Err(wait) = self.per_address.take(&address, now) {
            self.per_account.give_back(&(account, address), now);
            return Err(wait);
        }
        Ok(Attempt { account, address })
    }

    /// The password was right: the attempt costs nothing.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        self.per_account.give_back(&(attempt.account, attempt.address), now);
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
            limits.attempt(Account::Known(7), addr(1), now).unwrap();
        }
        assert!(limits.attempt(Account::Known(7), addr(1), now).is_err(), "the guesser is out of tries");
        assert!(limits.attempt(Account::Known(7), addr(2), now).is_ok(), "the owner, elsewhere, is not locked out");
        assert!(limits.attempt(Account::Known(8), addr(1), now).is_ok(), "another account has its own bucket");
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let limits = limits(10.0, 5.0);
        let now = Instant::now();
        for account in 0..5 {
            limits.attempt(Account::Known(account), addr(1), now).unwrap();
        }
        assert!(limits.attempt(Account::Known(99), addr(1), now).is_err());
        assert!(limits.attempt(Account::Unknown("nobody"), addr(1), now).is_err(), "unknown accounts count too");
        assert!(limits.attempt(Account::Known(99), addr(2), now).is_ok());
    }

    #[test]
    fn a_refused_attempt_costs_the_account_nothing() {
        let limits = limits(2.0, 1.0);
        let now = Instant::now();
        limits.attempt(Account::Known(1), addr(1), now).unwrap();
        assert!(limits.attempt(Account::Known(2), addr(1), now).is_err(), "the address is spent");
        // Account 2 from address 1 still has both its tries once the address refills.
        let later = now + Duration::from_secs(60);
        limits.attempt(Account::Known(2), addr(1), later).unwrap();
        limits.attempt(Account::Known(2), addr(3), later).unwrap();
    }

    #[test]
    fn a_right_password_gives_the_tokens_back() {
        let limits = limits(1.0, 1.0);
        let now = Instant::now();
        for _ in 0..10 {
            let attempt = limits.attempt(Account::Known(1), addr(1), now).unwrap();
            limits.succeeded(attempt, now);
        }
    }

    #[test]
    fn unknown_names_have_buckets_like_accounts_so_limits_reveal_nothing() {
        let limits = limits(2.0, 100.0);
        let now = Instant::now();
        for _ in 0..2 {
            limits.attempt(Account::Unknown("ghost"), addr(1), now).unwrap();
        }
        assert!(limits.attempt(Account::Unknown(" GHOST "), addr(1), now).is_err(), "the same name, as auth reads it");
        assert!(limits.attempt(Account::Unknown("someone-else"), addr(1), now).is_ok());
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_through_its_64() {
        let limits = limits(2.0, 100.0);
        let now = Instant::now();
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        limits.attempt(Account::Known(7), v6(1), now).unwrap();
        limits.attempt(Account::Known(7), v6(2), now).unwrap();
        assert!(limits.attempt(Account::Known(7), v6(3), now).is_err());
    }

    #[test]
    fn off_is_no_limit() {
        let limits = LoginLimits::new(LoginLimitSettings::OFF);
        for _ in 0..1000 {
            limits.attempt(Account::Known(1), addr(1), Instant::now()).unwrap();
        }
    }
}
