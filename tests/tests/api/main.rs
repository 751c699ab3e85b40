//! The gateway through real gRPC to the real services, on port 0, over real MariaDB.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod chats;
mod edits;
mod errors;
mod hygiene;
mod limits;
mod messages;
mod outbox;
mod races;
mod reactions;
mod read_state;
mod replies;
mod system;
mod trust;
mod user_socket;
mod users;
