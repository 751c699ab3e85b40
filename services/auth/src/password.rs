//! argon2id password hashing with the OWASP parameters (19 MiB, 2 passes, 1 lane),
//! run off the async runtime with a cap on concurrent hashes.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::error::AuthError;

/// Hashes and verifies passwords; cheap to clone.
///
/// argon2's working memory (19 MiB a hash) belongs to the hasher: one block
/// array per permitted concurrent hash, made on first use and reused ever
/// after. Left to the allocator, each blocking thread's 19 MiB stayed in
/// glibc's per-thread arenas, hundreds of MB after a burst of logins.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A real hash to verify against when the user does not exist, so that
    /// "no such user" takes as long as "wrong password".
    decoy: Arc<String>,
}

fn params() -> Params {
    // OWASP: m = 19456 KiB, t = 2, p = 1.
    Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid")
}

/// Fresh working memory for one hash with these parameters.
fn blocks_for(params: &Params) -> Vec<Block> {
    vec![Block::default(); params.block_count()]
}

/// A PHC-format argon2id hash of the password, computed in `memory`.
fn hash_in(memory: &mut Vec<Block>, password: &str) -> anyhow::Result<String> {
    let params = params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    fit(memory, &params);
    argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory[..])?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
    };
    Ok(hash.to_string())
}

/// Whether the password matches the PHC hash (with the hash's own parameters), computed in `memory`.
fn verify_in(memory: &mut Vec<Block>, password: &str, hash: &str) -> anyhow::Result<bool> {
    let malformed = |e: argon2::password_hash::Error| anyhow::anyhow!("stored hash is malformed: {e}");
    let parsed = PasswordHash::new(hash).map_err(malformed)?;
    let params = Params::try_from(&parsed).map_err(malformed)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash has no salt or no output");
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(malformed)?;
    let mut out = vec![0u8; expected.len()];
    fit(memory, &params);
    Argon2::new(algorithm, version.unwrap_or_default(), params).hash_password_into_with_memory(
        password.as_bytes(),
        salt_bytes,
        &mut out,
        &mut memory[..],
    )?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(malformed)? == expected)
}

/// Grows `memory` when a stored hash asks for more than it has (hashes made
/// with larger parameters); the usual case keeps it as it is.
fn fit(memory: &mut Vec<Block>, params: &Params) {
    if memory.len() < params.block_count() {
        *memory = blocks_for(params);
    }
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once, each in 19 MiB that the hasher keeps.
    pub fn new(max_concurrent: usize) -> anyhow::Result<Self> {
        let decoy = hash_in(&mut blocks_for(&params()), "decoy password, never matches a real one")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            memory: Arc::new(Mutex::new(Vec::new())),
            decoy: Arc::new(decoy),
        })
    }

    /// Runs `work` off the runtime in working memory of the hasher's own.
    ///
    /// The permit and the memory go with the blocking work, not with this
    /// future: a caller that goes away mid-hash (a dropped request) does not
    /// free its permit while the hash still runs, and the memory returns to
    /// the pool when the hash ends, whoever waits for it.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = self.permits.clone().acquire_owned().await.context("password hasher closed")?;
        let pool = self.memory.clone();
        let result = tokio::task::spawn_blocking(move || {
            // With a permit there is a free array, or fewer arrays than permits: never more arrays than permits.
            let mut memory =
                pool.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_else(|| blocks_for(&params()));
            let result = work(&mut memory);
            pool.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
            drop(permit);
            result
        })
        .await
        .context("password hashing task failed")?;
        Ok(result?)
    }

    /// How many working memories the hasher holds (at most its concurrency).
    pub fn memories(&self) -> usize {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// A PHC-format argon2id hash of the password.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_owned();
        self.run(move |memory| hash_in(memory, &password)).await
    }

    /// Whether the password matches the hash; with no hash, burns the same time and says no.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy.as_str().to_owned(), false),
        };
        let matched = self.run(move |memory| verify_in(memory, &password, &hash)).await?;
        Ok(matched && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong horse", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn without_a_hash_nothing_verifies() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert!(!hasher.verify("decoy password, never matches a real one", None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_the_argon2_crates_own_format_both_ways() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(1).unwrap();
        let library = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let ours = hasher.hash("correct horse").await.unwrap();
        assert!(library.verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap()).is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = library.hash_password(b"battery staple", &salt).unwrap().to_string();
        assert_eq!(theirs.len(), ours.len());
        assert!(hasher.verify("battery staple", Some(&theirs)).await.unwrap());
        assert!(!hasher.verify("battery stapler", Some(&theirs)).await.unwrap());
        // A hash made with other parameters verifies with its own.
        let cheaper = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap());
        let old = cheaper.hash_password(b"old one", &salt).unwrap().to_string();
        assert!(hasher.verify("old one", Some(&old)).await.unwrap());
    }

    #[tokio::test]
    async fn working_memory_is_reused_never_more_than_the_concurrency() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("pw").await.unwrap();
        let checks = (0..8).map(|_| hasher.verify("pw", Some(&hash)));
        assert!(futures::future::join_all(checks).await.into_iter().all(|ok| ok.unwrap()));
        assert!((1..=2).contains(&hasher.memories()), "{} arrays of 19 MiB", hasher.memories());
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error_not_a_match() {
        let mut memory = Vec::new();
        assert!(verify_in(&mut memory, "pw", "$argon2id$v=19$m=19456,t=2,p=1$bm9zYWx0$").is_err());
        assert!(verify_in(&mut memory, "pw", "plaintext").is_err());
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_mid_hash_keeps_its_permit_busy_until_the_hash_ends() {
        let hasher = PasswordHasher::new(1).unwrap();
        let hash = hasher.hash("pw").await.unwrap();
        // Dropped as soon as its hash has started: the hash runs on, and so its permit stays taken.
        let abandoned = hasher.verify("pw", Some(&hash));
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), abandoned).await;
        assert_eq!(hasher.permits.available_permits(), 0, "the abandoned hash still holds its permit");
        for _ in 0..4 {
            let gone = hasher.verify("pw", Some(&hash));
            let _ = tokio::time::timeout(std::time::Duration::from_millis(1), gone).await;
        }
        assert!(hasher.verify("pw", Some(&hash)).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(hasher.memories(), 1, "one permit, one array, however many callers left early");
    }

    #[tokio::test]
    async fn the_same_password_gets_a_new_salt_each_time() {
        let hasher = PasswordHasher::new(2).unwrap();
        assert_ne!(hasher.hash("same").await.unwrap(), hasher.hash("same").await.unwrap());
    }
}
