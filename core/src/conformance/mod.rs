//! The shared conformance suite: one set of cases, written with blocking
//! `std::net` clients, that any live echo server must pass.
//!
//! It is the one source of truth for `cargo test` (a macro in
//! `bench/tests/conformance.rs` expands every case per backend, thread count
//! and mode) and for `echo-bench check --addr`, which runs it against any
//! server, the seed's own Python program included (that one only does `got`).
//!
//! Each case is a plain `pub fn` taking a [`Target`] and returning a
//! [`Failure`] that names what differed. Every case means something in every
//! mode: `line` and `raw` replies are compared byte for byte with an oracle
//! written here, independent of [`crate::protocol::Session`] so that a
//! Session bug cannot hide; `got` replies, which depend on how TCP split the
//! stream, are checked against the protocol's invariant (see
//! [`ReplyChecker`]). Every socket has read and write timeouts and every case
//! an overall deadline, so a broken server makes a case fail, never hang.
//!
//! ```no_run
//! use echo_core::conformance::{CASES, Target};
//! use echo_core::Mode;
//!
//! let target = Target::new("127.0.0.1:25000".parse().unwrap(), Mode::Got);
//! for case in CASES {
//!     match (case.run)(&target) {
//!         Ok(()) => println!("PASS {}", case.name),
//!         Err(failure) => println!("FAIL {}: {failure}", case.name),
//!     }
//! }
//! ```
//!
//! Beside it, [`lifecycle`] holds the cases about starting, stopping and
//! dropping a backend through the library API (`bench/tests/lifecycle.rs`
//! and `threads_exit.rs` expand them), and [`harness`] the few helpers
//! those cases share with the backends' own tests.
//!
//! # Adding a case
//!
//! 1. Write `pub fn my_case(target: &Target) -> Result<(), Failure>` in
//!    `cases.rs`, with a doc comment saying what it checks. Open connections
//!    with `Client::connect` (timeouts and the case deadline come with it);
//!    send with `round_trip` (small messages) or `exchange` (anything that
//!    may not fit the socket buffers: it writes from a thread while reading).
//!    Build inputs with `payload`, which never emits `G` (so a `got` reply
//!    parses unambiguously) unless the case is about every byte value.
//! 2. Make it fail for a wrong server in every mode: let the reply checker
//!    judge the reply (it knows each mode), and end each connection with
//!    `Client::close` (a last round trip shows any stray byte), or with
//!    `Client::finish` where the case is about the server ending the stream.
//! 3. Add its name to the list in [`for_each_case!`](crate::for_each_case)
//!    at the bottom of this file (the order `CASES` runs in). That list is
//!    the only one: `CASES` is made from it, and `bench/tests/conformance.rs`
//!    writes one test per case per backend, thread count and mode from it
//!    (its `every_case_is_expanded` tests check that each expansion holds
//!    every case in `CASES`). When the case exists to catch a particular
//!    bug, give `core/tests/broken_servers.rs` a broken server that it must
//!    catch.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{DEFAULT_MAX_LINE, DEFAULT_READ_SIZE, Mode};

/// Lists the cases once, so that a case's name is its function's name. It
/// makes the `CASES` of whichever module calls it, from that module's
/// `Case` (so [`lifecycle`] uses it too): defined before the modules, it is
/// in scope in them.
macro_rules! cases {
    ($(#[$meta:meta])* $($name:ident),* $(,)?) => {
        $(#[$meta])*
        pub const CASES: &[Case] = &[$(Case { name: stringify!($name), run: $name }),*];
    };
}

mod cases;
mod client;
pub mod harness;
pub mod lifecycle;
mod payload;
mod verify;

pub use cases::*;
pub use verify::{ReplyChecker, line_reply};

/// How long one read or write may wait for progress before the case fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one whole case may take, whatever the server does.
pub const CASE_DEADLINE: Duration = Duration::from_secs(60);

/// The server under test, and the parameters its replies depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The mode it was started in: it decides what a correct reply is.
    pub mode: Mode,
    /// Its largest `got` piece (the seed's `recv(1000)`).
    pub read_size: usize,
    /// Its longest whole line in `line` mode.
    pub max_line: usize,
}

impl Target {
    /// A server at `addr` in `mode` with the protocol's default read size and
    /// line limit.
    pub fn new(addr: SocketAddr, mode: Mode) -> Self {
        Target { addr, mode, read_size: DEFAULT_READ_SIZE, max_line: DEFAULT_MAX_LINE }
    }
}

/// Why a case failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A socket call failed: connect, read, write, shutdown. A reset where
    /// a clean end of stream was due lands here too.
    #[error("{step}: {source}")]
    Io {
        /// What the client was doing, and on which connection.
        step: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The server answered, but not what the protocol says: the message
    /// names the connection, the offset and the expected and received bytes.
    #[error("{0}")]
    Mismatch(String),
    /// The server closed the connection before the whole reply came.
    #[error("{0}")]
    Closed(String),
    /// Nothing arrived (or could be sent) in time, or the case ran past its
    /// deadline.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Failure {
    /// The same failure with `context` (a connection's name, say) in front
    /// of its message.
    pub fn within(self, context: &str) -> Self {
        match self {
            Failure::Io { step, source } => Failure::Io { step: format!("{context}: {step}"), source },
            Failure::Mismatch(m) => Failure::Mismatch(format!("{context}: {m}")),
            Failure::Closed(m) => Failure::Closed(format!("{context}: {m}")),
            Failure::Timeout(m) => Failure::Timeout(format!("{context}: {m}")),
        }
    }
}

/// Lets a test that returns `io::Result` use `?` on the harness's helpers;
/// a timeout stays a [`io::ErrorKind::TimedOut`].
impl From<Failure> for io::Error {
    fn from(failure: Failure) -> Self {
        let kind = match &failure {
            Failure::Io { source, .. } => source.kind(),
            Failure::Timeout(_) => io::ErrorKind::TimedOut,
            Failure::Mismatch(_) | Failure::Closed(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, failure)
    }
}

/// One named conformance case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The case's name, the same as its function's.
    pub name: &'static str,
    /// The case itself.
    pub run: fn(&Target) -> Result<(), Failure>,
}

/// The one list of the conformance cases, in the order [`CASES`] runs
/// them: expands to `$callback! { $($args)* seed_transcript, many_clients,
/// ... }`, each case the name of its function in [`crate::conformance`].
///
/// [`CASES`] is made from it, and `bench/tests/conformance.rs` writes one
/// `#[test]` per case per backend from it, so a new case is listed here
/// and nowhere else. `$callback` must be a `macro_rules!` macro in scope
/// where this is called; `$args` go in front of the names.
///
/// ```
/// macro_rules! names {
///     ($($case:ident),* $(,)?) => { [$(stringify!($case)),*] };
/// }
/// let names = echo_core::for_each_case!(names! {});
/// let cases: Vec<_> = echo_core::conformance::CASES.iter().map(|c| c.name).collect();
/// assert_eq!(names[..], cases[..]);
/// ```
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident! { $($args:tt)* }) => {
        $callback! { $($args)*
            seed_transcript,
            many_clients,
            every_byte_value,
            large_stream,
            slow_reader,
            half_close,
            half_close_backed_up,
            empty_connection,
            chunking_independence,
            long_lines,
            got_piece_sizes,
            // Last: a server that dies on a reset (the seed does) fails
            // every case after it, so `check` against it reports the
            // earlier cases first.
            reset_mid_stream,
        }
    };
}

for_each_case!(cases! {
    /// Every case, quick and basic ones first, the long streams and fault
    /// cases after.
});
