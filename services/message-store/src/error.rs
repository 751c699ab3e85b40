//! The message-store service's errors: the shared service error, and how
//! content-store failures become one.

pub use rpc_error::RpcError as MessageError;

use crate::content::ContentError;

pub fn message_not_found() -> MessageError {
    MessageError::NotFound("message not found".into())
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
