//! Starts the executor threads and hands back the [`Server`] handle.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats, nothing_to_wake};
use smol::{Async, Executor};

use crate::SmolBackend;
use crate::runtime::Smol;

/// What the name of every thread this backend starts begins with, as
/// `ps -T` shows it.
const THREAD_NAME: &str = "echo-smol";

impl Backend for SmolBackend {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        // Makes the socket non-blocking and registers it with async-io's
        // reactor.
        let listener = Async::new(listener)?;
        let local_addr = listener.get_ref().local_addr()?;
        let executor = Arc::new(Executor::new());
        let (stats, signal) = (Arc::new(Stats::default()), Arc::new(ShutdownSignal::default()));

        // The accept loop is the one task that outlives every other; the
        // threads run the executor until it has returned.
        let accepting =
            echo_core::runtime::spawn(Smol(Arc::downgrade(&executor)), listener, config, &stats, &signal);
        let workers = (0..config.threads.max(1)).map(|_| {
            let (executor, accepting) = (Arc::clone(&executor), accepting.clone());
            // `smol::block_on` also drives the reactor while this thread has
            // no task to run, so the executor threads poll the sockets
            // themselves. The last thread out drops the executor, and with
            // it any task left past the drain deadline: its socket is closed
            // and its connection counted before `join` returns.
            move || smol::block_on(executor.run(accepting.all_done()))
        });
        // A thread that cannot start makes `start_threads` trigger shutdown,
        // which ends the accept loop, and the threads already running exit.
        let server =
            Server::start_threads(local_addr, stats, signal, nothing_to_wake(), THREAD_NAME, workers)?;
        tracing::debug!(backend = "smol", addr = %local_addr, threads = config.threads.max(1), "serving");
        Ok(server)
    }
}
