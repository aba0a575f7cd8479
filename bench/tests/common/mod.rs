//! Helpers shared by the echo-bench integration tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An `echo-bench serve` child process, killed if the test ends early.
pub struct ServerChild {
    pub child: Child,
    pub addr: SocketAddr,
    /// Kept open so the child never gets SIGPIPE writing its log line.
    _stdout: BufReader<ChildStdout>,
}

impl ServerChild {
    /// Starts `echo-bench serve --addr 127.0.0.1:0 ARGS...` and reads the
    /// address it bound from its first line.
    #[track_caller]
    pub fn start(args: &[&str]) -> io::Result<Self> {
        Self::start_command(&[&["serve"], args].concat())
    }

    /// Starts `echo-bench ARGS... --addr 127.0.0.1:0` (no implied `serve`).
    #[track_caller]
    pub fn start_command(args: &[&str]) -> io::Result<Self> {
        Self::from_command(
            Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(args).args(["--addr", "127.0.0.1:0"]),
        )
    }

    /// Starts `command`, which must run a server that prints the
    /// `listening on ADDR` line first.
    #[track_caller]
    pub fn from_command(command: &mut Command) -> io::Result<Self> {
        // Quiet unless the person running the tests asks for logs.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "error");
        }
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(ServerChild { child, addr, _stdout: stdout }),
            None => {
                let _ = child.kill();
                Err(io::Error::other(format!("unexpected first line from serve: {line:?}")))
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other("kill failed")) }
    }

    /// Waits for the child to exit, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "server did not exit in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// Descriptor counts and /proc/PID/status figures: `echo_bench::procfs`.

/// Waits for `child` and collects its output, killing it after a minute: a
/// hung run fails its test instead of hanging it.
pub fn finish(mut child: Child) -> io::Result<Output> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            child.kill()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output()
}

/// Polls `condition` every few milliseconds until it holds or `timeout`
/// passes; returns the error `what` on timeout.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `echo-bench serve` arguments that pick one backend variant, as
/// [`echo_bench::every_backend!`] hands it to a suite; the test adds the
/// rest (`--mode`, limits).
pub fn backend_args(
    backend: echo_bench::backends::BackendName,
    poller: echo_bench::backends::Poller,
    threads: usize,
) -> Vec<String> {
    let args =
        ["--backend", backend.as_str(), "--poller", poller.as_str(), "--threads", &threads.to_string()];
    args.map(str::to_owned).to_vec()
}

/// How long a test client waits on any one connect, read or write.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A client connection with [`TIMEOUT`] on every call.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A client with small kernel buffers, set before connecting so the window
/// it advertises is small too: the kernel then absorbs little of the test's
/// traffic, and what piles up is the server's own buffering.
pub fn connect_small_buffers(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(8 * 1024)?;
    socket.set_send_buffer_size(8 * 1024)?;
    socket.connect_timeout(&addr.into(), TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// The byte at `offset` of client `id`'s stream: every client sends its own.
pub fn pattern(id: usize, offset: usize) -> u8 {
    (offset.wrapping_mul(31) ^ id.wrapping_mul(131)) as u8
}

/// Writes each client's pattern without blocking, round-robin, until no
/// client has made progress for 300 ms: the server stopped reading them all.
/// Returns the bytes each wrote.
pub fn write_until_stalled(clients: &[TcpStream], first_id: usize, limit: usize) -> io::Result<Vec<usize>> {
    write_until_stalled_with(clients, limit, |i, offset, buf| {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = pattern(first_id + i, offset + j);
        }
    })
}

/// Writes on every client without blocking, round-robin, until none has
/// made progress for 300 ms or each wrote `limit` bytes; `fill(client,
/// offset, buf)` makes the bytes client `client` sends from `offset` on.
/// Returns the bytes each wrote.
pub fn write_until_stalled_with(
    clients: &[TcpStream],
    limit: usize,
    mut fill: impl FnMut(usize, usize, &mut [u8]),
) -> io::Result<Vec<usize>> {
    let mut sent = vec![0; clients.len()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_progress = Instant::now();
    for client in clients {
        client.set_nonblocking(true)?;
    }
    while last_progress.elapsed() < Duration::from_millis(300) {
        let mut progressed = false;
        for (i, mut client) in clients.iter().enumerate() {
            let n = buf.len().min(limit - sent[i]);
            if n == 0 {
                continue;
            }
            fill(i, sent[i], &mut buf[..n]);
            match client.write(&buf[..n]) {
                Ok(n) => {
                    sent[i] += n;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if progressed {
            last_progress = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for client in clients {
        client.set_nonblocking(false)?;
    }
    Ok(sent)
}
