//! The few helpers that the lifecycle suite and the backends' own tests
//! share: start a backend on a free loopback port, connect with timeouts,
//! make a round trip, and wait for a condition with a deadline. Each turns
//! every error into a [`Failure`] that says what it was doing, and none
//! waits without a bound.
//!
//! ```no_run
//! use echo_core::conformance::harness::{connect, round_trip, start, wait_for_stats};
//! # fn demo(backend: &dyn echo_core::Backend) -> Result<(), echo_core::conformance::Failure> {
//! let server = start(backend, &echo_core::ServerConfig::default())?;
//! let mut client = connect(server.local_addr())?;
//! round_trip(&mut client, b"Hello", b"GOT:Hello")?;
//! wait_for_stats(&server, "the connection to be counted", |s| s.accepted == 1)?;
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::io_failure;
use super::verify::show;
use super::{CONNECT_TIMEOUT, Failure, IO_TIMEOUT};
use crate::backend::{Backend, Server, ServerConfig};
use crate::stats::StatsSnapshot;

/// How often a wait looks at its condition again: often enough that a test
/// loses little time, seldom enough that polling costs nothing.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// A listener on a free loopback port (tests never use a fixed one).
pub fn listen() -> Result<TcpListener, Failure> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    crate::bind(addr).map_err(|e| io_failure(e.into(), format!("binding {addr}")))
}

/// Starts `backend` with `config` on a free loopback port.
pub fn start(backend: &dyn Backend, config: &ServerConfig) -> Result<Server, Failure> {
    backend
        .spawn(listen()?, config)
        .map_err(|e| io_failure(e, format!("starting the {} backend", backend.name())))
}

/// Connects to `addr` with [`CONNECT_TIMEOUT`]; reads and writes on the
/// stream then time out after [`IO_TIMEOUT`] instead of hanging.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let doing = || format!("connecting to {addr}");
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| io_failure(e, doing()))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| io_failure(e, doing()))?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| io_failure(e, doing()))?;
    Ok(stream)
}

/// Sends `message` and checks that the reply is exactly `expected`. For
/// messages small enough to sit in the socket buffers while nobody reads.
pub fn round_trip(stream: &mut TcpStream, message: &[u8], expected: &[u8]) -> Result<(), Failure> {
    stream.write_all(message).map_err(|e| io_failure(e, format!("sending {}", show(message))))?;
    let mut reply = vec![0; expected.len()];
    stream
        .read_exact(&mut reply)
        .map_err(|e| io_failure(e, format!("reading the reply to {}", show(message))))?;
    if reply != expected {
        return Err(Failure::Mismatch(format!(
            "the reply to {} was {}, expected {}",
            show(message),
            show(&reply),
            show(expected)
        )));
    }
    Ok(())
}

/// Polls `done` until it holds, failing with a [`Failure::Timeout`] that
/// names `what` once `timeout` has passed.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        if Instant::now() >= deadline {
            return Err(Failure::Timeout(format!("waited {timeout:?} for {what}")));
        }
        thread::sleep(POLL_EVERY);
    }
    Ok(())
}

/// Polls the server's counters until `done` holds, for up to
/// [`IO_TIMEOUT`]; returns the counters that satisfied it. A timeout names
/// `what` and shows the last counters.
pub fn wait_for_stats(
    server: &Server,
    what: &str,
    mut done: impl FnMut(&StatsSnapshot) -> bool,
) -> Result<StatsSnapshot, Failure> {
    let mut stats = server.stats();
    wait_until(what, IO_TIMEOUT, || {
        stats = server.stats();
        Ok(done(&stats))
    })
    .map_err(|_| Failure::Timeout(format!("waited {IO_TIMEOUT:?} for {what}; the counters: {stats:?}")))?;
    Ok(stats)
}
