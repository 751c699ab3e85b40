//! The chat-metadata service's errors: the shared service error, with the
//! constructors this service uses most.

pub use rpc_error::RpcError as MetadataError;

pub fn chat_not_found() -> MetadataError {
    MetadataError::NotFound("chat not found".into())
}

pub fn not_a_participant() -> MetadataError {
    MetadataError::Forbidden("you are not a participant of this chat".into())
}
