//! The auth service: users, argon2id password hashes, JWT access tokens and
//! user search, served over gRPC (`chat.auth.v1.AuthService` + `grpc.health.v1`).

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod login_limits;
pub mod password;
pub mod startup;
pub mod store;

pub use config::Settings;
pub use startup::Application;
