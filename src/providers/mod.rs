//! I/O with the systems reconcile manages. Each provider reads live state and applies steps;
//! nothing here decides what to change.

pub mod aws;
pub mod gitlab;
