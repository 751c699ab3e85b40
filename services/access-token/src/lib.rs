//! Issues and verifies the chat services' JWT access tokens.
//!
//! The algorithm is pinned (an HMAC one, from `ALGORITHM`, default HS256);
//! `exp`, `iat`, `sub`, `iss` and `aud` are required and checked, and an
//! `iat` in the future (beyond the 5 s leeway) is refused. Keys are built
//! once, at start-up.
//!
//! **Revocation.** A token carries its user's token version (`ver`) at
//! issue; changing the password moves the version up. A verifier with
//! [`TokenVersions`] refuses a token older than what it knows of its user:
//! one signature check and one hash lookup, no call to anyone.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use env_config::ConfigError;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Who issues the tokens (`iss`).
pub const ISSUER: &str = "chat-service";
/// Who the tokens are for (`aud`).
pub const AUDIENCE: &str = "chat-service-clients";
/// The shortest `SECRET_KEY` accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// The username (immutable, so safe to carry).
    pub username: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The user's token version when the token was issued (absent: 0).
    #[serde(default)]
    pub ver: i64,
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: i64,
    pub username: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    /// The user's token version it was issued at.
    pub version: i64,
}

/// The lowest token version still valid, per user, for the users whose
/// version moved (a password change) within a token's lifetime. Shared by
/// clones; fed by whoever learns of a change.
#[derive(Debug, Clone, Default)]
pub struct TokenVersions(Arc<RwLock<HashMap<i64, (i64, i64)>>>);

impl TokenVersions {
    /// Tokens of `user_id` issued at a version below `version` are refused
    /// from now on (`at_ms`: when it changed, for [`Self::forget_before`]).
    pub fn raise(&self, user_id: i64, version: i64, at_ms: i64) {
        let mut versions = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let entry = versions.entry(user_id).or_insert((version, at_ms));
        if version >= entry.0 {
            *entry = (version, entry.1.max(at_ms));
        }
    }

    /// The lowest valid version of the user's tokens (0: every one).
    pub fn current(&self, user_id: i64) -> i64 {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(&user_id).map_or(0, |(version, _)| *version)
    }

    /// Drops what changed before `at_ms`: tokens issued before then have expired.
    pub fn forget_before(&self, at_ms: i64) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).retain(|_, (_, changed)| *changed >= at_ms);
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token was revoked (the password changed since); log in again")]
    Revoked,
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

/// Signing settings: secret, algorithm, lifetime.
#[derive(Clone)]
pub struct TokenSettings {
    pub secret: SecretString,
    pub algorithm: Algorithm,
    pub ttl: Duration,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"[redacted]")
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// `SECRET_KEY`, which the distributed binaries require.
pub fn secret_from_env() -> Result<SecretString, ConfigError> {
    env_config::string("SECRET_KEY")
        .map(SecretString::from)
        .ok_or_else(|| ConfigError::missing("SECRET_KEY", "set it to the same long random string in every service"))
}

impl TokenSettings {
    /// Reads `ALGORITHM` (HS256, HS384 or HS512; default HS256) and
    /// `ACCESS_TOKEN_EXPIRE_MINUTES` (default 30) around the given secret,
    /// which must be at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_env(secret: SecretString) -> Result<Self, ConfigError> {
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid(
                "SECRET_KEY",
                "[redacted]",
                format_args!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        let algorithm = match env_config::string("ALGORITHM") {
            None => Algorithm::HS256,
            Some(name) => parse_algorithm(&name)
                .ok_or_else(|| ConfigError::invalid("ALGORITHM", &name, "expected HS256, HS384 or HS512"))?,
        };
        let minutes: u64 = env_config::parsed_or("ACCESS_TOKEN_EXPIRE_MINUTES", 30)?;
        if minutes == 0 || minutes > 60 * 24 * 365 {
            return Err(ConfigError::invalid(
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                &minutes.to_string(),
                "expected 1 to 525600 minutes",
            ));
        }
        Ok(Self { secret, algorithm, ttl: Duration::from_secs(minutes * 60) })
    }
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name.trim().to_ascii_uppercase().as_str() {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Signs access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(settings: &TokenSettings) -> Self {
        Self {
            key: EncodingKey::from_secret(settings.secret.expose_secret().as_bytes()),
            header: Header::new(settings.algorithm),
            ttl: settings.ttl,
        }
    }

    /// The lifetime of the tokens issued, in seconds.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl.as_secs() as i64
    }

    /// A token for this user at their token `version`, valid from now for the configured lifetime.
    pub fn issue(&self, user_id: i64, username: &str, version: i64) -> Result<String, TokenError> {
        let iat = now_s();
        let claims = Claims {
            sub: user_id.to_string(),
            username: username.to_owned(),
            iat,
            exp: iat + self.ttl_seconds(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            ver: version,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|error| TokenError::Signing(error.to_string()))
    }
}

/// How far in the future an `iat` may be (clock skew between services).
const LEEWAY_S: i64 = 5;

/// Checks access tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    versions: TokenVersions,
}

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(settings.algorithm);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_S as u64;
        Self {
            key: DecodingKey::from_secret(settings.secret.expose_secret().as_bytes()),
            validation,
            versions: TokenVersions::default(),
        }
    }

    /// The versions this verifier (and every clone of it) checks against:
    /// tokens older than what they know of their user are refused.
    pub fn versions(&self) -> &TokenVersions {
        &self.versions
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        let user_id = claims.sub.parse::<i64>().ok().filter(|id| *id > 0).ok_or(TokenError::Invalid)?;
        if claims.iat > now_s() + LEEWAY_S {
            return Err(TokenError::Invalid);
        }
        if claims.ver < self.versions.current(user_id) {
            return Err(TokenError::Revoked);
        }
        Ok(VerifiedToken { user_id, username: claims.username, expires_at: claims.exp, version: claims.ver })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &str, algorithm: Algorithm) -> TokenSettings {
        TokenSettings { secret: SecretString::from(secret), algorithm, ttl: Duration::from_secs(60) }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let settings = settings(SECRET, Algorithm::HS256);
        let token = TokenIssuer::new(&settings).issue(42, "ada", 0).unwrap();
        let verified = TokenVerifier::new(&settings).verify(&token).unwrap();
        assert_eq!((verified.user_id, verified.username.as_str()), (42, "ada"));
        assert!(verified.expires_at > now_s());
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let token = TokenIssuer::new(&settings(SECRET, Algorithm::HS256)).issue(1, "a", 0).unwrap();
        let other = settings("another-secret-another-secret-xx", Algorithm::HS256);
        assert!(matches!(TokenVerifier::new(&other).verify(&token), Err(TokenError::Invalid)));
    }

    #[test]
    fn the_algorithm_is_pinned() {
        let token = TokenIssuer::new(&settings(SECRET, Algorithm::HS512)).issue(1, "a", 0).unwrap();
        let verifier = TokenVerifier::new(&settings(SECRET, Algorithm::HS256));
        assert!(matches!(verifier.verify(&token), Err(TokenError::Invalid)));
    }

    fn signed(claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap()
    }

    fn claims() -> Claims {
        let now = now_s();
        Claims {
            sub: "7".into(),
            username: "u".into(),
            iat: now,
            exp: now + 60,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            ver: 0,
        }
    }

    #[test]
    fn an_expired_token_is_expired() {
        let token = signed(&Claims { exp: now_s() - 120, ..claims() });
        let verifier = TokenVerifier::new(&settings(SECRET, Algorithm::HS256));
        assert!(matches!(verifier.verify(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn a_wrong_issuer_or_audience_is_invalid() {
        let verifier = TokenVerifier::new(&settings(SECRET, Algorithm::HS256));
        for bad in [Claims { iss: "someone-else".into(), ..claims() }, Claims { aud: "other".into(), ..claims() }] {
            assert!(matches!(verifier.verify(&signed(&bad)), Err(TokenError::Invalid)));
        }
        assert!(verifier.verify(&signed(&claims())).is_ok());
    }

    #[test]
    fn a_non_numeric_subject_is_invalid() {
        let verifier = TokenVerifier::new(&settings(SECRET, Algorithm::HS256));
        assert!(matches!(
            verifier.verify(&signed(&Claims { sub: "abc".into(), ..claims() })),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn a_token_issued_in_the_future_is_invalid() {
        let verifier = TokenVerifier::new(&settings(SECRET, Algorithm::HS256));
        let now = now_s();
        let cases = [(now, true), (now + LEEWAY_S, true), (now + LEEWAY_S + 2, false), (now + 3600, false)];
        for (iat, valid) in cases {
            let token = signed(&Claims { iat, exp: now + 7200, ..claims() });
            assert_eq!(verifier.verify(&token).is_ok(), valid, "iat = now + {}", iat - now);
        }
    }

    #[test]
    fn a_token_older_than_its_users_version_is_revoked() {
        let settings = settings(SECRET, Algorithm::HS256);
        let verifier = TokenVerifier::new(&settings);
        let versions = verifier.versions().clone();
        let issuer = TokenIssuer::new(&settings);
        let (old, other_user) = (issuer.issue(7, "u", 0).unwrap(), issuer.issue(8, "v", 0).unwrap());
        assert!(verifier.verify(&old).is_ok());
        versions.raise(7, 1, 1_000);
        assert!(matches!(verifier.verify(&old), Err(TokenError::Revoked)));
        assert_eq!(verifier.verify(&issuer.issue(7, "u", 1).unwrap()).unwrap().version, 1);
        assert!(verifier.verify(&other_user).is_ok(), "another user's tokens are untouched");
        versions.raise(7, 0, 2_000);
        assert!(matches!(verifier.verify(&old), Err(TokenError::Revoked)), "a version never moves back");
        versions.forget_before(3_000);
        assert!(versions.is_empty(), "changes older than a token's lifetime are forgotten");
    }

    #[test]
    fn short_secrets_are_refused() {
        let error = TokenSettings::from_env(SecretString::from("short")).unwrap_err();
        assert!(error.to_string().contains("SECRET_KEY"), "{error}");
    }
}
