//! tokio's side of core's connection loop: the [`Runtime`] adapter.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use echo_core::Runtime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Spawns on the tokio runtime whose context the caller runs in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokio;

impl Runtime for Tokio {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn accept(listener: &TcpListener) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        listener.accept()
    }

    /// tokio's own `poll_read`: it waits on the reactor's cached readiness,
    /// clears it on `WouldBlock` and also after a short read (which on epoll
    /// proves the socket drained), so a following `poll_read_ready` waits
    /// for a new event rather than reporting stale readiness. It spends
    /// tokio's cooperative budget too.
    fn poll_read(stream: &mut TcpStream, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(stream).poll_read(cx, &mut buf).map_ok(|()| buf.filled().len())
    }

    fn poll_write(stream: &mut TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(cx, buf)
    }

    /// Ready at once, and this costs no read: after a short read tokio has
    /// cleared the readiness (see `poll_read`), so the `poll_read` the loop
    /// makes next waits for a new event without a system call, just as
    /// `poll_read_ready` would. Asking the reactor twice per round trip, as
    /// `poll_read_ready` then `poll_read` did, cost about 80 instructions a
    /// round trip for nothing.
    fn poll_readable(_: &mut TcpStream, _: &mut Context<'_>) -> Poll<io::Result<()>> {
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
