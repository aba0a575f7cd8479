//! The echo server on Linux io_uring, driven through the [`io-uring`] crate
//! directly: completion-based accept, receive and send, one ring per thread,
//! many submissions per `io_uring_enter`.
//!
//! Each connection's protocol, watermarks, counters and log lines live in
//! [`echo_core::Connection`]; this crate only moves bytes between it and the
//! kernel. It does not bind (core does, once, for every backend), parse
//! options or install signal handlers. It runs on Linux only, with a kernel
//! that has io_uring (5.6 or later, not disabled by `io_uring_disabled`);
//! elsewhere [`UringBackend`]'s `spawn` returns an error that says to use
//! another backend. Where the kernel offers them (Linux 6.1 and later), it
//! uses single-issuer rings with deferred task work, a multishot accept and
//! multishot receives from a ring of provided buffers ([`Design::Full`]);
//! elsewhere, or when [`Design::Basic`] is asked for, it falls back to the
//! plain completion model with one log line. It uses no SQPOLL thread.
//!
//! # Completion, not readiness
//!
//! The readiness backends (select, mio) ask the kernel "which sockets can I
//! read now?" and then make one `recv`/`send` system call per socket. Here
//! the backend hands the kernel the operation itself, with the buffer: "when
//! input arrives, put it here". The kernel does the I/O and reports what
//! was done. Two things follow:
//!
//! - One system call per pass, whatever the number of connections: the
//!   loop reaps every completion, queues the next operation of every
//!   connection that needs one, and submits them all with the wait for the
//!   next completion in a single `io_uring_enter`.
//! - A buffer lent to the kernel is the kernel's until the completion comes
//!   back. Each connection owns a send buffer; replies are copied from the
//!   `Connection` into it before each send, because `Connection::received`
//!   may reallocate its output while a send is still in flight. All code
//!   that lends memory to the kernel is in one module, `ring`, the only one
//!   with `unsafe`.
//!
//! # Two designs: full, and the basic fallback
//!
//! [`Design::Full`], the default, uses what newer kernels offer where it
//! pays:
//!
//! - Rings set up `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
//!   (Linux 6.1): each ring is used by one thread, so the kernel skips the
//!   locking of a shared ring, and runs the work that completes this ring's
//!   operations only inside the loop's own `io_uring_enter` (which always
//!   asks for completions), in one batch, instead of interrupting the
//!   thread whenever a socket becomes ready. The ring is made disabled and
//!   enabled by the thread that serves it, which becomes its one issuer.
//! - One multishot accept per ring: one submission accepts connection after
//!   connection, re-armed when it ends; it writes no peer address, so the
//!   address is asked of the socket. The connection limit and the accept
//!   back-off are core's, as before: an accept error cancels the shot and
//!   arms the retry timer.
//! - One multishot receive per connection, from a ring of provided buffers
//!   (`IORING_REGISTER_PBUF_RING`) shared by all the ring's connections,
//!   256 KiB per ring, instead of a read buffer per connection (up to
//!   64 KiB): an idle connection holds no read buffer. A completion lends
//!   its buffer to the connection only while its bytes are copied into the
//!   `Connection`, then it goes straight back (the rule is spelled out in
//!   `ring.rs`). The bytes go to `Connection::received` in `read_limit`
//!   slices, so `got` mode answers each piece of at most `read_size` bytes
//!   exactly as if it had been read by itself (its buffers are `read_size`
//!   bytes, up to 16 KiB; `line` and `raw` mode's are 16 KiB).
//! - Each receive is armed for what the connection can take at that moment
//!   over many reads (`Connection::input_room`, where a basic ring's read
//!   takes one read's worth, `read_limit`), and the kernel ends it
//!   there (a multishot byte cap, `optlen`, probed when the ring is
//!   enabled); it is armed again, for the limit of the moment, once it has
//!   ended and the connection wants input. So a connection that pauses at
//!   the high watermark has no receive delivering behind it; what the last
//!   completion brought past the limit (less than one buffer) is stashed
//!   and fed, before anything newer, once reading resumes. Where the kernel
//!   has no cap, the receive delivers until the pause cancels it, and the
//!   stash takes what arrives before the cancel lands (about one wake-up's
//!   worth, never more than the ring's buffers).
//!
//! Where the kernel refuses any of it (an older kernel, `EINVAL` from the
//! setup flags, a buffer ring that cannot be registered), the first ring
//! logs one warning saying what is missing and every ring runs
//! [`Design::Basic`]: single-shot accept and receives, each connection
//! with a read buffer of `read_limit` bytes. [`Design::Basic`] can also be
//! asked for (`echo-bench serve --backend uring --uring-basic`), so that
//! the tests run both designs on any kernel, and `compare` shows them side
//! by side (`uring` and `uring-basic`).
//!
//! # Threads and the listener
//!
//! [`ServerConfig::threads`] = N runs N rings, each on its own thread. Each
//! ring gets its own descriptor of the one listening socket (`try_clone`)
//! and keeps one accept (multishot, in the full design) posted on it. The kernel hands each new connection
//! to exactly one waiting accept (io_uring waits on a listener exclusively,
//! so there is no thundering herd), and that ring serves the connection for
//! its whole life. Waiters queue in turn, so bursts spread over the rings;
//! no ring deals sockets to another, as the mio backend's acceptor does,
//! because every ring can accept for itself at no extra cost. The listening
//! socket stops listening when the last ring closes its descriptor.
//!
//! # Shutdown
//!
//! [`Server::shutdown`] writes each ring's eventfd, on which every ring keeps
//! a read posted, so each ring wakes. A ring then cancels its accept and
//! closes its listener descriptor once the accept has completed, stops
//! reading, and flushes what it owes until everything is written or the
//! drain deadline (a timeout operation) passes. A connection whose replies
//! are all written shuts down its write side (a FIN after the replies) and
//! stays open, reading and throwing input away, until its send queue is
//! empty (`SIOCOUTQ`, looked at on a timer from 1 ms doubling to 50 ms,
//! only while such connections exist), the peer closes, an error or the
//! deadline: closing a socket with unread input makes Linux send a reset,
//! which would throw away replies still queued. Then the ring cancels the
//! operations of what is left, closes it, and waits for every completion,
//! so the kernel holds no pointer into memory about to be freed (the
//! provided buffers included, which all are back in their ring by then). Then the thread returns, and
//! `shutdown` returns once every thread has been joined.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_uring::UringBackend;
//! use echo_core::{Backend, ServerConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
//! let server = UringBackend::default().spawn(listener, &ServerConfig::default())?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.set_read_timeout(Some(Duration::from_secs(5)))?;
//! client.write_all(b"Hello")?;
//! let mut reply = [0; 9];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"GOT:Hello");
//!
//! server.shutdown(Duration::from_secs(1));
//! # Ok(())
//! # }
//! ```
//!
//! [`io-uring`]: https://docs.rs/io-uring
//! [`ServerConfig::threads`]: echo_core::ServerConfig::threads
//! [`Server::shutdown`]: echo_core::Server::shutdown
#![deny(unsafe_code)]

mod conn;
mod event_loop;
#[allow(unsafe_code)]
mod ring;
mod token;

use std::fs::File;
use std::io::{self, Write};
use std::net::TcpListener;
use std::sync::Arc;

use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats};

use crate::event_loop::EventLoop;
use crate::ring::Ring;

/// Submission queue entries per ring. A pass that queues more submits early
/// to make room (one extra system call), so this bounds nothing but the
/// batch size; the completion queue is twice as large, and the kernel keeps
/// any overflow rather than drop it.
const RING_ENTRIES: u32 = 1024;

/// The size of a ring's provided buffers: in `got` mode one read of the
/// protocol (`read_size`), so one completion is one reply; otherwise the
/// largest the ring offers.
fn provided_len(config: &ServerConfig) -> usize {
    match config.mode {
        echo_core::Mode::Got => config.read_size.clamp(1, ring::BUF_MAX),
        echo_core::Mode::Line | echo_core::Mode::Raw => ring::BUF_MAX,
    }
}

/// The io_uring backend: `threads` rings, each accepting for itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct UringBackend {
    /// Which io_uring features to use; [`Design::Full`] falls back to
    /// [`Design::Basic`] by itself where the kernel lacks one of them.
    pub design: Design,
}

/// How much of io_uring's newer machinery a ring uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Design {
    /// Everything this kernel offers that pays (see the crate docs), each
    /// ring falling back to [`Design::Basic`], with one log line saying
    /// what is missing, where the kernel refuses any of it.
    #[default]
    Full,
    /// The plain completion model of any io_uring kernel: single-shot
    /// accept, receive and send, a read buffer per connection. Forced, it
    /// lets the fallback be tested (and measured) on a kernel that has it all.
    Basic,
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let signal = Arc::new(ShutdownSignal::default());

        // Everything that can fail is done here, before any thread starts,
        // so a failure (no io_uring on this kernel, above all) is an
        // `io::Error` for the caller.
        let mut loops = Vec::new();
        let mut eventfds = Vec::new();
        let mut full = self.design == Design::Full;
        for _ in 0..config.threads.max(1) {
            let ring = if full {
                match Ring::full(RING_ENTRIES, provided_len(config)) {
                    Ok(ring) => ring,
                    Err(missing) => {
                        // Logged once, by the first ring: the others go
                        // straight to the basic design.
                        tracing::warn!(%missing, "io_uring lacks a feature; using the basic design");
                        full = false;
                        Ring::basic(RING_ENTRIES)?
                    }
                }
            } else {
                Ring::basic(RING_ENTRIES)?
            };
            let eventfd = Arc::new(File::from(ring::eventfd()?));
            loops.push(EventLoop::new(
                ring,
                listener.try_clone()?,
                Arc::clone(&eventfd),
                config.clone(),
                Arc::clone(&stats),
                Arc::clone(&signal),
            ));
            eventfds.push(eventfd);
        }
        // Every ring holds its own descriptor now; this one would keep the
        // socket listening after they all closed theirs.
        drop(listener);

        let wake: echo_core::WakeFn = Box::new(move || {
            for eventfd in &eventfds {
                if let Err(err) = (&**eventfd).write_all(&1u64.to_ne_bytes()) {
                    tracing::warn!(error = %err, "cannot wake an io_uring event loop");
                }
            }
        });
        let workers = loops.into_iter().map(|event_loop| move || event_loop.run());
        Server::start_threads(local_addr, stats, signal, wake, "echo-uring", workers)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::thread;
    use std::time::{Duration, Instant};

    use echo_core::{Backend, Mode, ServerConfig};

    use super::token::Op;
    use super::{Design, UringBackend, ring};

    /// Held by each test that uses provided buffers: the count of buffers
    /// lent is process-wide, so one test's passes would otherwise show in
    /// another's check that every buffer came back.
    static PROVIDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Waits up to five seconds for `done`.
    #[track_caller]
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every provided buffer is back in its ring after ordinary echoes, a
    /// client that floods without reading (paused, stashed, cancelled), a
    /// reset, a half-close, and after shutdown with a connection mid-stream.
    #[test]
    fn provided_buffers_all_come_back() -> std::io::Result<()> {
        let _alone = PROVIDED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(missing) = ring::Ring::full(8, 1000) {
            eprintln!("skipped: this kernel's io_uring lacks {missing}");
            return Ok(());
        }
        for mode in [Mode::Got, Mode::Line] {
            let config = ServerConfig { mode, threads: 2, ..ServerConfig::default() };
            let listener = echo_core::bind("127.0.0.1:0".parse().unwrap())?;
            let server = UringBackend { design: Design::Full }.spawn(listener, &config)?;
            let addr = server.local_addr();

            // Echoes, read back whole.
            for _ in 0..4 {
                let mut client = TcpStream::connect(addr)?;
                client.write_all(b"hello\n")?;
                client.shutdown(Shutdown::Write)?;
                let mut reply = Vec::new();
                client.read_to_end(&mut reply)?;
                assert!(reply.starts_with(b"GOT:"), "{reply:?}");
            }
            // A flood that pauses reading, then is read back.
            let mut flood = TcpStream::connect(addr)?;
            let input = vec![b'\n'; 1 << 20];
            let writer = {
                let mut flood = flood.try_clone()?;
                thread::spawn(move || {
                    flood.write_all(&input)?;
                    flood.shutdown(Shutdown::Write)
                })
            };
            let mut reply = Vec::new();
            flood.read_to_end(&mut reply)?;
            writer.join().expect("the writer")?;
            // A reset: unread replies in the client's buffer when it closes.
            {
                let mut reset = TcpStream::connect(addr)?;
                reset.write_all(&[b'x'; 64 * 1024])?;
            }
            wait_for("every connection to close", || server.stats().active == 0);
            assert!(ring::buffers_taken() > 256, "{mode:?}: the provided buffers were hardly used");
            assert_eq!(ring::buffers_lent(), 0, "{mode:?}: buffers lent after the connections closed");

            // Shutdown with a connection still sending.
            let mut busy = TcpStream::connect(addr)?;
            busy.write_all(&[b'y'; 8 * 1024])?;
            wait_for("the busy connection", || server.stats().active == 1);
            server.shutdown(Duration::from_millis(200));
            assert_eq!(ring::buffers_lent(), 0, "{mode:?}: buffers lent after shutdown");
        }
        Ok(())
    }

    /// Arms one multishot receive for `limit` bytes on a socket holding
    /// `queued` bytes and returns what it delivered before it ended by
    /// itself, or, if it is still armed once everything queued arrived,
    /// all of that (it is then cancelled).
    fn delivered_by_one_receive(
        ring: &mut ring::Ring,
        limit: usize,
        queued: usize,
    ) -> std::io::Result<usize> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        client.write_all(&vec![b'x'; queued])?;
        let mut bufs = ring::IoBuffers::new(1, 1, limit, true);
        ring.push_recv(server.as_fd(), &mut bufs, limit);
        let (mut delivered, mut cancelled) = (0, false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while bufs.recv_busy() {
            assert!(Instant::now() < deadline, "the receive neither ended nor delivered {queued} bytes");
            if delivered == queued && !cancelled {
                ring.push_cancel(bufs.token(Op::Recv));
                cancelled = true;
            }
            ring.submit_and_wait()?;
            let mut done = Vec::new();
            ring.reap(&mut done);
            for mut completion in done {
                if bufs.recv_done(&completion) {
                    delivered += ring.with_received(&mut completion, |data| data.len()).unwrap_or(0);
                } else {
                    ring.recycle(&mut completion);
                }
            }
        }
        Ok(delivered)
    }

    /// Where the kernel caps multishot receives, one armed for 4 KiB on a
    /// socket holding 64 KiB ends by itself after at most one provided
    /// buffer (1 KiB here) past 4 KiB: what bounds a paused connection's
    /// stash. The twin
    /// without the cap shows the check sees the difference: the same
    /// receive delivers all 64 KiB.
    #[test]
    fn a_capped_receive_ends_at_its_limit() -> std::io::Result<()> {
        let _alone = PROVIDED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Its completion queue (128) holds every completion of 64 KiB (32):
        // a full queue would end the receive early, which is not the cap.
        let mut ring = match ring::Ring::full(64, 1024) {
            Ok(ring) => ring,
            Err(missing) => {
                eprintln!("skipped: this kernel's io_uring lacks {missing}");
                return Ok(());
            }
        };
        ring.enable()?;
        if !ring.caps_receives() {
            eprintln!("skipped: this kernel does not cap multishot receives");
            return Ok(());
        }
        let (limit, queued) = (4 * 1024, 64 * 1024);
        let capped = delivered_by_one_receive(&mut ring, limit, queued)?;
        assert!((limit..=limit + 1024).contains(&capped), "a receive capped at {limit} delivered {capped}");
        ring.stop_capping_receives();
        let uncapped = delivered_by_one_receive(&mut ring, limit, queued)?;
        assert_eq!(uncapped, queued, "without the cap, everything queued arrives");
        Ok(())
    }
}
