//! Starts the executor threads and hands back the [`Server`] handle.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use echo_core::{Server, ServerConfig, ShutdownSignal, Stats, nothing_to_wake};
use smol::{Async, Executor, channel};

use crate::runtime::Smol;

/// The name of every thread this backend starts, as `ps -T` shows it.
const THREAD_NAME: &str = "echo-smol";

/// Serves `listener` on `config.threads` threads of the server's own.
pub(crate) fn spawn(listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
    let local_addr = listener.local_addr()?;
    // Makes the socket non-blocking and registers it with async-io's reactor.
    let listener = Async::new(listener)?;

    let stats = Arc::new(Stats::default());
    let signal = Arc::new(ShutdownSignal::default());
    let wake = nothing_to_wake();
    let executor = Arc::new(Executor::new());

    // Every thread runs the executor until `serving` closes, which happens
    // when the accept task below ends (or here, if a thread cannot be
    // started: the threads already started then see it closed and exit).
    // Threads start first, so that a failure leaves no task behind that
    // would keep the executor, and with it the listener, alive.
    let (serving, served) = channel::bounded::<()>(1);
    let threads = (0..config.threads.max(1))
        .map(|_| {
            let executor = Arc::clone(&executor);
            let served = served.clone();
            thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
                // `smol::block_on` also drives the reactor while this thread
                // has no task to run, so the executor threads poll the
                // sockets themselves.
                smol::block_on(executor.run(async move {
                    let _ = served.recv().await;
                }));
                // The last thread out drops the executor, and with it any
                // task still left past the drain deadline: its socket is
                // closed and its connection counted before `join` returns.
            })
        })
        .collect::<io::Result<Vec<JoinHandle<()>>>>()?;

    let serve = echo_core::runtime::serve(
        Smol(Arc::clone(&executor)),
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
    tracing::debug!(backend = "smol", addr = %local_addr, threads = threads.len(), "serving");
    Ok(Server::new(local_addr, stats, signal, wake, threads))
}
