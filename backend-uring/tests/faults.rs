//! Peers that misbehave, limits, timeouts and shutdown: each is bounded in
//! time and traffic and runs on loopback.

mod common;

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{config, connect, eventually, expect_closed, hello, hello_on, pattern, serve};
use echo_core::{Mode, ServerConfig};
use socket2::SockRef;

#[test]
fn a_reset_client_does_not_stop_a_fresh_one() -> io::Result<()> {
    let server = serve(config(Mode::Got))?;
    let mut rude = connect(&server)?;
    // Leave replies pending on the server's side, then reset.
    rude.write_all(&pattern(256 * 1024))?;
    SockRef::from(&rude).set_linger(Some(Duration::ZERO))?;
    drop(rude);
    let mut polite = hello(&server)?;
    eventually("the reset connection to close", || {
        let stats = server.stats();
        stats.closed == 1 && stats.active == 1
    })?;
    // Still served after the other one's failure was handled.
    hello_on(&mut polite)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn idle_connections_are_closed() -> io::Result<()> {
    let server = serve(ServerConfig { idle_timeout: Some(Duration::from_millis(100)), ..config(Mode::Got) })?;
    let mut client = hello(&server)?;
    let start = Instant::now();
    expect_closed(&mut client)?;
    assert!(start.elapsed() >= Duration::from_millis(90), "closed before the idle timeout");
    eventually("the close to be counted", || server.stats().closed == 1)?;
    // A new connection is still served after the idle scan.
    let _fresh = hello(&server)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn past_the_limit_new_connections_are_closed() -> io::Result<()> {
    let server = serve(ServerConfig { max_connections: 1, ..config(Mode::Got) })?;
    let mut first = hello(&server)?;
    let mut second = connect(&server)?;
    expect_closed(&mut second)?;
    assert_eq!(server.stats().refused, 1);
    // The admitted connection is still served.
    hello_on(&mut first)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

/// Refused after shutdown: every ring closed its listener descriptor.
#[track_caller]
fn expect_refused(addr: std::net::SocketAddr) -> io::Result<()> {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(err) if err.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Err(io::Error::other("a connection was accepted after shutdown")),
    }
}

#[test]
fn shutdown_is_prompt_and_joins() -> io::Result<()> {
    let server = serve(ServerConfig { threads: 2, ..config(Mode::Got) })?;
    let addr = server.local_addr();
    let mut idle = hello(&server)?;
    let mut other = hello(&server)?;
    let start = Instant::now();
    server.shutdown(Duration::from_secs(5));
    // Nothing was owed, so the drain deadline is not waited for.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    expect_closed(&mut idle)?;
    expect_closed(&mut other)?;
    expect_refused(addr)
}

/// Writes until a write times out: the kernel's buffers on both sides are
/// full and the server has stopped reading, which it does only when it holds
/// more replies than it can flush.
#[track_caller]
fn fill_until_stuck(client: &mut TcpStream) -> io::Result<usize> {
    client.set_write_timeout(Some(Duration::from_millis(200)))?;
    let chunk = pattern(256 * 1024);
    let mut written = 0;
    while written < 1 << 30 {
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(written);
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other("the server never stopped reading"))
}

#[test]
fn a_client_that_never_reads_is_closed_at_the_drain_deadline() -> io::Result<()> {
    let server = serve(ServerConfig { threads: 2, ..config(Mode::Raw) })?;
    let addr = server.local_addr();
    let mut polite = connect(&server)?;
    polite.write_all(b"ping")?;
    let mut reply = [0; 4];
    std::io::Read::read_exact(&mut polite, &mut reply)?;
    // A client that never reads: its replies cannot all be flushed, so only
    // the drain deadline ends it.
    let mut stuck = connect(&server)?;
    fill_until_stuck(&mut stuck)?;

    let start = Instant::now();
    server.shutdown(Duration::from_millis(200));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(190), "shutdown did not wait for the drain: {took:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");

    expect_closed(&mut polite)?;
    expect_closed(&mut stuck)?;
    expect_refused(addr)
}

#[test]
fn dropping_the_server_stops_it() -> io::Result<()> {
    let server = serve(config(Mode::Raw))?;
    let addr = server.local_addr();
    let mut client = connect(&server)?;
    client.write_all(b"x")?;
    drop(server);
    expect_closed(&mut client)?;
    expect_refused(addr)
}
