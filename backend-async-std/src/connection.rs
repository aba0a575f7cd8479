//! The task that serves one connection: it moves bytes between the socket
//! and an [`echo_core::Connection`], which decides everything else.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_std::future::timeout;
use async_std::net::TcpStream;
use echo_core::buffer::with_read_buffer;
use echo_core::{CloseReason, Connection, ShutdownSignal, TaskToken};
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};

/// Serves `conn` on `stream` until the peer is done, the connection fails or
/// idles out, or the server shuts down; then closes the socket.
///
/// `_token` is held only so the server knows when this task has ended.
pub(crate) async fn serve(
    stream: TcpStream,
    mut conn: Connection,
    idle: Option<Duration>,
    shutdown: Arc<ShutdownSignal>,
    _token: TaskToken,
) {
    // `or` polls shutdown first, so it wins even while the socket is busy.
    // Dropping `pump` when it loses is safe: see `poll_step`.
    let stopping = or(
        async {
            shutdown.triggered().await;
            true
        },
        async {
            pump(&stream, &mut conn, idle).await;
            false
        },
    )
    .await;
    if stopping && !conn.is_finished() {
        // Answer what was already read, but only until the drain deadline.
        conn.drain();
        if timeout(shutdown.time_left(), pump(&stream, &mut conn, None)).await.is_err() {
            conn.abort(CloseReason::Shutdown);
        }
    }
    // Every reply is written (or given up): dropping the stream closes it,
    // with a FIN after end of input. The kernel sends a reset instead if
    // input is still unread, as after a drain, an idle close or an error.
    // Dropping `conn` counts and logs the close.
}

/// Reads and writes until `conn` is finished, or, with `idle` set, until
/// nothing arrived for that long.
async fn pump(stream: &TcpStream, conn: &mut Connection, idle: Option<Duration>) {
    let mut idle_at = idle.map(|idle| Instant::now() + idle);
    while !conn.is_finished() {
        let step = poll_fn(|cx| poll_step(stream, conn, cx));
        let stepped = match idle_at {
            None => step.await,
            // async-std has no resettable timer, so each wait gets one up to
            // the idle deadline; only servers with an idle timeout pay for it.
            Some(at) => match timeout(at.saturating_duration_since(Instant::now()), step).await {
                Ok(stepped) => stepped,
                Err(_) => {
                    conn.abort(CloseReason::Idle);
                    return;
                }
            },
        };
        match stepped {
            Ok(true) => idle_at = idle.map(|idle| Instant::now() + idle),
            Ok(false) => {}
            Err(err) => conn.failed(&err),
        }
    }
}

/// Reads and writes what the socket allows now. Returns `Ready` with whether
/// input arrived (end of input included) once anything happened, so the
/// caller looks at the connection's state again; `Pending` once every wanted
/// direction would block, with the task's waker registered for each.
///
/// This is the race of a read and a write, done as one poll rather than two
/// futures: waiting for whichever comes first, not one then the other, keeps
/// a client that writes a lot before it reads from deadlocking against us,
/// and reading only while `wants_read` keeps the output under the
/// watermarks. It is cancel-safe by construction: a `poll_read` or
/// `poll_write` on `&TcpStream` either completes within the call, its result
/// handed to `conn` before returning, or registers a waker and does nothing;
/// no buffer or partial result is held between polls. That is also why the
/// read buffer can be per thread.
///
/// async-io retries `WouldBlock` (spurious readiness included) inside the
/// poll by registering the waker; `Interrupted` counts as progress here so
/// the call is simply made again. With neither direction wanted (only a
/// config whose line limit exceeds the high watermark gets there) this
/// returns `Pending` with no waker: the task waits for the idle timer or
/// shutdown instead of spinning.
fn poll_step(stream: &TcpStream, conn: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
    let mut progress = false;
    let mut input = false;
    let mut socket = stream;
    if conn.wants_read() {
        let read = with_read_buffer(conn.read_limit(), |buf| {
            Pin::new(&mut socket).poll_read(cx, buf).map_ok(|n| conn.received(&buf[..n]))
        });
        match read {
            Poll::Ready(Ok(())) => (progress, input) = (true, true),
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => progress = true,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {}
        }
    }
    // Written straight after the read: the reply just made is usually
    // accepted at once, which saves a trip through the reactor.
    if conn.wants_write() {
        match Pin::new(&mut socket).poll_write(cx, conn.pending()) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                conn.wrote(n);
                progress = true;
            }
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => progress = true,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {}
        }
    }
    if progress { Poll::Ready(Ok(input)) } else { Poll::Pending }
}
