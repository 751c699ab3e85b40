//! The message-store service: message metadata in SQL (`message_metadata`),
//! content in MongoDB (`messages`) or SQL, per-chat `seq`, idempotent sends,
//! history pages, edit and delete — over gRPC
//! (`chat.messages.v1.MessageStoreService` + `grpc.health.v1`). Changes are
//! committed in batches by one writer per process ([`writer`]) and announced
//! through the outbox once durable.

pub mod batch;
pub mod checks;
pub mod config;
pub mod content;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod membership;
pub mod placement;
pub mod reactions;
pub mod reading;
pub mod sends;
pub mod startup;
pub mod store;
pub mod writer;

pub use config::{ContentBackend, Settings};
pub use startup::Application;
