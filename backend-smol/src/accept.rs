//! The accept loop: admits connections, spawns a task for each, and on
//! shutdown closes the listener and waits for the tasks.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use echo_core::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats, TaskTracker};
use smol::future::or;
use smol::{Async, Executor, Timer};

use crate::connection;

/// How long past the drain deadline to wait for connection tasks. Each task
/// closes itself at the deadline; this only covers the last wake-ups.
const DEADLINE_SLACK: Duration = Duration::from_millis(200);

/// Accepts on `listener` until shutdown, then waits (until the drain
/// deadline) for every connection task to finish.
pub(crate) async fn run(
    listener: Async<TcpListener>,
    executor: Arc<Executor<'static>>,
    config: Arc<ServerConfig>,
    stats: Arc<Stats>,
    shutdown: Arc<ShutdownSignal>,
) {
    let tracker = TaskTracker::default();
    let mut backoff = AcceptBackoff::default();
    loop {
        // `or` polls its first future first: under a flood of connections
        // accept is always ready, and shutdown must still win. Dropping the
        // losing `accept` is safe: the accept(2) call inside it is made only
        // once the listener is readable and completes within one poll, so
        // no connection is ever taken and then lost.
        let accepted = or(
            async {
                shutdown.triggered().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        let Some(accepted) = accepted else { break };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            // A signal arrived during the call: nothing failed, try again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                // Out of descriptors or memory: the pending connection stays
                // queued and the listener stays readable, so accepting again
                // at once would spin. Sleep instead, still heeding shutdown.
                if let Some(delay) = backoff.failed(&err, &stats) {
                    let stop = or(
                        async {
                            shutdown.triggered().await;
                            true
                        },
                        async {
                            Timer::after(delay).await;
                            false
                        },
                    )
                    .await;
                    if stop {
                        break;
                    }
                }
                continue;
            }
        };
        // Over the connection limit: `stream` is dropped here, closing it.
        let Some(conn) = Connection::admit(peer, &config, &stats) else { continue };
        if let Err(err) = stream.get_ref().set_nodelay(true) {
            // Only latency suffers; the connection is still served.
            tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
        }
        let task =
            connection::serve(stream, conn, config.idle_timeout, Arc::clone(&shutdown), tracker.token());
        executor.spawn(task).detach();
    }
    // Refuse new connections from now on, while the old ones drain.
    drop(listener);
    // Past the deadline, whatever is left is dropped with the executor.
    or(tracker.all_done(), async {
        Timer::after(shutdown.time_left() + DEADLINE_SLACK).await;
    })
    .await;
}
