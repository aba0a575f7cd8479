//! Starts the acceptor thread and hands back the [`Server`] handle.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use echo_core::{Server, ServerConfig, ShutdownSignal, Stats};

use crate::{acceptor, shutdown};

/// The name of every thread this backend starts, as `ps -T` shows it (Linux
/// keeps 15 bytes of it).
pub(crate) const THREAD_NAME: &str = "echo-threads";

/// Serves `listener` from a new acceptor thread, which starts a thread per
/// connection.
pub(crate) fn spawn(listener: TcpListener, config: &ServerConfig) -> io::Result<Server> {
    let local_addr = listener.local_addr()?;
    // The acceptor blocks in accept(2); a listener left non-blocking by the
    // caller would make it spin instead.
    listener.set_nonblocking(false)?;
    // A second handle on the same listening socket, for the waker: it shuts
    // the socket down from the caller's thread while the acceptor is blocked
    // in accept on the first handle.
    let wake_handle = listener.try_clone()?;

    let stats = Arc::new(Stats::default());
    let signal = Arc::new(ShutdownSignal::default());
    let acceptor = {
        let (config, stats, signal) = (config.clone(), Arc::clone(&stats), Arc::clone(&signal));
        thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || acceptor::run(listener, config, stats, signal))?
    };
    let wake = shutdown::waker(wake_handle, local_addr, acceptor.thread().clone());
    tracing::debug!(backend = "threads", addr = %local_addr, "serving");
    Ok(Server::new(local_addr, stats, signal, wake, vec![acceptor]))
}
