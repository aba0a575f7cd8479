//! The io_uring backend answers, in every mode, with one ring or several.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::{config, connect, hello, pattern, read_got, serve};
use echo_core::{Mode, ServerConfig};

#[test]
fn hello_gets_got_hello() -> io::Result<()> {
    let server = serve(config(Mode::Got))?;
    let _client = hello(&server)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

/// Clients in `line` mode, all at once, each with several round trips.
fn many_clients(threads: usize) -> io::Result<()> {
    let server = serve(ServerConfig { threads, ..config(Mode::Line) })?;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let mut client = connect(&server)?;
            Ok(thread::spawn(move || -> io::Result<()> {
                for round in 0..20 {
                    let line = format!("client {i} round {round}\n");
                    client.write_all(line.as_bytes())?;
                    let mut reply = vec![0; 4 + line.len()];
                    client.read_exact(&mut reply)?;
                    assert_eq!(reply, format!("GOT:{line}").into_bytes());
                }
                Ok(())
            }))
        })
        .collect::<io::Result<_>>()?;
    for client in clients {
        client.join().map_err(|_| io::Error::other("client thread panicked"))??;
    }
    assert_eq!(server.stats().accepted, 8);
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn several_clients_at_once() -> io::Result<()> {
    many_clients(1)
}

#[test]
fn two_rings_serve_clients() -> io::Result<()> {
    many_clients(2)
}

/// A hundred connections open together, each asked before any is answered
/// is read, so the ring has a hundred receives in flight at once.
#[test]
fn a_hundred_clients_at_once() -> io::Result<()> {
    let server = serve(config(Mode::Got))?;
    let mut clients = (0..100).map(|_| connect(&server)).collect::<io::Result<Vec<_>>>()?;
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("client {i:03}").as_bytes())?;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = [0; 14];
        client.read_exact(&mut reply)?;
        assert_eq!(&reply[..], format!("GOT:client {i:03}").as_bytes());
    }
    assert_eq!(server.stats().accepted, 100);
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

/// 16 MiB written from one thread come back exactly to another.
#[test]
fn sixteen_mib_come_back_exactly_in_raw_mode() -> io::Result<()> {
    const LEN: usize = 16 * 1024 * 1024;
    let server = serve(config(Mode::Raw))?;
    let mut client = connect(&server)?;
    let mut writer = client.try_clone()?;
    let sent: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    let writing = thread::spawn(move || writer.write_all(&sent));
    let mut received = vec![0; LEN];
    client.read_exact(&mut received)?;
    writing.join().map_err(|_| io::Error::other("writer panicked"))??;
    assert!(received == expected, "the echo differs from the input");
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn a_client_that_writes_before_reading_gets_every_byte() -> io::Result<()> {
    const LEN: usize = 1024 * 1024;
    let server = serve(config(Mode::Got))?;
    let mut client = connect(&server)?;
    let sent = pattern(LEN);
    // Not a byte read until all is sent: the server must pause at its
    // watermark and the kernel's buffers hold the rest.
    client.write_all(&sent)?;
    let got = read_got(&mut client, LEN)?;
    assert!(got == sent, "the stripped replies differ from the input");
    assert_eq!(server.stats().bytes_in, LEN as u64);
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn half_close_flushes_every_reply() -> io::Result<()> {
    let server = serve(config(Mode::Line))?;
    // Data and FIN arriving together, repeated so it is actually hit.
    for _ in 0..20 {
        let mut client = connect(&server)?;
        client.write_all(b"abc\nxyz")?;
        client.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        client.read_to_end(&mut reply)?;
        assert_eq!(reply, b"GOT:abc\nGOT:xyz");
    }
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn half_close_after_a_large_write_flushes_everything() -> io::Result<()> {
    const LEN: usize = 512 * 1024;
    let server = serve(config(Mode::Raw))?;
    let mut client = connect(&server)?;
    let mut writer = client.try_clone()?;
    let sent = pattern(LEN);
    let expected = sent.clone();
    let writing = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut received = Vec::new();
    client.read_to_end(&mut received)?;
    writing.join().map_err(|_| io::Error::other("writer panicked"))??;
    assert!(received == expected, "the echo differs from the input");
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
