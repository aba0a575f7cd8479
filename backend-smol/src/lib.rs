//! The echo server on [smol]: one task per connection, on an executor this
//! crate owns, run by `threads` threads of its own.
//!
//! Each of the `config.threads` threads runs the same [`smol::Executor`]
//! (and, whenever it has nothing to run, drives async-io's reactor), so
//! `threads` really is how many threads serve connections. Each connection
//! is a task running core's one connection loop ([`echo_core::runtime`]),
//! shared with tokio and async-std: this crate only starts the executor
//! threads and adapts smol to that loop (readiness, timers, spawn, yield).
//!
//! What it does not do: bind (core's [`echo_core::bind`] does, once for every
//! backend), parse a command line, or install signal handlers; the caller
//! owns the [`Server`](echo_core::Server) handle and decides when to stop.
//! async-io starts one process-wide helper thread, named `async-io`, the
//! first time any code uses it; that thread belongs to async-io, is shared by
//! every user in the process and outlives the server.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_smol::SmolBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = SmolBackend.spawn(listener, &ServerConfig::default())?;
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

mod runtime;
mod server;

/// The smol backend, named `smol` on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolBackend;
