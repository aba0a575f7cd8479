//! One client connection's state, without its socket: the protocol session,
//! the output watermarks, the counters and the open/close log lines. Every
//! backend drives this same type; none re-implements any of it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::backend::ServerConfig;
use crate::budget::FLOOR;
use crate::protocol::{Mode, PREFIX, Session};
use crate::stats::Stats;

/// An output buffer this small is kept when idle whatever the budget says:
/// giving it back would only cost an allocation per round trip.
const SMALL_BUFFER: usize = 4 * 1024;

/// The largest read a backend does at once outside `got` mode. In `got` mode
/// reads are `read_size` bytes, as in the seed, so each read is one reply.
pub const READ_BUFFER: usize = 64 * 1024;

/// Full reads in a row a backend may make before it writes what they
/// answered: a read that fills its buffer most likely left more behind (a
/// client with many messages in flight), and one write answering them all
/// costs far less than one write each. 16 reads of `got` mode's 1,000
/// bytes, or of up to 64 KiB in the other modes, where the high watermark
/// stops them first: each read still counts against the connection's
/// watermarks and the server's budget, which [`Connection::wants_read`]
/// checks before every one.
pub const READS_BEFORE_WRITE: u32 = 16;

/// Why a connection ended, for its close log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side and every reply was delivered.
    PeerClosed,
    /// An I/O error: a reset, a broken pipe.
    Error(io::ErrorKind),
    /// No bytes for longer than the idle timeout.
    Idle,
    /// The server shut down.
    Shutdown,
}

/// Which ways a backend waits on a connection's socket: see
/// [`Connection::interest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Readable: input is wanted and no reply is pending.
    Read,
    /// Writable: replies are pending and reading is paused or over.
    Write,
    /// Either: input is wanted and replies are pending.
    Both,
}

/// The socket-free state of one connection.
///
/// A backend loops: while [`Connection::wants_read`], read at most
/// [`Connection::read_limit`] bytes and hand them to [`Connection::received`]
/// (zero bytes meaning end of input); while [`Connection::pending`] is not
/// empty, write it and report with [`Connection::wrote`]; when neither can
/// go on, wait for what [`Connection::interest`] says; drop the socket once
/// [`Connection::is_finished`]. Dropping the `Connection` counts the
/// close and logs it.
///
/// The fields are in the order a round trip uses them, the few it reads
/// first and the ones it never reads (the peer's address, the reason for
/// the close) last, and `repr(C)` keeps that order: a server with hundreds
/// of connections touches each one's state once per round trip, so the
/// fewer cache lines that state spans, the less of the core's cache every
/// round trip needs (see `runtime::connection`'s `Pump`).
#[derive(Debug)]
#[repr(C)]
pub struct Connection {
    stats: Arc<Stats>,
    /// The largest read ever asked for: the size of a backend's read buffer.
    max_read: usize,
    high_watermark: usize,
    low_watermark: usize,
    /// The server-wide budget of buffered reply bytes (the count itself is
    /// in `stats`, shared by every connection).
    max_buffered: usize,
    /// The bytes this connection has counted in the budget: always the
    /// capacity of its output buffer (which holds its pending replies) once
    /// a call returns, and given back whole when it is dropped, so the
    /// shared count never leaks.
    ///
    /// Capacity rather than pending bytes, because that is the memory: a
    /// session keeps its buffer (up to 128 KiB) once everything is sent,
    /// ready for the next burst, and with many connections filling the
    /// budget in turn, each would otherwise keep a watermark's worth that
    /// nothing counts.
    accounted: usize,
    bytes_in: u64,
    bytes_out: u64,
    /// Reading stopped because pending output crossed the high watermark; it
    /// resumes only below the low one, so a slow reader does not make the
    /// connection flip between the two on every write.
    paused: bool,
    /// No more input will be read: the peer closed, failed, or we are draining.
    read_closed: bool,
    /// Replies were thrown away by [`Connection::abort`]: nothing is left
    /// to deliver, so nothing to linger for.
    aborted: bool,
    reason: Option<CloseReason>,
    session: Session,
    peer: SocketAddr,
}

impl Connection {
    /// Admits a connection from `peer`, or returns `None` (counted as refused)
    /// when the server already has `config.max_connections` open. The caller
    /// closes the socket of a refused connection at once.
    pub fn admit(peer: SocketAddr, config: &ServerConfig, stats: &Arc<Stats>) -> Option<Self> {
        if !stats.try_open(config.max_connections as u64) {
            stats.record_refused();
            tracing::debug!(%peer, limit = config.max_connections, "refused: connection limit");
            return None;
        }
        tracing::debug!(%peer, "connection opened");
        let max_read = match config.mode {
            Mode::Got => config.read_size.max(1),
            Mode::Line | Mode::Raw => READ_BUFFER,
        };
        Some(Connection {
            session: Session::new(config.mode, config.read_size, config.max_line),
            peer,
            stats: Arc::clone(stats),
            max_read,
            high_watermark: config.high_watermark,
            low_watermark: config.low_watermark.min(config.high_watermark),
            paused: false,
            read_closed: false,
            max_buffered: config.max_buffered,
            accounted: 0,
            bytes_in: 0,
            bytes_out: 0,
            reason: None,
            aborted: false,
        })
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The most bytes to read at once now: what the reply to them can take
    /// without the pending output passing the high watermark, nor the
    /// server's buffered replies passing `max_buffered`, allowing for the
    /// mode's worst case (in `line` mode every byte may be a `\n`, answered
    /// with five), but always at least one byte and at most
    /// [`Connection::read_buffer_len`].
    ///
    /// Checking the watermark only after a whole read would let one read of
    /// 64 KiB of newlines queue 320 KiB; limiting the read keeps a
    /// connection's output under twice the high watermark (the watermark,
    /// plus one reply, plus at most one long line completed by the read),
    /// whatever the client sends.
    ///
    /// The server's budget ([`crate::budget`]) limits it too: the reply
    /// must fit in the budget's room plus the spare capacity of this
    /// connection's own buffer, which is already counted. A connection
    /// with replies pending reads only while something fits (see
    /// [`Connection::wants_read`]); one with nothing pending may always
    /// read for [`FLOOR`] bytes of reply, so that clients that never read
    /// cannot starve the others for ever.
    ///
    /// So the bytes counted stay under `max_buffered + connections × FLOOR`
    /// plus what a read in flight adds when a buffer grows: a buffer
    /// doubles, so a read may take a connection's count past the room by
    /// up to its buffer's size (at most about twice the high watermark);
    /// after that the budget is spent and nobody reads more than its floor.
    /// Threads that look at the same room at once may each do that, so
    /// with T threads: `max_buffered + connections × FLOOR + T × 2 ×
    /// (high watermark + one reply)`. In `line` mode a partial line is not
    /// a reply and is not counted (the session caps it at `max_line`); the
    /// read that completes it queues its reply whole.
    pub fn read_limit(&self) -> usize {
        self.fits(self.room()).clamp(1, self.max_read)
    }

    /// The most input the connection can take now, over however many
    /// reads, before its replies would pass what [`Connection::read_limit`]
    /// allows: what an io_uring multishot receive, which delivers many
    /// reads' worth before it ends, may be armed for. It is
    /// [`Connection::read_limit`] without the cap of one read, in `got` mode
    /// counting a prefix per `read_size` bytes.
    pub fn input_room(&self) -> usize {
        let room = self.room();
        let input = match self.session.mode() {
            Mode::Got => {
                let piece = self.max_read + PREFIX.len();
                room / piece * self.max_read + (room % piece).saturating_sub(PREFIX.len())
            }
            _ => self.fits(room),
        };
        input.max(1)
    }

    /// The reply bytes this connection may queue now: under its watermark,
    /// and within [`Connection::budget_room`].
    fn room(&self) -> usize {
        let pending = self.session.pending_len();
        self.high_watermark.saturating_sub(pending).min(self.budget_room())
    }

    /// The reply bytes the server's budget lets this connection queue now:
    /// the budget's room plus its own buffer's spare capacity (already
    /// counted), or its floor when nothing is pending.
    fn budget_room(&self) -> usize {
        let pending = self.session.pending_len();
        let room = self.stats.budget().room(self.max_buffered) + self.accounted.saturating_sub(pending);
        if pending == 0 { room.max(FLOOR) } else { room }
    }

    /// The most bytes whose reply takes at most `room` bytes, in the worst
    /// case of the mode.
    fn fits(&self, room: usize) -> usize {
        match self.session.mode() {
            Mode::Raw => room,
            // One read is one piece: the bytes and one prefix.
            Mode::Got => room.saturating_sub(PREFIX.len()),
            // Each byte may end a line: a prefix and the byte.
            Mode::Line => room / (PREFIX.len() + 1),
        }
    }

    /// The most [`Connection::read_limit`] ever says: the size to give a
    /// read buffer that serves this connection.
    pub fn read_buffer_len(&self) -> usize {
        self.max_read
    }

    /// Whether the backend should read now: input is still open, pending
    /// output is under the watermarks, and the server's budget has room or
    /// nothing is pending here (see [`Connection::read_limit`]).
    pub fn wants_read(&self) -> bool {
        !self.read_closed && !self.paused && !self.waits_for_budget()
    }

    /// Whether reading stopped only because the server's budget of
    /// buffered replies is spent (and this connection has replies pending).
    ///
    /// Other connections free the budget without any event on this socket,
    /// so a backend must look again by itself: a task parks on
    /// [`Connection::poll_budget`], an event loop retries after
    /// [`RECHECK`](crate::budget::RECHECK). Writing this connection's own
    /// replies resumes it as well, as it does a paused one.
    pub fn waits_for_budget(&self) -> bool {
        !self.read_closed
            && !self.paused
            && self.session.pending_len() != 0
            && self.fits(self.budget_room()) == 0
    }

    /// `Ready` once the server's budget has room; otherwise `cx`'s waker is
    /// woken when another connection frees some. `key` is the caller's, kept
    /// between polls (see [`Budget::poll_room`](crate::Budget::poll_room)).
    pub fn poll_budget(&self, key: &mut Option<u64>, cx: &Context<'_>) -> Poll<()> {
        self.stats.budget().poll_room(self.max_buffered, key, cx)
    }

    /// Which ways to wait on the socket now, for a connection that is not
    /// [finished](Connection::is_finished): [`Interest::Read`] while input
    /// is wanted and nothing is pending, [`Interest::Write`] while reading
    /// is paused or closed and replies are pending, [`Interest::Both`] while
    /// both are wanted.
    ///
    /// Never neither: core pauses reading only while replies are pending
    /// (more than the high watermark, or any while the server's budget is
    /// spent), and writing them is what resumes it, so a connection that is
    /// not finished always wants to read or to write. (A finished one is
    /// closed, not waited on; it says `Read`.) A connection stopped by the
    /// budget also resumes when others free it, which no readiness reports:
    /// see [`Connection::waits_for_budget`].
    pub fn interest(&self) -> Interest {
        debug_assert!(!self.is_finished(), "a finished connection is closed, not waited on");
        match (self.wants_read(), self.wants_write()) {
            (true, true) => Interest::Both,
            (false, true) => Interest::Write,
            (_, false) => Interest::Read,
        }
    }

    /// Reply bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        self.session.pending()
    }

    /// Whether there are reply bytes waiting to be written.
    pub fn wants_write(&self) -> bool {
        self.session.pending_len() != 0
    }

    /// The peer closed its side (or we stopped reading) and every reply was
    /// written: the socket can be closed.
    pub fn is_finished(&self) -> bool {
        self.read_closed && !self.wants_write()
    }

    /// Finished by a drain with every reply written: instead of closing at
    /// once, the backend lingers ([`Linger`](crate::Linger)), since input
    /// the peer sent may be left unread, and closing a socket with unread
    /// input sends a reset that destroys replies not yet delivered.
    pub fn lingers(&self) -> bool {
        self.is_finished() && self.reason == Some(CloseReason::Shutdown) && !self.aborted
    }

    /// Hands over bytes read; an empty slice means the peer closed its side.
    #[inline]
    pub fn received(&mut self, data: &[u8]) {
        if data.is_empty() {
            return self.closed_input();
        }
        self.session.receive(data);
        self.took(data.len());
    }

    /// Whether the backend may answer the next read itself, from its own
    /// buffer, and report it with [`Connection::answered`] instead of
    /// [`Connection::received`]: in `got` mode with no reply pending, where
    /// a read (never longer than [`Connection::read_limit`], so never more
    /// than one piece) is answered by `GOT:` and the bytes read, with
    /// nothing queued ahead of it. Written at once from the buffer it was
    /// read into, the reply is never copied into this connection's own
    /// buffer, which a round trip then does not touch at all.
    #[inline]
    pub fn answers_directly(&self) -> bool {
        self.session.mode() == Mode::Got && self.session.pending_len() == 0
    }

    /// Reports a read answered by the backend itself (see
    /// [`Connection::answers_directly`]): `reply` is `GOT:` and the bytes
    /// read, of which the backend wrote the first `written` (0 if its write
    /// would block or failed). Counts both, and queues what was not
    /// written, to be written as any pending reply is.
    pub fn answered(&mut self, reply: &[u8], written: usize) {
        debug_assert!(self.answers_directly() && reply.starts_with(PREFIX) && written <= reply.len());
        debug_assert!(reply.len() > PREFIX.len() && reply.len() - PREFIX.len() <= self.max_read);
        self.session.queue_unsent(&reply[written..]);
        self.took(reply.len() - PREFIX.len());
        if written > 0 {
            self.bytes_out += written as u64;
            self.stats.record_out(written);
        }
    }

    /// In `got` mode, where one read is one reply, room for the next read
    /// ([`Connection::read_limit`] bytes) straight in the output buffer,
    /// after its reply's prefix: the bytes read are then the reply, never
    /// copied. `None` in the other modes, where a backend reads into a
    /// buffer of its own and calls [`Connection::received`].
    ///
    /// Hand the count read to [`Connection::received_in_place`] (zero at
    /// end of input); after a failed read, nothing. A backend that keeps a
    /// read buffer per connection anyway (a thread per connection) saves
    /// the copy and the buffer; one that shares a buffer between
    /// connections would make every idle connection hold a read's worth.
    pub fn read_space(&mut self) -> Option<&mut [u8]> {
        if self.session.mode() != Mode::Got {
            return None;
        }
        let limit = self.read_limit();
        // The room is memory held for replies: counted like the rest of
        // the buffer, before it is handed out (the budget allows for it:
        // see `read_limit`).
        self.session.prepare_read(limit);
        self.account();
        self.session.read_space(limit)
    }

    /// Hands over `n` bytes read into [`Connection::read_space`]; zero
    /// means the peer closed its side.
    pub fn received_in_place(&mut self, n: usize) {
        if n == 0 {
            return self.closed_input();
        }
        self.session.commit_read(n);
        self.took(n);
    }

    /// End of input: the session answers what it still holds.
    fn closed_input(&mut self) {
        self.session.finish();
        self.account();
        self.read_closed = true;
        self.reason.get_or_insert(CloseReason::PeerClosed);
    }

    /// Counts `n` bytes read, whose reply the session has queued.
    fn took(&mut self, n: usize) {
        self.bytes_in += n as u64;
        self.stats.record_in(n);
        self.account();
        // Only reply bytes count: they are what a client that does not read
        // makes pile up. A partial line is capped at `max_line` by the
        // session itself, and must not pause reading, or a long line could
        // never be completed once the replies before it are written.
        if self.session.pending_len() > self.high_watermark {
            self.paused = true;
        }
    }

    /// Records that the first `n` bytes of [`Connection::pending`] were written.
    #[inline]
    pub fn wrote(&mut self, n: usize) {
        self.session.advance(n);
        self.account();
        // A session keeps its buffer once everything is sent, ready for the
        // next burst, and the budget counts it. While more than half of the
        // budget is in use that would take room from connections with
        // replies to queue, so the buffer is given back instead; buffers
        // kept idle are then never more than about half the budget. (The
        // usual case, every benchmark's, keeps it.)
        if self.session.pending_len() == 0
            && self.accounted > SMALL_BUFFER
            && self.stats.budget().used() > self.max_buffered / 2
        {
            self.session.release_buffer();
            self.account();
        }
        self.bytes_out += n as u64;
        self.stats.record_out(n);
        if self.paused && self.session.pending_len() <= self.low_watermark {
            self.paused = false;
        }
    }

    /// At the idle deadline, before closing for [`CloseReason::Idle`]: tries
    /// once, without waiting, to write pending replies straight to `socket`.
    /// Returns whether any bytes went out, which means the
    /// peer is reading and the connection is not idle.
    ///
    /// Readiness alone cannot tell: the kernel reports a socket writable
    /// only once a good part of its send buffer is free (half of what is
    /// queued, on Linux), so a client reading 4 KiB at a time from a buffer
    /// of megabytes frees room for a write long before any event says so,
    /// and a timer counting only writes the loop was woken for would cut it
    /// off. A write that does not block succeeds as soon as any room is free.
    ///
    /// Only for a backend that has no write of its own in flight on the
    /// socket (io_uring's sends are, so it asks the kernel's queue instead).
    /// A blocking write with a timeout is no better off than readiness: it
    /// sleeps until the same wake-up.
    pub fn write_if_idle(&mut self, socket: impl std::os::fd::AsFd) -> io::Result<bool> {
        if !self.wants_write() {
            return Ok(false);
        }
        // MSG_DONTWAIT: a blocking socket (backend-threads) must not wait
        // here either.
        match socket2::SockRef::from(&socket).send_with_flags(self.session.pending(), libc::MSG_DONTWAIT) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.wrote(n);
                Ok(true)
            }
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// The server is shutting down: read nothing more, but let what was
    /// already read be answered and written until the drain deadline.
    pub fn drain(&mut self) {
        if !self.read_closed {
            self.read_closed = true;
            self.reason = Some(CloseReason::Shutdown);
        }
    }

    /// Closes the connection for `reason` even if replies are pending:
    /// nothing more is read or written. A failed socket call ends the
    /// connection with `abort(CloseReason::Error(err.kind()))`.
    pub fn abort(&mut self, reason: CloseReason) {
        self.read_closed = true;
        self.reason = Some(reason);
        self.aborted = true;
        // Nothing pending can be delivered any more; dropping it makes
        // `is_finished` true so the backend closes the socket.
        let n = self.session.pending_len();
        self.session.advance(n);
        self.session.release_buffer();
        self.account();
    }

    /// Brings this connection's share of the server's budget to its
    /// output buffer's capacity, after any call that changed it.
    fn account(&mut self) {
        let now = self.session.capacity();
        // The usual case, twice per round trip: the buffer kept its size.
        // Returning here saves two calls into the budget (each a function
        // whose prologue costs more than its `n == 0` test).
        if now == self.accounted {
            return;
        }
        let budget = self.stats.budget();
        if now > self.accounted {
            budget.take(now - self.accounted);
        } else {
            budget.release(self.accounted - now);
        }
        self.accounted = now;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let reason = self.reason.unwrap_or(CloseReason::Shutdown);
        // Replies never written (a drain cut short, a task dropped with its
        // runtime) leave the budget with the connection.
        self.stats.budget().release(std::mem::take(&mut self.accounted));
        self.stats.record_close(matches!(reason, CloseReason::Error(_)));
        tracing::debug!(
            peer = %self.peer,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            ?reason,
            "connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode) -> ServerConfig {
        ServerConfig { mode, max_connections: 2, ..ServerConfig::default() }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn counts_open_close_and_bytes() {
        let stats = Arc::new(Stats::default());
        {
            let mut conn = Connection::admit(peer(), &config(Mode::Got), &stats).unwrap();
            conn.received(b"Hello");
            assert_eq!(conn.pending(), b"GOT:Hello");
            conn.wrote(4);
            assert_eq!(stats.snapshot().active, 1);
            conn.wrote(5);
            conn.received(b"");
            assert!(conn.is_finished());
        }
        let s = stats.snapshot();
        assert_eq!((s.accepted, s.active, s.closed, s.bytes_in, s.bytes_out, s.errors), (1, 0, 1, 5, 9, 0));
    }

    #[test]
    fn a_reply_answered_directly_is_counted_and_its_unsent_end_queued() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Got), &stats).unwrap();
        assert!(conn.answers_directly());
        // Written whole: nothing is queued, nothing held in the budget.
        conn.answered(b"GOT:Hello", 9);
        assert_eq!((conn.pending(), stats.budget().used()), (&b""[..], 0));
        // Written in part: the rest is pending, in order, and counted.
        conn.answered(b"GOT:world", 3);
        assert_eq!(conn.pending(), b":world");
        assert!(!conn.answers_directly(), "a reply is pending: the next one queues behind it");
        assert_eq!(stats.budget().used(), conn.session.capacity());
        conn.wrote(6);
        assert!(conn.answers_directly());
        conn.received(b"");
        drop(conn);
        let s = stats.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out, s.closed), (10, 18, 1));
        assert_eq!(stats.budget().used(), 0);
        for mode in [Mode::Line, Mode::Raw] {
            let conn = Connection::admit(peer(), &config(mode), &stats).unwrap();
            assert!(!conn.answers_directly(), "{mode:?}: replies are the session's to make");
        }
    }

    #[test]
    fn a_read_in_place_is_answered_counted_and_budgeted() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Got), &stats).unwrap();
        let limit = conn.read_limit();
        let room = conn.read_space().expect("got mode reads in place");
        assert_eq!(room.len(), limit);
        room[..5].copy_from_slice(b"Hello");
        conn.received_in_place(5);
        assert_eq!(conn.pending(), b"GOT:Hello");
        assert_eq!(stats.budget().used(), conn.session.capacity(), "the room is memory held: counted");
        conn.wrote(9);
        // The next read reuses the same room.
        let capacity = conn.session.capacity();
        conn.read_space().unwrap()[..2].copy_from_slice(b"hi");
        conn.received_in_place(2);
        assert_eq!((conn.pending(), conn.session.capacity()), (&b"GOT:hi"[..], capacity));
        conn.wrote(6);
        conn.read_space().unwrap();
        conn.received_in_place(0);
        assert!(conn.is_finished(), "zero bytes read is end of input");
        drop(conn);
        let s = stats.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out, s.closed), (7, 15, 1));
        assert_eq!(stats.budget().used(), 0);
        for mode in [Mode::Line, Mode::Raw] {
            let mut conn = Connection::admit(peer(), &config(mode), &stats).unwrap();
            assert!(conn.read_space().is_none(), "{mode:?} reads into the backend's buffer");
        }
    }

    #[test]
    fn limit_refuses_and_counts() {
        let stats = Arc::new(Stats::default());
        let a = Connection::admit(peer(), &config(Mode::Raw), &stats);
        let b = Connection::admit(peer(), &config(Mode::Raw), &stats);
        assert!(a.is_some() && b.is_some());
        assert!(Connection::admit(peer(), &config(Mode::Raw), &stats).is_none());
        assert_eq!(stats.snapshot().refused, 1);
        drop(a);
        assert!(Connection::admit(peer(), &config(Mode::Raw), &stats).is_some());
    }

    #[test]
    fn racing_admissions_never_pass_the_limit() {
        use std::sync::Barrier;
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        const ROUNDS: u64 = 20_000;
        let config = config(Mode::Raw); // a limit of 2
        let stats = Arc::new(Stats::default());
        // One place left: in each round two threads race for it.
        let _first = Connection::admit(peer(), &config, &stats).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let arrived = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (stats, barrier, arrived, most, config) = (
                    Arc::clone(&stats),
                    Arc::clone(&barrier),
                    Arc::clone(&arrived),
                    Arc::clone(&most),
                    config.clone(),
                );
                std::thread::spawn(move || {
                    for round in 1..=ROUNDS {
                        barrier.wait();
                        // A spinning start line: both leave it within a
                        // few hundred nanoseconds, as a barrier's sleepers
                        // would not.
                        arrived.fetch_add(1, SeqCst);
                        while arrived.load(SeqCst) < 2 * round {
                            std::hint::spin_loop();
                        }
                        let conn = Connection::admit(peer(), &config, &stats);
                        most.fetch_max(stats.active(), SeqCst);
                        // Both admissions are in before either is dropped.
                        barrier.wait();
                        drop(conn);
                    }
                })
            })
            .collect();
        racers.into_iter().for_each(|r| r.join().unwrap());
        let s = stats.snapshot();
        assert!(most.load(SeqCst) <= 2, "{} connections open under a limit of 2", most.load(SeqCst));
        assert_eq!((s.accepted, s.refused), (ROUNDS + 1, ROUNDS));
    }

    #[test]
    fn watermarks_pause_and_resume_reading() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        let chunk = vec![1u8; 16 * 1024];
        while conn.wants_read() {
            conn.received(&chunk);
        }
        assert!(conn.pending().len() > 64 * 1024 && conn.pending().len() <= 80 * 1024);
        conn.wrote(40 * 1024);
        assert!(!conn.wants_read(), "resumes only under the low watermark");
        conn.wrote(conn.pending().len() - 32 * 1024);
        assert!(conn.wants_read());
    }

    #[test]
    fn a_partial_line_never_pauses_reading() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Line), &stats).unwrap();
        // 60 KiB of replies, then 60 KiB of a line with no newline yet.
        for _ in 0..60 {
            conn.received(&[b'a'; 1023]);
            conn.received(b"\n");
        }
        conn.received(&[b'b'; 60 * 1024]);
        assert!(conn.wants_read());
        let n = conn.pending().len();
        conn.wrote(n);
        assert!(conn.wants_read(), "nothing pending: reading must go on to finish the line");
    }

    #[test]
    fn failure_counts_an_error_and_finishes() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        conn.received(b"abc");
        conn.abort(CloseReason::Error(io::ErrorKind::ConnectionReset));
        assert!(conn.is_finished());
        drop(conn);
        assert_eq!(stats.snapshot().errors, 1);
    }

    #[test]
    fn interest_is_never_neither() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        assert_eq!(conn.interest(), Interest::Read);
        conn.received(b"abc");
        assert_eq!(conn.interest(), Interest::Both);
        while conn.wants_read() {
            conn.received(&[1; 16 * 1024]);
        }
        assert_eq!(conn.interest(), Interest::Write, "paused at the high watermark");
        conn.wrote(conn.pending().len());
        assert_eq!(conn.interest(), Interest::Read, "writing resumed reading");
        conn.received(b"abc");
        conn.drain();
        assert_eq!(conn.interest(), Interest::Write);
    }

    fn budget_config(mode: Mode, max_buffered: usize) -> ServerConfig {
        ServerConfig { mode, max_buffered, ..ServerConfig::default() }
    }

    /// What the connections hold for replies: what the budget must count.
    fn held(conns: &[&Connection]) -> usize {
        conns.iter().map(|c| c.session.capacity()).sum()
    }

    #[test]
    fn the_budget_counts_reply_buffers_and_never_leaks() {
        let stats = Arc::new(Stats::default());
        let config = budget_config(Mode::Got, 1 << 20);
        let mut a = Connection::admit(peer(), &config, &stats).unwrap();
        let mut b = Connection::admit(peer(), &config, &stats).unwrap();
        a.received(b"Hello");
        b.received(b"abc");
        assert_eq!(stats.budget().used(), held(&[&a, &b]));
        assert!(stats.budget().used() >= 9 + 7);
        a.wrote(4);
        assert_eq!(stats.budget().used(), held(&[&a, &b]));
        // Aborted with replies pending: its buffer leaves the budget at once.
        b.abort(CloseReason::Error(io::ErrorKind::ConnectionReset));
        assert_eq!(stats.budget().used(), held(&[&a]));
        drop(b);
        assert_eq!(stats.budget().used(), held(&[&a]));
        // Dropped with replies pending (a task dropped with its runtime).
        drop(a);
        assert_eq!(stats.budget().used(), 0);

        // End of input in `line` mode queues the tail's reply; a drain
        // keeps it counted until written, and a small buffer stays counted
        // until the connection is dropped.
        let mut c = Connection::admit(peer(), &budget_config(Mode::Line, 1 << 20), &stats).unwrap();
        c.received(b"tail");
        assert_eq!(stats.budget().used(), 0, "a partial line is not a reply");
        c.received(b"");
        assert!(stats.budget().used() >= 8);
        c.drain();
        c.wrote(8);
        assert_eq!(stats.budget().used(), held(&[&c]));
        drop(c);
        assert_eq!(stats.budget().used(), 0);
    }

    #[test]
    fn a_spent_budget_stops_reading_until_another_connection_frees_it() {
        const BUDGET: usize = 160 * 1024;
        let stats = Arc::new(Stats::default());
        let config = budget_config(Mode::Raw, BUDGET);
        let mut a = Connection::admit(peer(), &config, &stats).unwrap();
        let mut b = Connection::admit(peer(), &config, &stats).unwrap();
        // `a` fills its watermark, then stops for its own reasons.
        while a.wants_read() {
            let n = a.read_limit();
            a.received(&vec![1; n]);
        }
        assert!(!a.waits_for_budget(), "paused at its watermark, not by the budget");
        assert_eq!(stats.budget().used(), held(&[&a]));
        // `b` may read only what is left of the budget, then stops.
        b.received(b"x");
        while b.wants_read() {
            let n = b.read_limit();
            b.received(&vec![2; n]);
        }
        let used = stats.budget().used();
        assert_eq!(used, held(&[&a, &b]));
        assert!(used >= BUDGET, "stopped with room left: {used}");
        assert!(b.pending().len() < 64 * 1024, "stopped by the budget, under its watermark");
        assert!(b.waits_for_budget() && !b.wants_read());
        assert_eq!(b.interest(), Interest::Write, "writing its own replies resumes it");

        // A third connection with nothing pending may still read its floor.
        let mut c = Connection::admit(peer(), &config, &stats).unwrap();
        assert!(c.wants_read());
        assert_eq!(c.read_limit(), FLOOR);
        c.received(&[3; FLOOR]);
        assert!(!c.wants_read(), "its floor read left replies pending and no room");
        assert_eq!(stats.budget().used(), used + FLOOR);

        // `a`'s client reads everything: with the budget pressed, `a` gives
        // its buffer back, and the others may read again.
        a.wrote(a.pending().len());
        assert_eq!(stats.budget().used(), held(&[&b, &c]));
        assert!(b.wants_read() && c.wants_read());
        assert!(!b.waits_for_budget());
        drop((a, b, c));
        assert_eq!(stats.budget().used(), 0);
    }

    #[test]
    fn the_budget_allows_for_the_modes_expansion() {
        let stats = Arc::new(Stats::default());
        let config = budget_config(Mode::Line, 1000);
        let mut a = Connection::admit(peer(), &config, &stats).unwrap();
        a.received(b"\n");
        // Room for 995 more bytes, counting the buffer's spare capacity: at
        // most 199 newlines, five bytes each.
        assert_eq!((a.pending().len(), stats.budget().used()), (5, 8));
        assert_eq!(a.read_limit(), 199);
        while a.wants_read() {
            let n = a.read_limit();
            a.received(&vec![b'\n'; n]);
        }
        assert!(a.waits_for_budget());
        // The buffer's growth (doubling) may pass the budget once.
        assert!(stats.budget().used() < 2 * 1000);
        assert_eq!(stats.budget().used(), held(&[&a]));
    }

    /// What `input_room` allows, fed in `read_limit` slices as a multishot
    /// receive's completions are, never queues more than `read_limit`
    /// would have allowed one read at a time: the replies stay within the
    /// high watermark, and in `got` mode it is many reads' worth.
    #[test]
    fn input_room_is_what_fits_under_the_watermark() {
        for mode in [Mode::Got, Mode::Line, Mode::Raw] {
            let stats = Arc::new(Stats::default());
            let config = config(mode);
            let mut conn = Connection::admit(peer(), &config, &stats).unwrap();
            let mut input = conn.input_room();
            assert!(input >= conn.read_limit(), "{mode:?}: less than one read");
            if mode == Mode::Got {
                assert!(input > 16 * config.read_size, "{mode:?}: one read's worth, {input}");
            }
            while input > 0 {
                assert!(conn.wants_read(), "{mode:?}: paused with {input} bytes of room left");
                let n = conn.read_limit().min(input);
                conn.received(&vec![b'\n'; n]);
                input -= n;
            }
            assert!(
                conn.pending().len() <= config.high_watermark,
                "{mode:?}: {} pending over the {} watermark",
                conn.pending().len(),
                config.high_watermark
            );
        }
    }

    #[test]
    fn drain_keeps_pending_replies() {
        let stats = Arc::new(Stats::default());
        let mut conn = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        conn.received(b"abc");
        conn.drain();
        assert!(!conn.wants_read() && !conn.is_finished());
        conn.wrote(3);
        assert!(conn.is_finished());
        assert!(conn.lingers(), "a drain that wrote every reply lingers");
    }

    #[test]
    fn only_a_drain_that_delivered_its_replies_lingers() {
        let stats = Arc::new(Stats::default());
        let mut cut = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        cut.received(b"abc");
        cut.drain();
        cut.abort(CloseReason::Shutdown);
        assert!(cut.is_finished() && !cut.lingers(), "replies given up at the deadline: close at once");
        let mut ended = Connection::admit(peer(), &config(Mode::Raw), &stats).unwrap();
        ended.received(b"");
        assert!(ended.is_finished() && !ended.lingers(), "all input read: nothing to linger for");
    }
}
