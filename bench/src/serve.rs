//! `echo-bench serve`: one backend on one address until a signal.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::spec::ServerSpec;

/// The exit status of a server one of whose threads panicked, as for a
/// panic in `main`.
pub const PANIC_EXIT: i32 = 101;

/// Makes a panic in any thread end the whole process: the usual message,
/// one line saying the server stops, and exit status [`PANIC_EXIT`].
///
/// Without it a panicking thread dies alone and leaves a half-dead server:
/// select's scheduler thread gone with the listener still open, so
/// connections queue and are never served; and a runtime that catches a
/// task's panic (tokio does, and its `unhandled_panic` setting is unstable)
/// goes on as if nothing happened. The hook runs in the panicking thread
/// before any unwinding or catching, so it covers every thread and every
/// runtime alike. A server's state after a panic cannot be trusted; a
/// supervisor can restart a process that exits, not one that lingers.
pub fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = thread::current();
        eprintln!(
            "echo-bench: thread '{}' panicked; the server stops (exit {PANIC_EXIT})",
            thread.name().unwrap_or("<unnamed>")
        );
        std::process::exit(PANIC_EXIT);
    }));
}

/// What `echo-bench serve` runs.
#[derive(Clone, Debug)]
pub struct Serve {
    /// The server.
    pub spec: ServerSpec,
    /// Where it listens; port 0 picks a free port, printed at start.
    pub addr: SocketAddr,
    /// On SIGINT/SIGTERM, how long connections may flush before being closed.
    pub drain: Duration,
    /// Pin the server to this CPU.
    pub cpu: Option<usize>,
    /// Drain and exit when the process with this id, which started this
    /// server, dies, so that a server started by `load` or `compare` never
    /// outlives them.
    pub exit_with_parent: Option<i32>,
    /// When the server exits, write its own figures here as JSON (see
    /// [`crate::merge::ServerStats`]).
    pub stats_json: Option<std::path::PathBuf>,
}

/// Serves until SIGINT or SIGTERM, then drains for `args.drain` and
/// returns. A second signal during the drain exits the process at once; a
/// panic in any thread exits it too (see [`exit_on_panic`]).
pub fn run(args: &Serve) -> anyhow::Result<()> {
    exit_on_panic();
    // Register before serving, so a signal that comes early is not lost
    // (and does not kill the process before the server can drain).
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    if let Some(parent) = args.exit_with_parent {
        // SIGTERM when the parent dies drains like any other SIGTERM. A
        // parent that died before this line has handed the process to
        // another: then there is nobody to serve.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
            .context("cannot ask to be told when the parent exits")?;
        anyhow::ensure!(
            nix::unistd::getppid().as_raw() == parent,
            "the process that started this server is gone"
        );
    }
    if let Some(path) = &args.stats_json {
        crate::merge::ServerStats::check_writable(path)?;
    }
    if let Some(cpu) = args.cpu {
        // Before any server thread exists: threads inherit the affinity.
        crate::procfs::pin_current_thread(cpu).with_context(|| format!("cannot pin to CPU {cpu}"))?;
    }
    if let Err(err) = echo_core::backend::raise_descriptor_limit() {
        tracing::warn!(error = %err, "cannot raise the descriptor limit");
    }
    let config = args.spec.config();
    let backend = args.spec.build();
    let listener = echo_core::bind(args.addr)?;
    let server = backend
        .spawn(listener, &config)
        .with_context(|| format!("cannot start the {} backend", backend.name()))?;
    let (server_addr, started) = (server.local_addr(), std::time::SystemTime::now());

    // Scripts read the bound address from this line (with port 0 it is the
    // only way to learn it), so it goes to stdout and is flushed at once.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "listening on {} (backend {}, mode {}, threads {})",
        server.local_addr(),
        backend.name(),
        config.mode,
        config.threads
    )?;
    stdout.flush()?;
    drop(stdout);
    debug_panic_trigger();
    if args.addr.ip().is_unspecified() {
        tracing::warn!(addr = %args.addr, "listening on every interface: reachable from the network");
    }

    let first = signals.forever().next();
    tracing::info!(signal = ?first, drain = ?args.drain, "shutting down");
    let (done_tx, done_rx) = mpsc::channel();
    let drain = args.drain;
    thread::spawn(move || {
        // The counters once the drain is over and every thread has exited,
        // so the last replies and closes are in them.
        let _ = done_tx.send(server.shutdown(drain));
    });
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("echo-bench: second signal, exiting at once");
            std::process::exit(130);
        }
    });
    let stats = done_rx.recv().context("the shutdown thread died")?;
    tracing::info!(?stats, "stopped");
    if let Some(path) = &args.stats_json {
        crate::merge::ServerStats::of_this_process(&args.spec, server_addr, started, &stats)
            .write(path)
            .with_context(|| format!("cannot write the server's figures to {}", path.display()))?;
    }
    Ok(())
}

/// Debug builds only, for the test that a panicking thread ends the server:
/// with `ECHO_BENCH_DEBUG_PANIC` set, a thread started beside the server's
/// own panics once the server is listening (its address printed). Nothing a client sends can make
/// a server thread panic (that is the point), so the test needs this door;
/// release builds do not have it.
fn debug_panic_trigger() {
    if cfg!(debug_assertions) && std::env::var_os("ECHO_BENCH_DEBUG_PANIC").is_some() {
        thread::Builder::new()
            .name("debug-panic".into())
            .spawn(|| panic!("ECHO_BENCH_DEBUG_PANIC is set"))
            .map(drop)
            .unwrap_or_default();
    }
}
