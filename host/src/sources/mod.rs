//! Where entries come from: implementations of
//! [`Source`](crate::pipeline::source::Source). Each reads deliveries its own
//! way, hands them to the pipeline's intake, and carries out the verdicts
//! with its own Redis commands.

pub mod letter;
pub mod list;
pub mod pubsub;
pub mod sorted_set;
pub mod stream;
