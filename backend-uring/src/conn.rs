//! One client: its socket, its [`Connection`] state, the buffers lent to the
//! kernel for it, and what to post next when one of its operations completes.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use echo_core::{CloseReason, Connection, Linger, LingerStep};

use crate::ring::{Completion, IoBuffers, Ring};
use crate::token::{Op, Token};

/// What the event loop does with a connection after [`Conn::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// It has an operation in flight (or just posted one): wait for it.
    Wait,
    /// It is finished and nothing of it is in flight: close it.
    Close,
}

/// A socket and the protocol state it feeds.
///
/// At most one receive and one send are in flight at a time: a second
/// receive could complete out of order with the first, and a second send
/// would need a second buffer for no gain (the first one carries everything
/// pending when it is posted).
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket; `None` once given to the ring to close.
    socket: Option<TcpStream>,
    /// Everything the protocol needs: replies, watermarks, counters, logs.
    pub(crate) state: Connection,
    /// The memory the kernel receives into and sends from.
    bufs: IoBuffers,
    /// Set once the connection failed or was aborted: bytes that still
    /// arrive are dropped and sends that complete are not reported, since
    /// the replies they carried were already discarded.
    dead: bool,
    /// Cancellation was asked for the operations in flight when the
    /// connection finished, so it is asked once, not on every completion.
    cancelled: bool,
    /// When input last arrived or replies were last sent, for the idle
    /// timeout.
    pub(crate) last_progress: Instant,
    /// The socket's send queue at the last idle deadline, to tell whether
    /// the peer took replies since (a socket's queue is far below 4 GiB).
    send_queue: Option<u32>,
    /// Input a multishot receive delivered that the connection could not
    /// take yet (reading paused at the high watermark mid-completion): fed
    /// before anything newer, once reading resumes. Each receive is armed
    /// for what the connection can take at that moment, and where the
    /// kernel caps it ([`Ring::caps_receives`]) ends there, so this holds
    /// at most the one provided buffer the kernel fills past the cap, or
    /// input that the server's budget, spent meanwhile by other
    /// connections, no longer lets in. Without the cap it holds what
    /// arrives between the pause and the end of the receive, which is then
    /// cancelled: what the kernel receives for one wake-up of the socket,
    /// never more than the ring's pool.
    stash: Vec<u8>,
    /// End of input arrived behind stashed bytes: handed over after them.
    eof_pending: bool,
    /// The multishot receive was cancelled because reading paused; it is
    /// re-armed once its last completion came and reading resumed.
    recv_paused: bool,
    /// Set once a drain wrote every reply and shut the write side down (a
    /// FIN after the replies): input is read and thrown away until core's
    /// [`Linger`] says the send queue is empty or the drain deadline came,
    /// or the peer closes. Boxed: only a draining connection has one, and
    /// every idle connection would otherwise carry its size.
    linger: Option<Box<Linger>>,
    /// The lingering is over: the connection closes.
    linger_done: bool,
    /// On its loop's list of connections stopped by the budget, so that it
    /// is listed once however often it is driven meanwhile.
    pub(crate) held: bool,
}

/// Hands `data` to `state` in slices of at most `read_limit` bytes, each
/// one read as far as the protocol is concerned (so `got` mode answers
/// exactly as if each had been read by itself), while the core wants input;
/// the rest goes to `stash`, after whatever is already there.
fn feed(state: &mut Connection, stash: &mut Vec<u8>, mut data: &[u8]) {
    // The common case, one read that fits: no loop, no stash.
    if stash.is_empty() && state.wants_read() && data.len() <= state.read_limit() {
        state.received(data);
        return;
    }
    if stash.is_empty() {
        while !data.is_empty() && state.wants_read() {
            let (now, rest) = data.split_at(data.len().min(state.read_limit()));
            state.received(now);
            data = rest;
        }
    }
    stash.reserve_exact(data.len());
    stash.extend_from_slice(data);
}

impl Conn {
    /// A connection in slab slot `key`, of generation `generation`.
    pub(crate) fn new(
        socket: TcpStream,
        state: Connection,
        key: u32,
        generation: u32,
        provided: bool,
    ) -> Conn {
        let bufs = IoBuffers::new(key, generation, state.read_buffer_len(), provided);
        Conn {
            socket: Some(socket),
            state,
            bufs,
            dead: false,
            cancelled: false,
            last_progress: Instant::now(),
            send_queue: None,
            stash: Vec::new(),
            eof_pending: false,
            recv_paused: false,
            linger: None,
            linger_done: false,
            held: false,
        }
    }

    /// Whether `generation` is this connection's, so a completion meant for
    /// an earlier occupant of the same slot is not taken for ours.
    pub(crate) fn owns(&self, token: Token) -> bool {
        self.bufs.token(Op::Recv).generation() == token.generation()
    }

    /// A receive completed. `now` is set when the idle timeout is on.
    ///
    /// With provided buffers, the bytes are in the ring's buffer named by
    /// `done`, which goes back to the kernel before this returns (the event
    /// loop recycles it if this does not take it).
    pub(crate) fn on_recv(&mut self, done: &mut Completion, ring: &mut Ring, now: Option<Instant>) {
        if !self.bufs.recv_done(done) {
            return;
        }
        // Once it has ended, the receive may be armed again; while it goes
        // on delivering, a cancel is asked again (the kernel refuses one
        // that finds the receive busy completing, `EALREADY`).
        self.recv_paused = false;
        if self.linger.is_some() {
            match done.result() {
                // Input after the replies: read only so that closing does
                // not reset the connection, and thrown away.
                Ok(n) if n > 0 => {}
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ECANCELED | libc::ENOBUFS | libc::EINTR)) => {}
                // The peer closed too, or failed: nothing left to wait for.
                _ => self.linger_done = true,
            }
            return;
        }
        match done.result() {
            Ok(_) if self.dead => {}
            // The end of input: the core answers any unterminated tail and
            // the connection closes once flushed; after stashed input, if
            // there is some.
            Ok(0) => {
                if self.stash.is_empty() {
                    self.state.received(&[]);
                } else {
                    self.eof_pending = true;
                }
            }
            Ok(n) => {
                if let Some(now) = now {
                    self.last_progress = now;
                }
                let (state, stash) = (&mut self.state, &mut self.stash);
                if ring.provides_buffers() {
                    ring.with_received(done, |data| feed(state, stash, data));
                } else {
                    feed(state, stash, self.bufs.received(n));
                }
            }
            // The multishot receive ran out of provided buffers: nothing is
            // lost; `drive` arms it again, after this pass gave its buffers
            // back.
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) && ring.provides_buffers() => {}
            Err(err) => self.on_error(err),
        }
    }

    /// A send completed. `now` is set when the idle timeout is on: a peer
    /// reading its replies is not idle.
    pub(crate) fn on_send(&mut self, done: &Completion, now: Option<Instant>) {
        let Some(result) = self.bufs.send_done(done) else { return };
        match result {
            Ok(_) if self.dead => {}
            Ok(0) => self.abort(CloseReason::Error(io::ErrorKind::WriteZero)),
            // The send buffer's unsent bytes are always the front of
            // `pending` while the connection is alive; a slip would trip
            // the core's assertion, as it should.
            Ok(n) => {
                self.state.wrote(n);
                if let Some(now) = now {
                    self.last_progress = now;
                }
            }
            Err(err) => self.on_error(err),
        }
    }

    fn on_error(&mut self, err: io::Error) {
        match err.raw_os_error() {
            // We asked for it: the connection is closing anyway.
            Some(libc::ECANCELED) => {}
            // Nothing happened; `drive` posts the operation again.
            Some(libc::EINTR | libc::EAGAIN) => {}
            // That one connection failed: it closes, nothing else.
            _ => self.abort(CloseReason::Error(err.kind())),
        }
    }

    /// At the idle deadline: whether the peer took replies since the last
    /// deadline. A send in flight completes only once the kernel reports
    /// the socket writable, that is once much of its send buffer is free,
    /// so a client reading slowly from a large buffer makes progress that
    /// no completion shows; the kernel's send queue shrinking does.
    pub(crate) fn peer_took_replies(&mut self) -> bool {
        let Some(socket) = &self.socket else { return false };
        if !self.state.wants_write() {
            return false;
        }
        let queued = echo_core::sys::unacked_send_queue(socket.as_fd()).and_then(|q| u32::try_from(q).ok());
        let moved = queued.is_some() && queued != self.send_queue;
        self.send_queue = queued;
        moved
    }

    /// Whether the connection waits, its replies flushed and its write side
    /// shut down, for the peer to acknowledge them: the event loop then
    /// looks at its send queue ([`Conn::check_linger`]) on a timer.
    ///
    /// Closing a socket with unread input makes Linux send a reset, which
    /// throws away replies still in the send queue; so a draining
    /// connection whose client still sends closes only once its queue is
    /// empty (every reply and the FIN acknowledged), the peer closes, an
    /// error, or the drain deadline.
    pub(crate) fn lingering(&self) -> bool {
        self.linger.is_some() && !self.linger_done && !self.dead
    }

    /// At the linger timer: ends the lingering if the peer acknowledged
    /// everything sent or the deadline came (then returns `None`), or says
    /// when to look again.
    pub(crate) fn check_linger(&mut self, now: Instant) -> Option<Instant> {
        let (Some(socket), Some(linger)) = (&self.socket, &mut self.linger) else { return None };
        match linger.poll(socket, now) {
            LingerStep::Close => {
                self.linger_done = true;
                None
            }
            LingerStep::CheckAt(at) => Some(at),
        }
    }

    /// Closes the connection for `reason` (a failure included), replies
    /// pending or not.
    pub(crate) fn abort(&mut self, reason: CloseReason) {
        self.state.abort(reason);
        self.dead = true;
        self.bufs.discard();
    }

    /// Posts what the connection needs next: a send while replies are
    /// pending, a receive while the core wants input (not while paused at
    /// the high watermark, so a client that never reads costs no more), or,
    /// once finished, the cancellation of whatever is still in flight.
    ///
    /// `deadline` is the drain's, for a connection that finishes draining.
    pub(crate) fn drive(&mut self, ring: &mut Ring, deadline: Option<Instant>) -> Next {
        if self.state.lingers() && !self.dead && !self.linger_done {
            let Some(socket) = &self.socket else { return Next::Close };
            if self.linger.is_none() {
                self.stash = Vec::new();
                self.eof_pending = false;
                self.linger = deadline.and_then(|deadline| Linger::begin(socket, deadline)).map(Box::new);
                self.linger_done = self.linger.is_none();
            }
            if !self.linger_done {
                // A paused multishot receive is re-armed once its cancel
                // completed; a single-shot one after each completion.
                ring.push_recv(socket.as_fd(), &mut self.bufs, usize::MAX);
                return Next::Wait;
            }
        }
        let busy = self.bufs.recv_busy() || self.bufs.send_busy();
        if self.state.is_finished() {
            if !busy {
                return Next::Close;
            }
            if !self.cancelled {
                // A receive waits for input that may never come, a send for
                // room a stuck peer never makes; both must end before the
                // socket closes and the buffers are freed.
                for op in [Op::Recv, Op::Send] {
                    let in_flight =
                        if op == Op::Recv { self.bufs.recv_busy() } else { self.bufs.send_busy() };
                    if in_flight {
                        ring.push_cancel(self.bufs.token(op));
                    }
                }
                self.cancelled = true;
            }
            return Next::Wait;
        }
        let Some(socket) = &self.socket else { return Next::Close };
        if !self.stash.is_empty() && self.state.wants_read() {
            let stash = std::mem::take(&mut self.stash);
            feed(&mut self.state, &mut self.stash, &stash);
        }
        if self.eof_pending && self.stash.is_empty() && self.state.wants_read() {
            self.eof_pending = false;
            self.state.received(&[]);
        }
        if self.state.wants_write() {
            self.bufs.load(self.state.pending());
            ring.push_send(socket.as_fd(), &mut self.bufs);
        }
        if self.state.wants_read() {
            // An armed multishot receive is the usual case: its limit is
            // worked out only when one is posted. It is what the connection
            // can take over many reads (a basic ring's one read is capped
            // by its buffer, which makes it `read_limit`).
            if self.stash.is_empty() && !self.eof_pending && !self.bufs.recv_busy() {
                ring.push_recv(socket.as_fd(), &mut self.bufs, self.state.input_room());
            }
        } else if ring.provides_buffers() && self.bufs.recv_busy() && !self.recv_paused {
            // A multishot receive goes on delivering whatever the core
            // wants: paused at the high watermark (or draining), it is
            // cancelled, and what still arrives before it ends is stashed.
            ring.push_cancel(self.bufs.token(Op::Recv));
            self.recv_paused = true;
        }
        Next::Wait
    }

    /// The socket, to be closed by the ring. Dropping the rest counts the
    /// close and logs it.
    pub(crate) fn take_socket(&mut self) -> Option<OwnedFd> {
        self.socket.take().map(OwnedFd::from)
    }
}
