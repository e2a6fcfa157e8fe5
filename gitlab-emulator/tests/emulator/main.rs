//! Integration tests of the emulator over HTTP, one module per endpoint family.
//! A single test binary keeps link time low on small machines.

mod common;

mod auth;
mod capacity;
mod concurrency;
mod control_plane;
mod faults;
mod fidelity;
mod hooks;
mod inventory;
mod jobs;
mod keys;
mod members;
mod pagination;
mod projects;
mod protected_branches;
mod rate_limit;
mod state_file;
mod tokens;
mod users;
mod variables;
