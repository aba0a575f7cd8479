//! Helpers shared by the integration tests: starting a server, connecting
//! with timeouts, and waiting for a condition with a deadline.
#![allow(dead_code)] // each test file uses only some of these

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use backend_select::{Poller, SelectBackend};
use echo_core::{Backend, Server, ServerConfig, StatsSnapshot};

/// The longest any single wait in these tests may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `config` with `poller` on a fresh loopback port.
pub(crate) fn start(poller: Poller, config: &ServerConfig) -> io::Result<Server> {
    let listener = echo_core::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    SelectBackend { poller }.spawn(listener, config)
}

/// A client whose reads and writes fail after [`TIMEOUT`] instead of hanging.
#[track_caller]
pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Sends `message` and checks the reply is exactly `expected`.
#[track_caller]
pub(crate) fn round_trip(stream: &mut TcpStream, message: &[u8], expected: &[u8]) -> io::Result<()> {
    stream.write_all(message)?;
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply)?;
    if reply != expected {
        return Err(io::Error::other(format!(
            "expected {:?}, got {:?}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}

/// Whether the server closed `stream`: a read sees end of input or a reset.
/// A read that times out is an error.
#[track_caller]
pub(crate) fn is_closed_by_server(stream: &mut TcpStream) -> io::Result<bool> {
    let mut byte = [0];
    match stream.read(&mut byte) {
        Ok(0) => Ok(true),
        Ok(_) => Ok(false),
        Err(err) if matches!(err.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
            Ok(true)
        }
        Err(err) => Err(err),
    }
}

/// Polls the server's counters until `done` holds, or fails after [`TIMEOUT`].
#[track_caller]
pub(crate) fn wait_for_stats(
    server: &Server,
    what: &str,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> io::Result<StatsSnapshot> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats = server.stats();
        if done(&stats) {
            return Ok(stats);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("timed out waiting for {what}: {stats:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}
