//! One client: its socket, its [`Connection`] state, and the readiness the
//! poller reported for it.

use std::io::{self, Read, Write};
use std::time::Instant;

use echo_core::{CloseReason, Connection, Discarded, Linger, LingerStep, discard_input};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::errors::{interrupted, would_block};

/// Bytes one connection may read in one turn before the loop moves on to
/// the others. Without it a client that sends faster than it is answered
/// would keep the loop to itself; with it the connection goes on the loop's
/// ready list and is served again after everyone else had a turn.
const READ_BUDGET: usize = 256 * 1024;

/// A socket and the protocol state it feeds.
#[derive(Debug)]
pub(crate) struct Conn {
    socket: TcpStream,
    /// Everything the protocol needs: replies, watermarks, counters, logs.
    pub(crate) state: Connection,
    /// The interest registered with the poller now, so it is changed (one
    /// `epoll_ctl`) only when the wanted interest differs.
    interest: Interest,
    /// The socket may have input. Events are edge-triggered: the poller says
    /// "readable" once per change, so we must remember it until a read shows
    /// the socket drained. Starts false: registering reports a socket that
    /// already has input.
    readable: bool,
    /// The poller said the peer closed its side. From then on a short read
    /// no longer means "drained": the end of input is still to be read, and
    /// no new event will come for it.
    peer_closed: bool,
    /// The socket may have room to write; false after a `WouldBlock` until
    /// the poller says otherwise.
    writable: bool,
    /// When input last arrived or replies were last written, for the idle
    /// timeout.
    pub(crate) last_progress: Instant,
    /// On its loop's list of connections stopped by the budget, so that
    /// it is listed once however often it is driven meanwhile.
    pub(crate) held: bool,
    /// Set once a drain wrote every reply: the socket's write side is shut
    /// and it waits, discarding input, until the next look at its send
    /// queue (see [`echo_core::Linger`]).
    linger: Option<(Linger, Instant)>,
}

/// What one [`Conn::drive`] turn left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Everything that could be done was done; wait for the next event.
    Idle,
    /// The read budget ran out with input still waiting: drive it again soon,
    /// since no new event will come for input that is already there.
    More,
}

impl Conn {
    /// A connection not yet registered with a poller.
    pub(crate) fn new(socket: TcpStream, state: Connection) -> Conn {
        Conn {
            socket,
            state,
            interest: Interest::READABLE,
            readable: false,
            peer_closed: false,
            // A fresh socket has an empty send buffer.
            writable: true,
            last_progress: Instant::now(),
            held: false,
            linger: None,
        }
    }

    /// Registers the socket for reading under `token`.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, self.interest)
    }

    /// Notes what the poller reported. It may be spurious or stale; the
    /// reads and writes that follow find out (`WouldBlock`), so believing it
    /// costs at most one system call.
    pub(crate) fn ready(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() {
            self.readable = true;
        }
        if event.is_read_closed() {
            self.peer_closed = true;
        }
        if event.is_writable() || event.is_write_closed() {
            self.writable = true;
        }
        if event.is_error() {
            // The next read or write returns the error and closes us.
            self.readable = true;
            self.writable = true;
        }
    }

    /// Reads and writes as far as the socket and the watermarks allow.
    ///
    /// Input is read into `buf`, the event loop's one buffer, and handed to
    /// the [`Connection`] at once, so nothing stays in `buf` between calls.
    /// `now`, when the loop keeps a clock for the idle timeout, stamps input
    /// and written replies.
    pub(crate) fn drive(&mut self, buf: &mut Vec<u8>, now: Option<Instant>) -> Turn {
        let len = self.state.read_buffer_len();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let mut budget = READ_BUDGET;
        loop {
            // Read everything there is (or until paused by the watermark)
            // before writing, so one write carries many replies.
            while self.readable && self.state.wants_read() && budget > 0 {
                // Asked again for every read: how much fits under the
                // watermark changes as replies pile up.
                let limit = self.state.read_limit();
                match self.socket.read(&mut buf[..limit]) {
                    Ok(0) => {
                        self.readable = false;
                        self.state.received(&[]);
                    }
                    Ok(n) => {
                        self.state.received(&buf[..n]);
                        budget = budget.saturating_sub(n);
                        if let Some(now) = now {
                            self.last_progress = now;
                        }
                        // A short read means the kernel's receive buffer was
                        // empty when the read returned, so the next read
                        // would only say `WouldBlock`; we skip that system
                        // call. This is safe with edge-triggered events:
                        // anything arriving after this read is a new edge,
                        // and the poller reports it. The exception is the
                        // end of input: if the peer's FIN was already queued
                        // behind these bytes, its edge was reported together
                        // with them (`peer_closed`), no new one will come,
                        // and we must read on until the read returns 0.
                        if n < limit && !self.peer_closed {
                            self.readable = false;
                        }
                    }
                    Err(err) if would_block(&err) => self.readable = false,
                    Err(err) if interrupted(&err) => {}
                    Err(err) => {
                        self.state.abort(CloseReason::Error(err.kind()));
                        return Turn::Idle;
                    }
                }
            }
            while self.writable && self.state.wants_write() {
                match self.socket.write(self.state.pending()) {
                    Ok(0) => {
                        self.state.abort(CloseReason::Error(io::ErrorKind::WriteZero));
                        return Turn::Idle;
                    }
                    Ok(n) => {
                        self.state.wrote(n);
                        // The peer reads what it asked for: not idle.
                        if let Some(now) = now {
                            self.last_progress = now;
                        }
                    }
                    Err(err) if would_block(&err) => self.writable = false,
                    Err(err) if interrupted(&err) => {}
                    Err(err) => {
                        self.state.abort(CloseReason::Error(err.kind()));
                        return Turn::Idle;
                    }
                }
            }
            // Writing may have brought the output under the low watermark:
            // if input is still waiting, read it now; no event will say so.
            if !(self.readable && self.state.wants_read()) {
                return Turn::Idle;
            }
            if budget == 0 {
                return Turn::More;
            }
        }
    }

    /// At the idle deadline: whether pending replies could be written
    /// after all (see [`Connection::write_if_idle`]).
    pub(crate) fn write_if_idle(&mut self) -> io::Result<bool> {
        self.state.write_if_idle(&self.socket)
    }

    /// A drain wrote every reply: shuts the write side and lingers until
    /// `deadline`, waiting for input only. Returns whether to keep the
    /// connection; `false` means close it now.
    pub(crate) fn begin_linger(&mut self, registry: &Registry, token: Token, deadline: Instant) -> bool {
        let Some(mut linger) = Linger::begin(&self.socket, deadline) else { return false };
        let LingerStep::CheckAt(at) = linger.poll(&self.socket, Instant::now()) else { return false };
        if self.interest != Interest::READABLE {
            if registry.reregister(&mut self.socket, token, Interest::READABLE).is_err() {
                return false;
            }
            self.interest = Interest::READABLE;
        }
        self.linger = Some((linger, at));
        // Input may be waiting already, with no new edge to report it.
        self.readable = true;
        self.linger_turn(Instant::now())
    }

    /// Whether the connection is lingering after a drain.
    pub(crate) fn is_lingering(&self) -> bool {
        self.linger.is_some()
    }

    /// When a lingering connection next looks at its send queue.
    pub(crate) fn linger_check_at(&self) -> Option<Instant> {
        self.linger.as_ref().map(|&(_, at)| at)
    }

    /// One turn of a lingering connection: discards the input waiting and,
    /// when due, looks at the send queue. Returns whether to keep it.
    pub(crate) fn linger_turn(&mut self, now: Instant) -> bool {
        let Some((linger, at)) = &mut self.linger else { return false };
        if self.readable {
            // Bounded, so it may stop short of `WouldBlock`; the next look
            // at the send queue, a few milliseconds away, reads on.
            self.readable = false;
            if discard_input(&self.socket) == Discarded::Closed {
                return false;
            }
        }
        if now >= *at {
            match linger.poll(&self.socket, now) {
                LingerStep::Close => return false,
                LingerStep::CheckAt(next) => *at = next,
            }
        }
        true
    }

    /// Tells the poller what we wait for now: READABLE only while reading
    /// (a connection paused at the watermark must not be woken for input it
    /// will not read), WRITABLE only while replies are pending (an idle
    /// socket is always writable and would wake us for nothing).
    pub(crate) fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = match self.state.interest() {
            echo_core::Interest::Both => Interest::READABLE | Interest::WRITABLE,
            echo_core::Interest::Write => Interest::WRITABLE,
            echo_core::Interest::Read => Interest::READABLE,
        };
        if wanted != self.interest {
            registry.reregister(&mut self.socket, token, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }
}
