//! The thread that serves one connection: blocking reads and writes between
//! the socket and an [`echo_core::Connection`], which decides everything
//! else.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echo_core::{CloseReason, Connection, ShutdownSignal};

/// Serves `conn` on `stream` until the peer is done, the connection fails or
/// idles out, or the server shuts down; then closes the socket.
pub(crate) fn run(
    stream: Arc<TcpStream>,
    mut conn: Connection,
    idle: Option<Duration>,
    signal: &ShutdownSignal,
) {
    configure(&stream, &conn, idle);
    serve(&stream, &mut conn, idle, signal);
    // Send the FIN now rather than when the last handle is dropped: the
    // acceptor may hold one for a moment during shutdown. After a failure
    // this fails too, which changes nothing.
    let _ = stream.shutdown(Shutdown::Write);
    drop(stream);
    // Counts and logs the close, once the socket is closed.
    drop(conn);
}

/// TCP_NODELAY, and the idle timeout as the socket's read and write
/// timeouts, so a blocked call returns when the peer has gone quiet.
fn configure(stream: &TcpStream, conn: &Connection, idle: Option<Duration>) {
    let peer = conn.peer();
    if let Err(err) = stream.set_nodelay(true) {
        // Only latency suffers; the connection is still served.
        tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
    }
    // std refuses a zero timeout (it would mean "none" to the kernel); the
    // shortest one it takes is the closest to "close at once".
    let idle = idle.map(|idle| idle.max(Duration::from_millis(1)));
    if let Err(err) = stream.set_read_timeout(idle).and_then(|()| stream.set_write_timeout(idle)) {
        tracing::debug!(%peer, error = %err, "cannot set the idle timeout");
    }
}

/// Reads and writes until `conn` is finished.
///
/// Each turn reads once, at most [`Connection::read_limit`] bytes, then
/// writes, blocking, every reply byte that read produced before reading
/// again. So the output held for the connection never exceeds the reply to
/// one read (at most five times the read, for a read of empty lines in
/// `line` mode), plus one partial line: memory is bounded by the blocking
/// write itself. The loop still asks [`Connection::wants_read`], which is
/// true again whenever the write is done.
///
/// It cannot deadlock with a client that writes before it reads, as far as
/// the server can help it: the write blocks only once the client's receive
/// buffer and this socket's send buffer are full, that is, once the client
/// has left that much unread; until then each reply goes into those kernel
/// buffers and reading carries on. A client that writes more than all the
/// buffers between us hold without reading any of it blocks against every
/// server with bounded memory (an event loop stops reading at the high
/// watermark just the same); that is the client's doing, and the idle
/// timeout and shutdown's deadline still end it. A client that reads while
/// it writes, as the conformance suite's slow reader does, always frees
/// room for the blocked write eventually.
fn serve(stream: &TcpStream, conn: &mut Connection, idle: Option<Duration>, signal: &ShutdownSignal) {
    let mut buf = vec![0; conn.read_limit()];
    let mut last_input = Instant::now();
    while !conn.is_finished() {
        if signal.is_triggered() {
            // Answer what was already read, but read nothing more.
            conn.drain();
        }
        if conn.wants_read() {
            if read(stream, conn, &mut buf, signal) {
                last_input = Instant::now();
            }
        } else if !conn.wants_write() {
            stalled(conn, signal, idle.map(|idle| last_input + idle));
        }
        write_pending(stream, conn, signal);
    }
}

/// One blocking read, its outcome handed to `conn`. Returns whether input
/// arrived (end of input included).
fn read(mut stream: &TcpStream, conn: &mut Connection, buf: &mut [u8], signal: &ShutdownSignal) -> bool {
    match stream.read(buf) {
        // Also what a read returns once shutdown has shut the socket for
        // reading, which is not the peer's end of input: drain, so that
        // `line` mode does not answer a partial line as if it were whole.
        Ok(0) if signal.is_triggered() => conn.drain(),
        Ok(n) => {
            conn.received(&buf[..n]);
            return true;
        }
        // A signal arrived during the call: nothing failed, read again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        // The read timeout, which is the idle timeout, passed.
        Err(err) if timed_out(&err) && signal.is_triggered() => conn.drain(),
        Err(err) if timed_out(&err) => conn.abort(CloseReason::Idle),
        Err(_) if signal.is_expired() => conn.abort(CloseReason::Shutdown),
        Err(err) => conn.failed(&err),
    }
    false
}

/// Writes every pending reply byte, continuing partial writes, unless the
/// peer stops reading for longer than the idle timeout, the connection
/// fails, or the drain deadline passes.
fn write_pending(mut stream: &TcpStream, conn: &mut Connection, signal: &ShutdownSignal) {
    while conn.wants_write() {
        if signal.is_expired() {
            conn.abort(CloseReason::Shutdown);
            return;
        }
        match stream.write(conn.pending()) {
            Ok(0) => conn.failed(&io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.wrote(n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // While draining, the write timeout only bounds each wait; the
            // deadline, checked above, decides when to give up.
            Err(err) if timed_out(&err) && signal.is_triggered() => {}
            // Nothing read for the idle timeout, and the peer read nothing
            // either: idle by the same measure as a quiet reader.
            Err(err) if timed_out(&err) => conn.abort(CloseReason::Idle),
            // Shutdown cut the socket off at the deadline (see `shutdown.rs`).
            Err(_) if signal.is_expired() => conn.abort(CloseReason::Shutdown),
            Err(err) => conn.failed(&err),
        }
    }
}

/// Neither reading nor writing is allowed. Core pauses reading only while
/// replies are pending, so this cannot happen today; should that change, the
/// thread waits here, without spinning, for shutdown (the acceptor unparks
/// every connection thread) or the idle deadline, as the task-based backends
/// do, rather than looping on a connection that has nothing to do.
fn stalled(conn: &mut Connection, signal: &ShutdownSignal, idle_at: Option<Instant>) {
    // A loop, because `park` may return for no reason.
    loop {
        if signal.is_triggered() {
            conn.drain();
            return;
        }
        match idle_at {
            None => thread::park(),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    conn.abort(CloseReason::Idle);
                    return;
                }
                thread::park_timeout(left);
            }
        }
    }
}

/// Whether `err` is a socket timeout: `WouldBlock` on Unix (`EAGAIN`),
/// `TimedOut` on Windows.
fn timed_out(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}
