//! The fault suite: what every backend must survive, each case bounded in
//! time and traffic, with real figures asserted. The server under test is an
//! `echo-bench serve` child, so its memory, descriptors and CPU time are its
//! own and are read from /proc; the macro at the bottom expands every case
//! for every backend (`cargo test --test faults mio::` runs one backend).

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ServerChild, TIMEOUT, connect, connect_small_buffers, pattern, wait_until, write_until_stalled,
};
use echo_bench::procfs::{self, fd_count, status_kib};
use socket2::SockRef;

/// One round trip in raw mode on a fresh connection.
fn round_trip(addr: SocketAddr, message: &[u8]) -> io::Result<()> {
    let mut client = connect(addr)?;
    client.write_all(message)?;
    let mut reply = vec![0; message.len()];
    client.read_exact(&mut reply)?;
    if reply != message {
        return Err(io::Error::other("round trip: the reply differs"));
    }
    Ok(())
}

/// Reads `len` bytes and checks them against `client`'s pattern.
fn read_pattern(client: &mut TcpStream, id: usize, len: usize) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    let mut got = 0;
    while got < len {
        let n = client.read(&mut buf[..(len - got).min(64 * 1024)])?;
        if n == 0 {
            return Err(io::Error::other(format!("client {id}: EOF after {got} of {len} bytes")));
        }
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern(id, got + i)) {
            return Err(io::Error::other(format!("client {id}: wrong byte at {}", got + i)));
        }
        got += n;
    }
    Ok(())
}

/// Behaviour 1: Clients that write without reading cost the server at most its output
/// watermark plus a read buffer each; others are served meanwhile; when the
/// silent clients read, they get every byte, in order.
fn silent_readers(server_args: &[&str]) -> io::Result<()> {
    // The kernel's own socket buffers absorb a few MiB per connection before
    // the server's buffering matters, so each client offers more than that.
    const CLIENTS: usize = 32;
    const LIMIT: usize = 8 << 20;
    let server = ServerChild::start(&[server_args, &["--mode", "raw"]].concat())?;
    let pid = server.pid();
    round_trip(server.addr, b"warm up")?;
    let rss_before = status_kib(pid, "VmRSS")?;

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect_small_buffers(server.addr)?);
    }
    let sent = write_until_stalled(&clients, 0, LIMIT)?;
    let rss_after = status_kib(pid, "VmRSS")?;
    round_trip(server.addr, b"others are still served")?;

    let total: usize = sent.iter().sum();
    let growth_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "{server_args:?}: {CLIENTS} silent clients wrote {} MiB; server RSS grew {growth_kib} KiB",
        total >> 20
    );
    // Per client: the output buffer (the 64 KiB watermark plus one read's
    // reply, in a Vec that may have doubled to 256 KiB), plus, for the
    // completion-based backend, its own 64 KiB read buffer and 64 KiB send
    // copy, and allocator slack: 512 KiB. A server that kept reading
    // would hold everything it was sent: 8 MiB per client, 16 times more.
    assert!(growth_kib < (CLIENTS as u64) * 512, "server RSS grew {growth_kib} KiB");
    assert!(sent.iter().all(|&s| s < LIMIT), "some client was never stopped: {sent:?}");

    for (id, (client, len)) in clients.iter_mut().zip(&sent).enumerate() {
        read_pattern(client, id, *len)?;
    }
    Ok(())
}

/// Behaviour 2: A client writes megabytes, shuts its write side, and only then reads:
/// every reply arrives, then a clean EOF (a FIN, not a reset).
fn half_close_with_megabytes_pending(server_args: &[&str]) -> io::Result<()> {
    const LEN: usize = 4 << 20;
    let server = ServerChild::start(&[server_args, &["--mode", "raw"]].concat())?;
    let client = connect(server.addr)?;
    let writer = {
        let mut client = client.try_clone()?;
        thread::spawn(move || -> io::Result<()> {
            let data: Vec<u8> = (0..LEN).map(|i| pattern(7, i)).collect();
            client.write_all(&data)?;
            client.shutdown(std::net::Shutdown::Write)
        })
    };
    // Read only once the writer is stuck on the server's watermark or done.
    // The probe waits with a short read timeout, not with O_NONBLOCK: that
    // flag belongs to the open file, which `try_clone` shares, so it would
    // make the writer's `write_all` non-blocking too, and it would then fail
    // with WouldBlock partway, never shutting its side down. (SO_RCVTIMEO
    // affects only reads, which the writer does not do.)
    let mut probe = [0u8; 1];
    client.set_read_timeout(Some(Duration::from_millis(5)))?;
    wait_until(TIMEOUT, "the writer to finish or stall", || {
        Ok(writer.is_finished() || client.peek(&mut probe).is_ok())
    })?;
    client.set_read_timeout(Some(TIMEOUT))?;
    let mut client = client;
    read_pattern(&mut client, 7, LEN)?;
    writer.join().map_err(|_| io::Error::other("writer panicked"))??;
    let n = client.read(&mut probe)?; // a reset would be an error here
    assert_eq!(n, 0, "a clean EOF after the last reply");
    Ok(())
}

/// Behaviour 3: Peers that reset mid-reply or close without reading close their own
/// connection only; the descriptors come back; the server keeps serving.
fn resets_release_descriptors(server_args: &[&str]) -> io::Result<()> {
    let server = ServerChild::start(&[server_args, &["--mode", "raw"]].concat())?;
    let pid = server.pid();
    round_trip(server.addr, b"first")?;
    let baseline = fd_count(pid)?;
    let keeper = connect(server.addr)?;
    let data = vec![b'r'; 1 << 20];
    for i in 0..20 {
        let mut client = connect(server.addr)?;
        client.set_nonblocking(true)?;
        let _ = client.write(&data);
        if i % 2 == 0 {
            // Reset: SO_LINGER 0 turns close into an RST.
            SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
        }
        drop(client);
    }
    let mut keeper = keeper;
    keeper.write_all(b"still here")?;
    let mut reply = [0u8; 10];
    keeper.read_exact(&mut reply)?;
    assert_eq!(&reply, b"still here");
    drop(keeper);
    wait_until(TIMEOUT, "descriptors back to the baseline", || Ok(fd_count(pid)? <= baseline))?;
    round_trip(server.addr, b"after the resets")?;
    Ok(())
}

/// Behaviour 4: Out of descriptors: the server stops accepting, backs off without
/// spinning, serves the connections it has, and accepts again within about
/// a second once descriptors are free.
fn descriptor_exhaustion(server_args: &[&str]) -> io::Result<()> {
    // `ulimit -n` caps soft and hard limits, so the server cannot raise it.
    let args = [server_args, &["--mode", "raw", "--max-connections", "10000"]].concat().join(" ");
    let script =
        format!("ulimit -n 64 && exec {} serve --addr 127.0.0.1:0 {args}", env!("CARGO_BIN_EXE_echo-bench"));
    let mut server =
        ServerChild::from_command(Command::new("sh").args(["-c", &script]).stdin(Stdio::null()))?;
    let pid = server.pid();
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(connect(server.addr)?);
    }
    // Wait until the server holds all it can: 64 descriptors in use.
    wait_until(TIMEOUT, "the server to run out of descriptors", || Ok(fd_count(pid)? >= 63))?;
    let cpu_before = procfs::process_cpu(pid)?.total();
    let wall = Instant::now();
    thread::sleep(Duration::from_millis(1000)); // measuring CPU over a second of exhaustion
    let cpu = procfs::process_cpu(pid)?.total() - cpu_before;
    let share = cpu.as_secs_f64() / wall.elapsed().as_secs_f64();
    eprintln!("{server_args:?}: CPU during exhaustion {:.1}% of a core", share * 100.0);
    assert!(share < 0.10, "the server spins while out of descriptors: {:.0}% CPU", share * 100.0);

    // An accepted connection is still served.
    let first = &mut clients[0];
    first.write_all(b"served")?;
    let mut reply = [0u8; 6];
    first.read_exact(&mut reply)?;
    assert_eq!(&reply, b"served");

    // Free descriptors: close the first 60 clients (every accepted one and
    // a few queued), so the server has room for the 40 still queued, which
    // must now be accepted and served.
    clients.drain(..60);
    let started = Instant::now();
    for client in clients.iter_mut() {
        client.write_all(b"late")?;
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply)?;
        assert_eq!(&reply, b"late");
    }
    eprintln!("{server_args:?}: recovered in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "recovery took {:?}", started.elapsed());
    drop(clients);
    server.signal("TERM")?;
    assert!(server.wait_timeout(TIMEOUT)?.success());
    Ok(())
}

/// Behaviour 5: Past `--max-connections`, new connections are closed at once; the
/// admitted ones are not disturbed.
fn connection_limit(server_args: &[&str]) -> io::Result<()> {
    let server = ServerChild::start(&[server_args, &["--mode", "raw", "--max-connections", "5"]].concat())?;
    let mut admitted = Vec::new();
    for _ in 0..5 {
        let mut client = connect(server.addr)?;
        client.write_all(b"in")?;
        let mut reply = [0u8; 2];
        client.read_exact(&mut reply)?;
        admitted.push(client);
    }
    for _ in 0..3 {
        let mut refused = connect(server.addr)?;
        let _ = refused.write_all(b"out");
        let mut buf = [0u8; 8];
        match refused.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("a connection past the limit was served: {other:?}"),
        }
    }
    for client in &mut admitted {
        client.write_all(b"ok")?;
        let mut reply = [0u8; 2];
        client.read_exact(&mut reply)?;
        assert_eq!(&reply, b"ok");
    }
    Ok(())
}

/// Behaviour 6: `--idle-timeout` closes a silent connection and leaves a talking one.
fn idle_timeout(server_args: &[&str]) -> io::Result<()> {
    let server = ServerChild::start(&[server_args, &["--mode", "raw", "--idle-timeout", "300ms"]].concat())?;
    let mut idle = connect(server.addr)?;
    let mut busy = connect(server.addr)?;
    let opened = Instant::now();
    let stop = Arc::new(AtomicU64::new(0));
    let talker = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || -> io::Result<u64> {
            let mut rounds = 0;
            while stop.load(Relaxed) == 0 {
                busy.write_all(b"ping")?;
                let mut reply = [0u8; 4];
                busy.read_exact(&mut reply)?;
                rounds += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Ok(rounds)
        })
    };
    let mut buf = [0u8; 1];
    let n = idle.read(&mut buf)?;
    let closed_after = opened.elapsed();
    assert_eq!(n, 0, "the idle connection is closed");
    assert!(closed_after >= Duration::from_millis(250), "closed too early: {closed_after:?}");
    // Keep the busy client talking past two more timeouts.
    thread::sleep(Duration::from_millis(700));
    stop.store(1, Relaxed);
    let rounds = talker.join().map_err(|_| io::Error::other("talker panicked"))??;
    assert!(rounds >= 10, "the busy connection was cut after {rounds} round trips");
    Ok(())
}

/// Behaviour 7: SIGTERM: new connections refused at once, replies already read are
/// delivered, exit 0; a client that never reads is cut at the drain deadline.
fn graceful_shutdown(server_args: &[&str]) -> io::Result<()> {
    let mut server = ServerChild::start(&[server_args, &["--mode", "raw", "--drain", "1s"]].concat())?;
    let addr = server.addr;
    let mut reader = connect(addr)?;
    reader.write_all(b"answer me")?;
    let mut reply = [0u8; 9];
    reader.read_exact(&mut reply)?;
    let silent = [connect(addr)?];
    write_until_stalled(&silent, 3, 64 << 20)?;

    let signalled = Instant::now();
    server.signal("TERM")?;
    wait_until(TIMEOUT, "new connections to be refused", || Ok(TcpStream::connect(addr).is_err()))?;
    let refused_after = signalled.elapsed();
    let status = server.wait_timeout(TIMEOUT)?;
    let exited_after = signalled.elapsed();
    eprintln!("{server_args:?}: refusing after {refused_after:?}, exited after {exited_after:?}");
    assert!(status.success(), "exit status {status}");
    assert!(exited_after >= Duration::from_millis(900), "the drain was cut short: {exited_after:?}");
    assert!(exited_after < Duration::from_secs(3), "the drain overran: {exited_after:?}");
    let mut buf = [0u8; 16];
    assert_eq!(reader.read(&mut buf)?, 0, "the idle reader gets a clean EOF");
    Ok(())
}

/// Behaviour 9: A line far over `--max-line` is answered in pieces with memory bounded.
fn huge_line_bounded(server_args: &[&str]) -> io::Result<()> {
    const LEN: usize = 32 << 20;
    let server = ServerChild::start(&[server_args, &["--mode", "line", "--max-line", "65536"]].concat())?;
    let rss_before = status_kib(server.pid(), "VmRSS")?;
    let client = connect(server.addr)?;
    let writer = {
        let mut client = client.try_clone()?;
        thread::spawn(move || -> io::Result<()> {
            let chunk = vec![b'z'; 1 << 20];
            for _ in 0..LEN >> 20 {
                client.write_all(&chunk)?;
            }
            client.write_all(b"\n")
        })
    };
    let pieces = LEN / 65536;
    let expected = LEN + 4 * (pieces + 1) + 1;
    let mut client = client;
    let mut buf = vec![0; 1 << 20];
    let mut got = 0;
    while got < expected {
        let n = client.read(&mut buf)?;
        assert_ne!(n, 0, "EOF after {got} of {expected} bytes");
        got += n;
    }
    writer.join().map_err(|_| io::Error::other("writer panicked"))??;
    let growth = status_kib(server.pid(), "VmHWM")?.saturating_sub(rss_before);
    eprintln!("{server_args:?}: a {} MiB line cost {growth} KiB", LEN >> 20);
    assert!(growth < 8 * 1024, "a long line cost {growth} KiB");
    Ok(())
}

/// Every fault case for one backend variant, at one thread: the cases
/// are heavy, and what they guard does not depend on the thread count.
macro_rules! fault_suite {
    ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
        mod $variant {
            use super::*;

            /// Runs `case` against this variant's server.
            fn run(case: fn(&[&str]) -> io::Result<()>) -> io::Result<()> {
                let args = common::backend_args($backend, $poller, $threads);
                case(&args.iter().map(String::as_str).collect::<Vec<_>>())
            }

            #[test]
            fn silent_readers() -> io::Result<()> {
                run(super::silent_readers)
            }
            #[test]
            fn half_close_with_megabytes_pending() -> io::Result<()> {
                run(super::half_close_with_megabytes_pending)
            }
            #[test]
            fn resets_release_descriptors() -> io::Result<()> {
                run(super::resets_release_descriptors)
            }
            #[test]
            fn descriptor_exhaustion() -> io::Result<()> {
                run(super::descriptor_exhaustion)
            }
            #[test]
            fn connection_limit() -> io::Result<()> {
                run(super::connection_limit)
            }
            #[test]
            fn idle_timeout() -> io::Result<()> {
                run(super::idle_timeout)
            }
            #[test]
            fn graceful_shutdown() -> io::Result<()> {
                run(super::graceful_shutdown)
            }
            #[test]
            fn huge_line_bounded() -> io::Result<()> {
                run(super::huge_line_bounded)
            }
        }
    };
}

echo_bench::every_backend!(one_thread fault_suite);
