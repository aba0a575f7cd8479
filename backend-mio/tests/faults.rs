//! Peers that misbehave, limits, timeouts and shutdown: each is bounded in
//! time and traffic and runs on loopback.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{config, connect, eventually, pattern, serve};
use echo_core::{Mode, Server, ServerConfig};
use socket2::SockRef;

/// `Hello` in, `GOT:Hello` out, on a fresh connection.
#[track_caller]
fn hello(server: &Server) -> io::Result<TcpStream> {
    let mut client = connect(server)?;
    client.write_all(b"Hello")?;
    let mut reply = [0; 9];
    client.read_exact(&mut reply)?;
    assert_eq!(&reply, b"GOT:Hello");
    Ok(client)
}

/// Reads until the server closes; a reset counts as closed.
#[track_caller]
fn expect_closed(client: &mut TcpStream) -> io::Result<()> {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(err) => Err(err),
    }
}

#[test]
fn a_reset_client_does_not_stop_a_fresh_one() -> io::Result<()> {
    let server = serve(config(Mode::Got))?;
    let mut rude = connect(&server)?;
    // Leave replies pending on the server's side, then reset.
    rude.write_all(&pattern(256 * 1024))?;
    SockRef::from(&rude).set_linger(Some(Duration::ZERO))?;
    drop(rude);
    let _polite = hello(&server)?;
    eventually("the reset connection to close", || {
        let stats = server.stats();
        stats.closed == 1 && stats.active == 1
    })?;
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
    first.write_all(b"again")?;
    let mut reply = [0; 9];
    first.read_exact(&mut reply)?;
    assert_eq!(&reply, b"GOT:again");
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn shutdown_is_prompt_and_closes_everything() -> io::Result<()> {
    let server = serve(ServerConfig { threads: 2, ..config(Mode::Got) })?;
    let addr = server.local_addr();
    let mut idle = hello(&server)?;
    let mut other = hello(&server)?;
    // A client that never reads: its replies cannot all be flushed, so only
    // the drain deadline ends it.
    let mut stuck = connect(&server)?;
    stuck.write_all(&pattern(1024 * 1024))?;
    eventually("the stuck client's input to be read", || server.stats().bytes_in > 64 * 1024)?;

    let start = Instant::now();
    server.shutdown(Duration::from_millis(200));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");

    expect_closed(&mut idle)?;
    expect_closed(&mut other)?;
    drop(stuck);
    // The listener is closed: nobody accepts any more.
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(err) if err.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Err(io::Error::other("a connection was accepted after shutdown")),
    }
}
