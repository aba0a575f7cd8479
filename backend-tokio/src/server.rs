//! Builds the runtime, starts the server thread and hands back the
//! [`Server`] handle.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use echo_core::{Backend, Server, ServerConfig, ShutdownSignal, Stats, nothing_to_wake};
use tokio::runtime::{Builder, Runtime};

use crate::TokioBackend;
use crate::runtime::Tokio;

/// What the name of every thread this backend starts begins with, as
/// `ps -T` shows it.
const THREAD_NAME: &str = "echo-tokio";

/// The least time given to the runtime's workers to exit after the accept
/// loop returned. By then every task has ended or been given up on, so the
/// workers only have to notice; the bound is for a task stuck in a poll.
const WORKER_EXIT: Duration = Duration::from_millis(500);

impl Backend for TokioBackend {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
        let runtime = build_runtime(config.threads)?;
        let local_addr = listener.local_addr()?;
        // tokio needs a non-blocking socket, registered with this runtime's
        // reactor, which `register` does from inside the runtime's context.
        listener.set_nonblocking(true)?;
        let listener = {
            let _context = runtime.enter();
            crate::runtime::register(listener)?
        };

        let stats = Arc::new(Stats::default());
        let signal = Arc::new(ShutdownSignal::default());
        let serve = echo_core::runtime::serve(Tokio, listener, config, &stats, &signal);
        let deadline_signal = Arc::clone(&signal);
        let server_thread = move || {
            runtime.block_on(serve);
            // Drop the runtime here, on its own thread, and wait for its
            // workers so that `Server::shutdown` returns only once they have
            // exited.
            runtime.shutdown_timeout(deadline_signal.time_left().max(WORKER_EXIT));
        };
        let server = Server::start_threads(
            local_addr,
            stats,
            signal,
            nothing_to_wake(),
            THREAD_NAME,
            [server_thread],
        )?;
        tracing::debug!(backend = "tokio", addr = %local_addr, threads = config.threads, "serving");
        Ok(server)
    }
}

/// One thread: the current-thread runtime, driven by the server thread. More:
/// the multi-thread runtime with that many workers; the server thread then
/// runs only the accept loop.
fn build_runtime(threads: usize) -> io::Result<Runtime> {
    let mut builder = if threads <= 1 {
        Builder::new_current_thread()
    } else {
        let mut builder = Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_io().enable_time().thread_name(THREAD_NAME).build()
}
