//! Shutdown: prompt, refuses new connections, drains within the deadline.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, config, connect, ensure, read_len, start, wait_until};
use echo_core::{Mode, Server, ServerConfig};
use socket2::{Domain, Protocol, Socket, Type};

#[test]
fn shutdown_is_prompt_and_refuses_new_connections() -> io::Result<()> {
    let server = start(&config(Mode::Got, 2))?;
    let addr = server.local_addr();
    let mut served = connect(&server)?;
    served.write_all(b"Hello")?;
    ensure(read_len(&mut served, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    let mut quiet = connect(&server)?;
    wait_until("both connections to be accepted", || server.stats().active == 2)?;

    // Nothing is pending, so a long drain must not be waited out.
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
fn drain_deadline_closes_a_client_that_never_reads() -> io::Result<()> {
    // A high watermark above the input lets the server read all of it, so
    // the test can wait for a definite event: every byte read, its echo
    // pending. The client's receive buffer is small and fixed (which turns
    // off autotuning) and the server's send buffer is capped by the kernel
    // (4 MiB by default), so most of the 16 MiB echo cannot leave the server
    // while the client does not read: draining it must run into the deadline.
    let input = 16 << 20;
    let config = ServerConfig { high_watermark: 2 * input, ..config(Mode::Raw, 1) };
    let server = start(&config)?;
    let mut client = connect_with_small_receive_buffer(&server)?;
    client.write_all(&vec![b'x'; input])?;
    wait_until("the server to read every byte", || server.stats().bytes_in == input as u64)?;

    let drain = Duration::from_millis(200);
    let started = Instant::now();
    server.shutdown(drain);
    let took = started.elapsed();
    // The whole drain time is used (less a little for timer rounding), and
    // not much more.
    ensure(took + Duration::from_millis(5) >= drain, format!("shutdown gave up after {took:?}"))?;
    ensure(took < drain + Duration::from_secs(3), format!("shutdown took {took:?}"))?;

    // The connection is gone: reading the echo the client's buffers hold
    // ends (with end of file or a reset) instead of waiting, and short.
    let mut echoed = Vec::new();
    match client.read_to_end(&mut echoed) {
        Ok(_) => ensure(echoed.len() < input, "the whole echo arrived"),
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(err) => Err(err),
    }
}

/// A client whose receive buffer is 64 KiB, set before connecting.
fn connect_with_small_receive_buffer(server: &Server) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(64 * 1024)?;
    socket.connect_timeout(&server.local_addr().into(), IO_TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}
