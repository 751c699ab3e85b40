//! The chat-metadata service's error type and its one mapping to gRPC status.

use tonic::{Status, metadata::MetadataValue};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A well-formed request a business rule refuses (HTTP 400).
    #[error("{0}")]
    Rule(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0} is unavailable")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl MetadataError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    pub fn chat_not_found() -> Self {
        Self::NotFound("chat not found".into())
    }

    pub fn not_a_participant() -> Self {
        Self::Forbidden("you are not a participant of this chat".into())
    }
}

impl From<sqlx::Error> for MetadataError {
    fn from(error: sqlx::Error) -> Self {
        if sql_pool::is_transient(&error) {
            tracing::warn!(%error, "chat database unavailable");
            Self::Unavailable("the chat database".into())
        } else {
            Self::Unexpected(anyhow::Error::new(error).context("chat store query failed"))
        }
    }
}

impl From<MetadataError> for Status {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::Invalid { field, message } => {
                let mut status = Status::invalid_argument(message);
                status.metadata_mut().insert(chat_proto::FIELD_METADATA_KEY, MetadataValue::from_static(field));
                status
            }
            MetadataError::Rule(message) => Status::failed_precondition(message),
            MetadataError::Forbidden(message) => Status::permission_denied(message),
            MetadataError::NotFound(message) => Status::not_found(message),
            MetadataError::Unavailable(what) => Status::unavailable(format!("{what} is unavailable")),
            MetadataError::Unexpected(source) => {
                tracing::error!(error = ?source, "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}
