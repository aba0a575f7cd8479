//! The echo server with blocking [`std::net`] sockets: one OS thread per
//! connection, plus one acceptor thread.
//!
//! The oldest server shape there is, and the baseline the event loops are
//! measured against: every connection thread reads (blocking) at most
//! [`Connection::read_limit`](echo_core::Connection::read_limit) bytes, then
//! writes (blocking) every reply byte that read produced, then reads again.
//! Each thread drives an [`echo_core::Connection`], which holds the protocol,
//! the output watermarks, the counters and the log lines: this crate only
//! moves bytes between that state and the socket. Those reads and writes are
//! system calls of their own, not glibc's, which costs every call more in a
//! process of many threads ([`echo_core::sys::recv`]).
//!
//! Threads are bounded by the connection limit
//! ([`ServerConfig::max_connections`](echo_core::ServerConfig::max_connections)),
//! further capped at [`MAX_CONNECTION_THREADS`]; a thread the system refuses
//! to start refuses that one connection. `threads` in the config is ignored:
//! there is one thread per connection by design.
//!
//! What it does not do: bind (core's [`echo_core::bind`] does, once for every
//! backend), parse a command line, or install signal handlers; the caller
//! owns the [`Server`] handle and decides when to stop.
//! Shutdown wakes every blocked thread (see `shutdown.rs`) rather than
//! waiting for a peer to send something.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_threads::ThreadsBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = ThreadsBackend.spawn(listener, &ServerConfig::default())?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.set_read_timeout(Some(Duration::from_secs(10)))?;
//! client.write_all(b"Hello")?;
//! let mut reply = [0; 9];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"GOT:Hello");
//!
//! server.shutdown(Duration::from_secs(1));
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

mod acceptor;
mod connection;
mod server;
mod shutdown;

use std::io;
use std::net::TcpListener;

use echo_core::{Backend, Server, ServerConfig};

pub use acceptor::MAX_CONNECTION_THREADS;

/// The thread-per-connection backend, named `threads` on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadsBackend;

impl Backend for ThreadsBackend {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        server::spawn(listener, config)
    }
}
