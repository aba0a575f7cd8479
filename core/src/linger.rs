//! The lingering close after a drain: how a backend closes a connection
//! whose replies are all written without letting the kernel throw them away.
//!
//! Closing a TCP socket that still has unread input makes Linux send a
//! reset instead of a FIN (RFC 2525, section 2.17), and a reset discards
//! whatever the socket's send queue still holds: replies written but not
//! yet delivered are lost. A draining server stops reading, so a client
//! that wrote more than the server read leaves input unread, and its last
//! replies would die in the send queue.
//!
//! So once a draining connection has written every reply
//! ([`Connection::lingers`](crate::Connection::lingers)), the backend:
//! 1. calls [`Linger::begin`], which shuts down the write side: the FIN
//!    follows the replies;
//! 2. keeps the socket open, reading and discarding input
//!    ([`discard_input`]), so that little is left unread when it closes;
//! 3. closes once [`Linger::poll`] says so (every reply and the FIN
//!    acknowledged, so a reset can no longer destroy anything, or the
//!    drain deadline passed), or once the peer closed or failed.
//!
//! There is no readiness event for "acknowledged", so the send queue is
//! looked at on a short timer that backs off (1 ms doubling to 50 ms), and
//! only for lingering connections.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::sys::unacked_send_queue;

/// The first wait between looks at the send queue.
const FIRST_CHECK: Duration = Duration::from_millis(1);
/// The longest wait between looks: how late, at worst, a connection whose
/// replies were all acknowledged is closed.
const LAST_CHECK: Duration = Duration::from_millis(50);
/// Reads [`discard_input`] makes in one call, so that a peer that keeps
/// sending cannot hold the thread; the next timer tick reads on.
const DISCARD_READS: usize = 16;

/// A connection that wrote its last reply during a drain and waits, write
/// side shut, until the peer has acknowledged everything: see the module.
#[derive(Debug)]
pub struct Linger {
    /// The drain deadline: the socket closes then whatever the queue holds.
    deadline: Instant,
    /// The wait before the next look at the send queue.
    next_wait: Duration,
}

/// What a lingering connection does next: see [`Linger::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LingerStep {
    /// Close the socket now.
    Close,
    /// Keep discarding input; call [`Linger::poll`] again at this instant.
    CheckAt(Instant),
}

impl Linger {
    /// Shuts down `socket`'s write side, so the FIN follows the replies, and
    /// starts lingering until `deadline`. `None` when the shutdown fails (the
    /// peer is already gone, or it is no socket): close at once, nothing is
    /// left to deliver.
    pub fn begin(socket: impl AsFd, deadline: Instant) -> Option<Self> {
        socket2::SockRef::from(&socket).shutdown(Shutdown::Write).ok()?;
        Some(Self { deadline, next_wait: FIRST_CHECK })
    }

    /// Looks at `socket`'s send queue: [`LingerStep::Close`] once the peer has
    /// acknowledged every byte and the FIN, or at the deadline; otherwise when
    /// to look again. Where the kernel does not tell, it waits for the
    /// deadline (the peer's FIN, seen by the reads, ends it sooner).
    pub fn poll(&mut self, socket: impl AsFd, now: Instant) -> LingerStep {
        if now >= self.deadline {
            return LingerStep::Close;
        }
        match unacked_send_queue(socket.as_fd()) {
            Some(0) => LingerStep::Close,
            Some(_) => {
                let at = now + self.next_wait;
                self.next_wait = (self.next_wait * 2).min(LAST_CHECK);
                LingerStep::CheckAt(at.min(self.deadline))
            }
            None => LingerStep::CheckAt(self.deadline),
        }
    }

    /// The drain deadline this connection lingers until.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Whether a lingering socket's peer is still there, after
/// [`discard_input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discarded {
    /// The input waiting was read and dropped; more may come.
    Open,
    /// The peer closed its side or the socket failed: close it.
    Closed,
}

/// Reads and drops the input waiting on a lingering `socket`, without
/// blocking (even a blocking socket), a bounded number of reads per call.
/// For backends that do not read through a runtime; the shared async loop
/// reads with its runtime instead, to be woken by input.
pub fn discard_input(socket: impl AsFd) -> Discarded {
    let socket = socket2::SockRef::from(&socket);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
    for _ in 0..DISCARD_READS {
        match socket.recv_with_flags(&mut buf, libc::MSG_DONTWAIT) {
            Ok(0) => return Discarded::Closed,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Discarded::Open,
            Err(_) => return Discarded::Closed,
        }
    }
    Discarded::Open
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn pair() -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok((client, server))
    }

    #[test]
    fn closes_once_the_peer_has_everything_and_input_is_discarded() -> io::Result<()> {
        let (mut client, server) = pair()?;
        client.write_all(b"input the server never reads")?;
        (&server).write_all(b"the last reply")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut linger = Linger::begin(&server, deadline).expect("a connected socket");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply)?;
        assert_eq!(reply, b"the last reply", "the reply, then the FIN");
        loop {
            assert_eq!(discard_input(&server), Discarded::Open);
            match linger.poll(&server, Instant::now()) {
                LingerStep::Close => break,
                LingerStep::CheckAt(at) => {
                    assert!(at <= deadline);
                    assert!(Instant::now() < deadline, "never closed before the deadline");
                    std::thread::yield_now();
                }
            }
        }
        drop(server);
        // Nothing was left unread: a FIN, not a reset.
        assert_eq!(client.read(&mut [0u8; 1])?, 0);
        Ok(())
    }

    #[test]
    fn the_peers_fin_and_the_deadline_end_it() -> io::Result<()> {
        let (client, server) = pair()?;
        let mut linger =
            Linger::begin(&server, Instant::now() + Duration::from_secs(5)).expect("a connected socket");
        assert_eq!(linger.poll(&server, linger.deadline()), LingerStep::Close);
        client.shutdown(Shutdown::Write)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while discard_input(&server) == Discarded::Open {
            assert!(Instant::now() < deadline, "the FIN never came");
            std::thread::yield_now();
        }
        Ok(())
    }
}
