//! The auth service's error type and its one mapping to gRPC status.

use tonic::{Code, Status, metadata::MetadataValue};

/// Metadata key naming the request field an INVALID_ARGUMENT or ALREADY_EXISTS is about.
pub const FIELD_METADATA: &str = chat_proto::FIELD_METADATA_KEY;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{field} is already registered")]
    Taken { field: &'static str },
    #[error("incorrect username or password")]
    BadCredentials,
    #[error("too many failed logins; try again later")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("user not found")]
    NotFound,
    #[error("the user database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AuthError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        if sql_pool::is_transient(&error) {
            Self::Unavailable(error)
        } else {
            Self::Unexpected(anyhow::Error::new(error).context("user store query failed"))
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let with_field = |code: Code, field: &'static str, message: String| {
            let mut status = Status::new(code, message);
            status.metadata_mut().insert(FIELD_METADATA, MetadataValue::from_static(field));
            status
        };
        match error {
            AuthError::Invalid { field, message } => with_field(Code::InvalidArgument, field, message),
            AuthError::Taken { field } => {
                with_field(Code::AlreadyExists, field, format!("{field} is already registered"))
            }
            AuthError::BadCredentials => Status::unauthenticated(error.to_string()),
            AuthError::WrongCurrentPassword => Status::failed_precondition(error.to_string()),
            AuthError::TooManyAttempts { retry_after } => {
                let mut status = Status::resource_exhausted(error.to_string());
                let seconds = rate_limit::retry_after_secs(retry_after).to_string();
                if let Ok(value) = seconds.parse() {
                    status.metadata_mut().insert(chat_proto::RETRY_AFTER_METADATA_KEY, value);
                }
                status
            }
            AuthError::NotFound => Status::not_found(error.to_string()),
            AuthError::Unavailable(source) => {
                tracing::warn!(error = %source, "user database unavailable");
                Status::unavailable("the user database is unavailable")
            }
            AuthError::Unexpected(source) => {
                tracing::error!(error = ?source, "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}
