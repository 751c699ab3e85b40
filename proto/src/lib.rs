//! The chat services' gRPC contracts and bus payloads, generated from `proto/*.proto`.
//!
//! Modules mirror the proto packages: `chat::auth::v1`, `chat::metadata::v1`,
//! `chat::messages::v1`, `chat::events::v1`. No domain logic lives here.
#![allow(clippy::all, missing_docs)]

/// Generated code, one module per proto package.
pub mod chat {
    pub mod auth {
        pub mod v1 {
            tonic::include_proto!("chat.auth.v1");
        }
    }
    pub mod metadata {
        pub mod v1 {
            tonic::include_proto!("chat.metadata.v1");
        }
    }
    pub mod messages {
        pub mod v1 {
            tonic::include_proto!("chat.messages.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("chat.events.v1");
        }
    }
}

pub use chat::{auth::v1 as auth, events::v1 as events, messages::v1 as messages, metadata::v1 as metadata};

/// Metadata key naming the request field an INVALID_ARGUMENT (or
/// ALREADY_EXISTS) status is about, so the gateway can answer 422 with it.
pub const FIELD_METADATA_KEY: &str = "x-field";

/// Metadata key of a RESOURCE_EXHAUSTED status: whole seconds until a retry
/// may succeed, for the gateway's `Retry-After`.
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after";
