//! The accept loop of the task-per-connection engines: admits connections,
//! spawns a task for each, and on shutdown closes the listener and waits for
//! the tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Runtime, connection, race};
use crate::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats, TaskTracker};

/// How long past the drain deadline to wait for connection tasks. Each task
/// closes itself at the deadline; this only covers the last wake-ups.
const DEADLINE_SLACK: Duration = Duration::from_millis(200);

/// Accepts on `listener` until shutdown, spawning a connection task on
/// `runtime` for each connection admitted, then waits (until the drain
/// deadline) for every connection task to finish.
///
/// A backend runs this as its one top-level task and stops its threads when
/// it returns; whatever task is left then is dropped with the runtime.
pub async fn serve<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    config: Arc<ServerConfig>,
    stats: Arc<Stats>,
    shutdown: Arc<ShutdownSignal>,
) {
    let tracker = TaskTracker::default();
    let mut backoff = AcceptBackoff::default();
    loop {
        // Shutdown is polled first: under a flood of connections accept is
        // always ready, and shutdown must still win. Dropping a pending
        // accept loses nothing: it only waits for readiness.
        let accepted = race(
            async {
                shutdown.triggered().await;
                None
            },
            async { Some(R::accept(&listener).await) },
        )
        .await;
        let Some(accepted) = accepted else { break };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(err) => {
                // `failed` decides: retry at once, or pause (still heeding
                // shutdown) so that a lasting error never spins.
                let Some(delay) = backoff.failed(&err, &stats) else { continue };
                let stop = race(
                    async {
                        shutdown.triggered().await;
                        true
                    },
                    async {
                        R::sleep_until(Instant::now() + delay).await;
                        false
                    },
                )
                .await;
                if stop {
                    break;
                }
                continue;
            }
        };
        // Over the connection limit: `stream` is dropped here, closing it.
        let Some(conn) = Connection::admit(peer, &config, &stats) else { continue };
        crate::accept::set_nodelay(&stream, peer);
        let token = tracker.token();
        runtime.spawn(connection::serve::<R>(
            stream,
            conn,
            config.idle_timeout,
            Arc::clone(&shutdown),
            token,
        ));
    }
    // Refuse new connections from now on, while the old ones drain.
    drop(listener);
    let deadline = shutdown.deadline().unwrap_or_else(Instant::now) + DEADLINE_SLACK;
    race(tracker.all_done(), R::sleep_until(deadline)).await;
}
