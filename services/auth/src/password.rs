//! argon2id password hashing with the OWASP parameters (19 MiB, 2 passes, 1 lane),
//! run off the async runtime with a cap on concurrent hashes.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::error::AuthError;

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash to verify against when the user does not exist, so that
    /// "no such user" takes as long as "wrong password".
    decoy: Arc<String>,
}

fn argon2() -> Argon2<'static> {
    // OWASP: m = 19456 KiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
    Ok(argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once (each holds 19 MiB).
    pub fn new(max_concurrent: usize) -> anyhow::Result<Self> {
        let decoy = hash_blocking("decoy password, never matches a real one")?;
        Ok(Self { permits: Arc::new(Semaphore::new(max_concurrent.max(1))), decoy: Arc::new(decoy) })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self.permits.acquire().await.context("password hasher closed")?;
        let result = tokio::task::spawn_blocking(work).await.context("password hashing task failed")??;
        Ok(result)
    }

    /// A PHC-format argon2id hash of the password.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password)).await
    }

    /// Whether the password matches the hash; with no hash, burns the same time and says no.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy.as_str().to_owned(), false),
        };
        let matched = self.run(move || verify_blocking(&password, &hash)).await?;
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
    async fn the_same_password_gets_a_new_salt_each_time() {
        let hasher = PasswordHasher::new(2).unwrap();
        assert_ne!(hasher.hash("same").await.unwrap(), hasher.hash("same").await.unwrap());
    }
}
