//! The echo protocol through this backend, and the faults a peer can cause.

mod common;

use std::io::{self, Write};
use std::thread;
use std::time::Duration;

use common::{config, connect, ensure, finish, pattern, read_len, start, wait_until};
use echo_core::{Mode, ServerConfig};

#[test]
fn hello_gets_got_hello() -> io::Result<()> {
    let server = start(&config(Mode::Got, 1))?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    ensure(finish(&mut client)?.is_empty(), "reply after end of input")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn several_clients_at_once() -> io::Result<()> {
    let server = start(&config(Mode::Line, 1))?;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let mut client = connect(&server)?;
            Ok(thread::spawn(move || -> io::Result<()> {
                let lines: String = (0..200).map(|j| format!("client {i} line {j}\n")).collect();
                client.write_all(lines.as_bytes())?;
                let expected: String = lines.lines().map(|l| format!("GOT:{l}\n")).collect();
                ensure(finish(&mut client)? == expected.as_bytes(), format!("client {i}: wrong replies"))
            }))
        })
        .collect::<io::Result<_>>()?;
    for client in clients {
        client.join().map_err(|_| io::Error::other("client thread panicked"))??;
    }
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn sixteen_mebibytes_come_back_exactly() -> io::Result<()> {
    let server = start(&config(Mode::Raw, 1))?;
    let mut client = connect(&server)?;
    let mut writer = client.try_clone()?;
    let data = pattern(16 << 20);
    let sent = data.clone();
    let writing = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&sent)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut echoed = Vec::with_capacity(data.len());
    io::Read::read_to_end(&mut client, &mut echoed)?;
    writing.join().map_err(|_| io::Error::other("writer panicked"))??;
    ensure(echoed.len() == data.len(), format!("got {} bytes back of {}", echoed.len(), data.len()))?;
    ensure(echoed == data, "the echo differs from the input")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn writing_a_mebibyte_before_reading_gets_every_byte() -> io::Result<()> {
    let server = start(&config(Mode::Raw, 1))?;
    let mut client = connect(&server)?;
    let data = pattern(1 << 20);
    // A server that only writes after it stopped reading (or the reverse)
    // deadlocks here; the client's write timeout turns that into an error.
    client.write_all(&data)?;
    ensure(finish(&mut client)? == data, "the echo differs from the input")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn half_close_flushes_every_reply_then_closes() -> io::Result<()> {
    let server = start(&config(Mode::Line, 1))?;
    let mut client = connect(&server)?;
    client.write_all(b"one\ntwo\nunterminated")?;
    // End of input answers the unterminated tail too, then the server's FIN
    // ends `read_to_end`.
    ensure(finish(&mut client)? == b"GOT:one\nGOT:two\nGOT:unterminated", "wrong replies after half-close")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn a_reset_client_does_not_stop_a_fresh_one() -> io::Result<()> {
    let server = start(&config(Mode::Got, 1))?;
    let mut doomed = connect(&server)?;
    doomed.write_all(b"Hello")?;
    read_len(&mut doomed, 9)?;
    // Linger zero turns close into a reset.
    socket2::SockRef::from(&doomed).set_linger(Some(Duration::ZERO))?;
    drop(doomed);
    wait_until("the reset to be counted", || server.stats().errors == 1)?;

    let mut fresh = connect(&server)?;
    fresh.write_all(b"Hello")?;
    ensure(read_len(&mut fresh, 9)? == b"GOT:Hello", "wrong reply after a reset")?;
    drop(fresh);
    wait_until("both connections to close", || server.stats().closed == 2)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn an_idle_connection_is_closed() -> io::Result<()> {
    let config = ServerConfig { idle_timeout: Some(Duration::from_millis(100)), ..config(Mode::Got, 1) };
    let server = start(&config)?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    // Nothing more is sent: the server closes, which reads as end of file.
    let mut rest = Vec::new();
    io::Read::read_to_end(&mut client, &mut rest)?;
    ensure(rest.is_empty(), "data after the idle close")?;
    wait_until("the close to be counted", || server.stats().closed == 1)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
