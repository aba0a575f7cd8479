//! One ring's event loop: a slab of connections, this ring's descriptor of
//! the shared listener, its wake-up eventfd and its timers.
//!
//! A pass is: reap every completion, let each one move its connection on
//! (which queues the submissions that connection needs next), then hand
//! everything queued to the kernel and wait for the next completion in one
//! `io_uring_enter`. However many connections were served in a pass, it
//! costs one system call.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use echo_core::budget::RECHECK;
use echo_core::{AcceptBackoff, CloseReason, Connection, ServerConfig, ShutdownSignal, Stats};
use slab::Slab;

use crate::conn::{Conn, Next};
use crate::ring::{Completion, Ring};
use crate::token::{Op, Timer, Token};

/// One thread's ring and everything it serves.
#[derive(Debug)]
pub(crate) struct EventLoop {
    ring: Ring,
    conns: Slab<Conn>,
    /// This ring's own descriptor of the listening socket (a `try_clone`),
    /// until shutdown. The socket stops listening when the last ring closes
    /// its descriptor.
    listener: Option<TcpListener>,
    /// Written by the server's `wake` closure at shutdown.
    wake: Arc<File>,
    backoff: AcceptBackoff,
    /// Stamps connections' generations; see [`Token`].
    next_generation: u32,
    /// Completions of the current pass, kept to reuse the allocation.
    completions: Vec<Completion>,
    config: ServerConfig,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
    /// Shutdown has begun: nothing more is accepted or read, only flushed.
    draining: bool,
    /// The drain deadline passed: everything left was aborted.
    expired: bool,
    /// The ring-wide operations were cancelled, the last step before exit.
    winding_down: bool,
    /// Connections that stopped reading only because the server's budget
    /// of buffered replies is spent ([`Connection::waits_for_budget`]).
    /// Other connections, on any ring, free it without a completion here,
    /// so while this is not empty the budget timer looks every
    /// [`RECHECK`] and, once the budget has room, drives them again, which
    /// posts their receives. While it stays spent a look costs one atomic
    /// load.
    ///
    /// [`Connection::waits_for_budget`]: echo_core::Connection::waits_for_budget
    held: Vec<usize>,
}

impl EventLoop {
    /// A loop serving `listener` (its own descriptor of it) on `ring`.
    pub(crate) fn new(
        ring: Ring,
        listener: TcpListener,
        wake: Arc<File>,
        config: ServerConfig,
        stats: Arc<Stats>,
        signal: Arc<ShutdownSignal>,
    ) -> EventLoop {
        EventLoop {
            ring,
            conns: Slab::new(),
            listener: Some(listener),
            wake,
            backoff: AcceptBackoff::default(),
            next_generation: 0,
            completions: Vec::new(),
            config,
            stats,
            signal,
            draining: false,
            expired: false,
            winding_down: false,
            held: Vec::new(),
        }
    }

    /// Serves until shutdown has drained and every operation has completed.
    /// A failing ring ends this loop only.
    pub(crate) fn run(mut self) {
        if let Err(err) = self.serve() {
            tracing::error!(error = %err, "io_uring event loop failed; closing its connections");
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        self.ring.enable()?;
        if self.ring.provides_buffers() && !self.ring.caps_receives() {
            tracing::debug!(
                "this kernel cannot cap a multishot receive: a paused connection may stash what its \
                 receive delivers until cancelled, up to the ring's provided buffers"
            );
        }
        self.ring.push_wake(self.wake.as_fd());
        self.accept();
        if let Some(idle) = self.config.idle_timeout {
            self.ring.push_timer(Timer::Idle, idle);
        }
        loop {
            if self.signal.is_triggered() && !self.draining {
                self.begin_drain();
            }
            if self.draining && self.wind_down() {
                return Ok(());
            }
            self.ring.submit_and_wait()?;
            let mut batch = std::mem::take(&mut self.completions);
            self.ring.reap(&mut batch);
            // One clock read per pass, and none without an idle timeout.
            let now = self.config.idle_timeout.map(|_| Instant::now());
            for done in batch.drain(..) {
                self.complete(done, now);
            }
            self.completions = batch;
        }
    }

    fn complete(&mut self, mut done: Completion, now: Option<Instant>) {
        let token = done.token();
        match token.op() {
            Some(Op::Accept) => self.accepted(done),
            Some(Op::Recv | Op::Send) => {
                self.conn_completed(token, &mut done, now);
                // A provided buffer nobody took (its connection is gone or
                // failed) goes back to the kernel all the same.
                self.ring.recycle(&mut done);
            }
            // The wake-up only ends the wait; the signal is checked on
            // every pass. It is re-armed unless shutdown has begun.
            Some(Op::Wake) => {
                if !self.signal.is_triggered() {
                    self.ring.push_wake(self.wake.as_fd());
                }
            }
            Some(Op::Timer) => match token.timer_kind() {
                Some(Timer::Idle) if done_expired(&done) => self.close_idle(),
                Some(Timer::Retry) if done_expired(&done) && !self.draining => self.accept(),
                Some(Timer::Drain) if done_expired(&done) => self.expire(),
                Some(Timer::Linger) if done_expired(&done) => self.check_lingering(),
                Some(Timer::Budget) if done_expired(&done) => self.resume_held(),
                // Cancelled at shutdown.
                _ => {}
            },
            Some(Op::Close) => {
                if let Err(err) = done.result() {
                    tracing::debug!(error = %err, "close failed");
                }
            }
            // A cancel's own result says only whether it found its target;
            // the target's completion is what matters.
            Some(Op::Cancel) | None => {}
        }
    }

    /// Posts an accept on this ring's listener descriptor. Each ring posts
    /// its own; the kernel hands each new connection to one of them.
    fn accept(&mut self) {
        if let Some(listener) = &self.listener {
            self.ring.push_accept(listener.as_fd());
        }
    }

    fn accepted(&mut self, done: Completion) {
        let more = done.more();
        match done.into_accepted() {
            Ok((fd, peer)) => {
                self.backoff.succeeded();
                if self.draining {
                    // Accepted as shutdown began: nothing of it was read, so
                    // there is nothing to flush. Dropping closes it.
                    return;
                }
                // A multishot accept still armed makes this a no-op.
                self.accept();
                self.adopt(TcpStream::from(fd), peer);
            }
            Err(err) if err.raw_os_error() == Some(libc::ECANCELED) => {
                // Cancelled to back off (see below) or for shutdown; the
                // retry timer re-arms it in the first case.
            }
            Err(err) => {
                if self.draining {
                    return;
                }
                match self.backoff.failed(&err, &self.stats) {
                    // Out of descriptors or memory: re-arming at once would
                    // fail again at once (the connection waits in the
                    // backlog), so wait on a timer instead of spinning. A
                    // multishot accept that stayed armed is cancelled, so
                    // the back-off holds for it too.
                    Some(delay) => {
                        if more {
                            self.ring.push_cancel(Token::ring(Op::Accept));
                        }
                        self.ring.push_timer(Timer::Retry, delay);
                    }
                    None => self.accept(),
                }
            }
        }
    }

    /// Admits a new connection and posts its first receive; refuses it (the
    /// socket closes at once) past the connection limit.
    fn adopt(&mut self, socket: TcpStream, peer: Option<SocketAddr>) {
        let peer = match peer {
            Some(peer) => peer,
            // A multishot accept writes no address (and a basic one gives
            // `None` for a family other than IPv4 or IPv6): ask the socket.
            None => match socket.peer_addr() {
                Ok(peer) => peer,
                Err(err) => {
                    tracing::debug!(error = %err, "accepted a socket with no peer");
                    return;
                }
            },
        };
        let Some(state) = Connection::admit(peer, &self.config, &self.stats) else {
            self.ring.push_close(socket.into());
            return;
        };
        echo_core::set_nodelay(&socket, peer);
        let entry = self.conns.vacant_entry();
        let Ok(key) = u32::try_from(entry.key()) else {
            // More than 4 billion connections on one ring: not reachable
            // with any descriptor limit, but not a reason to panic either.
            return;
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut conn = Conn::new(socket, state, key, generation, self.ring.provides_buffers());
        match conn.drive(&mut self.ring, None) {
            Next::Wait => {
                entry.insert(conn);
            }
            Next::Close => close(&mut self.ring, conn),
        }
    }

    fn conn_completed(&mut self, token: Token, done: &mut Completion, now: Option<Instant>) {
        let key = token.key();
        let Some(conn) = self.conns.get_mut(key) else { return };
        if !conn.owns(token) {
            return;
        }
        if token.op() == Some(Op::Recv) {
            conn.on_recv(done, &mut self.ring, now);
        } else {
            conn.on_send(done, now);
        }
        self.drive(key);
    }

    /// Posts what connection `key` needs next, or closes it.
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.drive(&mut self.ring, self.signal.deadline()) == Next::Close {
            let conn = self.conns.remove(key);
            close(&mut self.ring, conn);
        } else if conn.lingering() && !self.ring.timer_busy(Timer::Linger) {
            self.check_lingering();
        } else if conn.state.waits_for_budget() && !conn.held && !self.draining {
            conn.held = true;
            self.held.push(key);
            if !self.ring.timer_busy(Timer::Budget) {
                self.ring.push_timer(Timer::Budget, RECHECK);
            }
        }
    }

    /// The budget timer: drives again the connections stopped by the
    /// budget once it has room (those still stopped go back on the list),
    /// and looks again later while any is left.
    fn resume_held(&mut self) {
        if self.stats.budget().room(self.config.max_buffered) > 0 {
            for key in std::mem::take(&mut self.held) {
                // A key whose connection closed may since have been
                // reused: driving that one is merely spurious.
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.held = false;
                    self.drive(key);
                }
            }
        }
        if !self.held.is_empty() && !self.draining && !self.ring.timer_busy(Timer::Budget) {
            self.ring.push_timer(Timer::Budget, RECHECK);
        }
    }

    /// The linger timer: closes the lingering connections whose peer
    /// acknowledged every reply (or whose deadline came), and arms the
    /// timer for the soonest next look any of the others asks for (each
    /// connection's [`echo_core::Linger`] spaces its looks, 1 ms doubling to
    /// 50 ms).
    fn check_lingering(&mut self) {
        let now = Instant::now();
        let keys: Vec<usize> = self.conns.iter().filter(|(_, c)| c.lingering()).map(|(key, _)| key).collect();
        let mut next: Option<Instant> = None;
        for key in keys {
            match self.conns.get_mut(key).map(|conn| conn.check_linger(now)) {
                Some(None) => self.drive(key),
                Some(Some(at)) => next = Some(next.map_or(at, |next| next.min(at))),
                None => {}
            }
        }
        if let Some(at) = next
            && !self.ring.timer_busy(Timer::Linger)
        {
            self.ring.push_timer(Timer::Linger, at.saturating_duration_since(now));
        }
    }

    /// Stops accepting at once and lets every connection flush what it has.
    fn begin_drain(&mut self) {
        self.draining = true;
        if self.ring.accept_busy() {
            // The listener descriptor is closed once this completes.
            self.ring.push_cancel(Token::ring(Op::Accept));
        }
        // Draining reads nothing more: connections stopped by the budget
        // only flush now.
        self.held.clear();
        for timer in [Timer::Retry, Timer::Idle, Timer::Budget] {
            if self.ring.timer_busy(timer) {
                self.ring.push_cancel(Token::timer(timer));
            }
        }
        if let Some(deadline) = self.signal.deadline() {
            self.ring.push_timer(Timer::Drain, deadline.saturating_duration_since(Instant::now()));
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.state.drain();
            }
            self.drive(key);
        }
    }

    /// The drain deadline has passed: whatever is left could not be flushed
    /// in time and is closed, counted as a shutdown.
    fn expire(&mut self) {
        if self.expired {
            return;
        }
        self.expired = true;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.abort(CloseReason::Shutdown);
            }
            self.drive(key);
        }
    }

    /// The steps of shutdown after the drain began. Returns true once the
    /// loop may end: no connection left and no operation in flight, so the
    /// kernel holds no pointer into any buffer we are about to free.
    fn wind_down(&mut self) -> bool {
        if !self.expired && self.signal.is_expired() {
            self.expire();
        }
        if !self.ring.accept_busy() {
            // This ring's descriptor of the listener closes here; once every
            // ring has closed its own, new connections are refused.
            self.listener = None;
        }
        if !self.conns.is_empty() {
            return false;
        }
        if !self.winding_down {
            self.winding_down = true;
            if self.ring.wake_busy() {
                self.ring.push_cancel(Token::ring(Op::Wake));
            }
            for timer in Timer::ALL {
                if self.ring.timer_busy(timer) {
                    self.ring.push_cancel(Token::timer(timer));
                }
            }
        }
        self.ring.in_flight() == 0
    }

    /// Closes connections that moved nothing either way for the idle
    /// timeout, then arms
    /// the timer for the earliest of the others' deadlines.
    fn close_idle(&mut self) {
        let Some(idle) = self.config.idle_timeout else { return };
        if self.draining {
            return;
        }
        let now = Instant::now();
        let mut next = idle;
        let mut expired = Vec::new();
        for (key, conn) in &mut self.conns {
            let quiet = now.saturating_duration_since(conn.last_progress);
            match idle.checked_sub(quiet) {
                Some(left) if !left.is_zero() => next = next.min(left),
                _ if conn.peer_took_replies() => conn.last_progress = now,
                _ => expired.push(key),
            }
        }
        for key in expired {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.abort(CloseReason::Idle);
            }
            self.drive(key);
        }
        self.ring.push_timer(Timer::Idle, next);
    }
}

/// Whether a timer completion means the time came (`-ETIME`), not that it
/// was cancelled.
fn done_expired(done: &Completion) -> bool {
    matches!(done.result(), Err(err) if err.raw_os_error() == Some(libc::ETIME))
}

/// Hands the socket to the ring to close and drops the rest, which counts
/// and logs the close.
fn close(ring: &mut Ring, mut conn: Conn) {
    if let Some(fd) = conn.take_socket() {
        ring.push_close(fd);
    }
}
