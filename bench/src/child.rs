//! A server run as an `echo-bench serve` child process, so that its CPU time
//! and memory are its own and can be read from `/proc`.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running `echo-bench serve` child. Dropping it kills the child.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// Kept open: the child may still write to stdout.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `exe serve --addr 127.0.0.1:0 ARGS...` and waits for the line
    /// that names the address it bound. The child drains and exits if this
    /// process dies first (strictly: if the calling thread does, so start it
    /// from a thread that outlives it, as the main thread does).
    pub fn start(exe: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .args(["--exit-with-parent".to_owned(), std::process::id().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line).context("reading the server's first line")?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(ServerProcess { child, addr, _stdout: stdout }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the server did not start (args {args:?}); it said {line:?}")
            }
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        kill(Pid::from_raw(self.pid() as i32), signal).map_err(io::Error::from)
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asks the server to stop (SIGTERM) and waits for it; kills it if it
    /// has not exited within `timeout`. Returns its exit status.
    pub fn stop(mut self, timeout: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match self.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => {
                self.child.kill()?;
                Err(io::Error::new(io::ErrorKind::TimedOut, "the server ignored SIGTERM; killed"))
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
