//! Starts the executor threads and hands back the [`Server`] handle.

use std::io;
use std::sync::Arc;

use async_executor::Executor;
use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats, nothing_to_wake};

use crate::AsyncStdBackend;
use crate::runtime::AsyncStd;

/// What the name of every thread this backend starts begins with, as
/// `ps -T` shows it.
const THREAD_NAME: &str = "echo-async-std";

impl Backend for AsyncStdBackend {
    fn name(&self) -> &'static str {
        "async-std"
    }

    fn spawn(&self, listener: std::net::TcpListener, config: &ServerConfig) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        // Registers the socket with async-io's reactor (and makes it
        // non-blocking). async-std's `From` panics if the reactor cannot be
        // set up; that is process-wide, at start, never a peer's doing.
        let listener = async_std::net::TcpListener::from(listener);
        let stats = Arc::new(Stats::default());
        let signal = Arc::new(ShutdownSignal::default());
        let executor = Arc::new(Executor::new());

        // Every thread runs the executor until the accept loop, its one
        // long-lived task, has returned.
        let runtime = AsyncStd(Arc::downgrade(&executor));
        let accepting = echo_core::runtime::spawn(runtime, listener, config, &stats, &signal);
        let threads = config.threads.max(1);
        let workers = (0..threads).map(|_| {
            let executor = Arc::clone(&executor);
            let accepting = accepting.clone();
            // The last thread out drops the executor, and with it any task
            // still left past the drain deadline.
            move || async_std::task::block_on(executor.run(accepting.all_done()))
        });
        // Should a thread not start, `start_threads` triggers shutdown: the
        // accept loop returns and the threads already started exit.
        let server =
            Server::start_threads(local_addr, stats, signal, nothing_to_wake(), THREAD_NAME, workers)?;
        tracing::debug!(backend = "async-std", addr = %local_addr, threads, "serving");
        Ok(server)
    }
}
