//! The protocol over real sockets: replies, many clients, large streams,
//! half-close, resets, idle timeout.

mod common;

use std::io::{self, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::{config, connect, ensure, finish, pattern, read_len, start, wait_until};
use echo_core::{Mode, ServerConfig};
use socket2::SockRef;

#[test]
fn hello_gets_got_hello() -> io::Result<()> {
    let server = start(&config(Mode::Got))?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    ensure(finish(&mut client)?.is_empty(), "data after the reply")
}

#[test]
fn several_clients_at_once() -> io::Result<()> {
    let server = start(&config(Mode::Line))?;
    // Every client connects before any sends, so all are open at once.
    let clients = (0..8).map(|_| connect(&server)).collect::<io::Result<Vec<_>>>()?;
    wait_until("every client to be accepted", || server.stats().active == 8)?;
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            thread::spawn(move || -> io::Result<()> {
                for round in 0..20 {
                    let line = format!("client {i} round {round}\n");
                    client.write_all(line.as_bytes())?;
                    let reply = read_len(&mut client, line.len() + 4)?;
                    ensure(reply == format!("GOT:{line}").as_bytes(), format!("client {i}: wrong reply"))?;
                }
                ensure(finish(&mut client)?.is_empty(), "data after the last reply")
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| io::Error::other("a client panicked"))??;
    }
    Ok(())
}

#[test]
fn two_threads_serve_clients_at_once() -> io::Result<()> {
    let server = start(&ServerConfig { threads: 2, ..config(Mode::Raw) })?;
    let clients = (0..4).map(|_| connect(&server)).collect::<io::Result<Vec<_>>>()?;
    wait_until("every client to be accepted", || server.stats().active == 4)?;
    let workers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            thread::spawn(move || -> io::Result<()> {
                let input = pattern(1 << 20);
                let mut writer = client.try_clone()?;
                let sent = input.clone();
                let writing = thread::spawn(move || writer.write_all(&sent));
                let echoed = read_len(&mut client, input.len())?;
                writing.join().map_err(|_| io::Error::other("a writer panicked"))??;
                ensure(echoed == input, "the echo differs from the input")?;
                ensure(finish(&mut client)?.is_empty(), "data after the echo")
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| io::Error::other("a client panicked"))??;
    }
    Ok(())
}

#[test]
fn sixteen_mib_read_concurrently_comes_back_exactly() -> io::Result<()> {
    let server = start(&config(Mode::Raw))?;
    let client = connect(&server)?;
    let input = pattern(16 << 20);
    let mut writer = client.try_clone()?;
    let sent = input.clone();
    let writing = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut client = client;
    let mut echoed = Vec::with_capacity(input.len());
    io::Read::read_to_end(&mut client, &mut echoed)?;
    writing.join().map_err(|_| io::Error::other("the writer panicked"))??;
    ensure(echoed.len() == input.len(), format!("{} of {} bytes came back", echoed.len(), input.len()))?;
    ensure(echoed == input, "the echo differs from the input")
}

#[test]
fn a_client_that_writes_1_mib_before_reading_gets_every_byte() -> io::Result<()> {
    let server = start(&config(Mode::Raw))?;
    let mut client = connect(&server)?;
    let input = pattern(1 << 20);
    // The server's replies wait in the kernel buffers meanwhile; the write
    // timeout turns a deadlock into a failure.
    client.write_all(&input)?;
    ensure(read_len(&mut client, input.len())? == input, "the echo differs from the input")?;
    ensure(finish(&mut client)?.is_empty(), "data after the echo")
}

#[test]
fn half_close_flushes_every_reply_then_closes() -> io::Result<()> {
    let server = start(&config(Mode::Line))?;
    let mut client = connect(&server)?;
    client.write_all(b"first\nan unterminated tail")?;
    // End of input answers the tail too, then the server closes cleanly.
    ensure(finish(&mut client)? == b"GOT:first\nGOT:an unterminated tail", "wrong replies after half-close")?;
    wait_until("the connection to be closed", || server.stats().closed == 1)?;
    ensure(server.stats().errors == 0, "a half-close counted as an error")
}

#[test]
fn a_reset_client_does_not_stop_a_fresh_one() -> io::Result<()> {
    let server = start(&config(Mode::Raw))?;
    let mut resetting = connect(&server)?;
    resetting.write_all(&pattern(256 << 10))?;
    // Linger 0: close sends a reset instead of a FIN.
    SockRef::from(&resetting).set_linger(Some(Duration::ZERO))?;
    drop(resetting);
    wait_until("the reset connection to be closed", || server.stats().closed == 1)?;

    let mut fresh = connect(&server)?;
    fresh.write_all(b"Hello")?;
    ensure(read_len(&mut fresh, 5)? == b"Hello", "wrong reply after a reset")?;
    ensure(finish(&mut fresh)?.is_empty(), "data after the reply")
}

#[test]
fn an_idle_client_is_closed() -> io::Result<()> {
    let server =
        start(&ServerConfig { idle_timeout: Some(Duration::from_millis(200)), ..config(Mode::Got) })?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    // Then silence: the server closes, and the read sees end of stream long
    // before the client's own 10 s timeout.
    let mut rest = Vec::new();
    io::Read::read_to_end(&mut client, &mut rest)?;
    ensure(rest.is_empty(), "data after the reply")?;
    wait_until("the idle connection to be counted closed", || server.stats().closed == 1)
}
