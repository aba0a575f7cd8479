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
/// returns. A second signal during the drain exits the process at once.
pub fn run(args: &Serve) -> anyhow::Result<()> {
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
