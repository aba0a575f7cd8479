//! A server run as a child process, so that its CPU time and memory are its
//! own and can be read from `/proc`: an `echo-bench serve` child
//! ([`ServerProcess`]), or any command that serves on the port it is given
//! ([`CommandServer`], `compare --server`).

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sched::{sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, kill, killpg};
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

/// How much of a command's stderr is kept, for the message when it fails.
const STDERR_TAIL: usize = 2048;

/// The process groups of the [`CommandServer`]s running now, for
/// [`stop_commands_on_signal`]: a group of its own does not get the
/// terminal's Ctrl-C.
static GROUPS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// A `compare --server` command running as a child in a process group of
/// its own, serving on a loopback port it was given. Dropping it kills the
/// group.
#[derive(Debug)]
pub struct CommandServer {
    child: Child,
    addr: SocketAddr,
    /// The last [`STDERR_TAIL`] bytes the command wrote to stderr, kept by
    /// `stderr_reader` so that the command never blocks on a full pipe.
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// A loopback port free now: bound at 127.0.0.1:0, read and let go. Another
/// process may take it before the command binds it; the command then fails
/// to listen, and its run with it.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

impl CommandServer {
    /// Runs `argv` (the program, then its arguments, with no shell) with
    /// stdin and stdout closed, in a process group of its own, on `cpu`
    /// when asked (every thread and child it starts inherits it), and waits
    /// up to `ready_within` until 127.0.0.1:`port` accepts a connection.
    /// A command that exits first, or never listens, is killed and named
    /// in the error with the tail of its stderr.
    pub fn start(
        argv: &[String],
        port: u16,
        cpu: Option<usize>,
        ready_within: Duration,
    ) -> anyhow::Result<Self> {
        let (program, args) = argv.split_first().context("an empty command")?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        let child = match cpu {
            // The child inherits this thread's CPU set at fork; the thread
            // gets its own back at once.
            Some(cpu) => {
                let own = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
                crate::procfs::pin_current_thread(cpu).with_context(|| format!("cannot pin to CPU {cpu}"))?;
                let spawned = command.spawn();
                sched_setaffinity(Pid::from_raw(0), &own).map_err(io::Error::from)?;
                spawned
            }
            None => command.spawn(),
        };
        let mut child = child.with_context(|| format!("cannot start {program:?}"))?;
        let group = Pid::from_raw(child.id() as i32);
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(group);

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let tail = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    tail.extend_from_slice(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..excess);
                }
            })
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = CommandServer { child, addr, stderr, stderr_reader };

        let deadline = Instant::now() + ready_within;
        loop {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!(
                    "{program:?} exited before it listened on {addr} ({status}){}",
                    server.stderr_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{program:?} did not listen on {addr} within {}{}",
                    humantime::format_duration(ready_within),
                    server.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id of the command (its group's id too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the command after a run: SIGTERM to its process group, SIGKILL
    /// to the group if it has not exited within `timeout`, and SIGKILL to
    /// any process of the group still there after that. How it exits then
    /// is its business; a command that had already exited fails the run,
    /// whose figures would not be its own.
    pub fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("the server exited during the run ({status}){}", self.stderr_tail());
        }
        let group = self.group();
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = killpg(group, Signal::SIGKILL);
                self.child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.sweep();
        Ok(())
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Kills whatever is left of the group once the command has exited (a
    /// child of a shell that ignored SIGTERM, say) and forgets the group.
    /// The group's id cannot belong to anyone else yet: the kernel does not
    /// hand out an id that a live process still uses as its group's, and
    /// once none does, not before the ids have wrapped around.
    fn sweep(&mut self) {
        let group = self.group();
        let _ = killpg(group, Signal::SIGKILL);
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != group);
        // The pipe closes when the last process holding it is gone; one
        // that left the group (setsid) could hold it for ever.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.stderr_reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.stderr_reader.as_ref().is_some_and(|r| r.is_finished()) {
            let _ = self.stderr_reader.take().map(JoinHandle::join);
        }
    }

    /// `; its stderr ended: ...` with the last lines it wrote, or nothing.
    fn stderr_tail(&mut self) -> String {
        // The command is done with: what is left of it goes, and the reader
        // takes what it wrote last.
        let _ = killpg(self.group(), Signal::SIGKILL);
        let _ = self.child.wait();
        self.sweep();
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text.trim().lines().collect();
        match lines.len() {
            0 => "; it wrote nothing to stderr".to_owned(),
            n => format!("; its stderr ended: {}", lines[n.saturating_sub(5)..].join(" / ")),
        }
    }
}

impl Drop for CommandServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(self.group(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != self.group());
    }
}

impl crate::load::Observed for CommandServer {
    fn pid(&self) -> u32 {
        CommandServer::pid(self)
    }
}

/// On SIGINT, SIGTERM or SIGHUP, kills the process group of every
/// [`CommandServer`] running and exits (130, as a shell reports Ctrl-C):
/// a command in a group of its own would not get the terminal's Ctrl-C
/// and would outlive us, holding its port. (`echo-bench serve` children
/// notice by themselves: they are told to exit with their parent.)
pub fn stop_commands_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("compare-signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            for group in GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = killpg(*group, Signal::SIGKILL);
            }
            eprintln!("echo-bench: stopped by signal {signal}");
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}
