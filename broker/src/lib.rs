//! Sluice broker library.

pub mod codec;
pub mod reason;
pub mod retain;
pub mod subscriptions;
pub mod topic;
