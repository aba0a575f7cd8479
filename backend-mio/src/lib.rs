//! The echo server as a [mio] event loop, in the style of mio's own
//! `examples/tcp_server.rs`: a slab of connections keyed by token, a named
//! `SERVER` token for the listener, accept until `WouldBlock`, one read
//! buffer per loop, and WRITABLE interest only while replies are pending.
//!
//! Each connection's protocol, watermarks, counters and log lines live in
//! [`echo_core::Connection`]; this crate only moves bytes between it and the
//! socket. It does not bind (core does, once, for every backend), parse
//! options or install signal handlers.
//!
//! # Threads
//!
//! [`ServerConfig::threads`] = N runs N event loops, each on its own thread
//! with its own `Poll`. The first loop owns the listener: it accepts, admits
//! each connection (the connection limit) and deals the sockets round-robin
//! to every loop, itself included, through a channel per loop and that
//! loop's `mio::Waker`; a loop serves the connections it was dealt until
//! they close.
//!
//! Why that and not the alternatives:
//! - `SO_REUSEPORT`, one listener per loop, would let the kernel balance,
//!   but the listener arrives already bound, and the option must be set
//!   before `bind` to take part in the kernel's balancing.
//! - Every loop registering a `try_clone` of the one listener is simple, but
//!   each new connection wakes every loop (a thundering herd), and the loop
//!   that wakes first accepts the whole burst: a benchmark that opens 500
//!   connections at once would find most of them on one loop, for their
//!   whole life.
//!
//! Dealing from one acceptor costs one channel send per connection and one
//! wake-up per loop per burst of accepts; it balances evenly and keeps the
//! accept back-off in one place. Every loop counts into the same
//! [`echo_core::Stats`].
//!
//! # Shutdown
//!
//! [`Server::shutdown`] wakes every loop through its `mio::Waker`. Each loop
//! then drops its listener at once (new connections are refused), stops
//! reading, flushes the replies it owes until everything is written or the
//! drain deadline passes, closes the rest, and its thread returns; `shutdown`
//! returns once every thread has been joined.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_mio::MioBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = MioBackend.spawn(listener, &ServerConfig::default())?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.set_read_timeout(Some(Duration::from_secs(5)))?;
//! client.write_all(b"Hello")?;
//! let mut reply = [0; 9];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"GOT:Hello");
//!
//! server.shutdown(Duration::from_secs(1));
//! # Ok(())
//! # }
//! ```
//!
//! [mio]: https://docs.rs/mio
//! [`ServerConfig::threads`]: echo_core::ServerConfig::threads
//! [`Server::shutdown`]: echo_core::Server::shutdown
#![forbid(unsafe_code)]

mod acceptor;
mod conn;
mod errors;
mod event_loop;

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, mpsc};

use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats};
use mio::{Poll, Waker};

use crate::acceptor::{Acceptor, Sibling};
use crate::event_loop::{EventLoop, SERVER, WAKER};

/// The mio backend: `threads` event loops, the first of which accepts.
#[derive(Clone, Copy, Debug, Default)]
pub struct MioBackend;

impl Backend for MioBackend {
    fn name(&self) -> &'static str {
        "mio"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = mio::net::TcpListener::from_std(listener);
        let stats = Arc::new(Stats::default());
        let signal = Arc::new(ShutdownSignal::default());

        // Everything that can fail is done here, before any thread starts,
        // so a failure is an `io::Error` for the caller.
        let mut loops = Vec::new();
        let mut siblings = Vec::new();
        for _ in 0..config.threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (inbox, receiver) = mpsc::channel();
            loops.push(EventLoop::new(
                poll,
                receiver,
                config.clone(),
                Arc::clone(&stats),
                Arc::clone(&signal),
            ));
            siblings.push(Sibling { inbox, waker });
        }
        let wakers: Vec<Arc<Waker>> = siblings.iter().map(|s| Arc::clone(&s.waker)).collect();
        // The first loop deals to itself directly, not through its inbox.
        siblings.remove(0);
        let first = &mut loops[0];
        let acceptor = Acceptor::register(listener, siblings, first.registry(), SERVER)?;
        first.set_acceptor(acceptor);

        let wake: echo_core::WakeFn = Box::new(move || {
            for waker in &wakers {
                if let Err(err) = waker.wake() {
                    tracing::warn!(error = %err, "cannot wake an event loop");
                }
            }
        });
        let workers = loops.into_iter().map(|event_loop| move || event_loop.run());
        Server::start_threads(local_addr, stats, signal, wake, "echo-mio", workers)
    }
}
