//! Tests of the tests: `echo-bench load --addr` against a correct reference
//! server and against small, deliberately broken ones. The reference must
//! pass in every mode; every broken server must fail the run (non-zero
//! exit, a `FAILED` line on stderr, no figures on stdout) in every mode its
//! bug applies to.
//!
//! The servers are plain std threads, one per connection, on 127.0.0.1:0,
//! answering through `echo_core::Session` as the real backends do; each
//! broken one bends that in one way. The cases are one table,
//! [`CASES`], and one test per (case, mode) is generated from it.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echo_core::protocol::{DEFAULT_MAX_LINE, DEFAULT_READ_SIZE, Mode, Session};

/// What a test server does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Correct: every reply, nothing else.
    Reference,
    /// Keeps reading but sends nothing more once 64 KiB of replies are out.
    StopsAnswering,
    /// Answers the first message, then shuts its write side (FIN).
    ShutsWriteAfterFirst,
    /// Answers, then closes the connection once 64 KiB have come in.
    ClosesEarly,
    /// Answers, then resets the connection once 64 KiB have come in.
    Resets,
    /// Line mode answered as `got` with 7-byte reads: `GOT:` every 7 bytes.
    UnframedLines,
    /// Swallows the third whole message.
    DropsMessage,
    /// Answers the third whole message twice.
    DuplicatesMessage,
    /// Answers 100 bytes from request byte 10,000 twice.
    DuplicatesChunk,
    /// The first two connections get each other's replies.
    SwapsConnections,
    /// Writes `GOT;` for the first prefix after 10,000 reply bytes.
    WrongPrefix,
    /// Answers correctly, then sends one more piece when the client
    /// half-closes.
    ExtraAtEnd,
    /// Answers three whole messages, then closes the connection.
    ClosesAfterThree,
    /// Answers everything, but holds the connection open for 3 s after
    /// the client half-closes it.
    HoldsAfterEnd,
}

/// Every mode.
const ALL: &[Mode] = &[Mode::Got, Mode::Line, Mode::Raw];
/// The modes with `GOT:` prefixes.
const PREFIXED: &[Mode] = &[Mode::Got, Mode::Line];

/// How `load` runs against a case's server.
struct Case {
    behaviour: Behaviour,
    modes: &'static [Mode],
    /// `load` options beyond `--addr`, `--mode` and the run's length.
    args: &'static str,
    /// The server's `read_size` and `max_line`, which `load` is told.
    read_size: usize,
    max_line: usize,
}

const fn case(behaviour: Behaviour, modes: &'static [Mode], args: &'static str) -> Case {
    Case { behaviour, modes, args, read_size: DEFAULT_READ_SIZE, max_line: DEFAULT_MAX_LINE }
}

/// Message size at which the old payload table made every message alike.
const ALIKE: &str = "--connections 1 --size 65521 --pipeline 4";

/// Connections that live five round trips each.
const CHURN: &str = "--connections 2 --size 64 --churn 5";

/// The run's length: short, with a grace to collect the last replies.
const RUN: &str = "--duration 300ms --warmup 0s --grace 500ms";

/// The table the tests are generated from (see `cases!` below).
fn case_of(name: &str) -> Case {
    use Behaviour::*;
    match name {
        "reference" => case(Reference, ALL, "--connections 4 --size 64"),
        "reference_alike" => case(Reference, ALL, ALIKE),
        "reference_long_lines" => Case {
            max_line: 1000,
            ..case(Reference, &[Mode::Line], "--connections 2 --size 2500 --pipeline 2 --max-line 1000")
        },
        "reference_small_reads" => {
            Case { read_size: 7, ..case(Reference, &[Mode::Got], "--connections 2 --size 100 --read-size 7") }
        }
        "stops_answering" => case(StopsAnswering, ALL, "--connections 2 --size 1000"),
        "shuts_write_after_first" => case(ShutsWriteAfterFirst, ALL, "--connections 1 --size 64"),
        "closes_early" => case(ClosesEarly, ALL, "--connections 2 --size 1000"),
        "resets" => case(Resets, ALL, "--connections 2 --size 1000"),
        "unframed_lines" => case(UnframedLines, &[Mode::Line], "--connections 1 --size 2000"),
        "drops_message" => case(DropsMessage, ALL, ALIKE),
        "duplicates_message" => case(DuplicatesMessage, ALL, ALIKE),
        "duplicates_chunk" => case(DuplicatesChunk, ALL, "--connections 1 --size 1000"),
        "swaps_connections" => case(SwapsConnections, ALL, "--connections 2 --size 64"),
        "wrong_prefix" => case(WrongPrefix, PREFIXED, "--connections 1 --size 64"),
        "extra_at_end" => case(ExtraAtEnd, ALL, "--connections 2 --size 64"),
        "reference_churn" => case(Reference, ALL, CHURN),
        "reference_churn_open_loop" => {
            case(Reference, ALL, "--connections 2 --size 64 --churn 2 --rate 2000")
        }
        "closes_before_churn" => case(ClosesAfterThree, ALL, CHURN),
        "extra_at_churn" => case(ExtraAtEnd, ALL, CHURN),
        "holds_after_churn" => case(HoldsAfterEnd, ALL, CHURN),
        other => panic!("no case {other}"),
    }
}

/// One test per case and mode, named `case::mode`, so that a failure names
/// the combination and `cargo test --test broken_load drops_message::`
/// filters.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn got() -> io::Result<()> { run_case(stringify!($name), Mode::Got) }
            #[test]
            fn line() -> io::Result<()> { run_case(stringify!($name), Mode::Line) }
            #[test]
            fn raw() -> io::Result<()> { run_case(stringify!($name), Mode::Raw) }
        }
    )*};
}

cases!(
    reference,
    reference_alike,
    reference_long_lines,
    reference_small_reads,
    stops_answering,
    shuts_write_after_first,
    closes_early,
    resets,
    unframed_lines,
    drops_message,
    duplicates_message,
    duplicates_chunk,
    swaps_connections,
    wrong_prefix,
    extra_at_end,
    reference_churn,
    reference_churn_open_loop,
    closes_before_churn,
    extra_at_churn,
    holds_after_churn,
);

/// Runs `load` against the case's server in `mode` (a mode the case does
/// not apply to passes at once) and checks the verdict.
fn run_case(name: &str, mode: Mode) -> io::Result<()> {
    let case = case_of(name);
    if !case.modes.contains(&mode) {
        return Ok(());
    }
    let server = TestServer::spawn(Params {
        behaviour: case.behaviour,
        mode,
        size: size_of(case.args),
        read_size: case.read_size,
        max_line: case.max_line,
    })?;
    let args = format!("load --addr {} --mode {mode} {} {RUN}", server.addr, case.args);
    let out = echo_bench(&args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Seen with --nocapture: why each broken server was rejected.
    eprintln!("{name} in {mode}: {}", stderr.trim_end().replace('\n', " | "));
    if case.behaviour == Behaviour::Reference {
        assert!(out.status.success(), "{name} in {mode} must pass: {stdout}{stderr}");
        assert!(stdout.contains("verified"), "{stdout}");
    } else {
        assert!(!out.status.success(), "{name} in {mode} must fail the run: {stdout}{stderr}");
        assert!(stderr.contains("FAILED"), "{name} in {mode}: no FAILED line: {stderr}");
        assert!(!stdout.contains("round trips"), "{name} in {mode}: figures for a failed run: {stdout}");
    }
    Ok(())
}

/// The `--size` in `args`.
fn size_of(args: &str) -> usize {
    let mut words = args.split(' ');
    words.find(|w| *w == "--size").and_then(|_| words.next()).and_then(|s| s.parse().ok()).unwrap_or(64)
}

/// Runs `echo-bench ARGS` (split at spaces), bounded: a hung run is killed.
fn echo_bench(args: &str) -> io::Result<Output> {
    let child = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .env("RUST_LOG", "error")
        .args(args.split(' '))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    common::finish(child)
}

/// What one test server does.
#[derive(Clone, Copy, Debug)]
struct Params {
    behaviour: Behaviour,
    mode: Mode,
    /// The load's message size, for the cases that act on whole messages.
    size: usize,
    read_size: usize,
    max_line: usize,
}

/// The connections accepted so far, for [`Behaviour::SwapsConnections`].
type Accepted = Arc<(Mutex<Vec<TcpStream>>, Condvar)>;

/// A thread-per-connection server. The accept thread ends with the test
/// process; connection threads end when their clients close.
struct TestServer {
    addr: SocketAddr,
}

impl TestServer {
    fn spawn(params: Params) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted: Accepted = Arc::default();
        thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                // Only the swapping server keeps a second handle: any other
                // would hold the socket open after its handler closed it.
                if params.behaviour == Behaviour::SwapsConnections
                    && let Ok(clone) = stream.try_clone()
                {
                    accepted.0.lock().unwrap().push(clone);
                    accepted.1.notify_all();
                }
                let accepted = Arc::clone(&accepted);
                thread::spawn(move || serve(stream, index, params, &accepted));
            }
        });
        Ok(TestServer { addr })
    }
}

/// Where connection `index` writes its replies: its own socket, or for
/// [`Behaviour::SwapsConnections`] its partner's (0 with 1), once the
/// partner has been accepted.
fn reply_socket(
    stream: &TcpStream,
    index: usize,
    params: Params,
    accepted: &Accepted,
) -> io::Result<TcpStream> {
    if params.behaviour != Behaviour::SwapsConnections || index > 1 {
        return stream.try_clone();
    }
    let (lock, ready) = &**accepted;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streams = lock.lock().unwrap();
    while streams.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no partner connection"));
        }
        streams = ready.wait_timeout(streams, left).unwrap().0;
    }
    streams[index ^ 1].try_clone()
}

/// Serves one connection, with the case's bug.
fn serve(mut stream: TcpStream, index: usize, params: Params, accepted: &Accepted) -> io::Result<()> {
    use Behaviour::*;
    let mut out = reply_socket(&stream, index, params, accepted)?;
    let (mode, read_size) = match params.behaviour {
        UnframedLines => (Mode::Got, 7),
        _ => (params.mode, params.read_size),
    };
    let mut session = Session::new(mode, read_size, params.max_line);
    let mut buf = vec![0; if mode == Mode::Got { read_size } else { 64 * 1024 }];
    let size = params.size as u64;
    // Request bytes read, reply bytes written.
    let (mut received, mut sent) = (0u64, 0u64);
    let mut prefix_bent = false;
    let mut held = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            session.finish();
            out.write_all(session.pending())?;
            if params.behaviour == ExtraAtEnd {
                out.write_all(if mode == Mode::Raw { b"x" } else { b"GOT:x" })?;
            }
            if params.behaviour == HoldsAfterEnd {
                thread::sleep(Duration::from_secs(3));
            }
            return Ok(());
        }
        let input = &buf[..n];
        let at = received;
        received += n as u64;
        match params.behaviour {
            DropsMessage => feed_except(&mut session, input, at, 2 * size..3 * size),
            DuplicatesMessage => feed_twice(&mut session, &mut held, input, at, 2 * size..3 * size),
            DuplicatesChunk => feed_twice(&mut session, &mut held, input, at, 10_000..10_100),
            _ => session.receive(input),
        }
        let mut reply = session.pending().to_vec();
        session.advance(reply.len());
        if params.behaviour == WrongPrefix && !prefix_bent && sent + reply.len() as u64 > 10_000 {
            let from = 10_000usize.saturating_sub(sent as usize);
            if let Some(i) = reply[from..].windows(4).position(|w| w == b"GOT:") {
                reply[from + i + 3] = b';';
                prefix_bent = true;
            }
        }
        if params.behaviour == StopsAnswering && sent >= 64 * 1024 {
            continue;
        }
        out.write_all(&reply)?;
        sent += reply.len() as u64;
        match params.behaviour {
            ShutsWriteAfterFirst if received >= size => {
                out.shutdown(Shutdown::Write)?;
                // Read on, answering nothing, until the client goes.
                while stream.read(&mut buf)? > 0 {}
                return Ok(());
            }
            ClosesEarly if received >= 64 * 1024 => return Ok(()),
            ClosesAfterThree if received >= 3 * size => return Ok(()),
            Resets if received >= 64 * 1024 => {
                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            _ => {}
        }
    }
}

/// Feeds `input`, found at request offset `at`, leaving out the bytes in
/// `skip`.
fn feed_except(session: &mut Session, input: &[u8], at: u64, skip: std::ops::Range<u64>) {
    let end = at + input.len() as u64;
    let cut = |offset: u64| (offset.clamp(at, end) - at) as usize;
    session.receive(&input[..cut(skip.start)]);
    session.receive(&input[cut(skip.end)..]);
}

/// Feeds `input`, found at request offset `at`, and the bytes of `twice`
/// (kept in `held` as they come, across reads) again once its last one has
/// come.
fn feed_twice(session: &mut Session, held: &mut Vec<u8>, input: &[u8], at: u64, twice: std::ops::Range<u64>) {
    let end = at + input.len() as u64;
    let cut = |offset: u64| (offset.clamp(at, end) - at) as usize;
    held.extend_from_slice(&input[cut(twice.start)..cut(twice.end)]);
    if !(at..end).contains(&(twice.end - 1)) {
        session.receive(input);
        return;
    }
    session.receive(&input[..cut(twice.end)]);
    session.receive(held);
    session.receive(&input[cut(twice.end)..]);
}
