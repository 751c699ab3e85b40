//! Rate limits: token buckets per key, in this replica's memory.
//!
//! - **Writes** (sending and editing messages, over REST or WebSocket): per
//!   user, `MESSAGE_RATE_PER_SECOND` (default 10) with bursts of
//!   `MESSAGE_BURST` (default 30). Over it: 429 with `Retry-After`, or an
//!   `error` frame with code `rate_limited` on a socket (which stays open).
//! - **Failed logins**: per username, `LOGIN_FAILURES_PER_MINUTE` (default
//!   10); past them, logins of that username answer 429 until the bucket
//!   refills — password guessing gets a few tries a minute, a user who types
//!   their password right is never slowed.
//!
//! A limit of 0 turns it off. The buckets are per replica: behind N replicas
//! a client that spreads its requests gets up to N times the limit (a load
//! balancer with sticky sessions, or a shared store, would close that gap).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use env_config::ConfigError;

/// Buckets kept at most before the full (idle) ones are dropped.
const PRUNE_AT: usize = 10_000;

/// A rate and a burst; a zero rate is no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const OFF: Self = Self { per_second: 0.0, burst: 0.0 };

    fn is_off(self) -> bool {
        self.per_second <= 0.0
    }
}

/// The gateway's limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    pub writes: Rate,
    pub login_failures: Rate,
}

impl LimitSettings {
    pub const OFF: Self = Self { writes: Rate::OFF, login_failures: Rate::OFF };

    pub fn from_env() -> Result<Self, ConfigError> {
        let writes_per_second: f64 = env_config::parsed_or("MESSAGE_RATE_PER_SECOND", 10.0)?;
        let burst: f64 = env_config::parsed_or("MESSAGE_BURST", 30.0)?;
        let failures_per_minute: f64 = env_config::parsed_or("LOGIN_FAILURES_PER_MINUTE", 10.0)?;
        for (variable, value) in [
            ("MESSAGE_RATE_PER_SECOND", writes_per_second),
            ("MESSAGE_BURST", burst),
            ("LOGIN_FAILURES_PER_MINUTE", failures_per_minute),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::invalid(variable, &value.to_string(), "expected a number ≥ 0 (0: no limit)"));
            }
        }
        if writes_per_second > 0.0 && burst < 1.0 {
            return Err(ConfigError::invalid("MESSAGE_BURST", &burst.to_string(), "expected at least 1"));
        }
        Ok(Self {
            writes: Rate { per_second: writes_per_second, burst },
            login_failures: Rate { per_second: failures_per_minute / 60.0, burst: failures_per_minute },
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// The key's bucket, refilled up to `now`.
    fn refilled(&self, buckets: &HashMap<K, Bucket>, key: &K, now: Instant) -> Bucket {
        let Rate { per_second, burst } = self.rate;
        let bucket = buckets.get(key).copied().unwrap_or(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        Bucket { tokens: (bucket.tokens + elapsed * per_second).min(burst), at: now }
    }

    fn wait_for_one(&self, bucket: Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - bucket.tokens) / self.rate.per_second).max(0.0))
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let mut buckets = self.buckets();
        let mut bucket = self.refilled(&buckets, key, now);
        let outcome = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for_one(bucket))
        };
        buckets.insert(key.clone(), bucket);
        self.prune(&mut buckets, now);
        outcome
    }

    /// Whether `key` has a token, without taking it; how long until it has one if not.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let bucket = self.refilled(&self.buckets(), key, now);
        if bucket.tokens >= 1.0 { Ok(()) } else { Err(self.wait_for_one(bucket)) }
    }

    /// Drops the buckets that have refilled (they are as good as new) once there are many.
    fn prune(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        if buckets.len() < PRUNE_AT {
            return;
        }
        let Rate { per_second, burst } = self.rate;
        buckets.retain(|_, bucket| {
            bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * per_second < burst
        });
    }
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The gateway's limiters.
#[derive(Debug)]
pub struct Limits {
    /// Sends and edits, by user id.
    pub writes: Limiter<i64>,
    /// Failed logins, by lower-cased username.
    pub login_failures: Limiter<String>,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Self { writes: Limiter::new(settings.writes), login_failures: Limiter::new(settings.login_failures) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_SECOND: Rate = Rate { per_second: 10.0, burst: 3.0 };

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = Limiter::new(TEN_PER_SECOND);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(&1, start), Ok(()));
        }
        let wait = limiter.take(&1, start).expect_err("the burst is spent");
        assert!((Duration::from_millis(99)..=Duration::from_millis(101)).contains(&wait), "{wait:?}");
        assert_eq!(limiter.take(&2, start), Ok(()), "another key has its own bucket");
        assert_eq!(limiter.take(&1, start + Duration::from_millis(100)), Ok(()), "a token back after 1/rate");
        assert!(limiter.take(&1, start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let limiter = Limiter::new(TEN_PER_SECOND);
        let later = Instant::now() + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.take(&1, later), Ok(()));
        }
        assert!(limiter.take(&1, later).is_err());
    }

    #[test]
    fn check_does_not_take() {
        let limiter = Limiter::new(Rate { per_second: 1.0, burst: 1.0 });
        let now = Instant::now();
        assert_eq!(limiter.check(&"alice", now), Ok(()));
        assert_eq!(limiter.check(&"alice", now), Ok(()));
        assert_eq!(limiter.take(&"alice", now), Ok(()));
        assert!(limiter.check(&"alice", now).is_err());
    }

    #[test]
    fn off_is_no_limit() {
        let limiter = Limiter::new(Rate::OFF);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.take(&1, now), Ok(()));
        }
    }

    #[test]
    fn full_buckets_are_pruned_once_there_are_many() {
        let limiter = Limiter::new(TEN_PER_SECOND);
        let now = Instant::now();
        for key in 0..PRUNE_AT as i64 {
            limiter.take(&key, now).unwrap();
        }
        limiter.take(&-1, now + Duration::from_secs(60)).unwrap();
        assert_eq!(limiter.buckets().len(), 1, "only the bucket just used is not full");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
