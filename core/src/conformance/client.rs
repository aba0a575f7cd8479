//! The blocking client every case uses: each socket call bounded by
//! [`IO_TIMEOUT`] and by the case's deadline, every error turned into a
//! [`Failure`] that names the connection and what it was doing.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::verify::{ReplyChecker, show};
use super::{CASE_DEADLINE, CONNECT_TIMEOUT, Failure, IO_TIMEOUT, Target};

/// The largest read or (by default) write a client does at once.
const CHUNK: usize = 64 * 1024;

/// How long a writer may make no progress before the reader concludes the
/// server stopped reading (its output is over the high watermark).
const STALL: Duration = Duration::from_millis(300);

/// Socket buffer sizes a client fixes before it connects (so the kernel
/// never grows them); `None` leaves the kernel's choice.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Buffers {
    /// `SO_RCVBUF`: a small one keeps the kernel from absorbing much of the
    /// server's replies, so the server has to hold (and bound) the rest.
    pub(crate) receive: Option<usize>,
    /// `SO_SNDBUF`: a small one makes the client's writes stall soon after
    /// the server stops reading, with little input parked in the client.
    pub(crate) send: Option<usize>,
}

/// How far [`Client::write_until_stalled`] got.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backlog {
    /// Input bytes the kernel took.
    pub(crate) written: usize,
    /// Whether a write made no progress for [`STALL`] (the connection is
    /// backed up), rather than the whole input going out.
    pub(crate) stalled: bool,
}

/// When the case must be over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// A deadline [`CASE_DEADLINE`] from now.
    pub(crate) fn start() -> Self {
        Deadline(Instant::now() + CASE_DEADLINE)
    }

    /// How long the next socket call may wait: [`IO_TIMEOUT`] or less.
    fn budget(self, cap: Duration, doing: &dyn Fn() -> String) -> Result<Duration, Failure> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout(format!(
                "the case ran past its {CASE_DEADLINE:?} deadline while {}",
                doing()
            )));
        }
        Ok(left.min(cap))
    }
}

/// How a client writes its input in [`Client::exchange`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Write this many first bytes one at a time.
    pub(crate) bytewise: usize,
    /// Then write at most this many bytes per call (`usize::MAX`: the whole
    /// rest in one call, continued only where the kernel took less).
    pub(crate) chunk: usize,
    /// Close the write side once everything is written.
    pub(crate) shutdown: bool,
    /// Start reading only once the writer is done or has stalled.
    pub(crate) read_after_stall: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { bytewise: 0, chunk: CHUNK, shutdown: false, read_after_stall: false }
    }
}

/// One client connection of a case.
#[derive(Debug)]
pub(crate) struct Client {
    stream: TcpStream,
    /// Names the connection in failures: "client 7".
    label: String,
    deadline: Deadline,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the target, with [`CONNECT_TIMEOUT`].
    pub(crate) fn connect(target: &Target, deadline: Deadline, label: &str) -> Result<Self, Failure> {
        Client::connect_with(target, deadline, label, Buffers::default())
    }

    /// Connects with the socket buffers fixed as `buffers` says (set before
    /// connecting, so the window never grows past them).
    pub(crate) fn connect_with(
        target: &Target,
        deadline: Deadline,
        label: &str,
        buffers: Buffers,
    ) -> Result<Self, Failure> {
        let doing = || format!("{label}: connecting to {}", target.addr);
        let timeout = deadline.budget(CONNECT_TIMEOUT, &doing)?;
        let socket = Socket::new(Domain::for_address(target.addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| io_failure(e, doing()))?;
        if let Some(size) = buffers.receive {
            socket.set_recv_buffer_size(size).map_err(|e| io_failure(e, doing()))?;
        }
        if let Some(size) = buffers.send {
            socket.set_send_buffer_size(size).map_err(|e| io_failure(e, doing()))?;
        }
        socket.connect_timeout(&target.addr.into(), timeout).map_err(|e| io_failure(e, doing()))?;
        let stream = TcpStream::from(socket);
        let setup = |stream: &TcpStream| {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup(&stream).map_err(|e| io_failure(e, format!("{label}: setting socket options")))?;
        Ok(Client { stream, label: label.to_owned(), deadline, buf: vec![0; CHUNK] })
    }

    /// Connects, retrying for about two seconds when the connection is
    /// refused or reset: a server may be busy cleaning up after a fault.
    pub(crate) fn connect_retrying(
        target: &Target,
        deadline: Deadline,
        label: &str,
    ) -> Result<Self, Failure> {
        let give_up = Instant::now() + Duration::from_secs(2);
        let mut pause = Duration::from_millis(5);
        loop {
            match Client::connect(target, deadline, label) {
                Err(Failure::Io { source, .. })
                    if Instant::now() < give_up
                        && matches!(
                            source.kind(),
                            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                        ) =>
                {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Writes all of `data`.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), Failure> {
        let plan = Plan { chunk: usize::MAX, ..Plan::default() };
        write_planned(&mut self.stream, data, plan, self.deadline, &Progress::default())
            .map_err(|f| f.within(&self.label))
    }

    /// Sends `message` and reads its whole reply. For messages small enough
    /// to sit in the socket buffers while the client is not reading.
    pub(crate) fn round_trip(&mut self, target: &Target, message: &[u8]) -> Result<Vec<u8>, Failure> {
        self.send(message)?;
        self.expect_reply(target, message)
    }

    /// Reads the whole reply to `input` (sent earlier) and checks it.
    pub(crate) fn expect_reply(&mut self, target: &Target, input: &[u8]) -> Result<Vec<u8>, Failure> {
        read_reply(&self.stream, &mut self.buf, ReplyChecker::new(target, input, false), self.deadline)
            .map_err(|f| f.within(&self.label))
    }

    /// Reads the whole reply to `input`, the client's entire input, sent
    /// earlier and followed by [`Client::shutdown_write`] (so in `line` mode
    /// the unterminated tail is answered too), and checks it.
    pub(crate) fn expect_last_reply(&mut self, target: &Target, input: &[u8]) -> Result<Vec<u8>, Failure> {
        read_reply(&self.stream, &mut self.buf, ReplyChecker::new(target, input, true), self.deadline)
            .map_err(|f| f.within(&self.label))
    }

    /// Writes `input` without reading until the connection backs up: until
    /// one write takes nothing for [`STALL`] (the server has stopped reading
    /// because its replies go unread), or all of `input` is written.
    /// Blocking writes bounded by [`STALL`], so no thread and no guessed
    /// sleep: the kernel says when it would take no more.
    pub(crate) fn write_until_stalled(&mut self, input: &[u8]) -> Result<Backlog, Failure> {
        let label = &self.label;
        let doing =
            |written: usize| format!("{label}: writing input byte {written} of {} unread", input.len());
        let stream = &mut self.stream;
        stream.set_write_timeout(Some(STALL)).map_err(|e| io_failure(e, doing(0)))?;
        let mut backlog = Backlog { written: 0, stalled: false };
        while backlog.written < input.len() {
            let written = backlog.written;
            self.deadline.budget(IO_TIMEOUT, &|| doing(written))?;
            let end = (written + CHUNK).min(input.len());
            match stream.write(&input[written..end]) {
                Ok(0) => return Err(io_failure(io::ErrorKind::WriteZero.into(), doing(written))),
                Ok(n) => backlog.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    backlog.stalled = true;
                    break;
                }
                Err(e) => return Err(io_failure(e, doing(written))),
            }
        }
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| io_failure(e, doing(backlog.written)))?;
        Ok(backlog)
    }

    /// Closes the write side: the server reads end of input once it has
    /// read everything before it.
    pub(crate) fn shutdown_write(&mut self) -> Result<(), Failure> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| io_failure(e, format!("{}: closing the write side", self.label)))
    }

    /// Writes `input` from a second thread, as `plan` says, while this one
    /// reads and checks the reply; returns the reply. Nothing deadlocks
    /// however large the input: the client always reads (except, with
    /// `read_after_stall`, until the writer is done or stuck).
    pub(crate) fn exchange(&mut self, target: &Target, input: &[u8], plan: Plan) -> Result<Vec<u8>, Failure> {
        let checker = ReplyChecker::new(target, input, plan.shutdown);
        let mut writer_stream = self
            .stream
            .try_clone()
            .map_err(|e| io_failure(e, format!("{}: cloning the socket", self.label)))?;
        let progress = Progress::default();
        let deadline = self.deadline;
        let (read, wrote) = thread::scope(|scope| {
            let progress = &progress;
            let writer =
                scope.spawn(move || write_planned(&mut writer_stream, input, plan, deadline, progress));
            if plan.read_after_stall {
                progress.wait_done_or_stalled(deadline);
            }
            let read = read_reply(&self.stream, &mut self.buf, checker, deadline);
            if read.is_err() {
                // Unblock the writer at once rather than after its timeout.
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(Failure::Mismatch("the writer thread panicked".to_owned())));
            (read, wrote)
        });
        // The reader's view says more (which byte was wrong, when the
        // server closed); the writer's error only explains why.
        let reply = read.map_err(|f| f.within(&self.label))?;
        wrote.map_err(|f| f.within(&self.label))?;
        Ok(reply)
    }

    /// Ends a connection whose replies are all in: one last round trip, so
    /// that any stray byte the server sent after the last reply shows up in
    /// front of this one's, then a plain close. It asks nothing of the
    /// server's end of stream: [`Client::finish`] does, where a case is
    /// about that.
    pub(crate) fn close(mut self, target: &Target) -> Result<(), Failure> {
        self.label.push_str(" (last round trip)");
        self.round_trip(target, b"the last message: nothing may come before its reply\n")?;
        Ok(())
    }

    /// Closes the write side and expects a clean end of stream with nothing
    /// before it.
    pub(crate) fn finish(&mut self) -> Result<(), Failure> {
        self.shutdown_write()?;
        self.expect_eof()
    }

    /// Expects a clean end of stream (not a reset) with nothing before it.
    pub(crate) fn expect_eof(&mut self) -> Result<(), Failure> {
        let doing = || format!("{}: waiting for the server to close after the full reply", self.label);
        let n = read_some(&self.stream, &mut self.buf, self.deadline, &doing)?;
        if n > 0 {
            return Err(Failure::Mismatch(format!(
                "{}: expected the end of the stream, got {} more bytes: {}",
                self.label,
                n,
                show(&self.buf[..n])
            )));
        }
        Ok(())
    }

    /// Writes up to `input.len()` bytes without blocking, stopping where the
    /// socket buffers are full; returns how many were written. Meant for a
    /// connection about to be reset: a write error (the server gave up on
    /// the connection first) just ends the flood.
    pub(crate) fn flood(&mut self, input: &[u8]) -> Result<usize, Failure> {
        let failed = |e, label: &str| io_failure(e, format!("{label}: writing without blocking"));
        self.stream.set_nonblocking(true).map_err(|e| failed(e, &self.label))?;
        let mut written = 0;
        while written < input.len() {
            let end = (written + CHUNK).min(input.len());
            match self.stream.write(&input[written..end]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        Ok(written)
    }

    /// Closes the connection with a reset (SO_LINGER 0) instead of a FIN,
    /// discarding whatever is unread or unsent.
    pub(crate) fn reset(self) -> Result<(), Failure> {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| io_failure(e, format!("{}: setting SO_LINGER to 0", self.label)))
    }
}

/// Reads until `checker` holds a complete reply, never reading past it.
fn read_reply(
    stream: &TcpStream,
    buf: &mut [u8],
    mut checker: ReplyChecker<'_>,
    deadline: Deadline,
) -> Result<Vec<u8>, Failure> {
    let mut reply = Vec::new();
    while !checker.is_complete() {
        let want = checker.min_remaining().clamp(1, buf.len());
        let doing = || format!("reading the reply ({})", checker.progress());
        let n = read_some(stream, &mut buf[..want], deadline, &doing)?;
        if n == 0 {
            return Err(Failure::Closed(format!(
                "the server closed the connection before the whole reply: {}",
                checker.progress()
            )));
        }
        checker.feed(&buf[..n])?;
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

/// One read, bounded by [`IO_TIMEOUT`] and the deadline; 0 means end of
/// stream.
fn read_some(
    mut stream: &TcpStream,
    buf: &mut [u8],
    deadline: Deadline,
    doing: &dyn Fn() -> String,
) -> Result<usize, Failure> {
    loop {
        let timeout = deadline.budget(IO_TIMEOUT, doing)?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| io_failure(e, doing()))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(e, doing())),
            Ok(n) => return Ok(n),
        }
    }
}

/// Writes `input` as `plan` says, reporting progress; marks `progress`
/// done however it ends.
fn write_planned(
    stream: &mut TcpStream,
    input: &[u8],
    plan: Plan,
    deadline: Deadline,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut written = 0;
    let doing = |written: usize| format!("writing input byte {written} of {}", input.len());
    let result = (|| {
        while written < input.len() {
            let limit = if written < plan.bytewise { 1 } else { plan.chunk };
            let end = written.saturating_add(limit).min(input.len());
            deadline.budget(IO_TIMEOUT, &|| doing(written))?;
            match stream.write(&input[written..end]) {
                Ok(0) => return Err(io_failure(io::ErrorKind::WriteZero.into(), doing(written))),
                Ok(n) => {
                    written += n;
                    progress.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(e, doing(written))),
            }
        }
        if plan.shutdown {
            stream
                .shutdown(Shutdown::Write)
                .map_err(|e| io_failure(e, "closing the write side".to_owned()))?;
        }
        Ok(())
    })();
    progress.finish();
    result
}

/// Turns an I/O error into a failure; a socket timeout becomes a
/// [`Failure::Timeout`].
pub(crate) fn io_failure(source: io::Error, step: String) -> Failure {
    match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Failure::Timeout(format!("{step}: no progress for {IO_TIMEOUT:?}"))
        }
        _ => Failure::Io { step, source },
    }
}

/// What the writer thread has done, for a reader that waits on it.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes written so far, and whether the writer is done.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Progress {
    fn advance(&self, written: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = written;
        self.changed.notify_all();
    }

    fn finish(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.changed.notify_all();
    }

    /// Waits until the writer is done, or has written nothing for
    /// [`STALL`]: the server has stopped reading because the client is not
    /// reading its replies. A condition, not a guess at how long it takes.
    fn wait_done_or_stalled(&self, deadline: Deadline) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.1 && Instant::now() < deadline.0 {
            let before = state.0;
            let (next, waited) = self
                .changed
                .wait_timeout_while(state, STALL, |s| s.0 == before && !s.1)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if waited.timed_out() {
                return;
            }
        }
    }
}
