//! The gateway's REST routes, one module per area of API.md.

pub mod chats;
pub mod messages;
pub mod reads;
pub mod system;
pub mod users;
