//! The task that serves one connection: it moves bytes between the socket
//! and an [`echo_core::Connection`], which decides everything else.

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use echo_core::buffer::with_read_buffer;
use echo_core::{CloseReason, Connection, ShutdownSignal, TaskToken};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

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
    // Cancelling `pump` is safe: its only await is `ready()` (or a timer),
    // and all state lives in `conn`, so dropping it mid-wait loses nothing.
    let stopping = tokio::select! {
        biased;
        () = shutdown.triggered() => true,
        () = pump(&stream, &mut conn, idle) => false,
    };
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
    // One timer for the whole connection, pushed back on each read, rather
    // than a new timer per wait. Never polled when there is no idle timeout.
    let mut idle_timer = pin!(sleep(idle.unwrap_or_default()));
    while !conn.is_finished() {
        let ready = tokio::select! {
            ready = wait(stream, interest(conn)) => ready,
            () = &mut idle_timer, if idle.is_some() => {
                conn.abort(CloseReason::Idle);
                return;
            }
        };
        match ready.and_then(|()| step(stream, conn)) {
            Ok(true) => {
                if let Some(idle) = idle {
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            }
            Ok(false) => {}
            Err(err) => conn.failed(&err),
        }
    }
}

/// What to wait for: readable while input is wanted (under the watermarks),
/// writable while replies are pending. Waiting for either, not one then the
/// other, is what keeps a client that writes a lot before it reads from
/// deadlocking against us.
fn interest(conn: &Connection) -> Option<Interest> {
    match (conn.wants_read(), conn.wants_write()) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

/// Waits until the socket may have changed for `interest`. It errs only when
/// the runtime is going away.
async fn wait(stream: &TcpStream, interest: Option<Interest>) -> io::Result<()> {
    match interest {
        Some(interest) => stream.ready(interest).await.map(drop),
        // Neither reading nor writing is possible (only a config whose
        // line limit exceeds the high watermark gets here): wait for the
        // idle timer or shutdown instead of spinning.
        None => std::future::pending().await,
    }
}

/// Does the read and the write that the socket allows now. Returns whether
/// input arrived (end of input included), for the idle timer.
///
/// Both are tried whatever `ready()` reported: `try_read` and `try_write`
/// first check tokio's cached readiness and return `WouldBlock` without a
/// syscall when it is not set, so the reply just made by a read is written
/// at once if the socket was last seen writable. On a real `WouldBlock`
/// (spurious or used-up readiness) tokio clears that readiness, so the next
/// `ready()` truly waits; `Interrupted` leaves it set, so the call is simply
/// retried on the next turn.
fn step(stream: &TcpStream, conn: &mut Connection) -> io::Result<bool> {
    let mut input = false;
    if conn.wants_read() {
        match with_read_buffer(conn.read_limit(), |buf| {
            stream.try_read(buf).map(|n| conn.received(&buf[..n]))
        }) {
            Ok(()) => input = true,
            Err(err) if retry_later(&err) => {}
            Err(err) => return Err(err),
        }
    }
    if conn.wants_write() {
        match stream.try_write(conn.pending()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.wrote(n),
            Err(err) if retry_later(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(input)
}

fn retry_later(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}
