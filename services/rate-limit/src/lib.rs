//! Token buckets per key, in this process's memory.
//!
//! Memory is bounded: a key is a small value the caller bounds (a user id, an
//! address, an account id — never raw client input), buckets that have
//! refilled are dropped every [`PRUNE_EVERY`] (not on every call), and at
//! most [`MAX_KEYS`] buckets exist at once — past that, a key without a
//! bucket is refused until pruning makes room (failing closed: an attacker
//! who fills the table slows new clients down, but never gets unlimited
//! tries).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

/// How often buckets that have refilled are dropped.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// The most buckets one limiter keeps.
pub const MAX_KEYS: usize = 100_000;

/// A rate and a burst; a zero rate is no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const OFF: Self = Self { per_second: 0.0, burst: 0.0 };

    /// `per_minute` a minute, all of them at once at most.
    pub fn per_minute(per_minute: f64) -> Self {
        Self { per_second: per_minute / 60.0, burst: per_minute }
    }

    pub fn is_off(self) -> bool {
        self.per_second <= 0.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    pruned_at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self::with_capacity(rate, MAX_KEYS)
    }

    /// A limiter that keeps at most `max_keys` buckets.
    pub fn with_capacity(rate: Rate, max_keys: usize) -> Self {
        let buckets = Buckets { by_key: HashMap::new(), pruned_at: Instant::now() };
        Self { rate, max_keys, buckets: Mutex::new(buckets) }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The key's bucket, refilled up to `now` (a new key's is full).
    fn refilled(&self, bucket: Option<Bucket>, now: Instant) -> Bucket {
        let Rate { per_second, burst } = self.rate;
        let bucket = bucket.unwrap_or(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        Bucket { tokens: (bucket.tokens + elapsed * per_second).min(burst), at: now.max(bucket.at) }
    }

    fn wait_for_one(&self, bucket: Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - bucket.tokens) / self.rate.per_second).max(0.0))
    }

    fn lock(&self) -> MutexGuard<'_, Buckets<K>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let mut buckets = self.lock();
        self.prune(&mut buckets, now);
        let known = buckets.by_key.get(key).copied();
        if known.is_none() && buckets.by_key.len() >= self.max_keys {
            tracing::warn!(max_keys = self.max_keys, "rate limiter full: a new key is refused until buckets refill");
            return Err(PRUNE_EVERY);
        }
        let mut bucket = self.refilled(known, now);
        let outcome = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for_one(bucket))
        };
        buckets.by_key.insert(key.clone(), bucket);
        outcome
    }

    /// Returns a token taken for `key` (the attempt it paid for turned out free).
    pub fn give_back(&self, key: &K, now: Instant) {
        if self.rate.is_off() {
            return;
        }
        let mut buckets = self.lock();
        if let Some(bucket) = buckets.by_key.get(key).copied() {
            let mut bucket = self.refilled(Some(bucket), now);
            bucket.tokens = (bucket.tokens + 1.0).min(self.rate.burst);
            buckets.by_key.insert(key.clone(), bucket);
        }
    }

    /// Whether `key` has a token, without taking it; how long until it has one if not.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let bucket = self.refilled(self.lock().by_key.get(key).copied(), now);
        if bucket.tokens >= 1.0 { Ok(()) } else { Err(self.wait_for_one(bucket)) }
    }

    /// How many buckets are kept.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the buckets that have refilled (they are as good as new), every
    /// [`PRUNE_EVERY`], or sooner once the table is full — one scan per
    /// period, not per call.
    fn prune(&self, buckets: &mut Buckets<K>, now: Instant) {
        let due = now.saturating_duration_since(buckets.pruned_at);
        let full = buckets.by_key.len() >= self.max_keys;
        if due < PRUNE_EVERY && !(full && due >= Duration::from_secs(1)) {
            return;
        }
        buckets.pruned_at = now;
        let Rate { per_second, burst } = self.rate;
        buckets.by_key.retain(|_, bucket| {
            bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * per_second < burst
        });
    }
}

/// The key of a client address: IPv4 as it is, IPv6 by its /64 (one host
/// usually holds a whole /64, so single addresses would be free to rotate).
pub fn address_key(address: std::net::IpAddr) -> std::net::IpAddr {
    match address {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
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
    fn a_token_given_back_can_be_taken_again_but_never_above_the_burst() {
        let limiter = Limiter::new(Rate { per_second: 1.0 / 60.0, burst: 2.0 });
        let now = Instant::now();
        limiter.take(&"bob", now).unwrap();
        limiter.take(&"bob", now).unwrap();
        assert!(limiter.take(&"bob", now).is_err());
        limiter.give_back(&"bob", now);
        assert_eq!(limiter.take(&"bob", now), Ok(()));
        for _ in 0..5 {
            limiter.give_back(&"bob", now);
        }
        assert_eq!((limiter.take(&"bob", now), limiter.take(&"bob", now)), (Ok(()), Ok(())));
        assert!(limiter.take(&"bob", now).is_err(), "gifts stop at the burst");
    }

    #[test]
    fn off_is_no_limit() {
        let limiter = Limiter::new(Rate::OFF);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.take(&1, now), Ok(()));
        }
        assert!(limiter.is_empty(), "an off limiter keeps nothing");
    }

    #[test]
    fn refilled_buckets_are_pruned_periodically_not_per_call() {
        let limiter = Limiter::new(TEN_PER_SECOND);
        let start = Instant::now();
        for key in 0..1000 {
            limiter.take(&key, start).unwrap();
        }
        limiter.take(&-1, start + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.len(), 1001, "not yet: pruning waits for its period");
        limiter.take(&-2, start + PRUNE_EVERY + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.len(), 1, "after the period only the bucket just used is not full");
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_not_known_ones() {
        let limiter = Limiter::with_capacity(Rate::per_minute(10.0), 3);
        let now = Instant::now();
        for key in 0..3 {
            limiter.take(&key, now).unwrap();
        }
        assert!(limiter.take(&99, now).is_err(), "a fourth key does not fit");
        assert_eq!(limiter.take(&0, now), Ok(()), "a known key keeps its bucket");
        assert_eq!(limiter.len(), 3);
        // Once the old buckets have refilled, pruning makes room.
        assert_eq!(limiter.take(&99, now + Duration::from_secs(120)), Ok(()));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn addresses_are_keyed_by_host_v4_and_by_slash_64_v6() {
        let key = |text: &str| address_key(text.parse().unwrap()).to_string();
        let cases = [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("::ffff:198.51.100.1", "198.51.100.1"),
        ];
        for (address, expected) in cases {
            assert_eq!(key(address), expected, "{address}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
