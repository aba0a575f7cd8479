//! The accept loop: admits connections, spawns a task for each, and on
//! shutdown closes the listener and waits for the tasks.

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use async_std::future::timeout;
use async_std::net::TcpListener;
use async_std::task::sleep;
use echo_core::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats, TaskTracker};
use futures_lite::future::or;

use crate::connection;

/// How long past the drain deadline to wait for connection tasks. Each task
/// closes itself at the deadline; this only covers the last wake-ups.
const DEADLINE_SLACK: Duration = Duration::from_millis(200);

/// Accepts on `listener` until shutdown, spawning connection tasks on
/// `executor`, then waits (until the drain deadline) for them to finish.
pub(crate) async fn run(
    listener: TcpListener,
    executor: Arc<Executor<'static>>,
    config: Arc<ServerConfig>,
    stats: Arc<Stats>,
    shutdown: Arc<ShutdownSignal>,
) {
    let tracker = TaskTracker::default();
    let mut backoff = AcceptBackoff::default();
    loop {
        // `or` polls shutdown first: under a flood of connections `accept`
        // is always ready, and shutdown must still win. Dropping a pending
        // `accept` loses nothing: it only waits for readiness.
        let accepted = or(
            async {
                shutdown.triggered().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(accepted)) => {
                backoff.succeeded();
                accepted
            }
            Some(Err(err)) => {
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
                            sleep(delay).await;
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
        if let Err(err) = stream.set_nodelay(true) {
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
    let _ = timeout(shutdown.time_left() + DEADLINE_SLACK, tracker.all_done()).await;
}
