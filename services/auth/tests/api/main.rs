//! The auth service through real gRPC, on port 0, against real MariaDB and SQLite
//! (a fresh database per test).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod helpers;
mod login;
mod profile;
mod register;
mod search;
