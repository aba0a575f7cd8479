//! `echo-bench load`: a load generator that verifies every reply byte while
//! it measures.
//!
//! Closed loop (the default) keeps `pipeline` messages in flight on every
//! connection and sends the next as soon as a reply is complete. Open loop
//! (`--rate`) sends on a fixed schedule and measures each round trip from
//! the time its message was *due*, not when it could finally be sent, so a
//! server stall shows in the percentiles instead of silently slowing the
//! client down (coordinated omission).
//!
//! A run is valid only if the server answered every message, byte for
//! byte, in the framing of its mode, and held every connection open: after
//! the run, the client sends nothing new and waits up to a grace
//! ([`Checks::grace`]) for the replies still owed; a reply still owed
//! then, a connection the server closed, half-closed or reset, or a byte
//! beyond the last reply fails the run ([`LoadError::Mismatch`]) and no
//! figure is reported.
//!
//! With churn (`--churn N`, [`run_measured`]) each connection closes after
//! N round trips, cleanly and checked (see `client`), and a new one takes
//! its place at once: the run measures connection set-up and tear-down as
//! well as round trips.
//!
//! `load --json` ([`Measured::to_json`]) prints the [`Report`]'s fields
//! and beside them `"grace"` ([`GraceFigures`]), `"latency_histogram_ns"`
//! (the latency histogram, nanoseconds, HdrHistogram V2 compressed in
//! base64: see [`histogram`]), `"totals"` ([`Totals`]: bytes, polls,
//! cores, when the window opened, the host) and `"churn"`
//! ([`ChurnFigures`], null without `--churn`): what `echo-bench merge`
//! needs to add up the reports of loads run at the same time exactly.

mod client;
mod closing;
pub mod command;
pub mod histogram;
pub mod pattern;
mod report;
mod sample;
mod schedule;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use echo_core::Mode;

pub use report::{
    CLIENT_SATURATED, ChurnFigures, Errors, Latency, Report, ServerFigures, Text, Totals, host_name,
};
pub use sample::Sample;

use crate::procfs;

/// What one load run does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server to load.
    pub addr: SocketAddr,
    /// The mode the server answers in: replies are checked against it.
    pub mode: Mode,
    /// Connections opened before the run starts and held until it ends.
    pub connections: usize,
    /// Bytes per message (in `line` mode the last is the `\n`).
    pub size: usize,
    /// Time measured, after the warm-up.
    pub duration: Duration,
    /// Time loaded but not measured, so caches, buffers and the CPU's clock
    /// settle first.
    pub warmup: Duration,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Open loop at this many round trips per second in total; `None` is
    /// closed loop.
    pub rate: Option<f64>,
    /// Threads of the load generator.
    pub client_threads: usize,
    /// Pin the load generator's threads to this CPU.
    pub client_cpu: Option<usize>,
    /// Busy-poll: the client threads never sleep waiting for replies, so
    /// the server never has to wake them. At low concurrency, waking a
    /// sleeping client is much of what a round trip costs the server and
    /// takes (see docs/RESULTS.md); spinning leaves it out. The time spent
    /// polling with nothing to do is left out of the client's figures.
    pub spin: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Take a [`Sample`] of the run this often (and print it on stderr), as
    /// `echo-bench soak` does; `None` takes none.
    pub sample_every: Option<Duration>,
}

impl LoadConfig {
    /// `connections` connections sending `size`-byte messages to `addr`,
    /// answered in `mode`; the rest as `echo-bench load`'s defaults have
    /// it: 10 s measured after 2 s of warm-up, closed loop, one message in
    /// flight per connection, one client thread, unpinned, sleeping while it
    /// waits, no progress bar and no samples. Set the rest with struct
    /// update syntax: `LoadConfig { pipeline: 4, ..LoadConfig::new(...) }`.
    pub fn new(addr: SocketAddr, mode: Mode, connections: usize, size: usize) -> LoadConfig {
        LoadConfig {
            addr,
            mode,
            connections,
            size,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            pipeline: 1,
            rate: None,
            client_threads: 1,
            client_cpu: None,
            spin: false,
            progress: false,
            sample_every: None,
        }
    }
}

/// What the server must answer, beyond the mode, and how long it may take
/// after the run: the rest of what the checker needs. Kept apart from
/// [`LoadConfig`] so that a caller with the protocol's defaults need not
/// name them.
#[derive(Clone, Debug)]
pub struct Checks {
    /// After the run, how long to wait for the replies still owed; a
    /// message unanswered then fails the run. The client sends nothing new
    /// in it; replies that complete in it count in the latency (with their
    /// true latency) but not as round trips of the window.
    pub grace: Duration,
    /// The server's `--read-size`: `got`-mode pieces hold 1..=read_size bytes.
    pub read_size: usize,
    /// The server's `--max-line`: longer lines are answered in pieces of
    /// exactly max_line bytes.
    pub max_line: usize,
}

/// The grace after a run when none is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

impl Default for Checks {
    fn default() -> Self {
        Checks {
            grace: DEFAULT_GRACE,
            read_size: echo_core::protocol::DEFAULT_READ_SIZE,
            max_line: echo_core::protocol::DEFAULT_MAX_LINE,
        }
    }
}

/// What happened after the window, in the grace: reported beside the
/// [`Report`] (in `load --json` under `"grace"`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GraceFigures {
    /// The grace allowed, seconds.
    pub grace_s: f64,
    /// Replies that completed in the grace: in the latency figures with
    /// their true latency, not in the round trips or the rates.
    pub answered_in_grace: u64,
    /// Open loop: messages due in the window but never sent, because the
    /// server kept the pipeline full; in the latency with their age at the
    /// end of the window, a lower bound.
    pub unsent: u64,
}

impl std::fmt::Display for GraceFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  grace           {:.1} s: {} replies completed in it (in the latency, not the round trips); {} due but never sent",
            self.grace_s, self.answered_in_grace, self.unsent
        )
    }
}

/// Why a run produced no valid figures.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The reply stream of a connection differed from what the server
    /// should have sent: a wrong, missing or extra byte, a wrong prefix, a
    /// reply still owed after the grace, or the connection closed or reset
    /// by the server.
    #[error("connection {connection}: {mismatch}")]
    Mismatch {
        /// The connection that received it.
        connection: usize,
        /// The first wrong byte, or where the stream went wrong.
        mismatch: pattern::Mismatch,
    },
    /// Anything else: connecting, a client thread failing.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A server whose CPU time and memory the run can read from `/proc`.
pub trait Observed {
    /// The server's process id.
    fn pid(&self) -> u32;
}

impl Observed for crate::child::ServerProcess {
    fn pid(&self) -> u32 {
        crate::child::ServerProcess::pid(self)
    }
}

/// Everything one run measured: the report and what `load --json` carries
/// beside it.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The figures.
    pub report: Report,
    /// What the grace saw.
    pub grace: GraceFigures,
    /// The latency histogram (nanoseconds) the report's percentiles come
    /// from, in the form of [`histogram::encode`]: what lets reports merge
    /// exactly.
    pub latency_histogram_ns: String,
    /// The counts a merge adds up.
    pub totals: Totals,
    /// With `--churn`, its figures.
    pub churn: Option<ChurnFigures>,
}

impl Measured {
    /// The JSON of `load --json`: the report's fields, and beside them
    /// `"grace"`, `"latency_histogram_ns"`, `"totals"` and `"churn"`.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        let mut value = serde_json::to_value(&self.report)?;
        value["grace"] = serde_json::to_value(&self.grace)?;
        value["latency_histogram_ns"] = serde_json::to_value(&self.latency_histogram_ns)?;
        value["totals"] = serde_json::to_value(&self.totals)?;
        value["churn"] = serde_json::to_value(&self.churn)?;
        Ok(value)
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = Text { report: &self.report, churn: self.churn.as_ref(), server_line: None };
        write!(f, "{text}{}", self.grace)
    }
}

/// Runs the load, checking replies as `checks` says; with `churn` = N,
/// each connection closes after N round trips and a new one takes its
/// place at once. Returns everything it measured.
pub fn run_measured(
    config: &LoadConfig,
    checks: &Checks,
    churn: Option<u64>,
    server: Option<&dyn Observed>,
) -> Result<Measured, LoadError> {
    validate(config, checks)?;
    // Zero round trips would be no connection at all: the command line
    // refuses it, and here it means no churn.
    let churn = churn.filter(|&n| n > 0);
    let threads = client_threads(config);
    let mut shares: Vec<Vec<(usize, TcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    // Thousands of connections need as many descriptors: raise the soft
    // limit to the hard one (a failure shows as the connect's EMFILE).
    let _ = echo_core::backend::raise_descriptor_limit();
    // One connect at a time, each waited for: however many connections,
    // the server's listen backlog never holds more than one of ours.
    for id in 0..config.connections {
        let stream = TcpStream::connect_timeout(&config.addr, Duration::from_secs(10))
            .with_context(|| format!("connection {id} to {}", config.addr))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        shares[id % threads].push((id, stream));
    }

    let start = Instant::now();
    let end = start + config.warmup + config.duration;
    let window_start = std::time::SystemTime::now() + config.warmup;
    let shared = Arc::new(client::Shared {
        measure_from: start + config.warmup,
        end,
        grace_end: end + checks.grace,
        abort: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(index, streams)| {
            let config = LoadConfig { client_threads: threads, ..config.clone() };
            let (checks, shared) = (checks.clone(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name(format!("load-{index}"))
                .spawn(move || client::run(&config, &checks, churn, streams, index, &shared))
        })
        .collect::<io::Result<_>>()
        .context("starting client threads")?;

    let bar = report::progress_bar(config, start, &shared);
    let mut sampler =
        config.sample_every.map(|every| sample::Sampler::new(every, start, server.map(|s| s.pid())));
    let mut waiter = Waiter { start, shared: &shared, bar: &bar, sampler: sampler.as_mut() };
    let server_start = waiter.until(shared.measure_from).and_then(|()| server_cpu(server));
    waiter.until(shared.end).context("waiting for the run to end")?;
    let server_end = server_cpu(server);
    let samples = sampler.map(|mut s| s.finish()).unwrap_or_default();
    let peak_rss_kib = server.and_then(|s| procfs::status_kib(s.pid(), "VmHWM").ok());
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        let result = handle.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        results.push(result.context("client thread")?);
    }
    verdict(&mut results, checks)?;
    let grace = GraceFigures {
        grace_s: checks.grace.as_secs_f64(),
        answered_in_grace: results.iter().map(|r| r.answered_in_grace).sum(),
        unsent: results.iter().map(|r| r.unsent).sum(),
    };
    let server = match (server_start, server_end) {
        (Ok(Some(a)), Ok(Some(b))) => Some((b.since(&a), peak_rss_kib)),
        _ => None,
    };
    let parts = Report::parts(config, threads, results, server, churn);
    let mut report = parts.report;
    if report.round_trips == 0 {
        return Err(LoadError::Other(anyhow::anyhow!(
            "no round trip completed in the {} measured ({} messages unanswered then): \
             the server at {} is not answering",
            humantime::format_duration(config.duration),
            report.unanswered,
            config.addr
        )));
    }
    report.samples = samples;
    let window_start_unix_s =
        window_start.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Ok(Measured {
        report,
        grace,
        latency_histogram_ns: histogram::encode(&parts.latency_ns),
        totals: Totals { window_start_unix_s, ..parts.totals },
        churn: parts.churn,
    })
}

/// Whether the threads' results make a valid run: the first failure a
/// thread saw, else a reply still owed after the grace, else a byte the
/// server sent beyond its last reply or a connection it closed.
fn verdict(results: &mut [client::ThreadResult], checks: &Checks) -> Result<(), LoadError> {
    if let Some((connection, mismatch)) = results.iter_mut().find_map(|r| r.failure.take()) {
        return Err(LoadError::Mismatch { connection, mismatch });
    }
    let owed: u64 = results.iter().map(|r| r.owed_after_grace).sum();
    if owed > 0 {
        let owing: u64 = results.iter().map(|r| r.owing_connections).sum();
        let in_grace: u64 = results.iter().map(|r| r.answered_in_grace).sum();
        let first = results
            .iter()
            .flat_map(|r| &r.connections)
            .find(|c| c.checker.verified() < c.sent)
            .expect("a connection owes the replies counted");
        let mismatch = first.checker.failure(
            format!("every reply within the {} grace", humantime::format_duration(checks.grace)),
            format!(
                "{owed} messages still unanswered on {owing} connections ({in_grace} replies completed in the grace)"
            ),
        );
        return Err(LoadError::Mismatch { connection: first.id, mismatch });
    }
    let connections: Vec<&mut client::Closing> =
        results.iter_mut().flat_map(|r| &mut r.connections).collect();
    closing::check(connections, checks.grace)
}

/// The client threads a run of `config` uses.
fn client_threads(config: &LoadConfig) -> usize {
    config.client_threads.clamp(1, config.connections.max(1))
}

/// Whether server and client can be pinned apart, as `--pin` asks (they
/// need two CPUs), warning when they cannot or when a busy-polling client
/// (`--spin`) would compete with the server.
pub fn pinning(pin: bool, spin: bool) -> bool {
    let pinned = pin && procfs::cpu_count() >= 2;
    if pin && !pinned {
        tracing::warn!("--pin needs two CPUs; running unpinned");
    }
    if spin && !pinned {
        tracing::warn!("--spin without --pin: the busy-polling client competes with the server for CPU");
    }
    pinned
}

/// Checks `config` and `checks` before anything starts: `load` and `soak`
/// call it before they start a server.
pub fn validate(config: &LoadConfig, checks: &Checks) -> anyhow::Result<()> {
    let threads = client_threads(config);
    anyhow::ensure!(config.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(config.size > 0, "--size must be at least 1 byte");
    anyhow::ensure!(
        config.size <= pattern::MAX_SIZE,
        "--size {} is more than the largest message the load generator holds ({} bytes, 64 MiB)",
        config.size,
        pattern::MAX_SIZE
    );
    anyhow::ensure!(
        config.pipeline < pattern::PERIOD,
        "--pipeline {} must be below {}: deeper, two messages in flight could look alike",
        config.pipeline,
        pattern::PERIOD
    );
    anyhow::ensure!(!config.duration.is_zero(), "--duration must be more than zero");
    anyhow::ensure!(!checks.grace.is_zero(), "--grace must be more than zero");
    if let Some(rate) = config.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number");
        anyhow::ensure!(
            rate / threads as f64 <= MAX_RATE_PER_THREAD,
            "--rate {rate} is more than {MAX_RATE_PER_THREAD} round trips/s per client thread, which no schedule can keep"
        );
    }
    anyhow::ensure!(
        !(config.spin && config.client_cpu.is_some() && threads > 1),
        "--spin with --pin needs --client-threads 1: pinned client threads share one CPU, and a busy-polling \
         thread would only take it from the others"
    );
    Ok(())
}

/// The most round trips per second one client thread is asked to schedule:
/// far beyond what one can send, and small enough that the interval between
/// two sends is never zero.
const MAX_RATE_PER_THREAD: f64 = 10_000_000.0;

/// What the main thread does while the client threads run: sleep, tick
/// the progress bar, take samples.
struct Waiter<'a> {
    start: Instant,
    shared: &'a client::Shared,
    bar: &'a Option<indicatif::ProgressBar>,
    sampler: Option<&'a mut sample::Sampler>,
}

impl Waiter<'_> {
    /// Returns at `when`, or early if a client thread aborted the run.
    fn until(&mut self, when: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= when || self.shared.abort.load(Relaxed) {
                return Ok(());
            }
            if let Some(bar) = self.bar {
                bar.set_position(now.saturating_duration_since(self.start).as_millis() as u64);
                bar.set_message(format!("{} round trips", self.shared.progress.load(Relaxed)));
            }
            let mut next = when.min(now + Duration::from_millis(100));
            if let Some(sampler) = self.sampler.as_deref_mut() {
                next = next.min(sampler.poll(now, self.shared)?);
            }
            std::thread::sleep(next.saturating_duration_since(now));
        }
    }
}

fn server_cpu(server: Option<&dyn Observed>) -> io::Result<Option<procfs::ProcessCpu>> {
    server.map(|s| procfs::process_cpu_reading(s.pid())).transpose()
}
