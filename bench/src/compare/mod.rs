//! `echo-bench compare`: every backend under the same loads, side by side.
//!
//! The comparison is a matrix: backends × connections × message sizes ×
//! server threads × pipeline depths, each cell run `--repeat` times. Every
//! run starts a fresh `echo-bench serve` child, so the server's CPU time and
//! peak memory are its own and read from `/proc`, and no run inherits
//! another's heap or sockets. Runs are interleaved across backends and
//! repeats are spread over the whole comparison (see [`Settings::runs`]), so
//! noise on the machine lands on every backend alike; a run that noise
//! disturbed all the same is left out and made again (see [`noise`]).
//!
//! `--server NAME=COMMAND` adds any program as a contender: it takes its
//! turn with the backends, started fresh on a free port for each run (see
//! [`crate::child::CommandServer`]), and its CPU time and memory are those
//! of its whole process tree. The bare servers of `bench/examples/` are
//! meant for it: they show what a backend's own machinery costs against the
//! shortest server on the same engine.
//!
//! The output is a Markdown table of medians with their min–max on stdout
//! and, with `--out DIR`, `results.json` (every run's full report, the
//! medians, the environment) and SVG charts. A failed run is reported on
//! stderr and in results.json, left out of every figure, and makes the
//! command exit non-zero.
//!
//! ```text
//! echo-bench compare --backends select,select-poll,mio --connections 1,50 --pin --out results/
//! echo-bench compare --backends mio --server bare-mio='target/release/examples/bare-mio --addr 127.0.0.1:{port}' \
//!     --baseline bare-mio
//! ```

mod args;
pub mod charts;
mod contender;
pub mod env;
pub mod matrix;
pub mod noise;
mod progress;
pub mod results;
pub mod stats;
pub mod summary;
pub mod table;
pub mod workload;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

pub use args::{BackendChoice, CompareArgs};
pub use contender::{Contender, Entrant, ServerCommand, ServerName};
pub use matrix::{Cell, Settings};
pub use workload::Workload;

use crate::child::{CommandServer, ServerProcess};
use crate::load::{self, Checks, LoadConfig, LoadError, Measured, Observed};
use crate::spec::ServerSpec;
use env::Environment;
use progress::Progress;
use results::{Failure, Results, Run};
use summary::CellSummary;

/// How long a server may drain when a run is over; its clients have
/// closed by then, so it needs next to none.
const DRAIN: &str = "1s";

/// Runs the comparison `settings` describe, writing results.json and the
/// charts into `out` if given; returns whether every run succeeded.
pub fn run(settings: &Settings, out: Option<&Path>) -> anyhow::Result<bool> {
    let settings = settings.clone();
    // Before any run, so that a bad --out costs no time.
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the echo-bench executable")?;
    if !settings.servers.is_empty() {
        crate::child::stop_commands_on_signal().context("cannot handle signals")?;
    }
    let env = Environment::capture();

    let order = settings.runs();
    let mut progress = Progress::new(&settings, order.len());
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &(repeat, cell) in &order {
        run_and_record(&exe, &settings, repeat, cell, &progress, &mut runs, &mut failures);
    }
    rerun_disturbed(&exe, &settings, &mut progress, &mut runs, &mut failures);
    progress.done();

    let medians = summarize(&settings, &runs, &failures);
    let short = medians.iter().filter(|s| s.short_of(settings.repeat)).count();
    if short > 0 {
        eprintln!(
            "compare: {short} cell{} fewer than {} undisturbed runs (the rerun budget ran out, or the \
             cell varies by more than {}% by itself); {} figures come from the runs there are",
            if short == 1 { " has" } else { "s have" },
            settings.repeat,
            settings.tolerance * 100.0,
            if short == 1 { "its" } else { "their" },
        );
    }
    print!("{}", table::render(&settings, &medians));

    let settings_workload = settings.workload;
    let results = Results { env, settings, medians, runs, failures };
    if let Some(dir) = out {
        results.write(&dir.join("results.json"))?;
        let written = charts::write_all(dir, settings_workload, &results.medians)?;
        let names: Vec<String> =
            written.iter().filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned())).collect();
        eprintln!("compare: wrote results.json and {} to {}", names.join(", "), dir.display());
    }
    if results.failures.is_empty() {
        return Ok(true);
    }
    eprintln!(
        "echo-bench: {} of {} runs FAILED and were left out of the figures:",
        results.failures.len(),
        results.failures.len() + results.runs.len()
    );
    for f in &results.failures {
        eprintln!("  {}, run {}: {}", progress::describe(&f.cell), f.repeat + 1, f.error);
    }
    Ok(false)
}

/// Marks the runs that other load on the machine disturbed and runs their
/// cells again, a pass over the cells that lack clean runs at a time, while
/// the budget lasts.
fn rerun_disturbed(
    exe: &Path,
    settings: &Settings,
    progress: &mut Progress,
    runs: &mut Vec<Run>,
    failures: &mut Vec<Failure>,
) {
    let mut budget = settings.reruns;
    loop {
        noise::mark(runs, settings.tolerance);
        let mut again = noise::cells_to_rerun(settings, runs, failures);
        if again.is_empty() || budget == 0 {
            return;
        }
        again.truncate(budget);
        budget -= again.len();
        let disturbed = runs.iter().filter(|r| r.disturbed).count();
        progress.extend(again.len());
        progress.note(&format!(
            "compare: {disturbed} runs so far cost more than {}% above their cell's cheapest \
             (disturbed by other load); running {} cell{} again",
            settings.tolerance * 100.0,
            again.len(),
            if again.len() == 1 { "" } else { "s" }
        ));
        for cell in again {
            let repeat = noise::runs_made(cell, runs, failures);
            run_and_record(exe, settings, repeat, cell, progress, runs, failures);
        }
    }
}

/// Runs repeat `repeat` of `cell` and files its outcome.
fn run_and_record(
    exe: &Path,
    settings: &Settings,
    repeat: usize,
    cell: Cell,
    progress: &Progress,
    runs: &mut Vec<Run>,
    failures: &mut Vec<Failure>,
) {
    progress.start(&cell);
    match run_one(exe, settings, &cell) {
        Ok(measured) => {
            progress.finish(repeat, &cell, Ok(&measured.report));
            runs.push(Run { cell, repeat, report: measured.report, churn: measured.churn, disturbed: false });
        }
        Err(err) => {
            progress.finish(repeat, &cell, Err(&err));
            failures.push(Failure { cell, repeat, error: format!("{err:#}") });
        }
    }
}

/// One run: a fresh server for `cell`, a verified load, the server stopped.
/// Connection errors and a server that exits badly fail the run too: its
/// figures would not be the backend's.
pub fn run_one(exe: &Path, settings: &Settings, cell: &Cell) -> anyhow::Result<Measured> {
    match cell.backend {
        Entrant::Backend(contender) => run_backend(exe, settings, cell, contender),
        Entrant::Server(name) => {
            let server = settings.server(name).with_context(|| format!("no --server named {name:?}"))?;
            run_command(settings, cell, server)
        }
    }
}

/// A run of a backend, as an `echo-bench serve` child.
fn run_backend(
    exe: &Path,
    settings: &Settings,
    cell: &Cell,
    contender: Contender,
) -> anyhow::Result<Measured> {
    let spec = ServerSpec::new(contender.backend)
        .with_poller(contender.poller)
        .with_mode(settings.mode)
        .with_threads(cell.threads);
    let mut serve_args = spec.serve_args();
    serve_args.extend(["--drain".to_owned(), DRAIN.to_owned()]);
    if settings.pinned {
        serve_args.extend(["--cpu".to_owned(), "1".to_owned()]);
    }
    let server = ServerProcess::start(exe, &serve_args).context("the server did not start")?;
    let outcome = measure(settings, cell, server.addr(), &server);
    let stopped = server.stop(Duration::from_secs(10));
    let measured = verified(outcome)?;
    let status = stopped.context("stopping the server")?;
    anyhow::ensure!(status.success(), "the server exited badly after the run: {status}");
    Ok(measured)
}

/// A run of a `--server` command, on a free port, measured as a process
/// tree: its CPU time is that of the command and every process descended
/// from it (see [`crate::procfs::process_cpu_reading`]), its peak memory
/// the sum of theirs (see [`crate::procfs::tree_status_kib`]).
fn run_command(settings: &Settings, cell: &Cell, command: &ServerCommand) -> anyhow::Result<Measured> {
    let port = crate::child::free_port().context("cannot find a free loopback port")?;
    let cpu = settings.pinned.then_some(1);
    let server = CommandServer::start(&command.argv(port), port, cpu, COMMAND_READY)
        .context("the server did not start")?;
    let outcome = measure(settings, cell, server.addr(), &server);
    // Read before the stop: the processes' peaks go with them.
    let tree_peak = crate::procfs::tree_status_kib(server.pid(), "VmHWM").ok();
    let stopped = server.stop(COMMAND_STOP);
    let mut measured = verified(outcome)?;
    stopped?;
    if let Some(figures) = &mut measured.report.server {
        figures.peak_rss_kib = tree_peak;
    }
    Ok(measured)
}

/// How long a `--server` command may take to listen.
const COMMAND_READY: Duration = Duration::from_secs(10);

/// How long a `--server` command may take to exit after SIGTERM before its
/// process group is killed.
const COMMAND_STOP: Duration = Duration::from_secs(5);

/// One run's load of `cell` against `server`, with the settings' churn.
fn measure(
    settings: &Settings,
    cell: &Cell,
    addr: std::net::SocketAddr,
    server: &dyn Observed,
) -> Result<Measured, LoadError> {
    load::run_measured(&load_config(settings, cell, addr), &Checks::default(), settings.churn, Some(server))
}

/// The load of one run of `cell` against the server at `addr`.
fn load_config(settings: &Settings, cell: &Cell, addr: std::net::SocketAddr) -> LoadConfig {
    LoadConfig {
        duration: settings.duration,
        warmup: settings.warmup,
        pipeline: cell.pipeline,
        rate: settings.rate,
        client_threads: settings.client_threads,
        client_cpu: settings.pinned.then_some(0),
        spin: settings.spin,
        ..LoadConfig::new(addr, settings.mode, cell.connections, cell.size)
    }
}

/// The report of a load that verified every reply and met no connection
/// error; anything else fails the run.
fn verified(outcome: Result<Measured, LoadError>) -> anyhow::Result<Measured> {
    let measured = match outcome {
        Ok(measured) => measured,
        Err(LoadError::Mismatch { connection, mismatch }) => {
            anyhow::bail!("wrong reply on connection {connection}: {mismatch}")
        }
        Err(LoadError::Other(err)) => return Err(err.context("the load failed")),
    };
    let e = &measured.report.errors;
    anyhow::ensure!(
        e.total() == 0,
        "{} connection errors ({} reset, {} closed early, {} broken pipe, {} other)",
        e.total(),
        e.reset,
        e.closed,
        e.broken_pipe,
        e.other
    );
    Ok(measured)
}

/// Each cell's medians over its clean runs, in the order of the table.
pub fn summarize(settings: &Settings, runs: &[Run], failures: &[Failure]) -> Vec<CellSummary> {
    settings
        .cells()
        .into_iter()
        .map(|cell| {
            let (disturbed, clean): (Vec<&Run>, Vec<&Run>) =
                runs.iter().filter(|r| r.cell == cell).partition(|r| r.disturbed);
            let failed = failures.iter().filter(|f| f.cell == cell).count();
            CellSummary::new(cell, &clean, failed, disturbed.len())
        })
        .collect()
}
