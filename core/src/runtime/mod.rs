//! The one connection loop and accept loop of the task-per-connection
//! engines, written once against [`Runtime`], the
//! small adapter each of those backends supplies, in the shape of quinn's
//! `runtime` module.
//!
//! Everything that is policy lives here: the order of reads and writes, the
//! fairness budget and the yield after it, the idle timer, the drain on
//! shutdown, the accept loop's back-off and socket setup. A backend crate
//! only says how its runtime reads, writes, waits, sleeps, yields and spawns,
//! and sets up its threads.

mod accept;
mod connection;

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use accept::{serve, spawn};

/// What a task-per-connection runtime must provide for core's loops to run
/// on it.
///
/// # Contract
///
/// - **Socket calls never block.** [`Runtime::poll_read`] and
///   [`Runtime::poll_write`] make at most one read or write of the socket
///   and return `Ready` with its outcome, any error included; when the call
///   would block (`WouldBlock`, spurious readiness included) they register
///   `cx`'s waker for that direction and return `Pending`, and the task is
///   woken once the socket may have become ready again. A readiness that
///   arrived between the `WouldBlock` and the registration must still wake
///   the task. `Interrupted` may be returned; the loop simply calls again.
/// - **Waiting for input without reading.** [`Runtime::poll_readable`]
///   returns `Ready` once input (or end of input) may be waiting, and
///   otherwise registers `cx`'s waker for readability. The loop calls it
///   after a short read, when a further read would most likely only say
///   `WouldBlock`. A runtime that cannot wait without reading may return
///   `Ready` at once; that costs one read that says `WouldBlock`.
/// - **Cancel-safe.** The loop may drop a pending wait at any time (shutdown
///   or the idle timer won the race); that must lose no bytes, which holds
///   when nothing is read or written except inside a `Ready` poll.
/// - **Timers** from [`Runtime::sleep_until`] resolve at or after their
///   deadline and cost nothing once dropped.
/// - [`Runtime::yield_now`] returns `Pending` once, having arranged to be
///   polled again after the runtime's other ready tasks had a turn.
/// - [`Runtime::accept`] hands back `accept`'s errors as they are
///   (`EINTR`, `EMFILE`, ...), retrying none: the accept loop applies
///   [`AcceptBackoff`](crate::AcceptBackoff)'s policy, the same for every
///   backend.
/// - [`Runtime::spawn`] runs a task to completion on the server's own
///   threads, detached; the tasks still running when the runtime is dropped
///   are dropped with it, which closes their sockets and counts them.
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's listening socket, non-blocking and registered.
    type Listener: Send + Sync + 'static;
    /// The runtime's connected socket, non-blocking and registered.
    type Stream: AsFd + Send + Sync + 'static;

    /// Accepts one connection, waiting until one comes.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Reads once into `buf`, or registers for readability (see the contract).
    fn poll_read(stream: &mut Self::Stream, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes once from `buf`, or registers for writability.
    fn poll_write(stream: &mut Self::Stream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Resolves once input may be waiting, without reading it.
    fn poll_readable(stream: &mut Self::Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Resolves at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;

    /// Gives the thread back to the runtime's other tasks once.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// Runs `task` on the server's threads, detached.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
}

/// Polls `first`, then `second`, until one of them is ready, and returns its
/// output; the other is dropped. `first` wins a tie, which is how shutdown
/// beats a socket that is always ready.
async fn race<T>(first: impl Future<Output = T>, second: impl Future<Output = T>) -> T {
    let (mut first, mut second) = (pin!(first), pin!(second));
    poll_fn(|cx| match first.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(out),
        Poll::Pending => second.as_mut().poll(cx),
    })
    .await
}
