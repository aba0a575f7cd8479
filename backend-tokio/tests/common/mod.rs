//! Helpers shared by this crate's integration tests: start a server, open a
//! client whose every wait has a deadline, poll a condition with a deadline.
#![allow(dead_code, unreachable_pub)] // each test file uses some of these

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use echo_core::{Backend, Mode, Server, ServerConfig};

pub use backend_tokio::TokioBackend as TheBackend;

/// The longest any single read or write in these tests may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A config for `mode` on `threads` threads, everything else default.
pub fn config(mode: Mode, threads: usize) -> ServerConfig {
    ServerConfig { mode, threads, ..ServerConfig::default() }
}

/// Starts the backend on a fresh loopback port.
#[track_caller]
pub fn start(config: &ServerConfig) -> io::Result<Server> {
    let listener = echo_core::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    TheBackend.spawn(listener, config)
}

/// Connects to `server` with read and write timeouts set.
#[track_caller]
pub fn connect(server: &Server) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(server.local_addr())?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Reads exactly `len` bytes.
#[track_caller]
pub fn read_len(stream: &mut TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Half-closes `stream` and reads everything up to the server's FIN.
#[track_caller]
pub fn finish(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    stream.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

/// `len` bytes of a pattern that does not repeat every power of two, so a
/// lost, duplicated or reordered chunk shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Waits until `done` holds, failing with `what` after `IO_TIMEOUT`.
#[track_caller]
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !done() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("timed out waiting for {what}")));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Fails with `message` unless `cond` holds.
#[track_caller]
pub fn ensure(cond: bool, message: impl Into<String>) -> io::Result<()> {
    if cond { Ok(()) } else { Err(io::Error::other(message.into())) }
}
