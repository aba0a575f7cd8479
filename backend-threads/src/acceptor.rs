//! The acceptor thread: accepts, admits, starts a thread per connection, and
//! on shutdown wakes those threads and joins every one of them.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echo_core::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats};

use crate::connection::{self, Socket};
use crate::server::THREAD_NAME;
use crate::shutdown::Tracker;

/// The most connection threads this backend runs at once, whatever
/// [`ServerConfig::max_connections`] says; past it connections are refused
/// like any over the limit.
///
/// The default connection limit follows the descriptor limit, which servers
/// raise to the hard limit, often a million. Threads run out long before:
/// each stack is two memory mappings and Linux allows 65530 by default
/// (`vm.max_map_count`), besides `threads-max` and `pid_max`. A fixed cap
/// well below those makes the limit predictable instead of depending on
/// which resource fails first.
pub const MAX_CONNECTION_THREADS: usize = 16 * 1024;

/// Stack size of a connection thread. The read buffer is on the heap, so the
/// stack holds only a few small frames and whatever the installed `tracing`
/// subscriber needs to format a line; the default 2 MiB is far more than
/// that, and at thousands of threads the address space adds up.
const STACK_SIZE: usize = 256 * 1024;

/// Finished threads are joined once the list of started ones reaches this
/// many (and then twice the number still running), so the cost of the scan
/// is spread over the accepts that filled the list.
const REAP_AT_LEAST: usize = 64;

/// Accepts on `listener` until shutdown, then drains and joins every
/// connection thread. Returns only once all of them have exited.
pub(crate) fn run(
    listener: TcpListener,
    config: ServerConfig,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
) {
    let mut threads = Threads::new(config, Arc::clone(&stats), Arc::clone(&signal));
    let mut backoff = AcceptBackoff::default();
    // The signal is looked at after every return from `accept`: the waker
    // makes a blocked `accept` return (see `shutdown.rs`).
    while !signal.is_triggered() {
        match listener.accept() {
            // The waker's own connection, or one that raced with shutdown:
            // dropped unserved.
            Ok(_) | Err(_) if signal.is_triggered() => break,
            Ok((stream, peer)) => {
                backoff.succeeded();
                threads.start(stream, peer);
            }
            Err(err) => {
                // Core's policy: go on at once (a signal, one connection's
                // error), or pause when accepting again at once would fail
                // again at once (out of descriptors, an error that repeats).
                if let Some(delay) = backoff.failed(&err, &stats) {
                    pause(delay, &signal);
                }
            }
        }
    }
    // Refuse new connections from now on, while the old ones drain.
    drop(listener);
    threads.shut_down();
}

/// Sleeps for `delay`, or less if shutdown begins: the waker unparks this
/// thread, and an unpark that comes before the park is not lost.
fn pause(delay: Duration, signal: &ShutdownSignal) {
    let until = Instant::now() + delay;
    // A loop, because `park_timeout` may return early for no reason.
    while !signal.is_triggered() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::park_timeout(left);
    }
}

/// The connection threads started by this acceptor.
struct Threads {
    /// The server's config, with `max_connections` capped at
    /// [`MAX_CONNECTION_THREADS`]: [`Connection::admit`] reads the limit here.
    config: ServerConfig,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
    /// Counts threads still running, so shutdown can wait with a deadline.
    tracker: Arc<Tracker>,
    /// Every thread started and not yet joined.
    running: Vec<Running>,
    /// Join finished threads when `running` reaches this length.
    reap_at: usize,
    /// When a failed thread start was last logged, so that a burst of them
    /// logs about once a second.
    spawn_failure_logged: Option<Instant>,
}

/// One connection thread.
struct Running {
    thread: JoinHandle<()>,
    /// The connection's socket, for shutdown to wake the thread through.
    /// Weak, so that the socket closes as soon as its thread drops it.
    socket: Weak<Socket>,
}

impl Threads {
    fn new(mut config: ServerConfig, stats: Arc<Stats>, signal: Arc<ShutdownSignal>) -> Self {
        if config.max_connections > MAX_CONNECTION_THREADS {
            tracing::debug!(
                asked = config.max_connections,
                cap = MAX_CONNECTION_THREADS,
                "connection limit capped to the thread cap"
            );
            config.max_connections = MAX_CONNECTION_THREADS;
        }
        Threads {
            config,
            stats,
            signal,
            tracker: Arc::default(),
            running: Vec::new(),
            reap_at: REAP_AT_LEAST,
            spawn_failure_logged: None,
        }
    }

    /// Admits the connection and starts its thread, or closes it at once.
    fn start(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Over the connection limit: `stream` is dropped here, closing it.
        let Some(conn) = Connection::admit(peer, &self.config, &self.stats) else { return };
        self.reap();
        let stream = Arc::new(Socket::new(stream));
        let socket = Arc::downgrade(&stream);
        let token = self.tracker.token();
        let signal = Arc::clone(&self.signal);
        let idle = self.config.idle_timeout;
        let spawned =
            thread::Builder::new().name(THREAD_NAME.into()).stack_size(STACK_SIZE).spawn(move || {
                connection::run(stream, conn, idle, &signal);
                // Last, so that shutdown sees this thread as finished only
                // once its connection is closed and counted.
                drop(token);
            });
        match spawned {
            Ok(thread) => self.running.push(Running { thread, socket }),
            Err(err) => {
                // The system has no thread to give (EAGAIN, ENOMEM). The
                // closure was dropped unrun, which closed the socket and
                // counted the connection closed; count it refused as well,
                // since it was never served.
                self.stats.record_refused();
                let now = Instant::now();
                if self.spawn_failure_logged.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    self.spawn_failure_logged = Some(now);
                    tracing::warn!(%peer, error = %err, "cannot start a connection thread; refused");
                }
            }
        }
    }

    /// Joins the threads that have finished, so their handles do not pile up
    /// over a long run.
    fn reap(&mut self) {
        if self.running.len() < self.reap_at {
            return;
        }
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].thread.is_finished() {
                join(self.running.swap_remove(i).thread);
            } else {
                i += 1;
            }
        }
        self.reap_at = (self.running.len() * 2).max(REAP_AT_LEAST);
    }

    /// Wakes every connection thread to drain, cuts off those still busy at
    /// the drain deadline, and joins them all.
    fn shut_down(mut self) {
        self.wake_readers();
        let deadline = self.signal.deadline().unwrap_or_else(Instant::now);
        if !self.tracker.wait_until(deadline) {
            // Every read and write on these sockets now fails at once, so
            // the threads blocked in a write to a client that does not read
            // return, see the deadline has passed, and close.
            self.cut_off();
        }
        for running in self.running.drain(..) {
            join(running.thread);
        }
    }

    /// Stops every connection thread from reading: shuts down for reading
    /// the sockets of the threads in a read, and only those (see
    /// `shutdown.rs` for what each one then does). A thread blocked in a
    /// write is left to flush until the deadline.
    fn wake_readers(&self) {
        for running in &self.running {
            if let Some(socket) = running.socket.upgrade() {
                if socket.gate.close() {
                    // Fails only if the socket is already shut down or
                    // reset, in which case its thread is not blocked on it.
                    let _ = socket.stream.shutdown(Shutdown::Read);
                }
            }
        }
    }

    /// Shuts every open connection socket down both ways, at the deadline.
    fn cut_off(&self) {
        for running in &self.running {
            if let Some(socket) = running.socket.upgrade() {
                // As above: fails only if no thread is blocked on it.
                let _ = socket.stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn join(thread: JoinHandle<()>) {
    if thread.join().is_err() {
        tracing::error!("a connection thread panicked");
    }
}
