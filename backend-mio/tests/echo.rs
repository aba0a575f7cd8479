//! The mio backend answers, in every mode, with one loop or several.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::{config, connect, pattern, read_got, serve};
use echo_core::{Mode, ServerConfig};

#[test]
fn hello_gets_got_hello() -> io::Result<()> {
    let server = serve(config(Mode::Got))?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    let mut reply = [0; 9];
    client.read_exact(&mut reply)?;
    assert_eq!(&reply, b"GOT:Hello");
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
fn two_loops_serve_clients() -> io::Result<()> {
    many_clients(2)
}

/// 16 MiB written from one thread come back exactly to another.
fn sixteen_mib_come_back_exactly(config: ServerConfig) -> io::Result<()> {
    const LEN: usize = 16 * 1024 * 1024;
    let server = serve(config)?;
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
fn sixteen_mib_come_back_exactly_in_raw_mode() -> io::Result<()> {
    sixteen_mib_come_back_exactly(config(Mode::Raw))
}

/// Watermarks above the per-turn read budget: reading stops for the budget
/// long before the watermark, and must resume without a new event. (The
/// default configuration reaches the budget too, by reading and writing in
/// turns; both must give every byte back.)
#[test]
fn sixteen_mib_come_back_exactly_past_the_read_budget() -> io::Result<()> {
    let mib = 1024 * 1024;
    sixteen_mib_come_back_exactly(ServerConfig {
        high_watermark: 4 * mib,
        low_watermark: 2 * mib,
        ..config(Mode::Raw)
    })
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
    // Data and FIN arriving together is the case where a short read does not
    // mean "drained": repeat it so it is actually hit.
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
