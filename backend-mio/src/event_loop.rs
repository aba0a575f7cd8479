//! One event loop: a `Poll`, a slab of connections keyed by token, one read
//! buffer, and (in the first loop only) the listener.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use echo_core::budget::RECHECK;
use echo_core::{CloseReason, ServerConfig, ShutdownSignal, Stats};
use mio::{Events, Poll, Registry, Token};
use slab::Slab;

use crate::acceptor::{Acceptor, Handoff};
use crate::conn::{Conn, Turn};
use crate::errors::interrupted;

/// The listener's token. Connections use their slab key, which never comes
/// near these two.
pub(crate) const SERVER: Token = Token(usize::MAX);
/// The token of the loop's `mio::Waker`: shutdown, or sockets in the inbox.
pub(crate) const WAKER: Token = Token(usize::MAX - 1);

/// Events taken from the poller per wake-up.
const EVENTS: usize = 1024;

/// One thread's event loop.
#[derive(Debug)]
pub(crate) struct EventLoop {
    poll: Poll,
    conns: Slab<Conn>,
    /// The one read buffer of this loop, shared by all its connections:
    /// input is handed to the protocol as soon as it is read, so no
    /// connection needs a buffer of its own while it waits.
    buf: Vec<u8>,
    /// Connections whose read budget ran out with input still waiting.
    /// Edge-triggered events will not report that input again, so the loop
    /// remembers them and polls without sleeping until they are served.
    ready: Vec<usize>,
    /// Connections that stopped reading only because the server's budget
    /// of buffered replies is spent ([`Connection::waits_for_budget`]).
    /// Other connections, on any loop, free it without an event here, so
    /// while this is not empty the loop wakes every [`RECHECK`] and, once
    /// the budget has room, drives them again (which re-registers their
    /// read interest). While the budget stays spent a wake-up costs one
    /// atomic load.
    ///
    /// [`Connection::waits_for_budget`]: echo_core::Connection::waits_for_budget
    held: Vec<usize>,
    /// Sockets the acceptor dealt to this loop.
    inbox: Receiver<Handoff>,
    /// The listener, in the first loop only, until shutdown.
    acceptor: Option<Acceptor>,
    config: ServerConfig,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
    /// The time of this wake-up, kept only when there is an idle timeout, so
    /// a server without one never reads the clock per event.
    now: Option<Instant>,
    /// When the idle scan next runs: no connection can expire before it.
    next_idle_check: Option<Instant>,
    /// Shutdown has begun: nothing more is read, only flushed.
    draining: bool,
}

impl EventLoop {
    /// A loop that serves what arrives in `inbox`.
    pub(crate) fn new(
        poll: Poll,
        inbox: Receiver<Handoff>,
        config: ServerConfig,
        stats: Arc<Stats>,
        signal: Arc<ShutdownSignal>,
    ) -> EventLoop {
        let now = config.idle_timeout.map(|_| Instant::now());
        let next_idle_check = now.zip(config.idle_timeout).and_then(|(now, idle)| now.checked_add(idle));
        EventLoop {
            poll,
            conns: Slab::new(),
            buf: Vec::new(),
            ready: Vec::new(),
            held: Vec::new(),
            inbox,
            acceptor: None,
            config,
            stats,
            signal,
            now,
            next_idle_check,
            draining: false,
        }
    }

    /// The poller's registry, to register the listener before the loop runs.
    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Makes this loop the one that accepts.
    pub(crate) fn set_acceptor(&mut self, acceptor: Acceptor) {
        self.acceptor = Some(acceptor);
    }

    /// Serves until shutdown has drained. A failing poller ends this loop
    /// only; dropping it closes its connections, each counted and logged.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        if let Err(err) = self.serve(&mut events) {
            tracing::error!(error = %err, "event loop failed; closing its connections");
        }
    }

    fn serve(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            if self.signal.is_triggered() && !self.draining {
                self.begin_drain();
            }
            if self.draining && (self.conns.is_empty() || self.signal.is_expired()) {
                // Whatever is left could not be flushed in time: dropping a
                // connection closes it, counted as a shutdown.
                self.conns.clear();
                return Ok(());
            }
            match self.poll.poll(events, self.timeout()) {
                Ok(()) => {}
                // A signal cut the wait short. Nothing happened to any
                // socket; the timers below and the next poll carry on.
                Err(err) if interrupted(&err) => {}
                Err(err) => return Err(err),
            }
            if self.config.idle_timeout.is_some() {
                self.now = Some(Instant::now());
            }
            for event in events.iter() {
                match event.token() {
                    SERVER => self.accept(),
                    // The waker only ends the wait; what it announces
                    // (sockets in the inbox, shutdown) is checked on every
                    // wake-up anyway.
                    WAKER => {}
                    Token(key) => {
                        // Events for a closed connection whose slot is free
                        // are dropped; one for a slot since reused is merely
                        // spurious, and the `WouldBlock` it leads to is
                        // harmless.
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.ready(event);
                            self.drive(key);
                        }
                    }
                }
            }
            self.take_inbox();
            for key in std::mem::take(&mut self.ready) {
                self.drive(key);
            }
            self.resume_held();
            if let Some(acceptor) = &mut self.acceptor {
                acceptor.resume_if_due(self.poll.registry());
            }
            self.close_idle();
            if self.draining {
                self.check_lingering();
            }
        }
    }

    /// How long the poller may sleep: until the nearest timer (a back-off
    /// ending, an idle deadline, the drain deadline), or not at all while
    /// connections wait on the ready list. No timer, no clock read.
    fn timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let drain = self.signal.deadline().filter(|_| self.draining);
        // Only while draining can a connection linger.
        let linger = if self.draining {
            self.conns.iter().filter_map(|(_, c)| c.linger_check_at()).min()
        } else {
            None
        };
        let retry = self.acceptor.as_ref().and_then(Acceptor::retry_at);
        let recheck = (!self.held.is_empty()).then(|| Instant::now() + RECHECK);
        [drain, linger, retry, self.next_idle_check, recheck]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn accept(&mut self) {
        let Some(acceptor) = &mut self.acceptor else { return };
        let registry = self.poll.registry();
        let conns = &mut self.conns;
        acceptor.accept(registry, &self.config, &self.stats, |handoff| adopt(conns, registry, handoff));
    }

    fn take_inbox(&mut self) {
        while let Ok(handoff) = self.inbox.try_recv() {
            if self.draining {
                // Accepted just before shutdown: it has sent nothing we
                // read, so there is nothing to flush. Dropping closes it.
                continue;
            }
            adopt(&mut self.conns, self.poll.registry(), handoff);
        }
    }

    /// Serves one connection as far as it goes, then closes it if it is
    /// done or tells the poller what it waits for next.
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.is_lingering() {
            if !conn.linger_turn(Instant::now()) {
                self.conns.remove(key);
            }
            return;
        }
        if conn.drive(&mut self.buf, self.now) == Turn::More {
            self.ready.push(key);
        }
        if !conn.state.is_finished() {
            if conn.state.waits_for_budget() && !conn.held {
                conn.held = true;
                self.held.push(key);
            }
            let Err(err) = conn.update_interest(self.poll.registry(), Token(key)) else { return };
            conn.state.abort(CloseReason::Error(err.kind()));
        }
        // Every reply of a drain written: closing now, with input unread,
        // would send a reset that destroys the replies not yet delivered.
        let deadline = self.signal.deadline().filter(|_| conn.state.lingers());
        if deadline.is_some_and(|deadline| conn.begin_linger(self.poll.registry(), Token(key), deadline)) {
            return;
        }
        // Dropping the socket closes it, which also removes it from the
        // poller; no separate deregister call is needed.
        self.conns.remove(key);
    }

    /// Drives again the connections stopped by the budget, once it has
    /// room; those still stopped go back on the list.
    fn resume_held(&mut self) {
        if self.held.is_empty() || self.stats.budget().room(self.config.max_buffered) == 0 {
            return;
        }
        for key in std::mem::take(&mut self.held) {
            // A key whose connection closed may since have been reused:
            // driving that one is merely spurious.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.held = false;
                self.drive(key);
            }
        }
    }

    /// Stops accepting at once and lets every connection flush what it has.
    fn begin_drain(&mut self) {
        self.draining = true;
        // Dropping the listener closes it: the kernel refuses new
        // connections from now on.
        self.acceptor = None;
        self.take_inbox();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.state.drain();
                self.drive(key);
            }
        }
    }

    /// Looks at the send queue of every lingering connection that is due,
    /// closing those whose peer has everything.
    fn check_lingering(&mut self) {
        let now = Instant::now();
        self.conns.retain(|_, conn| match conn.linger_check_at() {
            Some(at) if at <= now => conn.linger_turn(now),
            _ => true,
        });
    }

    /// Closes connections that moved nothing either way for the idle timeout. A scan of
    /// every connection, but only when the earliest deadline has come.
    fn close_idle(&mut self) {
        let (Some(idle), Some(now), Some(due)) = (self.config.idle_timeout, self.now, self.next_idle_check)
        else {
            return;
        };
        if now < due {
            return;
        }
        // Connections that arrive later expire later than this.
        let mut next = now.checked_add(idle);
        let ready = &mut self.ready;
        self.conns.retain(|key, conn| match conn.last_progress.checked_add(idle) {
            Some(deadline) if deadline <= now => match conn.write_if_idle() {
                // Replies the peer made room for, without an event saying
                // so. Driven again soon: that write may have resumed
                // reading, which its interest must then say.
                Ok(true) => {
                    conn.last_progress = now;
                    ready.push(key);
                    true
                }
                Ok(false) => {
                    conn.state.abort(CloseReason::Idle);
                    false
                }
                Err(err) => {
                    conn.state.abort(CloseReason::Error(err.kind()));
                    false
                }
            },
            deadline => {
                if let Some(deadline) = deadline {
                    next = Some(next.map_or(deadline, |next| next.min(deadline)));
                }
                true
            }
        });
        self.next_idle_check = next;
    }
}

/// Registers a dealt socket in `conns`; a socket the poller refuses is
/// closed as failed.
fn adopt(conns: &mut Slab<Conn>, registry: &Registry, handoff: Handoff) {
    let entry = conns.vacant_entry();
    let mut conn = Conn::new(handoff.socket, handoff.state);
    match conn.register(registry, Token(entry.key())) {
        Ok(()) => {
            entry.insert(conn);
        }
        Err(err) => conn.state.abort(CloseReason::Error(err.kind())),
    }
}
