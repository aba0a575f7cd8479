//! Starts the executor threads and hands back the [`Server`] handle.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use async_executor::Executor;
use async_std::channel;
use echo_core::{Server, ServerConfig, ShutdownSignal, Stats, nothing_to_wake};

use crate::runtime::AsyncStd;

/// The name of every thread this backend starts, as `ps -T` shows it.
const THREAD_NAME: &str = "echo-async-std";

/// Serves `listener` on `config.threads` threads of the server's own.
pub(crate) fn spawn(listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
    let local_addr = listener.local_addr()?;
    // Registers the socket with async-io's reactor (and makes it
    // non-blocking). async-std's `From` panics if the reactor cannot be
    // set up; that is process-wide, at start, never a peer's doing.
    let listener = async_std::net::TcpListener::from(listener);

    let stats = Arc::new(Stats::default());
    let signal = Arc::new(ShutdownSignal::default());
    let wake = nothing_to_wake();
    let executor = Arc::new(Executor::new());

    // Every thread runs the executor until `serving` closes: when the accept
    // task below ends, or on return if a thread could not be started. Threads
    // start first so that in that case no task exists yet that would keep
    // the executor, and with it the listener, alive.
    let (serving, served) = channel::bounded::<()>(1);
    let threads = (0..config.threads.max(1))
        .map(|_| {
            let executor = Arc::clone(&executor);
            let served = served.clone();
            thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
                async_std::task::block_on(executor.run(async move {
                    let _ = served.recv().await;
                }));
                // The last thread out drops the executor, and with it any
                // task still left past the drain deadline.
            })
        })
        .collect::<io::Result<Vec<JoinHandle<()>>>>()?;

    let serve = echo_core::runtime::serve(
        AsyncStd(Arc::clone(&executor)),
        listener,
        Arc::new(config.clone()),
        Arc::clone(&stats),
        Arc::clone(&signal),
    );
    executor
        .spawn(async move {
            serve.await;
            drop(serving);
        })
        .detach();
    tracing::debug!(backend = "async-std", addr = %local_addr, threads = threads.len(), "serving");
    Ok(Server::new(local_addr, stats, signal, wake, threads))
}
