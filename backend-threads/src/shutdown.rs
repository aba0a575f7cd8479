//! How the server's blocked threads are woken when it stops, and how the
//! acceptor learns that every connection thread has finished.
//!
//! A blocked thread cannot wait for "data or shutdown" the way a task can,
//! so each one is woken through the very call it is blocked in:
//!
//! - The acceptor, in accept(2): [`waker`] shuts the listening socket down
//!   for reading, which on Linux makes a blocked `accept` fail at once (with
//!   `EINVAL`) and refuses new connections from then on. Where that is not
//!   supported it connects to the listener once instead, so `accept` returns
//!   that connection, which the acceptor drops unserved. In an accept
//!   back-off it is parked, and [`waker`] unparks it.
//! - A connection thread in read(2): the acceptor shuts its socket down for
//!   reading (`SHUT_RD`); the blocked read returns 0, and so does every later
//!   one, so the thread writes what it owes and closes. Doing this from the
//!   acceptor, after it has stopped accepting, means no connection can be
//!   registered after the pass and be missed.
//! - A connection thread in write(2) to a client that does not read: left to
//!   flush until the drain deadline, then `SHUT_RDWR` makes the write fail.
//!   Its socket must not get the `SHUT_RD` meant for readers. That wakes
//!   every sleeper on the socket, and Linux lets a woken write copy the rest
//!   of its buffer into send-buffer room that freed up too little to wake it
//!   by itself, so the write returns complete at once; and reads then return
//!   0 as soon as the queued input is gone, which would end the lingering
//!   close that follows the drain (see `connection::linger`) before the
//!   client has acknowledged its replies. A [`ReadGate`] per connection
//!   tells the acceptor which threads are reading.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use echo_core::WakeFn;
use socket2::SockRef;

/// How long the fallback wake-up connection may take. If the backlog is so
/// full that connecting times out, `accept` has queued connections to
/// return anyway, so it is not blocked and needs no waking.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The closure `Server` calls once the shutdown signal is set: it wakes the
/// acceptor, which then wakes the connection threads.
///
/// `listener` is a second handle on the listening socket. It is used once
/// and dropped, so the socket is closed as soon as the acceptor drops its
/// own handle; `Server` calls the waker again when dropped, which then does
/// nothing.
pub(crate) fn waker(listener: TcpListener, addr: SocketAddr, acceptor: Thread) -> WakeFn {
    let listener = Mutex::new(Some(listener));
    Box::new(move || {
        // Out of a back-off sleep. An unpark before the park is kept, so this
        // cannot be lost whatever the acceptor is doing right now.
        acceptor.unpark();
        let Some(listener) = lock(&listener).take() else { return };
        if let Err(err) = SockRef::from(&listener).shutdown(Shutdown::Read) {
            tracing::debug!(error = %err, "cannot shut the listener down; connecting to wake accept");
            // The connection, if made, is accepted and dropped unserved.
            let _ = TcpStream::connect_timeout(&reachable(addr), WAKE_CONNECT_TIMEOUT);
        }
    })
}

/// An address a connection to `addr` can be made on: a listener on every
/// interface is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Whether a connection thread is in a read, shared between that thread and
/// the acceptor, so that shutdown shuts down for reading (see the module
/// docs) exactly the sockets a thread may be blocked reading, and no other.
///
/// Every change is one atomic read-modify-write on the same value, so the
/// thread's [`ReadGate::enter`] and the acceptor's [`ReadGate::close`] are
/// ordered one way or the other: either the thread is reading when the
/// acceptor closes the gate, and the acceptor wakes it with `SHUT_RD`, or the
/// gate is closed first, and the thread does not start the read at all. No
/// read can slip in after the wake-up pass and then block until the deadline.
#[derive(Debug, Default)]
pub(crate) struct ReadGate(AtomicU8);

/// The thread is not reading (it is writing, or between calls).
const NOT_READING: u8 = 0;
/// The thread is in a read, or about to make one.
const READING: u8 = 1;
/// Shutdown has begun: no more reads.
const CLOSED: u8 = 2;

impl ReadGate {
    /// Called by the connection thread before each read. Returns `false`
    /// once shutdown has closed the gate: read nothing more, drain instead.
    pub(crate) fn enter(&self) -> bool {
        self.0.compare_exchange(NOT_READING, READING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Called by the connection thread once its read has returned. Leaves a
    /// closed gate closed.
    pub(crate) fn leave(&self) {
        let _ = self.0.compare_exchange(READING, NOT_READING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Called by the acceptor at shutdown: closes the gate, and returns
    /// whether the thread is reading (or about to) and so must be woken.
    pub(crate) fn close(&self) -> bool {
        self.0.swap(CLOSED, Ordering::AcqRel) == READING
    }
}

/// Counts live connection threads, so the acceptor can wait until they have
/// all finished or the drain deadline has passed, whichever comes first.
/// (Joining cannot do that: `JoinHandle::join` has no timeout.)
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Connection threads that have not finished.
    live: Mutex<usize>,
    /// Notified when `live` falls to zero.
    all_done: Condvar,
}

/// Held by a connection thread for as long as it runs; dropping it, even
/// while unwinding, counts the thread as finished.
#[derive(Debug)]
pub(crate) struct Token(Arc<Tracker>);

impl Tracker {
    /// A token for one more connection thread.
    pub(crate) fn token(self: &Arc<Self>) -> Token {
        *lock(&self.live) += 1;
        Token(Arc::clone(self))
    }

    /// Waits until every token is dropped or `deadline` passes. Returns
    /// whether every token was dropped.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let mut live = lock(&self.live);
        // A loop, because a condition variable may wake spuriously.
        while *live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            live = self.all_done.wait_timeout(live, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let mut live = lock(&self.0.live);
        *live -= 1;
        if *live == 0 {
            self.0.all_done.notify_all();
        }
    }
}

/// Locks `mutex`, ignoring poisoning: the data guarded here (a counter, an
/// optional socket) stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
