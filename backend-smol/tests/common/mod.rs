//! Helpers shared by this crate's integration tests: start a server, open a
//! client whose every wait has a deadline, wait for a condition with a
//! deadline, flood a server until it stops reading.
#![allow(dead_code, unreachable_pub)] // each test file uses some of these

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echo_core::{Backend, Mode, Server, ServerConfig};
use socket2::SockRef;

pub use backend_smol::SmolBackend as TheBackend;

/// The longest any single read or write in these tests may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A write that makes no progress for this long means the server has
/// stopped reading. Loopback moves megabytes in that time.
pub const STALL: Duration = Duration::from_millis(300);

/// A config for `mode`, everything else default.
pub fn config(mode: Mode) -> ServerConfig {
    ServerConfig { mode, ..ServerConfig::default() }
}

/// Starts the backend on a fresh loopback port.
#[track_caller]
pub fn start(config: &ServerConfig) -> io::Result<Server> {
    let listener = echo_core::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    TheBackend.spawn(listener, config)
}

/// Starts the backend on a fresh loopback port whose accepted sockets get
/// a small, fixed send buffer (Linux copies it from the listener). Then a
/// client that never reads leaves the server with replies the kernel cannot
/// take: with autotuned buffers of megabytes, the kernel may accept the last
/// reply once shutdown wakes the writer, and the drain would then end early.
#[track_caller]
pub fn start_with_small_send_buffer(config: &ServerConfig) -> io::Result<Server> {
    let listener = echo_core::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    SockRef::from(&listener).set_send_buffer_size(16 << 10)?;
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

/// Writes up to 256 MiB on `stream` from a new thread and never reads;
/// returns once a write has made no progress for [`STALL`], which means the
/// socket buffers are full and the server has stopped reading. The writer
/// goes on writing (blocking, up to `IO_TIMEOUT` a write) until the server
/// closes the connection, and returns how that ended.
#[track_caller]
pub fn flood_until_stalled(stream: &TcpStream) -> io::Result<JoinHandle<io::Result<()>>> {
    let mut writer = stream.try_clone()?;
    writer.set_write_timeout(Some(STALL))?;
    let (stalled, on_stall) = mpsc::channel();
    let flood = thread::spawn(move || {
        let chunk = pattern(64 << 10);
        let mut signalled = false;
        for _ in 0..4096 {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                match writer.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(err) if !signalled && timed_out(&err) => {
                        signalled = true;
                        let _ = stalled.send(());
                        writer.set_write_timeout(Some(IO_TIMEOUT))?;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    });
    match on_stall.recv_timeout(IO_TIMEOUT) {
        Ok(()) => Ok(flood),
        Err(_) => Err(io::Error::other("the server kept reading from a client that never reads")),
    }
}

/// Whether `err` is a socket timeout: `WouldBlock` on Unix, `TimedOut` on
/// Windows.
fn timed_out(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}
