//! The `echo-bench` binary as a user runs it: errors, `list`, `serve`,
//! `check` and signals.

mod common;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use common::ServerChild;
use echo_bench::backends::BackendName;
use echo_bench::procfs;

fn echo_bench(args: &[&str]) -> io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(args).output()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unknown_backend_lists_the_known_ones() -> io::Result<()> {
    let out = echo_bench(&["--backend", "nope"])?;
    assert!(!out.status.success());
    let err = stderr(&out);
    for name in BackendName::ALL.map(BackendName::as_str) {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
    Ok(())
}

#[test]
fn port_in_use_names_the_address() -> io::Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let out = echo_bench(&["serve", "--backend", "mio", "--addr", &addr])?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("address {addr} is already in use")), "{err}");
    Ok(())
}

#[test]
fn bad_address_is_refused() -> io::Result<()> {
    let out = echo_bench(&["--addr", "localhost:no"])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--addr"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn list_names_every_backend_once() -> io::Result<()> {
    let out = echo_bench(&["list"])?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<_> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, BackendName::ALL.map(BackendName::as_str));
    assert!(text.contains("discontinued"), "the discontinued engine's line says so");
    Ok(())
}

/// Opens `nc`-style sessions at once and checks the seed's transcript on
/// each, interleaved.
fn seed_sessions(addr: std::net::SocketAddr) -> io::Result<()> {
    let mut clients = (0..3).map(|_| TcpStream::connect(addr)).collect::<io::Result<Vec<_>>>()?;
    for client in &clients {
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
    }
    for word in ["Hello\n", "World\n"] {
        for client in &mut clients {
            client.write_all(word.as_bytes())?;
        }
        for client in &mut clients {
            let mut reply = vec![0; 4 + word.len()];
            client.read_exact(&mut reply)?;
            assert_eq!(reply, format!("GOT:{word}").as_bytes());
        }
    }
    Ok(())
}

#[test]
fn no_subcommand_serves_like_the_seed_and_sigterm_exits_zero() -> io::Result<()> {
    let mut server = ServerChild::start_command(&["--backend", "select"])?;
    seed_sessions(server.addr)?;
    server.signal("TERM")?;
    let status = server.wait_timeout(Duration::from_secs(10))?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[test]
fn check_passes_a_live_server_and_fails_a_broken_one() -> io::Result<()> {
    let server = ServerChild::start(&["--backend", "mio", "--mode", "line"])?;
    let addr = server.addr.to_string();
    let out = echo_bench(&["check", "--addr", &addr, "--mode", "line"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().filter(|l| l.starts_with("PASS ")).count() >= 10, "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");

    // The same server checked in the wrong mode must fail, naming cases.
    let out = echo_bench(&["check", "--addr", &addr, "--mode", "raw", "--case", "seed_transcript"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.starts_with("checking ") && text.contains("FAIL seed_transcript"), "{text}");
    assert!(text.contains("0 passed, 1 failed"), "{text}");
    Ok(())
}

#[test]
fn check_starts_a_backend_itself() -> io::Result<()> {
    let out = echo_bench(&["check", "--backend", "select", "--poller", "poll", "--case", "seed_transcript"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("PASS seed_transcript"), "{text}");
    Ok(())
}

#[test]
fn a_second_signal_exits_at_once() -> io::Result<()> {
    let mut server = ServerChild::start(&["--backend", "mio", "--drain", "30s"])?;
    // A client that never reads, written to until the server stopped
    // reading it, keeps the drain busy for its whole 30 s.
    let silent = [TcpStream::connect(server.addr)?];
    common::write_until_stalled(&silent, 0, 64 << 20)?;
    server.signal("INT")?;
    assert!(server.wait_timeout(Duration::from_millis(300)).is_err(), "still draining after one signal");
    server.signal("INT")?;
    let status = server.wait_timeout(Duration::from_secs(5))?;
    assert!(!status.success(), "the second signal exits at once, non-zero: {status}");
    Ok(())
}

/// The children of process `pid`.
fn children_of(pid: u32) -> io::Result<Vec<u32>> {
    // A process that has just exited has no parent to read.
    Ok(procfs::tree(pid)?
        .into_iter()
        .filter(|&p| procfs::parent_id(p).is_ok_and(|parent| parent == pid))
        .collect())
}

/// How many sockets process `pid` holds (none once it is gone).
fn sockets_of(pid: u32) -> io::Result<usize> {
    let mut sockets = 0;
    // A process that has just exited has no descriptors to list.
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Ok(0) };
    for entry in descriptors {
        if std::fs::read_link(entry?.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    Ok(sockets)
}

#[test]
fn a_server_started_by_load_does_not_outlive_a_killed_load() -> io::Result<()> {
    let mut load = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args([
            "load",
            "--backend",
            "mio",
            "--connections",
            "1",
            "--duration",
            "60s",
            "--warmup",
            "0s",
            "--json",
        ])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    // Running: load's server holds its listener and load's connection.
    let mut server = 0;
    common::wait_until(Duration::from_secs(10), "load to connect to its server", || {
        server = children_of(load.id())?.first().copied().unwrap_or(0);
        Ok(server != 0 && sockets_of(server)? >= 2)
    })?;
    load.kill()?; // SIGKILL: nothing of load's own runs any more
    load.wait()?;
    let exited = common::wait_until(Duration::from_secs(15), "the orphaned server to exit", || {
        // Gone, or a zombie waiting for its new parent to reap it.
        Ok(procfs::state(server).map_or(true, |state| state == 'Z'))
    });
    if exited.is_err() {
        // Or it would run on, holding this test's output open.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    exited
}
