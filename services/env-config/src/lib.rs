//! Typed reading of environment variables (and `.env`), with one-line errors
//! that name the variable, so a binary refuses a bad value before it starts.

use std::{fmt::Display, str::FromStr};

/// A variable that is present but malformed, or required and missing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {variable}={value:?}: {reason}")]
    Invalid { variable: String, value: String, reason: String },
    #[error("{variable} is required: {hint}")]
    Missing { variable: String, hint: String },
}

impl ConfigError {
    pub fn invalid(variable: &str, value: &str, reason: impl Display) -> Self {
        Self::Invalid { variable: variable.to_owned(), value: value.to_owned(), reason: reason.to_string() }
    }

    pub fn missing(variable: &str, hint: impl Display) -> Self {
        Self::Missing { variable: variable.to_owned(), hint: hint.to_string() }
    }
}

/// Loads `.env` from the working directory, if there is one. Real environment
/// variables win over the file.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// The variable's value; `None` when unset or empty.
pub fn string(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|value| !value.trim().is_empty())
}

/// The variable parsed as `T`; `None` when unset or empty.
pub fn parsed<T>(variable: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    string(variable)
        .map(|value| value.trim().parse().map_err(|error| ConfigError::invalid(variable, &value, error)))
        .transpose()
}

/// The variable parsed as `T`, or `default` when unset or empty.
pub fn parsed_or<T>(variable: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    Ok(parsed(variable)?.unwrap_or(default))
}

/// A boolean: `1/true/yes/on` or `0/false/no/off`, any case.
pub fn flag(variable: &str, default: bool) -> Result<bool, ConfigError> {
    let Some(value) = string(variable) else { return Ok(default) };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(variable, &value, "expected true or false")),
    }
}

/// A listen address, `off` for none, or `default` when unset or empty.
pub fn listen_addr_or_off(
    variable: &str,
    default: std::net::SocketAddr,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    match string(variable) {
        Some(value) if value.trim().eq_ignore_ascii_case("off") => Ok(None),
        _ => Ok(Some(parsed_or(variable, default)?)),
    }
}

/// A URL whose scheme is one of `schemes`; `None` when unset or empty.
pub fn url(variable: &str, schemes: &[&str]) -> Result<Option<url::Url>, ConfigError> {
    let Some(value) = string(variable) else { return Ok(None) };
    let parsed = url::Url::parse(value.trim()).map_err(|error| ConfigError::invalid(variable, &value, error))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError::invalid(
            variable,
            &value,
            format_args!("the scheme must be one of {}", schemes.join(", ")),
        ));
    }
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_value_names_the_variable_and_the_value() {
        let error = ConfigError::invalid("PORT", "eighty", "invalid digit found in string");
        assert_eq!(error.to_string(), r#"invalid PORT="eighty": invalid digit found in string"#);
    }

    #[test]
    fn missing_value_names_the_variable() {
        let error = ConfigError::missing("SECRET_KEY", "set it to a long random string");
        assert_eq!(error.to_string(), "SECRET_KEY is required: set it to a long random string");
    }
}
