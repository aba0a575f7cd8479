//! The listener, owned by the first event loop, and how accepted sockets are
//! dealt out to every loop.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use echo_core::{AcceptBackoff, Connection, ServerConfig, Stats};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token, Waker};

use crate::errors::would_block;

/// An accepted, admitted socket on its way to the loop that will serve it.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The client's socket, non-blocking, TCP_NODELAY set.
    pub(crate) socket: TcpStream,
    /// Its state, already counted as open.
    pub(crate) state: Connection,
}

/// Another event loop, as the acceptor sees it.
#[derive(Debug)]
pub(crate) struct Sibling {
    /// Its inbox of handed-off sockets.
    pub(crate) inbox: Sender<Handoff>,
    /// Wakes it to look at the inbox.
    pub(crate) waker: Arc<Waker>,
}

/// Accepts connections and deals them round-robin to its own loop and to
/// its siblings.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    token: Token,
    backoff: AcceptBackoff,
    /// Set while accepting is paused after running out of descriptors; the
    /// listener is deregistered until then, so a backlog that stays
    /// readable cannot wake the loop.
    retry_at: Option<Instant>,
    siblings: Vec<Sibling>,
    /// Who gets the next connection: 0 is our own loop, `i` is
    /// `siblings[i - 1]`.
    next: usize,
    /// Siblings given a socket in this round of accepts: each is woken once
    /// per round, not once per socket.
    to_wake: Vec<bool>,
}

impl Acceptor {
    /// Registers `listener` under `token` and returns the acceptor.
    pub(crate) fn register(
        mut listener: TcpListener,
        siblings: Vec<Sibling>,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Acceptor> {
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Acceptor {
            listener,
            token,
            backoff: AcceptBackoff::default(),
            retry_at: None,
            to_wake: vec![false; siblings.len()],
            siblings,
            next: 0,
        })
    }

    /// When accepting resumes after a back-off, if it is paused.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Resumes accepting once the back-off has passed. Registering reports a
    /// backlog that is already waiting, so the next poll returns at once.
    pub(crate) fn resume_if_due(&mut self, registry: &Registry) {
        let Some(at) = self.retry_at else { return };
        if Instant::now() < at {
            return;
        }
        self.retry_at = None;
        if let Err(err) = registry.register(&mut self.listener, self.token, Interest::READABLE) {
            tracing::warn!(error = %err, "cannot watch the listener again; retrying in 1 s");
            self.retry_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Accepts until the backlog is empty (`WouldBlock`): the event is
    /// edge-triggered and will not repeat for connections already queued.
    /// Each admitted socket goes to the next loop in turn; those for our own
    /// loop are given to `keep`.
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        config: &ServerConfig,
        stats: &Arc<Stats>,
        mut keep: impl FnMut(Handoff),
    ) {
        // A stale event from before a pause: the listener is not registered.
        if self.retry_at.is_some() {
            return;
        }
        loop {
            let (socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if would_block(&err) => break,
                Err(err) => match self.backoff.failed(&err, stats) {
                    // Out of descriptors or memory, or an error that keeps
                    // coming: the listener stays readable, so retrying now
                    // would spin. Pause instead.
                    Some(delay) => {
                        // Ignored: failing, it leaves the listener unwatched
                        // all the same, which is what we want.
                        let _ = registry.deregister(&mut self.listener);
                        self.retry_at = Some(Instant::now() + delay);
                        break;
                    }
                    // Interrupted, or that one connection failed (reset
                    // while queued, say): accept the next.
                    None => continue,
                },
            };
            self.backoff.succeeded();
            // Over the connection limit: dropping the socket closes it.
            let Some(state) = Connection::admit(peer, config, stats) else { continue };
            echo_core::set_nodelay(&socket, peer);
            self.deal(Handoff { socket, state }, &mut keep);
        }
        for (sibling, wake) in self.siblings.iter().zip(&mut self.to_wake) {
            if std::mem::take(wake) {
                if let Err(err) = sibling.waker.wake() {
                    tracing::warn!(error = %err, "cannot wake an event loop");
                }
            }
        }
    }

    fn deal(&mut self, handoff: Handoff, keep: &mut impl FnMut(Handoff)) {
        let turn = self.next;
        self.next = (self.next + 1) % (self.siblings.len() + 1);
        let Some(sibling) = turn.checked_sub(1).and_then(|i| self.siblings.get(i)) else {
            return keep(handoff);
        };
        match sibling.inbox.send(handoff) {
            Ok(()) => self.to_wake[turn - 1] = true,
            // That loop has ended (its poller failed): serve it here.
            Err(returned) => keep(returned.0),
        }
    }
}
