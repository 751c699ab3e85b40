//! The public gateway: REST (`/api/v1/...`), API docs and, in front of the
//! services, token verification. Stateless: any number of replicas.

pub mod client_addr;
pub mod config;
pub mod docs;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod http_server;
pub mod limits;
pub mod messaging;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;
pub mod token_versions;
pub mod ws;

pub use config::Settings;
pub use startup::Application;
