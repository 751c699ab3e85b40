//! The chat-metadata service: chats, participants, admin rules, the
//! 100-member cap and membership checks, over gRPC
//! (`chat.metadata.v1.ChatMetadataService` + `grpc.health.v1`). Membership
//! changes are announced on the bus.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod startup;
pub mod store;

pub use config::Settings;
pub use startup::Application;
