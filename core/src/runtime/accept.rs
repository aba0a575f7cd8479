//! The accept loop of the task-per-connection engines: admits connections,
//! spawns a task for each, and on shutdown closes the listener and waits for
//! the tasks.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Runtime, connection, race};
use crate::{AcceptBackoff, Connection, ServerConfig, ShutdownSignal, Stats, TaskTracker};

/// How long past the drain deadline to wait for connection tasks. Each task
/// closes itself at the deadline; this only covers the last wake-ups.
const DEADLINE_SLACK: Duration = Duration::from_millis(200);

/// The accept loop of one server: accepts on `listener` until `shutdown`,
/// spawning a connection task on `runtime` for each connection admitted,
/// then waits (until the drain deadline) for every connection task to
/// finish.
///
/// A backend runs this as its one top-level task (or has [`spawn`] do it)
/// and stops its threads when it returns; whatever task is left then is
/// dropped with the runtime.
pub fn serve<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    config: &ServerConfig,
    stats: &Arc<Stats>,
    shutdown: &Arc<ShutdownSignal>,
) -> impl Future<Output = ()> + Send + 'static {
    accept_loop(runtime, listener, Arc::new(config.clone()), Arc::clone(stats), Arc::clone(shutdown))
}

/// Spawns [`serve`] on `runtime` itself. The threads that run the runtime's
/// tasks run until the returned tracker's
/// [`all_done`](TaskTracker::all_done) resolves, which is once the accept
/// loop has returned.
pub fn spawn<R: Runtime + Clone>(
    runtime: R,
    listener: R::Listener,
    config: &ServerConfig,
    stats: &Arc<Stats>,
    shutdown: &Arc<ShutdownSignal>,
) -> TaskTracker {
    let accepting = TaskTracker::default();
    let token = accepting.token();
    let serve = serve(runtime.clone(), listener, config, stats, shutdown);
    runtime.spawn(async move {
        serve.await;
        drop(token);
    });
    accepting
}

async fn accept_loop<R: Runtime>(
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
