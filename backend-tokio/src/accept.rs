//! The accept loop: admits connections, spawns a task for each, and on
//! shutdown closes the listener and waits for the tasks.

use std::sync::Arc;
use std::time::Duration;

use echo_core::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats, TaskTracker};
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout};

use crate::connection;

/// How long past the drain deadline to wait for connection tasks. Each task
/// closes itself at the deadline; this only covers the last wake-ups.
const DEADLINE_SLACK: Duration = Duration::from_millis(200);

/// Accepts on `listener` until shutdown, then waits (until the drain
/// deadline) for every connection task to finish.
pub(crate) async fn run(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    stats: Arc<Stats>,
    shutdown: Arc<ShutdownSignal>,
) {
    let tracker = TaskTracker::default();
    let mut backoff = AcceptBackoff::default();
    loop {
        // `biased` with shutdown first: under a flood of connections the
        // accept branch is always ready, and shutdown must still win.
        let accepted = tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(err) => {
                // Out of descriptors or memory: the pending connection stays
                // queued and the listener stays readable, so accepting again
                // at once would spin. Sleep instead, still heeding shutdown.
                if let Some(delay) = backoff.failed(&err, &stats) {
                    tokio::select! {
                        biased;
                        () = shutdown.triggered() => break,
                        () = sleep(delay) => {}
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
        tokio::spawn(connection::serve(
            stream,
            conn,
            config.idle_timeout,
            Arc::clone(&shutdown),
            tracker.token(),
        ));
    }
    // Refuse new connections from now on, while the old ones drain.
    drop(listener);
    // Past the deadline, whatever is left is dropped with the runtime.
    let _ = timeout(shutdown.time_left() + DEADLINE_SLACK, tracker.all_done()).await;
}
