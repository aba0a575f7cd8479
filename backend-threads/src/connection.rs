//! The thread that serves one connection: blocking reads and writes between
//! the socket and an [`echo_core::Connection`], which decides everything
//! else.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_core::connection::READS_BEFORE_WRITE;
use echo_core::sys;
use echo_core::{CloseReason, Connection, Linger, LingerStep, ShutdownSignal};

use crate::shutdown::ReadGate;

/// A connection's socket, shared with the acceptor so that shutdown can
/// wake the thread blocked on it.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) stream: TcpStream,
    /// Whether the thread is reading, so shutdown wakes it only then.
    pub(crate) gate: ReadGate,
}

impl Socket {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Socket { stream, gate: ReadGate::default() }
    }
}

/// Serves `conn` on `socket` until the peer is done, the connection fails or
/// idles out, or the server shuts down; then closes the socket, after a
/// lingering close if the drain cut the client off mid-stream.
pub(crate) fn run(
    socket: Arc<Socket>,
    mut conn: Connection,
    idle: Option<Duration>,
    signal: &ShutdownSignal,
) {
    configure(&socket.stream, &conn, idle);
    // In `got` mode reads land in the connection's own output buffer (see
    // `read`), and this one is only sized if a linger needs it.
    let mut buf = Vec::new();
    serve(&socket, &mut conn, &mut buf, signal);
    // Send the FIN now rather than when the last handle is dropped: the
    // acceptor may hold one for a moment during shutdown. After a failure
    // this fails too, which changes nothing.
    let _ = socket.stream.shutdown(Shutdown::Write);
    if let (true, Some(deadline)) = (conn.lingers(), signal.deadline()) {
        linger(&socket.stream, scratch(&mut buf, conn.read_buffer_len()), deadline);
    }
    drop(socket);
    // Counts and logs the close, once the socket is closed.
    drop(conn);
}

/// TCP_NODELAY, and the idle timeout as the socket's read and write
/// timeouts, so a blocked call returns when the peer has gone quiet.
fn configure(stream: &TcpStream, conn: &Connection, idle: Option<Duration>) {
    let peer = conn.peer();
    echo_core::set_nodelay(stream, peer);
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
fn serve(socket: &Socket, conn: &mut Connection, buf: &mut Vec<u8>, signal: &ShutdownSignal) {
    while !conn.is_finished() {
        if signal.is_triggered() {
            // Answer what was already read, but read nothing more.
            conn.drain();
        }
        // Not reading means replies are pending (see
        // `Connection::interest`), which the write below moves on.
        read_on(socket, conn, buf, signal);
        write_pending(&socket.stream, conn, signal);
    }
}

/// Reads while the connection wants input: once, blocking, and then on
/// while the reads fill the buffer and more input is waiting, up to
/// [`READS_BEFORE_WRITE`], so that one write answers them all (a client
/// with many messages in flight). Asking the kernel what is waiting is
/// what keeps the extra reads from blocking. Returns how many reads it
/// made.
fn read_on(socket: &Socket, conn: &mut Connection, buf: &mut Vec<u8>, signal: &ShutdownSignal) -> u32 {
    let mut reads = 0;
    while reads < READS_BEFORE_WRITE && conn.wants_read() {
        reads += 1;
        let full = read(socket, conn, buf, signal);
        if !full || echo_core::sys::unread_input(socket.stream.as_fd()).unwrap_or(0) == 0 {
            break;
        }
    }
    reads
}

/// One blocking read, its outcome handed to `conn`; whether it filled the
/// room it was given.
///
/// In `got` mode the read lands straight in the connection's output
/// buffer, after its reply's prefix ([`Connection::read_space`]), as a
/// bare server reads into the buffer it writes from: with hundreds of
/// threads each waking with cold caches, copying each read from a buffer
/// of the thread's into the output buffer costs a cache miss per message.
/// In the other modes it reads into `buf`, sized on first use.
fn read(socket: &Socket, conn: &mut Connection, buf: &mut Vec<u8>, signal: &ShutdownSignal) -> bool {
    // Shutdown wakes a thread blocked in read only if it is marked reading,
    // so the mark comes first; once shutdown has begun the gate stays shut,
    // and this thread only drains.
    if !socket.gate.enter() {
        conn.drain();
        return false;
    }
    let (limit, result, in_place) = match conn.read_space() {
        Some(room) => (room.len(), sys::recv(&socket.stream, room), true),
        None => {
            let limit = conn.read_limit();
            let room = &mut scratch(buf, conn.read_buffer_len())[..limit];
            (limit, sys::recv(&socket.stream, room), false)
        }
    };
    socket.gate.leave();
    let full = matches!(result, Ok(n) if n == limit);
    match result {
        // Also what a read returns once shutdown has shut the socket for
        // reading, which is not the peer's end of input: drain, so that
        // `line` mode does not answer a partial line as if it were whole.
        Ok(0) if signal.is_triggered() => conn.drain(),
        Ok(n) if in_place => conn.received_in_place(n),
        Ok(n) => conn.received(&buf[..n]),
        // A signal arrived during the call: nothing failed, read again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        // The read timeout, which is the idle timeout, passed.
        Err(err) if timed_out(&err) && signal.is_triggered() => conn.drain(),
        Err(err) if timed_out(&err) => conn.abort(CloseReason::Idle),
        Err(_) if signal.is_expired() => conn.abort(CloseReason::Shutdown),
        Err(err) => conn.abort(CloseReason::Error(err.kind())),
    }
    full
}

/// `buf`, grown to `len` bytes if it is shorter.
fn scratch(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf
}

/// Writes every pending reply byte, continuing partial writes, unless the
/// peer stops reading for longer than the idle timeout, the connection
/// fails, or the drain deadline passes.
fn write_pending(stream: &TcpStream, conn: &mut Connection, signal: &ShutdownSignal) {
    while conn.wants_write() {
        if signal.is_expired() {
            conn.abort(CloseReason::Shutdown);
            return;
        }
        match sys::send(stream, conn.pending()) {
            Ok(0) => conn.abort(CloseReason::Error(io::ErrorKind::WriteZero)),
            Ok(n) => conn.wrote(n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // While draining, the write timeout only bounds each wait; the
            // deadline, checked above, decides when to give up.
            Err(err) if timed_out(&err) && signal.is_triggered() => {}
            // The write waited the idle timeout for a wake-up that comes
            // only once much of the send buffer is free; a peer reading
            // slowly may have freed some all the same, which a write that
            // does not wait finds. If not, the peer read nothing: idle.
            Err(err) if timed_out(&err) => match conn.write_if_idle(stream) {
                Ok(true) => {}
                Ok(false) => conn.abort(CloseReason::Idle),
                Err(err) => conn.abort(CloseReason::Error(err.kind())),
            },
            // Shutdown cut the socket off at the deadline (see `shutdown.rs`).
            Err(_) if signal.is_expired() => conn.abort(CloseReason::Shutdown),
            Err(err) => conn.abort(CloseReason::Error(err.kind())),
        }
    }
}

/// After a drain wrote every reply, keeps the socket open, its write side
/// already shut, reading and discarding input until the client has
/// acknowledged every reply and the FIN, closes, or fails, or the drain
/// deadline passes: core's lingering close ([`Linger`]).
///
/// Closing a socket with input still unread makes the kernel send a reset
/// instead of a FIN, and a reset throws away every reply still queued in
/// the kernel for the client. This thread hands its replies to the kernel
/// with blocking writes and keeps next to none itself, so for a client that
/// does not read, "every reply written" comes long before "every reply
/// delivered". Waiting for the client's FIN would deliver them too, but
/// holds the connection, and the server, until the deadline; the send
/// queue says when they are delivered.
///
/// Each read waits at most until the next look at the send queue; the
/// acceptor shuts every socket down at the deadline, which ends a read too.
fn linger(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) {
    let Some(mut linger) = Linger::begin(stream, deadline) else { return };
    loop {
        let now = Instant::now();
        let LingerStep::CheckAt(at) = linger.poll(stream, now) else { return };
        // std refuses a zero timeout; the shortest it takes is 1 ns.
        let wait = at.saturating_duration_since(now).max(Duration::from_nanos(1));
        if stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        loop {
            match stream.read(buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Time for the next look at the send queue.
                Err(err) if timed_out(&err) => break,
                // A reset, or the deadline's shutdown.
                Err(_) => return,
            }
            if Instant::now() >= at {
                break;
            }
        }
    }
}

/// Whether `err` is a socket timeout: `WouldBlock` on Unix (`EAGAIN`),
/// `TimedOut` on Windows.
fn timed_out(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use echo_core::{ServerConfig, Stats};

    use super::*;

    /// Five full reads' worth of pipelined input are read before the one
    /// write that answers them, and the reads stop, without blocking, when
    /// nothing more is waiting.
    #[test]
    fn reads_on_while_input_is_waiting() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (server, peer) = listener.accept()?;
        let config = ServerConfig::default();
        let mut conn = Connection::admit(peer, &config, &Arc::new(Stats::default())).expect("admitted");
        let mut buf = vec![0; conn.read_buffer_len()];
        let read_size = config.read_size;
        client.write_all(&vec![b'p'; 5 * read_size])?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while echo_core::sys::unread_input(server.as_fd()) != Some(5 * read_size) {
            assert!(Instant::now() < deadline, "the input never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        let socket = Socket::new(server);
        let reads = read_on(&socket, &mut conn, &mut buf, &ShutdownSignal::default());
        assert_eq!(reads, 5, "five full reads, and no sixth that would block");
        assert_eq!(conn.pending().len(), 5 * (4 + read_size), "every read answered, nothing written yet");
        Ok(())
    }
}
