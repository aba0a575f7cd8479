//! async-std's side of core's connection loop: the [`Runtime`] adapter.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Instant;

use async_executor::Executor;
use async_std::net::{TcpListener, TcpStream};
use echo_core::Runtime;
use futures_lite::{AsyncRead, AsyncWrite};

/// Spawns on the server's own executor (see the crate docs for why not on
/// async-std's global one).
///
/// Weak, because the accept loop, which holds it, is a task of that very
/// executor: a strong handle would keep both alive for ever if no thread
/// ever ran them (a server whose first thread could not start).
#[derive(Clone, Debug)]
pub(crate) struct AsyncStd(pub(crate) Weak<Executor<'static>>);

impl Runtime for AsyncStd {
    type Listener = TcpListener;
    type Stream = TcpStream;

    /// async-std's `TcpStream` has no way to wait for input without reading
    /// it (the `Async` inside is private), so this says "maybe" at once and
    /// the next read finds out: after a short read, one read more than on
    /// smol or tokio, which returns `WouldBlock` and then registers.
    fn poll_readable(_: &mut TcpStream, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// async-std reads first and registers for readability only on
    /// `WouldBlock` (its reactor is async-io's).
    fn poll_read(stream: &mut TcpStream, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*stream).poll_read(cx, buf)
    }

    fn poll_write(stream: &mut TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*stream).poll_write(cx, buf)
    }

    fn accept(listener: &TcpListener) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        listener.accept()
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        async_std::task::sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        async_std::task::yield_now()
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // Gone only once every server thread has exited: the task would be
        // dropped with the executor anyway.
        if let Some(executor) = self.0.upgrade() {
            executor.spawn(task).detach();
        }
    }
}
