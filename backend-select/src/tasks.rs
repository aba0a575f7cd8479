//! The seed's two tasks: `tcp_server`, which accepts connections, and
//! `echo_handler`, one per connection. The protocol, watermarks, counters and
//! log lines are `echo_core::Connection`'s; these tasks only move bytes.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_core::connection::READS_BEFORE_WRITE;
use echo_core::{
    AcceptBackoff, CloseReason, Connection, Discarded, Interest, Linger, LingerStep, ServerConfig,
    ShutdownSignal, Stats, discard_input,
};

use crate::Poller;
use crate::scheduler::{Handle, Scheduler};
use crate::sys::{self, WakePipe};

/// How many reads or writes a handler does (or connections the listener
/// accepts) before it yields. Without a limit a client that never pauses
/// would keep its task running, and every parked task waiting, for ever.
const TURN_BUDGET: u32 = 16;

/// How often, at most, refusals of descriptors select(2) cannot watch are
/// logged; a burst of them would otherwise flood the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// What every task of one server needs besides its socket.
struct ServerState {
    /// To yield and to spawn.
    handle: Handle,
    /// Mode, limits, idle timeout.
    config: ServerConfig,
    /// Shared with the `echo_core::Server` handle.
    stats: Arc<Stats>,
    /// Set by `echo_core::Server::shutdown`.
    signal: Arc<ShutdownSignal>,
    /// Decides whether a descriptor number is too large to serve.
    poller: Poller,
}

/// The body of the scheduler thread: the seed's
/// `tasks.append(tcp_server(...)); run()`.
pub(crate) fn serve(
    listener: TcpListener,
    config: ServerConfig,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
    wake: Arc<WakePipe>,
    poller: Poller,
) {
    let (budget, limit) = (Arc::clone(&stats), config.max_buffered);
    let mut scheduler = Scheduler::new(poller, wake, Box::new(move || budget.budget().room(limit) > 0));
    let handle = scheduler.handle();
    let server =
        Rc::new(ServerState { handle: handle.clone(), config, stats, signal: Arc::clone(&signal), poller });
    handle.spawn(tcp_server(server, listener));
    if let Err(err) = scheduler.run(&signal) {
        // Only a bug (a bad descriptor) or a kernel out of memory gets here;
        // returning drops every task, which closes every socket.
        tracing::error!(error = %err, "select scheduler failed; closing every connection");
    }
}

/// Accepts connections and spawns an `echo_handler` for each, until
/// shutdown. Returning drops the listener, so new connects are refused at
/// once.
async fn tcp_server(server: Rc<ServerState>, listener: TcpListener) {
    let fd = listener.as_raw_fd();
    let mut backoff = AcceptBackoff::default();
    let mut refusals = RefusalLog::default();
    let mut budget = TURN_BUDGET;
    while !server.signal.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff.succeeded();
                server.start(stream, peer, &mut refusals);
                budget -= 1;
                if budget == 0 {
                    budget = TURN_BUDGET;
                    server.handle.yield_now().await;
                }
            }
            // The backlog is empty (or readiness was spurious): the seed's
            // `yield 'recv', sock`.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => server.handle.readable(fd, None).await,
            // Core's policy decides: go on at once (one connection's
            // problem), or stop watching the listener for a while (out of
            // descriptors or memory, or an error that repeats), so as not
            // to spin.
            Err(err) => {
                if let Some(delay) = backoff.failed(&err, &server.stats) {
                    server.handle.sleep(fd, Some(Instant::now() + delay)).await;
                }
            }
        }
    }
}

impl ServerState {
    fn start(self: &Rc<Self>, stream: TcpStream, peer: SocketAddr, refusals: &mut RefusalLog) {
        let fd = stream.as_raw_fd();
        if self.poller == Poller::Select && !sys::fits_select(fd) {
            // Never into an fd_set: that would write past its end. Dropping
            // the stream closes it; the peer sees the connection close.
            self.stats.record_refused();
            refusals.log(peer, fd);
            return;
        }
        let Some(mut conn) = Connection::admit(peer, &self.config, &self.stats) else {
            return;
        };
        if let Err(err) = stream.set_nonblocking(true) {
            conn.abort(CloseReason::Error(err.kind()));
            return;
        }
        echo_core::set_nodelay(&stream, peer);
        self.handle.spawn(echo_handler(Rc::clone(self), stream, conn));
    }
}

/// Serves one connection until the peer is done, it fails, it is idle too
/// long, or shutdown closes it.
async fn echo_handler(server: Rc<ServerState>, stream: TcpStream, mut conn: Connection) {
    let fd = stream.as_raw_fd();
    let idle_timeout = server.config.idle_timeout;
    // Too long to add to the clock: never idle.
    let mut idle_deadline = idle_timeout.and_then(|d| Instant::now().checked_add(d));
    let mut buf = vec![0; conn.read_buffer_len()];
    let mut budget = TURN_BUDGET;
    loop {
        // Checked on every resumption: the scheduler resumes every parked
        // task once when shutdown begins and once when its deadline passes.
        if server.signal.is_triggered() {
            conn.drain();
            if server.signal.is_expired() {
                conn.abort(CloseReason::Shutdown);
            }
        }
        if conn.is_finished() {
            if let (true, Some(deadline)) = (conn.lingers(), server.signal.deadline()) {
                linger(&server.handle, &stream, deadline).await;
            }
            return;
        }
        if idle_deadline.is_some_and(|d| Instant::now() >= d) {
            // Replies the peer made room for, without a readiness saying so.
            match conn.write_if_idle(stream.as_fd()) {
                Ok(true) => idle_deadline = idle_timeout.and_then(|d| Instant::now().checked_add(d)),
                Ok(false) => {
                    conn.abort(CloseReason::Idle);
                    return;
                }
                Err(err) => {
                    conn.abort(CloseReason::Error(err.kind()));
                    return;
                }
            }
        }
        if budget == 0 {
            budget = TURN_BUDGET;
            server.handle.yield_now().await;
            continue;
        }
        match step(stream.as_fd(), &mut conn, &mut buf) {
            Ok(Step::Moved { progress, reads }) => {
                // Each read counts, so reading on before a write does not
                // lengthen a turn.
                budget = budget.saturating_sub(reads.max(1));
                // Input read or replies written: a client reading slowly
                // what it asked for is not idle.
                if progress {
                    idle_deadline = idle_timeout.and_then(|d| Instant::now().checked_add(d));
                }
            }
            Ok(Step::Blocked) => {
                let until = earliest(idle_deadline, server.signal.deadline());
                let handle = &server.handle;
                if conn.waits_for_budget() {
                    // Other connections free the budget without any
                    // readiness here: the scheduler resumes this task
                    // once it has room (see `Handle::hold`).
                    handle.hold(fd);
                }
                match conn.interest() {
                    Interest::Both => handle.readable_or_writable(fd, until).await,
                    Interest::Read => handle.readable(fd, until).await,
                    Interest::Write => handle.writable(fd, until).await,
                }
            }
            Err(err) => {
                conn.abort(CloseReason::Error(err.kind()));
                return;
            }
        }
    }
}

/// After a drain wrote every reply: shuts down the write side, then reads
/// and drops input until the client has acknowledged every reply and the
/// FIN, closes, or fails, or the deadline passes. Closing with input
/// unread would send a reset that destroys replies not yet delivered: see
/// [`Linger`]. Parks for input, or until the next look at the send queue.
async fn linger(handle: &Handle, stream: &TcpStream, deadline: Instant) {
    let Some(mut linger) = Linger::begin(stream, deadline) else { return };
    loop {
        if discard_input(stream) == Discarded::Closed {
            return;
        }
        let LingerStep::CheckAt(at) = linger.poll(stream, Instant::now()) else { return };
        handle.readable(stream.as_raw_fd(), Some(at)).await;
    }
}

/// What one [`step`] achieved.
enum Step {
    /// Some bytes moved, or end of input came; `progress` says whether
    /// any bytes moved either way, `reads` how many reads it made.
    Moved { progress: bool, reads: u32 },
    /// Everything the connection wants would block.
    Blocked,
}

/// Tries once to write pending reply bytes, then to read, as far as the
/// connection wants them: reading on while reads come back full (a client
/// with many messages in flight), up to [`READS_BEFORE_WRITE`], so that the
/// next step's one write answers them all.
///
/// Both are tried without first asking for readiness: on a busy connection
/// they usually succeed, which saves a readiness call each. `WouldBlock` is
/// then the ordinary answer, not an error: it sends the task to park. It
/// also covers spurious readiness (a deadline, shutdown, or data another
/// read already took), so nothing here trusts a wake-up. `Interrupted`
/// never reaches here: `sys` retries it.
fn step(sock: BorrowedFd<'_>, conn: &mut Connection, buf: &mut [u8]) -> io::Result<Step> {
    let mut moved = false;
    let mut progress = false;
    if conn.wants_write() {
        match sys::send(sock, conn.pending()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.wrote(n);
                (moved, progress) = (true, true);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    let mut reads = 0;
    while reads < READS_BEFORE_WRITE && conn.wants_read() {
        reads += 1;
        let limit = conn.read_limit().min(buf.len());
        match sys::recv(sock, &mut buf[..limit]) {
            // Zero bytes is end of input: `received(&[])` queues the last
            // reply, and the loop flushes it before closing.
            Ok(n) => {
                conn.received(&buf[..n]);
                moved = true;
                progress |= n > 0;
                if n < limit {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    Ok(if moved { Step::Moved { progress, reads } } else { Step::Blocked })
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Logs refusals of descriptors select(2) cannot watch, at most once per
/// [`REFUSAL_LOG_EVERY`], with a count of those not logged.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn log(&mut self, peer: SocketAddr, fd: i32) {
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                %peer,
                fd,
                limit = libc::FD_SETSIZE,
                suppressed = self.suppressed,
                "refused: descriptor too large for select(2); use the poll poller to serve it"
            );
            self.last = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use echo_core::{Connection, ServerConfig, Stats};

    use super::*;

    /// Five full reads' worth of pipelined input are read in one step,
    /// so the next step answers them with one write, not one write each.
    #[test]
    fn a_step_reads_on_while_reads_come_back_full() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (server, peer) = listener.accept()?;
        server.set_nonblocking(true)?;
        let config = ServerConfig::default();
        let mut conn = Connection::admit(peer, &config, &Arc::new(Stats::default())).expect("admitted");
        let mut buf = vec![0; conn.read_buffer_len()];
        let read_size = config.read_size;
        client.write_all(&vec![b'p'; 5 * read_size])?;
        // Loopback delivers at once, but give it a moment's room.
        let deadline = Instant::now() + Duration::from_secs(5);
        while echo_core::sys::unread_input(server.as_fd()) != Some(5 * read_size) {
            assert!(Instant::now() < deadline, "the input never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        let Step::Moved { reads, .. } = step(server.as_fd(), &mut conn, &mut buf)? else {
            panic!("nothing moved")
        };
        assert_eq!(reads, 6, "five full reads, then one that would block");
        assert_eq!(conn.pending().len(), 5 * (4 + read_size), "every read answered, nothing written yet");
        Ok(())
    }
}
