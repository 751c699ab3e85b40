//! The error type of the chat-metadata and message-store services, and its
//! one mapping to gRPC status (which the gateway maps to HTTP in turn).

use tonic::{Status, metadata::MetadataValue};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// A field out of range (HTTP 422, naming the field).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A well-formed request a business rule refuses (HTTP 400).
    #[error("{0}")]
    Rule(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A dependency (database, content store, another service) is down (HTTP 503).
    #[error("{0} is unavailable")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl RpcError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<sqlx::Error> for RpcError {
    fn from(error: sqlx::Error) -> Self {
        if sql_pool::is_transient(&error) {
            tracing::warn!(%error, "database unavailable");
            Self::Unavailable("the database".into())
        } else {
            Self::Unexpected(anyhow::Error::new(error).context("query failed"))
        }
    }
}

impl From<RpcError> for Status {
    fn from(error: RpcError) -> Self {
        match error {
            RpcError::Invalid { field, message } => {
                let mut status = Status::invalid_argument(message);
                status.metadata_mut().insert(chat_proto::FIELD_METADATA_KEY, MetadataValue::from_static(field));
                status
            }
            RpcError::Rule(message) => Status::failed_precondition(message),
            RpcError::Forbidden(message) => Status::permission_denied(message),
            RpcError::NotFound(message) => Status::not_found(message),
            RpcError::Unavailable(what) => Status::unavailable(format!("{what} is unavailable")),
            RpcError::Unexpected(source) => {
                tracing::error!(error = ?source, "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_field_is_named_in_the_status_metadata() {
        let status = Status::from(RpcError::invalid("content", "too long"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.metadata().get(chat_proto::FIELD_METADATA_KEY).unwrap(), "content");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(RpcError::Unexpected(anyhow::anyhow!("SELECT secret FROM users")));
        assert_eq!((status.code(), status.message()), (tonic::Code::Internal, "internal error"));
    }
}
