//! The echo server end to end, over loopback, with both pollers.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use backend_select::Poller;
use echo_core::{Mode, ServerConfig};

use common::{TIMEOUT, connect, is_closed_by_server, round_trip, start, wait_for_stats};

#[test]
fn hello_gets_got_hello_with_both_pollers() -> io::Result<()> {
    for poller in Poller::ALL {
        let server = start(poller, &ServerConfig::default())?;
        let mut client = connect(server.local_addr())?;
        round_trip(&mut client, b"Hello", b"GOT:Hello")?;
        round_trip(&mut client, b"again", b"GOT:again")?;
        server.shutdown(Duration::from_secs(1));
    }
    Ok(())
}

#[test]
fn several_clients_are_served_at_once() -> io::Result<()> {
    let config = ServerConfig { mode: Mode::Line, ..ServerConfig::default() };
    for poller in Poller::ALL {
        let server = start(poller, &config)?;
        let mut clients = (0..20).map(|_| connect(server.local_addr())).collect::<io::Result<Vec<_>>>()?;
        // Every client is open before any is answered, and they are answered
        // in the reverse order of connection: one thread serves them all.
        for (i, client) in clients.iter_mut().enumerate().rev() {
            round_trip(client, format!("client {i}\n").as_bytes(), format!("GOT:client {i}\n").as_bytes())?;
        }
        wait_for_stats(&server, "20 connections", |s| s.accepted == 20 && s.active == 20)?;
        drop(clients);
        wait_for_stats(&server, "every connection closed", |s| s.active == 0 && s.closed == 20)?;
        server.shutdown(Duration::from_secs(1));
    }
    Ok(())
}

/// Writes `len` bytes of a pattern from another thread while this one reads
/// them back, so both directions are full at once and the server must carry
/// on after partial writes.
fn raw_round_trip(poller: Poller, len: usize) -> io::Result<()> {
    let config = ServerConfig { mode: Mode::Raw, ..ServerConfig::default() };
    let server = start(poller, &config)?;
    let mut client = connect(server.local_addr())?;
    let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut writer = client.try_clone()?;
    let sent = input.clone();
    let writer = thread::spawn(move || -> io::Result<()> {
        for chunk in sent.chunks(100_000) {
            writer.write_all(chunk)?;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut output = Vec::with_capacity(len);
    client.read_to_end(&mut output)?;
    writer.join().map_err(|_| io::Error::other("writer thread panicked"))??;
    if output != input {
        return Err(io::Error::other(format!("echo differs: {} bytes back of {len}", output.len())));
    }
    let stats = wait_for_stats(&server, "the connection to close", |s| s.closed == 1)?;
    assert_eq!((stats.bytes_in, stats.bytes_out, stats.errors), (len as u64, len as u64, 0));
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn sixteen_mib_come_back_exactly_with_select() -> io::Result<()> {
    raw_round_trip(Poller::Select, 16 << 20)
}

#[test]
fn sixteen_mib_come_back_exactly_with_poll() -> io::Result<()> {
    raw_round_trip(Poller::Poll, 16 << 20)
}

#[test]
fn half_close_flushes_every_reply_then_closes() -> io::Result<()> {
    let config = ServerConfig { mode: Mode::Line, ..ServerConfig::default() };
    let server = start(Poller::Select, &config)?;
    let mut client = connect(server.local_addr())?;
    client.write_all(b"one\ntwo\nunterminated")?;
    client.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    client.read_to_end(&mut reply)?;
    assert_eq!(reply, b"GOT:one\nGOT:two\nGOT:unterminated");
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn a_reset_ends_only_its_own_connection() -> io::Result<()> {
    let config = ServerConfig { mode: Mode::Raw, ..ServerConfig::default() };
    let server = start(Poller::Poll, &config)?;
    let mut bystander = connect(server.local_addr())?;
    round_trip(&mut bystander, b"before", b"before")?;
    {
        let mut rude = connect(server.local_addr())?;
        rude.write_all(&[7; 200_000])?;
        wait_for_stats(&server, "some echo", |s| s.bytes_out > 0)?;
        // Closing with unread echo in the receive buffer makes the kernel
        // send a reset instead of a FIN.
    }
    wait_for_stats(&server, "the reset to be counted", |s| s.errors == 1 && s.active == 1)?;
    round_trip(&mut bystander, b"after", b"after")?;
    let mut fresh = connect(server.local_addr())?;
    round_trip(&mut fresh, b"fresh", b"fresh")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn shutdown_returns_closes_connections_and_stops_accepting() -> io::Result<()> {
    let server = start(Poller::Select, &ServerConfig::default())?;
    let addr = server.local_addr();
    let mut client = connect(addr)?;
    round_trip(&mut client, b"Hello", b"GOT:Hello")?;
    let started = Instant::now();
    // Returns only once the scheduler thread has been joined.
    server.shutdown(Duration::from_secs(2));
    assert!(started.elapsed() < TIMEOUT, "shutdown took {:?}", started.elapsed());
    assert!(is_closed_by_server(&mut client)?, "the connection is still open");
    assert!(TcpStream::connect(addr).is_err(), "the listener still accepts");
    Ok(())
}

#[test]
fn shutdown_closes_a_client_that_never_reads_at_the_deadline() -> io::Result<()> {
    let config = ServerConfig { mode: Mode::Raw, ..ServerConfig::default() };
    let server = start(Poller::Poll, &config)?;
    let client = connect(server.local_addr())?;
    let mut writer = client.try_clone()?;
    writer.set_write_timeout(Some(Duration::from_secs(3)))?;
    // Sends far more than the watermark and the socket buffers hold while
    // never reading: the server ends up with a reply it cannot deliver.
    let writer = thread::spawn(move || {
        let chunk = vec![1; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    // More than the high watermark read and not written: the client's
    // receive buffer is full, so the server has a reply it cannot deliver.
    wait_for_stats(&server, "the server to fall behind", |s| s.bytes_in > s.bytes_out + 64 * 1024)?;
    let started = Instant::now();
    server.shutdown(Duration::from_millis(200));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(3), "shutdown took {took:?}");
    // The server's close has already ended the writer, or this does; the
    // socket may be gone already, so the result says nothing.
    let _ = client.shutdown(Shutdown::Both);
    writer.join().map_err(|_| io::Error::other("writer thread panicked"))
}

#[test]
fn idle_connections_are_closed() -> io::Result<()> {
    let config = ServerConfig { idle_timeout: Some(Duration::from_millis(100)), ..ServerConfig::default() };
    let server = start(Poller::Select, &config)?;
    let mut busy = connect(server.local_addr())?;
    let mut idle = connect(server.local_addr())?;
    // The busy client keeps talking past the idle timeout and stays open.
    for _ in 0..5 {
        round_trip(&mut busy, b"ping", b"GOT:ping")?;
        thread::sleep(Duration::from_millis(40));
    }
    let started = Instant::now();
    assert!(is_closed_by_server(&mut idle)?, "the idle connection got data");
    assert!(started.elapsed() < TIMEOUT);
    round_trip(&mut busy, b"ping", b"GOT:ping")?;
    wait_for_stats(&server, "one close", |s| s.closed == 1 && s.active == 1)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn connections_past_the_limit_are_closed_and_counted() -> io::Result<()> {
    let config = ServerConfig { max_connections: 1, ..ServerConfig::default() };
    let server = start(Poller::Select, &config)?;
    let mut first = connect(server.local_addr())?;
    round_trip(&mut first, b"Hello", b"GOT:Hello")?;
    let mut second = connect(server.local_addr())?;
    assert!(is_closed_by_server(&mut second)?, "the second connection was served");
    let stats = wait_for_stats(&server, "a refusal", |s| s.refused == 1)?;
    assert_eq!(stats.accepted, 1);
    round_trip(&mut first, b"still", b"GOT:still")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
