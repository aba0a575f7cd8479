//! Shutdown wakes threads blocked in accept, read and write: it returns
//! promptly with idle clients connected, refuses new connections, and cuts
//! off a client that never reads at the drain deadline.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, config, connect, ensure, flood_until_stalled, read_len, start, start_with_small_send_buffer,
    wait_until,
};
use echo_core::Mode;

#[test]
fn shutdown_is_prompt_while_clients_are_idle() -> io::Result<()> {
    let server = start(&config(Mode::Got))?;
    let addr = server.local_addr();
    let mut served = connect(&server)?;
    served.write_all(b"Hello")?;
    ensure(read_len(&mut served, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    let mut quiet = connect(&server)?;
    // Both connection threads are now blocked in read, and the acceptor in
    // accept: shutdown has to wake all three.
    wait_until("both connections to be accepted", || server.stats().active == 2)?;

    let started = Instant::now();
    server.shutdown(Duration::from_secs(30));
    let took = started.elapsed();
    ensure(took < Duration::from_secs(3), format!("shutdown took {took:?}"))?;

    // Both connections were closed with a FIN, and the port is closed.
    for client in [&mut served, &mut quiet] {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest)?;
        ensure(rest.is_empty(), "data after shutdown")?;
    }
    let refused = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    ensure(refused.is_err(), "a connection was accepted after shutdown")
}

#[test]
fn shutdown_with_no_client_is_prompt() -> io::Result<()> {
    let server = start(&config(Mode::Got))?;
    let started = Instant::now();
    server.shutdown(Duration::from_secs(30));
    let took = started.elapsed();
    ensure(took < Duration::from_secs(3), format!("shutdown took {took:?}"))
}

#[test]
fn drain_deadline_closes_a_client_that_never_reads() -> io::Result<()> {
    let server = start_with_small_send_buffer(&config(Mode::Raw))?;
    let client = connect(&server)?;
    // Once the client's writes stall, the server is blocked writing replies
    // the client never reads, and stays so.
    let writing = flood_until_stalled(&client)?;

    let drain = Duration::from_millis(200);
    let started = Instant::now();
    server.shutdown(drain);
    let took = started.elapsed();
    // The pending output cannot be flushed, so the whole drain time is used
    // (less a little for timer rounding), and not much more.
    ensure(took + Duration::from_millis(5) >= drain, format!("shutdown gave up after {took:?}"))?;
    ensure(took < drain + Duration::from_secs(3), format!("shutdown took {took:?}"))?;

    // The connection is gone: the writer stops with an error, and reading
    // the buffered echo ends (with end of file or a reset) instead of waiting.
    let write_result = writing.join().map_err(|_| io::Error::other("the writer panicked"))?;
    ensure(write_result.is_err(), "the writer finished against a closed connection")?;
    let mut client = client;
    let mut echoed = Vec::new();
    match client.read_to_end(&mut echoed) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(err) => Err(err),
    }
}
