//! Tests of the tests: the conformance suite against a correct reference
//! server and against small, deliberately broken ones. The reference must
//! pass every case in every mode; each broken server must fail the cases
//! that exist to catch its bug, and pass cases its bug cannot touch (so a
//! failure points at the right place, not everywhere at once).
//!
//! The servers are plain std threads, one per connection, on 127.0.0.1:0.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use echo_core::conformance::{CASES, Failure, Target};
use echo_core::protocol::{DEFAULT_MAX_LINE, DEFAULT_READ_SIZE, Mode, Session};

/// What a test server answers with.
#[derive(Clone, Copy, Debug)]
struct Params {
    mode: Mode,
    read_size: usize,
    max_line: usize,
}

impl Params {
    fn new(mode: Mode) -> Self {
        Params { mode, read_size: DEFAULT_READ_SIZE, max_line: DEFAULT_MAX_LINE }
    }

    /// The read buffer: `read_size` in `got` mode, as in the seed.
    fn buffer(self) -> Vec<u8> {
        vec![0; if self.mode == Mode::Got { self.read_size } else { 64 * 1024 }]
    }

    fn session(self) -> Session {
        Session::new(self.mode, self.read_size, self.max_line)
    }
}

/// Serves one connection until the client goes or something fails.
type Handler = fn(TcpStream, Params) -> io::Result<()>;

/// A thread-per-connection server. Dropping it stops the accept loop;
/// connection threads end on their own when their clients close.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    fn spawn(params: Params, handler: Handler) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    thread::spawn(move || handler(stream, params));
                }
            }
        });
        Ok(TestServer { addr, stop, accept: Some(accept) })
    }

    fn target(&self, params: Params) -> Target {
        Target { addr: self.addr, mode: params.mode, read_size: params.read_size, max_line: params.max_line }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with one last connection.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Hands what one read returned to `session`: zero bytes are the end of
/// input.
fn answer(session: &mut Session, input: &[u8]) {
    if input.is_empty() {
        session.finish();
    } else {
        session.receive(input);
    }
}

/// Correct: read, answer through the Session, write every reply byte.
fn reference(mut stream: TcpStream, params: Params) -> io::Result<()> {
    let mut session = params.session();
    let mut buf = params.buffer();
    loop {
        let n = stream.read(&mut buf)?;
        answer(&mut session, &buf[..n]);
        stream.write_all(session.pending())?;
        session.advance(session.pending().len());
        if n == 0 {
            return Ok(());
        }
    }
}

/// Broken (1), the seed's bug: one non-blocking write per reply; what the
/// kernel did not take at once is dropped. Its send buffer is fixed small,
/// so writes come up short whatever the host's TCP buffer settings.
fn drops_unwritten(mut stream: TcpStream, params: Params) -> io::Result<()> {
    socket2::SockRef::from(&stream).set_send_buffer_size(64 * 1024)?;
    let mut session = params.session();
    let mut buf = params.buffer();
    loop {
        stream.set_nonblocking(false)?;
        let n = stream.read(&mut buf)?;
        answer(&mut session, &buf[..n]);
        stream.set_nonblocking(true)?;
        match stream.write(session.pending()) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        session.advance(session.pending().len());
        if n == 0 {
            return Ok(());
        }
    }
}

/// Broken (2) in `got` mode: echoes without the `GOT:` prefix. Written
/// without the Session, so in `raw` mode it is a second, independent
/// correct server.
fn no_prefix(mut stream: TcpStream, _: Params) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

/// Broken (3): answers correctly, but closes the connection once 1 MiB has
/// come in.
fn closes_early(mut stream: TcpStream, params: Params) -> io::Result<()> {
    let mut session = params.session();
    let mut buf = params.buffer();
    let mut received = 0;
    loop {
        let n = stream.read(&mut buf)?;
        received += n;
        answer(&mut session, &buf[..n]);
        stream.write_all(session.pending())?;
        session.advance(session.pending().len());
        if n == 0 || received >= 1 << 20 {
            return Ok(());
        }
    }
}

/// How long [`reorders`] holds a reply waiting for the next one.
const HOLD: Duration = Duration::from_millis(100);

/// Broken (4): holds each reply until the next one is ready, sends that
/// one first, then the held one. A reply with nothing after it goes out
/// alone after [`HOLD`], so strict round trips still work.
fn reorders(mut stream: TcpStream, params: Params) -> io::Result<()> {
    let mut session = params.session();
    let mut buf = params.buffer();
    let mut held: Option<Vec<u8>> = None;
    loop {
        stream.set_read_timeout(held.as_ref().map(|_| HOLD))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if let Some(reply) = held.take() {
                    stream.write_all(&reply)?;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        answer(&mut session, &buf[..n]);
        let reply = session.pending().to_vec();
        session.advance(reply.len());
        if !reply.is_empty() {
            match held.take() {
                Some(earlier) => {
                    stream.write_all(&reply)?;
                    stream.write_all(&earlier)?;
                }
                None => held = Some(reply),
            }
        }
        if n == 0 {
            if let Some(reply) = held.take() {
                stream.write_all(&reply)?;
            }
            return Ok(());
        }
    }
}

/// How long [`closes_at_eof_with_backlog`], with replies queued, waits for
/// input before it tries writing again.
const WRITE_AGAIN: Duration = Duration::from_millis(10);

/// Broken (5), the bug of issue 11's epoll server: a non-blocking loop that
/// reads everything the kernel holds, queueing the replies without bound,
/// writes what the kernel takes, and keeps the rest for later. At end of
/// input it makes one last write and closes the connection, whatever is
/// still queued. The kernel delivers what it took, then a FIN: the client
/// sees a clean end of stream megabytes short. A client that reads as it
/// goes leaves nothing queued at the end; only one that closes its write
/// side with the connection backed up can tell.
fn closes_at_eof_with_backlog(mut stream: TcpStream, params: Params) -> io::Result<()> {
    let mut session = params.session();
    let mut buf = params.buffer();
    loop {
        stream.set_nonblocking(true)?;
        let (mut eof, mut moved) = (false, false);
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    session.finish();
                    break;
                }
                Ok(n) => {
                    session.receive(&buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        match stream.write(session.pending()) {
            Ok(n) => {
                session.advance(n);
                moved |= n > 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if eof {
            return Ok(()); // the bug: closes with the rest still queued
        }
        if !moved {
            // Wait for input, as epoll would, waking at once when it comes
            // so the input never waits in the kernel; with replies queued,
            // only briefly, then try writing again.
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(if session.pending().is_empty() { None } else { Some(WRITE_AGAIN) })?;
            match stream.peek(&mut [0]) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs the named cases against `target` and checks which fail. Panics with
/// every wrong outcome, and the failures' messages, at once.
#[track_caller]
fn assert_outcomes(target: &Target, must_fail: &[&str], must_pass: &[&str]) {
    let mut wrong = Vec::new();
    for (names, should_pass) in [(must_fail, false), (must_pass, true)] {
        for &name in names {
            let case = CASES.iter().find(|c| c.name == name);
            let case = case.unwrap_or_else(|| panic!("no case named {name}"));
            match ((case.run)(target), should_pass) {
                (Ok(()), false) => wrong.push(format!("{name}: passed, but must fail")),
                (Err(failure), true) => wrong.push(format!("{name}: must pass, but failed: {failure}")),
                (Err(failure), false) => eprintln!("{} {name} failed as it must: {failure}", target.mode),
                (Ok(()), true) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "mode {}:\n{}", target.mode, wrong.join("\n"));
}

/// Every case's name.
fn all_cases() -> Vec<&'static str> {
    CASES.iter().map(|c| c.name).collect()
}

fn reference_passes_everything(mode: Mode) -> io::Result<()> {
    let params = Params::new(mode);
    let server = TestServer::spawn(params, reference)?;
    assert_outcomes(&server.target(params), &[], &all_cases());
    Ok(())
}

#[test]
fn reference_passes_every_case_got() -> io::Result<()> {
    reference_passes_everything(Mode::Got)
}

#[test]
fn reference_passes_every_case_line() -> io::Result<()> {
    reference_passes_everything(Mode::Line)
}

#[test]
fn reference_passes_every_case_raw() -> io::Result<()> {
    reference_passes_everything(Mode::Raw)
}

/// The cases read `read_size` and `max_line` from the target: a server with
/// small ones passes when the target says so, and fails the piece-size cases
/// when the target expects smaller pieces than the server sends.
#[test]
fn cases_follow_the_targets_limits() -> io::Result<()> {
    let cases = ["seed_transcript", "every_byte_value", "half_close", "chunking_independence", "long_lines"];
    for mode in Mode::ALL {
        let small = Params { mode, read_size: 7, max_line: 100 };
        let server = TestServer::spawn(small, reference)?;
        assert_outcomes(&server.target(small), &[], &[&cases[..], &["got_piece_sizes"]].concat());

        let server = TestServer::spawn(Params::new(mode), reference)?;
        let stricter = server.target(small);
        match mode {
            Mode::Got => assert_outcomes(&stricter, &["got_piece_sizes"], &[]),
            Mode::Line => assert_outcomes(&stricter, &["long_lines", "got_piece_sizes"], &[]),
            Mode::Raw => assert_outcomes(&stricter, &[], &["long_lines", "got_piece_sizes"]),
        }
    }
    Ok(())
}

/// (1) Dropping what a write could not take is caught by the client that
/// does not read while it writes.
#[test]
fn dropped_partial_writes_fail_slow_reader() -> io::Result<()> {
    assert_in_every_mode(
        drops_unwritten,
        &["slow_reader"],
        &["seed_transcript", "every_byte_value", "empty_connection", "many_clients"],
    )
}

/// Runs the suite in every mode against `handler`, which must fail each
/// case of `failing` and pass each of `passing`.
#[track_caller]
fn assert_in_every_mode(handler: Handler, failing: &[&str], passing: &[&str]) -> io::Result<()> {
    for mode in Mode::ALL {
        let params = Params::new(mode);
        let server = TestServer::spawn(params, handler)?;
        assert_outcomes(&server.target(params), failing, passing);
    }
    Ok(())
}

/// (2) A `got` server without the prefix fails every case (each gets a
/// reply somewhere); the same server is a correct `raw` one.
#[test]
fn missing_prefix_fails_every_case() -> io::Result<()> {
    let got = Params::new(Mode::Got);
    let server = TestServer::spawn(got, no_prefix)?;
    assert_outcomes(&server.target(got), &all_cases(), &[]);

    let raw = Params::new(Mode::Raw);
    let server = TestServer::spawn(raw, no_prefix)?;
    assert_outcomes(
        &server.target(raw),
        &[],
        &["seed_transcript", "every_byte_value", "half_close", "chunking_independence", "long_lines"],
    );
    Ok(())
}

/// (3) Closing after 1 MiB is caught by the cases that send more on one
/// connection, and only by those.
#[test]
fn early_close_fails_the_long_streams() -> io::Result<()> {
    assert_in_every_mode(
        closes_early,
        &["large_stream", "slow_reader"],
        &["seed_transcript", "half_close", "chunking_independence", "long_lines", "reset_mid_stream"],
    )
}

/// (4) Swapping two replies is caught wherever replies follow each other
/// closely; a strict round trip (one reply at a time) cannot see it.
#[test]
fn reordered_replies_fail_the_streams() -> io::Result<()> {
    assert_in_every_mode(
        reorders,
        &["large_stream", "slow_reader", "chunking_independence"],
        &["seed_transcript", "empty_connection"],
    )
}

/// (5) Closing at end of input with replies queued in memory is caught by
/// the client that half-closes with the connection backed up, and only by
/// it: this server passes every other case, `half_close` included, as
/// issue 11's passed all eleven cases before this one (a client that reads
/// as it goes leaves nothing queued at the end).
#[test]
fn close_at_eof_with_backlog_fails_half_close_backed_up() -> io::Result<()> {
    let others: Vec<_> = all_cases().into_iter().filter(|&name| name != "half_close_backed_up").collect();
    assert_in_every_mode(closes_at_eof_with_backlog, &["half_close_backed_up"], &others)
}

/// A failure names what differed, not just that something did.
#[test]
fn failures_say_what_differed() -> io::Result<()> {
    let got = Params::new(Mode::Got);
    let server = TestServer::spawn(got, no_prefix)?;
    let Err(Failure::Mismatch(message)) = echo_core::conformance::seed_transcript(&server.target(got)) else {
        panic!("a server without the GOT: prefix must fail with a mismatch");
    };
    assert!(message.contains("byte 1 of a GOT: prefix") && message.contains("got \"Hello\\n\""), "{message}");
    Ok(())
}
