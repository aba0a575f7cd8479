//! smol's side of core's connection loop: the [`Runtime`] adapter, over
//! async-io's `Async` sockets and async-executor's `Executor`.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Instant;

use echo_core::Runtime;
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Executor, Timer};

/// Spawns on the server's own executor.
///
/// Weak, because the accept loop, which holds it, is a task of that very
/// executor: a strong handle would keep both alive for ever if no thread
/// ever ran them (a server whose first thread could not start).
#[derive(Clone, Debug)]
pub(crate) struct Smol(pub(crate) Weak<Executor<'static>>);

impl Runtime for Smol {
    type Listener = Async<TcpListener>;
    type Stream = Async<TcpStream>;

    fn accept(
        listener: &Async<TcpListener>,
    ) -> impl Future<Output = io::Result<(Async<TcpStream>, SocketAddr)>> + Send {
        listener.accept()
    }

    /// async-io reads first and registers for readability only on
    /// `WouldBlock`; the reactor re-arms its interest level-triggered, so
    /// input that came in between still wakes the task.
    fn poll_read(
        stream: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_read(cx, buf)
    }

    /// Resolves on a readiness event newer than its first poll, or at once
    /// when the socket is readable as the interest is registered.
    fn poll_readable(stream: &mut Async<TcpStream>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        stream.poll_readable(cx)
    }

    fn poll_write(
        stream: &mut Async<TcpStream>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(cx, buf)
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        let timer = Timer::at(deadline);
        async {
            timer.await;
        }
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // Gone only once every server thread has exited: the task would be
        // dropped with the executor anyway.
        if let Some(executor) = self.0.upgrade() {
            executor.spawn(task).detach();
        }
    }
}
