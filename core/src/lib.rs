//! The parts every echo-bench backend shares: the echo protocol as a sans-IO
//! session, the per-connection state machine, the [`Backend`] trait and its
//! [`Server`] handle, binding, socket setup and the accept loop's error
//! policy ([`accept`]), the one connection loop of the task-per-connection
//! engines ([`runtime`]), and the conformance suite that proves a server
//! speaks the protocol.
//!
//! This crate has no runtime: [`runtime`]'s loops do their I/O only through
//! the small [`Runtime`] adapter a backend supplies. Apart from that it
//! binds listeners and runs the blocking clients of the conformance suite.
//!
//! ```
//! use echo_core::protocol::{Mode, Session};
//!
//! // The seed's transcript: `Hello` in, `GOT:Hello` out.
//! let mut session = Session::new(Mode::Got, 1000, 64 * 1024);
//! session.receive(b"Hello");
//! assert_eq!(session.pending(), b"GOT:Hello");
//! ```
// `unsafe` only in `sys`: the two ioctls no safe crate wraps.
#![deny(unsafe_code)]

pub mod accept;
pub mod backend;
pub mod budget;
pub mod buffer;
pub mod conformance;
pub mod connection;
pub mod linger;
pub mod listener;
pub mod protocol;
mod replies;
pub mod runtime;
pub mod stats;
pub mod sys;
pub mod tasks;

pub use accept::{AcceptBackoff, set_nodelay};
pub use backend::{Backend, Server, ServerConfig, ShutdownSignal, Triggered, WakeFn, nothing_to_wake};
pub use budget::Budget;
pub use connection::{CloseReason, Connection, Interest};
pub use linger::{Discarded, Linger, LingerStep, discard_input};
pub use listener::bind;
pub use protocol::{Mode, Session};
pub use runtime::Runtime;
pub use stats::{Stats, StatsSnapshot};
pub use tasks::{TaskToken, TaskTracker};
