//! The gateway through real gRPC to the real services, on port 0, over real MariaDB.

mod chats;
mod errors;
mod messages;
mod system;
mod users;
