//! The seed's generator scheduler over select(2), ported to Rust: one thread,
//! a deque of ready tasks, maps of tasks parked on descriptors, and a
//! readiness call when nothing is ready.
//!
//! Tasks are `async fn`s, which the compiler turns into resumable state
//! machines just as Python turns a function with `yield` into a generator.
//! A tiny hand-written executor (no runtime crate) polls them, and awaiting
//! `readable(fd)` is the seed's `yield 'recv', sock`. Hold the two side by
//! side:
//!
//! | seed (`server.py`) | this crate |
//! | --- | --- |
//! | `tasks = deque()` | `Scheduler::tasks: VecDeque<Task>` (`scheduler.rs`) |
//! | `recv_wait = {}`, `send_wait = {}` | `Scheduler::recv_wait`, `send_wait`: `HashMap<RawFd, _>` |
//! | `def run():` | `Scheduler::run` |
//! | `select(recv_wait, send_wait, [])` | `Scheduler::wait_for_readiness`: select(2) or poll(2) (`sys.rs`) |
//! | `tâche.send(None)` | `task.as_mut().poll(cx)` |
//! | `yield 'recv', sock` | `handle.readable(fd, until).await` |
//! | `yield 'send', sock` | `handle.writable(fd, until).await` |
//! | `except StopIteration` | `Poll::Ready(())` |
//! | `def tcp_server(address, handler):` | `tasks::tcp_server` |
//! | `tasks.append(handler(client, addr))` | `handle.spawn(echo_handler(...))` |
//! | `def echo_handler(client, address):` | `tasks::echo_handler`, driving `echo_core::Connection` |
//!
//! What the port adds, and the seed gets wrong: a reply is written to its
//! last byte across partial writes; a handler with a reply pending also
//! waits to read (`recv_or_send_wait`), so a peer that sends before it
//! reads cannot deadlock; pending output is bounded by watermarks; a failed
//! connection ends only its own task; with select(2) a descriptor of 1024
//! or more is refused and counted instead of crashing the server, and
//! [`Poller::Poll`] lifts that limit; accept errors back off; idle timeout,
//! connection limit and a draining shutdown.
//!
//! What it does not do: use more than one thread (`ServerConfig::threads`
//! is ignored), or run on anything but Unix.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use backend_select::{Poller, SelectBackend};
//! use echo_core::{Backend, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = echo_core::bind("127.0.0.1:0".parse()?)?;
//! let server = SelectBackend { poller: Poller::Poll }.spawn(listener, &ServerConfig::default())?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.set_read_timeout(Some(Duration::from_secs(5)))?;
//! client.write_all(b"Hello")?;
//! let mut reply = [0; 9];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"GOT:Hello");
//!
//! server.shutdown(Duration::from_secs(1));
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]

mod poller;
mod scheduler;
#[allow(unsafe_code)]
mod sys;
mod tasks;

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats};

pub use poller::{Poller, UnknownPoller};

/// The seed's scheduler as an [`echo_core::Backend`]: one thread serves
/// every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectBackend {
    /// The readiness call the scheduler blocks in.
    pub poller: Poller,
}

impl Backend for SelectBackend {
    fn name(&self) -> &'static str {
        "select"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        // The scheduler must never block anywhere but in its readiness call.
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let wake = Arc::new(sys::WakePipe::new()?);
        if self.poller == Poller::Select {
            for fd in [listener.as_raw_fd(), wake.fd()] {
                if !sys::fits_select(fd) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("descriptor {fd} is too large for select(2); use the poll poller"),
                    ));
                }
            }
        }
        let stats = Arc::new(Stats::default());
        let signal = Arc::new(ShutdownSignal::default());
        let thread = std::thread::Builder::new().name("echo-select".into()).spawn({
            let (config, stats, signal, wake) =
                (config.clone(), Arc::clone(&stats), Arc::clone(&signal), Arc::clone(&wake));
            let poller = self.poller;
            move || tasks::serve(listener, config, stats, signal, wake, poller)
        })?;
        Ok(Server::new(local_addr, stats, signal, Box::new(move || wake.wake()), vec![thread]))
    }
}
