//! The echo server on [async-std]: one task per connection.
//!
//! async-std is discontinued upstream (its README points to smol); this
//! backend stays because it is asked for.
//!
//! Each connection is a task running core's one connection loop
//! ([`echo_core::runtime`]), shared with tokio and smol: this crate only
//! starts the executor threads and adapts async-std to that loop, with
//! async-std's `TcpListener` / `TcpStream`, timers, `yield_now` and
//! `block_on`.
//!
//! # What `threads` controls
//!
//! async-std's own task pool is process-global and sized once per process by
//! `ASYNC_STD_THREAD_COUNT`, which a library cannot set safely. So this
//! backend does not spawn on it: each server runs its tasks on an executor of
//! its own (an [`async_executor::Executor`], the executor async-std's global
//! pool is itself built on), driven by exactly `threads` threads (at least
//! one), each inside `async_std::task::block_on`. Those threads serve only
//! this server and all exit before [`Server::shutdown`](echo_core::Server::shutdown)
//! returns. What `threads` cannot control is async-std's I/O reactor: it is
//! async-io's single process-wide poller, polled by whichever thread is idle
//! in `block_on`, and helped by async-io's one `async-io` thread, which is
//! started on first use, shared by every async-std user in the process and
//! never stops.
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
//! use backend_async_std::AsyncStdBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = AsyncStdBackend.spawn(listener, &ServerConfig::default())?;
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
//!
//! [async-std]: https://docs.rs/async-std
#![forbid(unsafe_code)]

mod runtime;
mod server;

/// The async-std backend, named `async-std` on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdBackend;
