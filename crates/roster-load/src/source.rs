//! [`Source`]: what the driver asks a workload (the load, or the verification) for.

use std::time::Instant;

use crate::client::{Client, Completion};
use crate::op::OpRequest;

/// A producer of operations at intended times, without I/O or clock.
pub trait Source {
    /// The next operation due at `now` whose session is free in `client`, if any.
    /// Operations due while their session is busy may be skipped (and counted).
    fn poll_op(&mut self, now: Instant, client: &Client) -> Option<OpRequest>;

    /// The intended time of the next operation, possibly in the past (a backlog).
    fn due_at(&self) -> Option<Instant>;

    /// Takes in a finished operation.
    fn handle_completion(&mut self, completion: &Completion);

    /// Whether no operation will be produced any more.
    fn is_finished(&self, now: Instant) -> bool;

    /// Stop producing operations (interrupted).
    fn stop(&mut self);
}
