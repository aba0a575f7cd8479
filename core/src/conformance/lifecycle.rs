//! The lifecycle suite: what a backend does, through the library API, when
//! it is stopped, dropped or given threads. The conformance cases see one
//! live server speak the protocol, and the fault suite stops an
//! `echo-bench serve` child with a signal; neither times
//! [`Server::shutdown`] itself, cuts a stuck client at the drain deadline,
//! drops a [`Server`], or counts the threads left once it returns.
//!
//! Each case is a plain `pub fn` taking the backend under test and the
//! threads to serve with, returning a [`Failure`] that names what differed.
//! `bench/tests/lifecycle.rs` expands [`CASES`] for every backend and thread
//! count; [`every_thread_exits`] reads every thread of the process, so
//! `bench/tests/threads_exit.rs` runs it in a test binary of its own, one
//! backend at a time. Every wait has a deadline, and every shutdown runs on
//! a thread of its own, so a backend that hangs fails a case instead of
//! hanging it.
//!
//! ```no_run
//! use echo_core::conformance::lifecycle::CASES;
//! # fn demo(backend: &dyn echo_core::Backend) {
//! for case in CASES {
//!     if let Err(failure) = (case.run)(backend, 2) {
//!         println!("FAIL {}: {failure}", case.name);
//!     }
//! }
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::client::{Client, Deadline, Plan, io_failure};
use super::harness::{connect, listen, round_trip, start, wait_for_stats, wait_until};
use super::payload::lines;
use super::{CONNECT_TIMEOUT, Failure, IO_TIMEOUT, Target};
use crate::backend::{Backend, Server, ServerConfig};
use crate::protocol::Mode;

/// How much longer than its drain time a shutdown may take: the threads
/// have to notice and be joined, on a loaded 2-core test machine.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// How long after `shutdown` returns the kernel may still list a joined
/// thread: it wakes the joiner as the thread exits, a moment before it
/// removes the thread from /proc.
pub const THREAD_REAP: Duration = Duration::from_millis(500);

/// A drain time no case with nothing pending may wait out.
const LONG_DRAIN: Duration = Duration::from_secs(30);

/// The drain time of [`drain_deadline_cuts_a_client_that_never_reads`]:
/// long enough to measure, short enough to keep the suite quick.
const SHORT_DRAIN: Duration = Duration::from_millis(200);

/// How much earlier than the drain deadline a shutdown may end, for timer
/// rounding.
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// A write that makes no progress for this long means the server has
/// stopped reading. Loopback moves megabytes in that time.
const STALL: Duration = Duration::from_millis(300);

/// The send buffer of the server's sockets and the receive buffer of the
/// client in the drain case. Small and fixed (which turns off autotuning),
/// so the kernel cannot take the server's pending replies once shutdown
/// wakes it: with buffers of megabytes a drain could end early.
const SMALL_BUFFER: usize = 16 << 10;

/// Clients served at once by [`serves_clients_at_once`].
const CLIENTS: usize = 4;

/// Bytes each of them streams.
const STREAM: usize = 1 << 20;

/// One named lifecycle case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The case's name, the same as its function's.
    pub name: &'static str,
    /// The case: the backend under test and the threads it serves with.
    pub run: fn(&dyn Backend, usize) -> Result<(), Failure>,
}

/// The one list of the lifecycle cases, in the order [`CASES`] runs them:
/// expands to `$callback! { $($args)* shutdown_with_no_clients_is_prompt,
/// ... }`, each case the name of its function in this module.
///
/// [`CASES`] is made from it, and `bench/tests/lifecycle.rs` writes one
/// `#[test]` per case per backend from it, so a new case is listed here and
/// nowhere else. [`every_thread_exits`] is not in it: it needs the process
/// to itself and the backend's thread names.
///
/// ```
/// macro_rules! names {
///     ($($case:ident),* $(,)?) => { [$(stringify!($case)),*] };
/// }
/// let names = echo_core::for_each_lifecycle_case!(names! {});
/// let cases: Vec<_> = echo_core::conformance::lifecycle::CASES.iter().map(|c| c.name).collect();
/// assert_eq!(names[..], cases[..]);
/// ```
#[macro_export]
macro_rules! for_each_lifecycle_case {
    ($callback:ident! { $($args:tt)* }) => {
        $callback! { $($args)*
            shutdown_with_no_clients_is_prompt,
            shutdown_closes_idle_clients_and_refuses_new_ones,
            drain_deadline_cuts_a_client_that_never_reads,
            dropping_the_server_stops_it,
            serves_clients_at_once,
        }
    };
}

for_each_lifecycle_case!(cases! {
    /// Every case but [`every_thread_exits`], which needs the process to
    /// itself and the backend's thread names.
});

/// With no client connected, `shutdown` with a long drain returns at once:
/// there is nothing to wait for.
pub fn shutdown_with_no_clients_is_prompt(backend: &dyn Backend, threads: usize) -> Result<(), Failure> {
    let server = start(backend, &config(Mode::Got, threads))?;
    stop(server, Stop::Shutdown(LONG_DRAIN), SHUTDOWN_MARGIN)?;
    Ok(())
}

/// With one client served and one that never sent anything, `shutdown` with
/// a long drain returns promptly (nothing is pending), both clients get a
/// clean end of stream, and the port refuses new connections.
pub fn shutdown_closes_idle_clients_and_refuses_new_ones(
    backend: &dyn Backend,
    threads: usize,
) -> Result<(), Failure> {
    let server = start(backend, &config(Mode::Got, threads))?;
    let addr = server.local_addr();
    let mut served = connect(addr)?;
    round_trip(&mut served, b"Hello", b"GOT:Hello")?;
    let mut quiet = connect(addr)?;
    // Both connections are now waiting to read, and the acceptor to accept:
    // shutdown has to wake all three.
    wait_for_stats(&server, "both clients to be accepted", |s| s.active == 2)?;
    stop(server, Stop::Shutdown(LONG_DRAIN), SHUTDOWN_MARGIN)?;
    expect_eof(&mut served, "the served client")?;
    expect_eof(&mut quiet, "the quiet client")?;
    expect_refused(addr)
}

/// A client writes until its writes stall (the server has stopped reading,
/// its replies unsent) and never reads. `shutdown` cannot flush those
/// replies, so it uses the whole drain time, and not much more; then the
/// connection is gone: the client's blocked write fails and its reads end.
pub fn drain_deadline_cuts_a_client_that_never_reads(
    backend: &dyn Backend,
    threads: usize,
) -> Result<(), Failure> {
    let listener = listen()?;
    // Linux gives accepted sockets the listener's buffer sizes.
    SockRef::from(&listener)
        .set_send_buffer_size(SMALL_BUFFER)
        .map_err(|e| io_failure(e, "setting the listener's send buffer".to_owned()))?;
    let server = backend
        .spawn(listener, &config(Mode::Raw, threads))
        .map_err(|e| io_failure(e, format!("starting the {} backend", backend.name())))?;
    let mut client = connect_with_receive_buffer(server.local_addr(), SMALL_BUFFER)?;
    let writer = flood_until_stalled(&client)?;

    let took = stop(server, Stop::Shutdown(SHORT_DRAIN), SHORT_DRAIN + SHUTDOWN_MARGIN)?;
    if took + TIMER_SLACK < SHORT_DRAIN {
        return Err(Failure::Mismatch(format!(
            "shutdown returned after {took:?}, before the {SHORT_DRAIN:?} drain deadline, \
             though the stuck client's replies could not have been flushed"
        )));
    }
    let wrote = writer.join().map_err(|_| Failure::Mismatch("the writer thread panicked".to_owned()))?;
    match wrote {
        Ok(()) => {
            return Err(Failure::Mismatch("the stuck client wrote everything after shutdown".to_owned()));
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            return Err(Failure::Timeout(format!(
                "the stuck client's write was still blocked {IO_TIMEOUT:?} after shutdown returned"
            )));
        }
        // Reset or broken pipe: the server closed the connection.
        Err(_) => {}
    }
    // Reading what the client's buffers hold ends, with end of stream or a
    // reset, instead of waiting.
    let mut echoed = Vec::new();
    match client.read_to_end(&mut echoed) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(io_failure(e, "the stuck client reading after shutdown".to_owned())),
    }
}

/// Dropping the [`Server`] handle stops the server: the client's connection
/// is closed and the port refuses new ones.
pub fn dropping_the_server_stops_it(backend: &dyn Backend, threads: usize) -> Result<(), Failure> {
    let server = start(backend, &config(Mode::Raw, threads))?;
    let addr = server.local_addr();
    let mut client = connect(addr)?;
    round_trip(&mut client, b"ping", b"ping")?;
    stop(server, Stop::Drop, SHUTDOWN_MARGIN)?;
    // No drain time: a reset is as good as a FIN here.
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => {}
        Ok(n) => return Err(Failure::Mismatch(format!("{n} bytes came after the server was dropped"))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(io_failure(e, "waiting for the dropped server to close".to_owned())),
    }
    expect_refused(addr)
}

/// Several clients, all connected before any sends, each stream 1 MiB at
/// the same time and get every byte back, in order: with `threads` above 1
/// they are spread over the backend's threads, which must not mix them up.
pub fn serves_clients_at_once(backend: &dyn Backend, threads: usize) -> Result<(), Failure> {
    let server = start(backend, &config(Mode::Raw, threads))?;
    let target = Target::new(server.local_addr(), Mode::Raw);
    let deadline = Deadline::start();
    let clients = (0..CLIENTS)
        .map(|i| Client::connect(&target, deadline, &format!("client {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    wait_for_stats(&server, "every client to be accepted", |s| s.active == CLIENTS as u64)?;
    thread::scope(|scope| {
        let running: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                scope.spawn(move || {
                    let input = lines(STREAM, 100 + i as u64, 1..=2000);
                    client.exchange(&target, &input, Plan::default())?;
                    client.close(&target)
                })
            })
            .collect();
        running.into_iter().try_for_each(|client| {
            client.join().unwrap_or_else(|_| Err(Failure::Mismatch("a client thread panicked".to_owned())))
        })
    })?;
    stop(server, Stop::Shutdown(Duration::from_secs(1)), SHUTDOWN_MARGIN)?;
    Ok(())
}

/// Every thread the backend started, found by its name starting with
/// `thread_prefix` (as Linux's `comm` shows it: 15 bytes at most), has
/// exited once `shutdown` returns, including threads serving idle clients.
/// At least `threads` such threads must be running beforehand, so a wrong
/// prefix fails rather than passes.
///
/// Reads /proc/self/task, so it runs on Linux only and must not share the
/// process with another server whose threads carry the same names.
pub fn every_thread_exits(backend: &dyn Backend, threads: usize, thread_prefix: &str) -> Result<(), Failure> {
    if thread_prefix.is_empty() || thread_prefix.len() > 15 {
        return Err(Failure::Mismatch(format!(
            "the thread-name prefix {thread_prefix:?} must be 1 to 15 bytes: Linux keeps no more"
        )));
    }
    let server = start(backend, &config(Mode::Got, threads))?;
    let addr = server.local_addr();
    let mut served = connect(addr)?;
    round_trip(&mut served, b"Hello", b"GOT:Hello")?;
    let _quiet = connect(addr)?;
    wait_for_stats(&server, "both clients to be accepted", |s| s.active == 2)?;
    // A thread names itself once it runs, which may lag under load.
    let mut running = 0;
    wait_until(&format!("{} threads named {thread_prefix}*", threads.max(1)), IO_TIMEOUT, || {
        running = named_threads(thread_prefix)?;
        Ok(running >= threads.max(1))
    })?;

    stop(server, Stop::Shutdown(LONG_DRAIN), SHUTDOWN_MARGIN)?;
    let mut left = running;
    wait_until("the backend's threads to be gone", THREAD_REAP, || {
        left = named_threads(thread_prefix)?;
        Ok(left == 0)
    })
    .map_err(|_| {
        Failure::Mismatch(format!(
            "{left} of {running} threads named {thread_prefix}* were still running \
             {THREAD_REAP:?} after shutdown returned"
        ))
    })
}

/// The default configuration in `mode` on `threads` threads.
fn config(mode: Mode, threads: usize) -> ServerConfig {
    ServerConfig { mode, threads, ..ServerConfig::default() }
}

/// How a case stops its server.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// [`Server::shutdown`] with this drain time.
    Shutdown(Duration),
    /// Dropping the handle.
    Drop,
}

/// Stops `server` on a thread of its own and returns how long that took; a
/// backend that takes longer than `limit` fails the case instead of hanging
/// it (its stopping thread is left behind).
fn stop(server: Server, how: Stop, limit: Duration) -> Result<Duration, Failure> {
    let (done, returned) = mpsc::channel();
    let started = Instant::now();
    thread::Builder::new()
        .name("lifecycle-stop".to_owned())
        .spawn(move || {
            match how {
                Stop::Shutdown(drain) => {
                    server.shutdown(drain);
                }
                Stop::Drop => drop(server),
            }
            let _ = done.send(started.elapsed());
        })
        .map_err(|e| io_failure(e, "starting the thread that stops the server".to_owned()))?;
    returned
        .recv_timeout(limit)
        .map_err(|_| Failure::Timeout(format!("{how:?} did not return within {limit:?}")))
}

/// Reads until the server closes and expects a clean end of stream with
/// nothing before it.
fn expect_eof(stream: &mut TcpStream, who: &str) -> Result<(), Failure> {
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| io_failure(e, format!("{who}: waiting for the server's end of stream")))?;
    if !rest.is_empty() {
        return Err(Failure::Mismatch(format!("{who}: {} bytes came after shutdown", rest.len())));
    }
    Ok(())
}

/// Expects `addr` to refuse connections: its listener is closed.
fn expect_refused(addr: SocketAddr) -> Result<(), Failure> {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(_) => Err(Failure::Mismatch(format!("{addr} accepted a connection after the server stopped"))),
        Err(_) => Ok(()),
    }
}

/// A client whose receive buffer is `size` bytes, set before connecting so
/// the window it advertises never grows past it.
fn connect_with_receive_buffer(addr: SocketAddr, size: usize) -> Result<TcpStream, Failure> {
    let doing = || format!("connecting to {addr} with a {size}-byte receive buffer");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| io_failure(e, doing()))?;
    socket.set_recv_buffer_size(size).map_err(|e| io_failure(e, doing()))?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT).map_err(|e| io_failure(e, doing()))?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| io_failure(e, doing()))?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| io_failure(e, doing()))?;
    Ok(stream)
}

/// Writes on `stream` from a new thread and never reads; returns once a
/// write has made no progress for [`STALL`]: the socket buffers are full and
/// the server has stopped reading. The writer goes on writing (each write
/// bounded by [`IO_TIMEOUT`], 1 GiB at most) until the server closes the
/// connection, and returns how that ended.
fn flood_until_stalled(stream: &TcpStream) -> Result<JoinHandle<io::Result<()>>, Failure> {
    let failed = |e| io_failure(e, "starting the flood".to_owned());
    let mut writer = stream.try_clone().map_err(failed)?;
    writer.set_write_timeout(Some(STALL)).map_err(failed)?;
    let (stalled, on_stall) = mpsc::channel();
    let flood = thread::Builder::new()
        .name("lifecycle-flood".to_owned())
        .spawn(move || {
            let chunk = lines(64 << 10, 7, 1..=2000);
            let mut signalled = false;
            for _ in 0..(1 << 30) / chunk.len() {
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    match writer.write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if !signalled
                                && matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) =>
                        {
                            signalled = true;
                            let _ = stalled.send(());
                            writer.set_write_timeout(Some(IO_TIMEOUT))?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })
        .map_err(failed)?;
    match on_stall.recv_timeout(IO_TIMEOUT) {
        Ok(()) => Ok(flood),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Failure::Timeout(format!(
            "the server kept reading for {IO_TIMEOUT:?} from a client that never reads"
        ))),
        // The writer ended before it ever stalled: say why.
        Err(mpsc::RecvTimeoutError::Disconnected) => match flood.join() {
            Ok(Err(e)) => Err(io_failure(e, "flooding the server".to_owned())),
            Ok(Ok(())) => {
                Err(Failure::Mismatch("the server read 1 GiB without a reply being read".to_owned()))
            }
            Err(_) => Err(Failure::Mismatch("the writer thread panicked".to_owned())),
        },
    }
}

/// How many of this process's threads have a name starting with `prefix`.
fn named_threads(prefix: &str) -> Result<usize, Failure> {
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|e| io_failure(e, "listing /proc/self/task".to_owned()))?;
    let mut count = 0;
    for task in tasks.flatten() {
        // A thread may exit between listing and reading: not an error.
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        count += usize::from(comm.trim_end().starts_with(prefix));
    }
    Ok(count)
}
