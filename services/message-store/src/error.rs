//! The message-store service's errors: the shared service error, and how
//! content-store failures become one.

pub use rpc_error::RpcError as MessageError;

use crate::content::ContentError;

pub fn message_not_found() -> MessageError {
    MessageError::NotFound("message not found".into())
}

impl From<ContentError> for MessageError {
    fn from(error: ContentError) -> Self {
        if let ContentError::Unavailable(cause) = &error {
            tracing::warn!(%cause, "content store unavailable");
        }
        content_error(&error)
    }
}

/// What a content-store failure is to a caller (without logging it: for an
/// error shared by many callers, logged once).
pub fn content_error(error: &ContentError) -> MessageError {
    match error {
        ContentError::Unavailable(_) => MessageError::Unavailable("the content store".into()),
        ContentError::Failed(cause) => MessageError::Unexpected(anyhow::anyhow!("content store: {cause}")),
    }
}
