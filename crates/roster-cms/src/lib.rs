//! The central management store's state, sans-IO.
//!
//! Main types: [`CmsState`] (the deployment, the user directory and each pool's ownership),
//! [`CmsCommand`] (what changes it) and [`CmsOutcome`] (what applying one answered),
//! [`UserRecord`] (one user) and [`Ownership`] (which pool owns a pool's users, at which epoch).
//!
//! The CMS is one Raft group on its home pool's nodes, with a backup copy on the partner pool's:
//! `roster-raft` makes this state a group's content, and every replica applies the same
//! commands in the same order. Nodes read credentials and home pools from their local replica.
//!
//! **Architecture Invariant**: no I/O, no clock, no randomness: [`CmsState::apply`] depends on
//! the command and the state only.
#![deny(missing_docs)]

mod command;
mod ownership;
mod state;
mod user;

pub use command::{CmsCommand, CmsOutcome, CmsRefusal, USERS_PER_COMMAND_MAX};
pub use ownership::{Operation, OperationKind, Ownership};
pub use state::CmsState;
pub use user::{UserError, UserRecord, AOR_LENGTH_MAX, USERNAME_LENGTH_MAX};
