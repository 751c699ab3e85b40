//! Issues and verifies the chat services' JWT access tokens.
//!
//! The algorithm is pinned (an HMAC one, from `ALGORITHM`, default HS256);
//! `exp`, `iat`, `sub`, `iss` and `aud` are required and checked. Keys are
//! built once, at start-up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: i64,
    pub username: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
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

    /// A token for this user, valid from now for the configured lifetime.
    pub fn issue(&self, user_id: i64, username: &str) -> Result<String, TokenError> {
        let iat = now_s();
        let claims = Claims {
            sub: user_id.to_string(),
            username: username.to_owned(),
            iat,
            exp: iat + self.ttl_seconds(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|error| TokenError::Signing(error.to_string()))
    }
}

/// Checks access tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(settings.algorithm);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        Self { key: DecodingKey::from_secret(settings.secret.expose_secret().as_bytes()), validation }
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let user_id = data.claims.sub.parse::<i64>().ok().filter(|id| *id > 0).ok_or(TokenError::Invalid)?;
        Ok(VerifiedToken { user_id, username: data.claims.username, expires_at: data.claims.exp })
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
        let token = TokenIssuer::new(&settings).issue(42, "ada").unwrap();
        let verified = TokenVerifier::new(&settings).verify(&token).unwrap();
        assert_eq!((verified.user_id, verified.username.as_str()), (42, "ada"));
        assert!(verified.expires_at > now_s());
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let token = TokenIssuer::new(&settings(SECRET, Algorithm::HS256)).issue(1, "a").unwrap();
        let other = settings("another-secret-another-secret-xx", Algorithm::HS256);
        assert!(matches!(TokenVerifier::new(&other).verify(&token), Err(TokenError::Invalid)));
    }

    #[test]
    fn the_algorithm_is_pinned() {
        let token = TokenIssuer::new(&settings(SECRET, Algorithm::HS512)).issue(1, "a").unwrap();
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
    fn short_secrets_are_refused() {
        let error = TokenSettings::from_env(SecretString::from("short")).unwrap_err();
        assert!(error.to_string().contains("SECRET_KEY"), "{error}");
    }
}
