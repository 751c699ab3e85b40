//! The message-store service's error type and its one mapping to gRPC status.

use tonic::{Status, metadata::MetadataValue};

use crate::content::ContentError;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
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

impl MessageError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    pub fn message_not_found() -> Self {
        Self::NotFound("message not found".into())
    }
}

impl From<sqlx::Error> for MessageError {
    fn from(error: sqlx::Error) -> Self {
        if sql_pool::is_transient(&error) {
            tracing::warn!(%error, "message database unavailable");
            Self::Unavailable("the message database".into())
        } else {
            Self::Unexpected(anyhow::Error::new(error).context("message store query failed"))
        }
    }
}

impl From<ContentError> for MessageError {
    fn from(error: ContentError) -> Self {
        match error {
            ContentError::Unavailable(cause) => {
                tracing::warn!(%cause, "content store unavailable");
                Self::Unavailable("the content store".into())
            }
            ContentError::Failed(cause) => Self::Unexpected(anyhow::anyhow!("content store: {cause}")),
        }
    }
}

impl From<MessageError> for Status {
    fn from(error: MessageError) -> Self {
        match error {
            MessageError::Invalid { field, message } => {
                let mut status = Status::invalid_argument(message);
                status.metadata_mut().insert(chat_proto::FIELD_METADATA_KEY, MetadataValue::from_static(field));
                status
            }
            MessageError::Rule(message) => Status::failed_precondition(message),
            MessageError::Forbidden(message) => Status::permission_denied(message),
            MessageError::NotFound(message) => Status::not_found(message),
            MessageError::Unavailable(what) => Status::unavailable(format!("{what} is unavailable")),
            MessageError::Unexpected(source) => {
                tracing::error!(error = ?source, "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}
