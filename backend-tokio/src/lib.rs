//! The echo server on [tokio]: one task per connection, on a runtime this
//! crate builds and owns.
//!
//! `threads` of 1 (or 0) runs tokio's current-thread runtime on one thread
//! of its own; `threads == N > 1` runs the multi-thread runtime with N
//! workers, driven from one more thread that runs the accept loop. Every one
//! of those threads has exited when
//! [`Server::shutdown`](echo_core::Server::shutdown) returns. Each connection is
//! a task running core's one connection loop ([`echo_core::runtime`]),
//! shared with async-std and smol: this crate only builds the runtime and
//! adapts it to that loop (readiness, timers, spawn, yield). Sockets are
//! registered with tokio's reactor as [`AsyncFd`](tokio::io::unix::AsyncFd)s
//! and read and written with system calls of their own, not glibc's, which
//! in a process of several threads cost every call more (see `runtime.rs`).
//!
//! What it does not do: bind (core's [`echo_core::bind`] does, once for every
//! backend), parse a command line, or install signal handlers; the caller
//! owns the [`Server`](echo_core::Server) handle and decides when to stop.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_tokio::TokioBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = TokioBackend.spawn(listener, &ServerConfig::default())?;
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
// One `unsafe` call, registering a socket with tokio's reactor (see
// `runtime::register`); nothing else may use it.
#![deny(unsafe_code)]

mod runtime;
mod server;

/// The tokio backend, named `tokio` on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioBackend;
