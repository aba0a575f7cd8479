//! The task that serves one connection: it moves bytes between the socket
//! and an [`echo_core::Connection`], which decides everything else.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use echo_core::buffer::with_read_buffer;
use echo_core::{CloseReason, Connection, ShutdownSignal, TaskToken};
use smol::future::{self, or};
use smol::{Async, Timer};

/// Steps a connection may take in a row without waiting before it yields to
/// the executor. Without this, a client that keeps the socket busy both ways
/// would never make the task wait, and the other tasks on its thread (and
/// the shutdown check) would starve.
const STEPS_BEFORE_YIELD: u32 = 32;

/// Serves `conn` on `stream` until the peer is done, the connection fails or
/// idles out, or the server shuts down; then closes the socket.
///
/// `_token` is held only so the server knows when this task has ended.
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    mut conn: Connection,
    idle: Option<Duration>,
    shutdown: Arc<ShutdownSignal>,
    _token: TaskToken,
) {
    // `or` polls shutdown first, so it wins even while the socket is busy.
    // Dropping `pump` when it loses is safe: every read and write happens
    // within one poll, between awaits, and its outcome is in `conn` before
    // the next await, so at any await nothing is held that dropping loses.
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
        let flushed = or(
            async {
                pump(&stream, &mut conn, None).await;
                true
            },
            async {
                Timer::after(shutdown.time_left()).await;
                false
            },
        )
        .await;
        if !flushed {
            conn.abort(CloseReason::Shutdown);
        }
    }
    // Every reply is written (or given up): dropping the stream closes it
    // with a FIN, and dropping `conn` counts and logs the close.
}

/// Reads and writes until `conn` is finished, or, with `idle` set, until
/// nothing arrived for that long.
async fn pump(stream: &Async<TcpStream>, conn: &mut Connection, idle: Option<Duration>) {
    // One timer for the whole connection, pushed back on each read, rather
    // than a new timer per wait. `never` costs nothing when there is none.
    let mut idle_timer = idle.map_or_else(Timer::never, Timer::after);
    let mut steps = 0;
    while !conn.is_finished() {
        // Try first, wait only once the socket would block: after a read the
        // reply can usually be written at once, and waiting for readiness
        // first would cost a trip through the reactor every time.
        match step(stream.get_ref(), conn) {
            Ok(Step::Moved { input }) => {
                if let (true, Some(idle)) = (input, idle) {
                    idle_timer.set_after(idle);
                }
                steps += 1;
                if steps == STEPS_BEFORE_YIELD {
                    steps = 0;
                    future::yield_now().await;
                }
                continue;
            }
            // The read came back short and every reply went out: the socket
            // was drained a moment ago, so another read would only return
            // WouldBlock, a system call per message for nothing. Wait
            // instead: the reactor re-arms its interest level-triggered, so
            // input that arrived since then wakes the wait at once.
            Ok(Step::Drained) => {
                if let Some(idle) = idle {
                    idle_timer.set_after(idle);
                }
                steps = 0;
            }
            Ok(Step::WouldBlock) => steps = 0,
            Err(err) => {
                conn.failed(&err);
                continue;
            }
        }
        let (read, write) = (conn.wants_read(), conn.wants_write());
        let idled = or(
            async {
                (&mut idle_timer).await;
                true
            },
            async {
                if let Err(err) = wait(stream, read, write).await {
                    conn.failed(&err);
                }
                false
            },
        )
        .await;
        if idled {
            conn.abort(CloseReason::Idle);
        }
    }
}

/// Waits until the socket may have become readable (if `read`) or writable
/// (if `write`), whichever comes first.
///
/// Waiting for either, not one then the other, is what keeps a client that
/// writes a lot before it reads from deadlocking against us; leaving out
/// `read` while the connection is over its watermarks is what bounds its
/// output. Racing the two with `or` is cancel-safe: `readable()` and
/// `writable()` only register this task's waker with the reactor and move no
/// bytes, so dropping the loser loses nothing (at worst its stale waker
/// wakes the task once more, and the next step finds nothing to do). Each
/// resolves only on a readiness event newer than its first poll, and the
/// reactor reports a socket that is already ready as soon as interest is
/// registered, so a readiness that came between the `WouldBlock` and the
/// wait is not missed, and a spurious or used-up one just means another
/// `WouldBlock` and another wait, never a busy loop. Errs only if the
/// reactor cannot watch the socket.
async fn wait(stream: &Async<TcpStream>, read: bool, write: bool) -> io::Result<()> {
    match (read, write) {
        (true, true) => or(stream.readable(), stream.writable()).await,
        (true, false) => stream.readable().await,
        (false, true) => stream.writable().await,
        // Neither is allowed. Core pauses reading only while replies are
        // pending, so this cannot happen today; should that change, wait for
        // the idle timer or shutdown instead of spinning.
        (false, false) => future::pending().await,
    }
}

/// What one [`step`] did.
enum Step {
    /// Bytes moved (or a call was interrupted): try again.
    Moved {
        /// Whether input arrived (end of input included), for the idle timer.
        input: bool,
    },
    /// Input arrived in a read shorter than asked for, and every reply is
    /// written: nothing is left to do until the reactor says so.
    Drained,
    /// Every wanted direction would block: wait for the reactor.
    WouldBlock,
}

/// Does the read and the write that the socket allows now, without waiting.
///
/// `Interrupted` counts as a move so that the call is simply made again; a
/// `WouldBlock` (spurious readiness included) leaves that direction to
/// [`wait`].
fn step(mut socket: &TcpStream, conn: &mut Connection) -> io::Result<Step> {
    let mut moved = false;
    let mut input = false;
    let mut short_read = false;
    if conn.wants_read() {
        let limit = conn.read_limit();
        match with_read_buffer(limit, |buf| socket.read(buf).inspect(|&n| conn.received(&buf[..n]))) {
            Ok(n) => (moved, input, short_read) = (true, true, n > 0 && n < limit),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => moved = true,
            Err(err) => return Err(err),
        }
    }
    // Written straight after the read: the reply just made usually goes out
    // at once.
    if conn.wants_write() {
        match socket.write(conn.pending()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.wrote(n);
                moved = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => moved = true,
            Err(err) => return Err(err),
        }
    }
    Ok(match (moved, short_read && !conn.wants_write()) {
        (true, true) => Step::Drained,
        (true, false) => Step::Moved { input },
        (false, _) => Step::WouldBlock,
    })
}
