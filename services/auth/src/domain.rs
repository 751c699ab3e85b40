//! The auth service's domain types, parsed (not merely validated) at the gRPC boundary.

use crate::error::AuthError;

/// 3–32 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(value: String) -> Result<Self, AuthError> {
        let length = value.chars().count();
        if !(3..=32).contains(&length) {
            return Err(AuthError::invalid("username", "must be 3 to 32 characters"));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(AuthError::invalid("username", "may contain only letters, digits, '_', '.' and '-'"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes usernames unique in any case.
    pub fn lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A plausible email address, kept lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(value: String) -> Result<Self, AuthError> {
        let value = value.trim().to_lowercase();
        let invalid = || AuthError::invalid("email", "must be a valid email address");
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = value.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.contains(['(', ')', '<', '>', ',', ';', ':', '\\', '"', '[', ']']);
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok { Ok(Self(value)) } else { Err(invalid()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–128 characters.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    pub fn parse(field: &'static str, value: String) -> Result<Self, AuthError> {
        if !(8..=128).contains(&value.chars().count()) {
            return Err(AuthError::invalid(field, "must be 8 to 128 characters"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most 100 characters; empty means none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(value: String) -> Result<Option<Self>, AuthError> {
        if value.chars().count() > 100 {
            return Err(AuthError::invalid("full_name", "must be at most 100 characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(AuthError::invalid("full_name", "must not contain control characters"));
        }
        Ok(if value.trim().is_empty() { None } else { Some(Self(value)) })
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A search string of 1–64 characters, matched case-insensitively.
#[derive(Debug, Clone)]
pub struct SearchQuery(String);

impl SearchQuery {
    pub fn parse(value: String) -> Result<Self, AuthError> {
        if !(1..=64).contains(&value.chars().count()) {
            return Err(AuthError::invalid("q", "must be 1 to 64 characters"));
        }
        Ok(Self(value.to_lowercase()))
    }

    /// The lowercase text to look for.
    pub fn needle(&self) -> &str {
        &self.0
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub created_at_ms: i64,
    pub last_seen_ms: Option<i64>,
}

/// How a login's username or email names its account: trimmed and lowercase
/// (the store looks it up so, and the failed-login limits count it so).
pub fn login_key(username_or_email: &str) -> String {
    username_or_email.trim().to_lowercase()
}

/// A registration, parsed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password: Password,
    pub full_name: Option<FullName>,
}

/// A profile change, parsed. `full_name: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub email: Option<Email>,
    pub full_name: Option<Option<FullName>>,
    pub password: Option<PasswordChange>,
}

/// A new password with the current one, which must match.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub new: Password,
    pub current: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_3_to_32_safe_characters_parse() {
        for ok in ["abc", "a.b-c_d", &"x".repeat(32), "ABC123"] {
            assert!(Username::parse(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["ab", &"x".repeat(33), "has space", "semi;colon", "émile", "a@b"] {
            assert!(Username::parse(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(Email::parse("Ada@Example.COM".into()).unwrap().as_str(), "ada@example.com");
        for bad in ["not-an-email", "a@b", "@example.com", "a b@example.com", "a@-x.com", "a..b@example.com"] {
            assert!(Email::parse(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(Password::parse("password", "8chars!!".into()).is_ok());
        assert!(Password::parse("password", "p".repeat(128)).is_ok());
        assert!(Password::parse("password", "7chars!".into()).is_err());
        assert!(Password::parse("password", "p".repeat(129)).is_err());
    }

    #[test]
    fn a_blank_full_name_is_none_and_a_long_one_is_refused() {
        assert_eq!(FullName::parse("  ".into()).unwrap(), None);
        assert!(FullName::parse("f".repeat(100)).unwrap().is_some());
        assert!(FullName::parse("f".repeat(101)).is_err());
    }

    #[test]
    fn search_queries_are_1_to_64_characters_and_lowercased() {
        assert_eq!(SearchQuery::parse("AbC".into()).unwrap().needle(), "abc");
        assert!(SearchQuery::parse(String::new()).is_err());
        assert!(SearchQuery::parse("q".repeat(65)).is_err());
    }
}
