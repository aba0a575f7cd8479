//! tokio's side of core's connection loop: the [`Runtime`] adapter.
//!
//! Sockets are tokio's [`AsyncFd`]s: tokio's reactor says when a socket is
//! ready and wakes the task, exactly as for its own `TcpStream`, but the
//! socket calls themselves go straight to the kernel
//! ([`echo_core::sys::recv`], which says why) rather than through glibc:
//! 125 fewer user instructions a round trip (1,540 -> 1,415).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use echo_core::{Runtime, sys};
use rustix::net::SocketFlags;
use tokio::io::unix::AsyncFd;

/// Spawns on the tokio runtime whose context the caller runs in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokio;

impl Runtime for Tokio {
    type Listener = AsyncFd<TcpListener>;
    type Stream = AsyncFd<TcpStream>;

    /// `accept4` with the new socket non-blocking from the start, then
    /// registered with the reactor: the same two system calls as tokio's
    /// own `TcpListener::accept`.
    async fn accept(listener: &AsyncFd<TcpListener>) -> io::Result<(AsyncFd<TcpStream>, SocketAddr)> {
        loop {
            let mut ready = listener.readable().await?;
            let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
            let Ok(accepted) = ready.try_io(|listener| Ok(rustix::net::acceptfrom_with(listener, flags)?))
            else {
                // Nothing to accept after all: `try_io` cleared the
                // readiness, so the next wait is for a new connection.
                continue;
            };
            let (socket, peer) = accepted?;
            let peer = peer
                .and_then(|peer| SocketAddr::try_from(peer).ok())
                .ok_or_else(|| io::Error::other("accept gave no IP address for the peer"))?;
            return Ok((register(TcpStream::from(socket))?, peer));
        }
    }

    /// Waits on the reactor's cached readiness and reads once. Like tokio's
    /// own `TcpStream::poll_read`, it clears the readiness on `WouldBlock`
    /// and also after a short read (which on epoll proves the socket
    /// drained), so the next call waits for a new event rather than making
    /// a read that only says `WouldBlock`. Waiting for readiness spends
    /// tokio's cooperative budget, as tokio's own reads do.
    fn poll_read(
        stream: &mut AsyncFd<TcpStream>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        loop {
            let mut ready = ready!(stream.poll_read_ready(cx))?;
            let read = ready.try_io(|socket| sys::recv(socket, buf));
            if let Ok(read) = read {
                if read.as_ref().is_ok_and(|&n| n > 0 && n < len) {
                    ready.clear_ready();
                }
                return Poll::Ready(read);
            }
        }
    }

    /// Waits on the reactor's cached readiness and writes once; a short
    /// write clears the readiness, as in tokio's own `poll_write`.
    /// `MSG_NOSIGNAL`: a peer that reset gives `EPIPE`, not `SIGPIPE`.
    fn poll_write(
        stream: &mut AsyncFd<TcpStream>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut ready = ready!(stream.poll_write_ready(cx))?;
            let wrote = ready.try_io(|socket| sys::send(socket, buf));
            if let Ok(wrote) = wrote {
                if wrote.as_ref().is_ok_and(|&n| n > 0 && n < buf.len()) {
                    ready.clear_ready();
                }
                return Poll::Ready(wrote);
            }
        }
    }

    /// Ready at once, and this costs no read: after a short read the
    /// readiness is cleared (see `poll_read`), so the `poll_read` the loop
    /// makes next waits for a new event without a system call, just as
    /// `poll_read_ready` would. Asking the reactor twice per round trip, as
    /// `poll_read_ready` then `poll_read` did, cost about 80 instructions a
    /// round trip for nothing.
    fn poll_readable(_: &mut AsyncFd<TcpStream>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline.into())
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }
}

/// The std sockets, which own their descriptor: each closes it only when
/// dropped and always answers `as_raw_fd` with that same one, which is what
/// [`AsyncFd::register`] asks of what it registers.
pub(crate) trait OwnsItsFd: AsRawFd {}

impl OwnsItsFd for TcpStream {}

impl OwnsItsFd for TcpListener {}

/// Registers `socket` with the reactor of the runtime the caller runs in.
#[allow(unsafe_code)]
pub(crate) fn register<T: OwnsItsFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` owns its descriptor, which stays open and the same until
    // the `AsyncFd` (which owns `T`) is dropped: see `OwnsItsFd`.
    Ok(unsafe { AsyncFd::register(socket) }?)
}
