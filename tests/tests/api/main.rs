//! The gateway through real gRPC to the real services, on port 0, over real MariaDB.

mod errors;
mod system;
mod users;
