//! Sans-IO SIP registrar for Roster: the rules of RFC 3261 §10.3 with Path (RFC 3327), Outbound
//! (RFC 5626) and GRUU (RFC 5627), digest authentication, and the redirect answers of routing.
//!
//! Two halves, split where replication will go:
//!
//! - [`Front`] runs the stateless steps on a parsed SIP request (domain, `Require`, digest
//!   authentication, AOR and authorization checks, Contact and expiry validation) and yields an
//!   [`Action`]: an answer at once, a [`Command`] to apply, or a lookup. It then turns the result
//!   of the apply or the lookup into the SIP response.
//! - [`Registry`] holds the bindings of every AOR and applies [`Command`]s. [`apply_register`] is
//!   a pure function of (an AOR's bindings, a [`RegisterCommand`], the command's timestamp, the
//!   [`Policy`]), so the same commands in the same order give the same bindings on every replica.
//! - [`merge_bindings`] ([`Registry::merge`]) brings home what a backup registrar acknowledged
//!   while the home pool was out of reach: newest per binding wins, [`Tombstone`]s carry
//!   removals.
//!
//! **Architecture Invariant**: no I/O, no clock, no randomness. Time comes in as `now_ms`
//! (milliseconds since the Unix epoch) with each call; in [`Registry`] it is the command's
//! timestamp, never the local clock. Commands are serde types so they can travel in a log.
#![deny(missing_docs)]

mod apply;
mod binding;
mod command;
mod date;
mod directory;
mod front;
mod merge;
mod networks;
mod policy;
mod registry;
mod response;
mod stored;

pub use apply::{apply_register, Applied, Refusal};
pub use binding::{Binding, BindingKey};
pub use command::{Command, ContactChange, ContactUpdate, RegisterCommand};
pub use date::http_date;
pub use directory::{Directory, DirectoryError, User};
pub use front::{
    Action, Front, FrontConfig, FrontEvent, RequestContext, Transport, FRONT_EVENTS_MAX,
};
pub use merge::{merge_bindings, MergeCommand, Tombstone, WriteStamp};
pub use networks::{Network, NetworkError, Networks, NETWORKS_MAX};
pub use policy::{Overflow, Policy, PolicyError, BINDINGS_PER_AOR_MAX};
pub use registry::{sort_for_lookup, CommandOutcome, Registry};
pub use response::SUPPORTED_OPTION_TAGS;
