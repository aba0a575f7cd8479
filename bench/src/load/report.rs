//! The figures of one load run, as text and as JSON.

use std::fmt;
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::LoadConfig;
use super::client::{Shared, ThreadResult};
use crate::procfs::CpuTime;

/// Above this share of a core per client thread, the client, not the server,
/// was probably what limited the run.
pub const CLIENT_SATURATED: f64 = 0.85;

/// Errors seen by the clients, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// The server reset the connection.
    pub reset: u64,
    /// The server closed the connection while replies were due.
    pub closed: u64,
    /// A write failed because the peer was gone.
    pub broken_pipe: u64,
    /// Anything else.
    pub other: u64,
}

impl Errors {
    /// Counts `err` under its kind.
    pub fn record(&mut self, err: &io::Error) {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => self.reset += 1,
            io::ErrorKind::UnexpectedEof => self.closed += 1,
            io::ErrorKind::BrokenPipe => self.broken_pipe += 1,
            _ => self.other += 1,
        }
    }

    /// Every error.
    pub fn total(&self) -> u64 {
        self.reset + self.closed + self.broken_pipe + self.other
    }

    /// Adds another count's errors, kind by kind.
    pub fn add(&mut self, other: &Errors) {
        self.reset += other.reset;
        self.closed += other.closed;
        self.broken_pipe += other.broken_pipe;
        self.other += other.other;
    }
}

/// Round-trip latency percentiles, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest round trip.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The server's figures, when it was a child process of this run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerFigures {
    /// CPU time over the measured window.
    pub cpu: CpuTime,
    /// CPU microseconds per round trip: the figure that separates backends
    /// on a machine whose cores the client and server share.
    pub cpu_us_per_round_trip: f64,
    /// Share of one core used.
    pub cpu_utilization: f64,
    /// Peak resident memory (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Everything one run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The server's address.
    pub addr: String,
    /// The mode replies were checked against.
    pub mode: String,
    /// Connections held.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Open-loop rate asked for; `None` for closed loop.
    pub rate: Option<f64>,
    /// Load-generator threads.
    pub client_threads: usize,
    /// Whether the client busy-polled (`--spin`).
    pub spin: bool,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Round trips completed in the window.
    pub round_trips: u64,
    /// Messages still unanswered when the window closed (in flight, or due
    /// and not yet sent). Those in flight had to be answered within the
    /// grace, and count in the latency with their true latency; those due
    /// and never sent count with their age then, a lower bound, so a server
    /// that stalls shows there.
    pub unanswered: u64,
    /// Round trips per second.
    pub round_trips_per_s: f64,
    /// Request megabytes (10^6) per second, client to server.
    pub mb_per_s_out: f64,
    /// Reply megabytes per second, server to client.
    pub mb_per_s_in: f64,
    /// Round-trip latency; open loop measures from each message's due time.
    pub latency_us: Latency,
    /// Round trips of the connection that completed the fewest (with
    /// churn: of the place, summed over the connections that held it).
    pub slowest_connection: u64,
    /// Round trips of the connection that completed the most.
    pub fastest_connection: u64,
    /// Errors, by kind.
    pub errors: Errors,
    /// The load generator's CPU time in the window, all of it.
    pub client_cpu: CpuTime,
    /// Busy-polling: seconds the client spent in polls that found nothing
    /// to do (0 without `--spin`). Waiting, not work: the client figures
    /// below leave it out, as they leave out a sleeping client's waits.
    pub client_idle_polling_s: f64,
    /// Client CPU microseconds per round trip, idle polling left out.
    pub client_cpu_us_per_round_trip: f64,
    /// Share of the CPU the client could use (one core when pinned,
    /// otherwise one per thread up to the machine's cores), idle polling
    /// left out.
    pub client_cpu_utilization: f64,
    /// Calls to poll per round trip: far below 1 when every wake-up brings
    /// many replies, far above it when a busy-polling client waits.
    pub client_polls_per_round_trip: f64,
    /// Whether the client used most of its cores: then the run measured the
    /// client as much as the server.
    pub client_saturated: bool,
    /// The server's CPU and memory, when it was our child.
    pub server: Option<ServerFigures>,
    /// Samples taken during the run (`soak`); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<super::Sample>,
}

/// What a report carries beyond its figures so that the reports of loads
/// run at the same time from several machines add up exactly (`echo-bench
/// merge`): counts, never rates. In `load --json` under `"totals"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Request bytes sent in the window.
    pub bytes_out: u64,
    /// Reply bytes received in the window.
    pub bytes_in: u64,
    /// Calls to poll in the window.
    pub client_polls: u64,
    /// The cores the client's CPU share is a share of.
    pub client_cores: usize,
    /// When the window opened, seconds since the Unix epoch by the load
    /// generator's clock: merge uses it to see whether the windows of the
    /// loads it adds up overlapped.
    pub window_start_unix_s: f64,
    /// The machine the load generator ran on.
    pub host: String,
}

/// What `load --churn N` measured: connections that lived N round trips
/// each, closed by the client, and replaced at once. In `load --json` under
/// `"churn"` (null without `--churn`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChurnFigures {
    /// Round trips each connection lives.
    pub round_trips_per_connection: u64,
    /// Connection lifetimes completed in the window: N round trips
    /// verified, the client's half-close answered by the server's close.
    pub connections_closed: u64,
    /// `connections_closed` per second of the window.
    pub connections_per_s: f64,
    /// Connections established in the window.
    pub connects: u64,
    /// From the start of a non-blocking connect to the socket being
    /// established (writable), for the connections established in the
    /// window.
    pub connect_latency_us: Latency,
    /// Those connect latencies, nanoseconds, in the form of
    /// [`super::histogram::encode`].
    pub connect_histogram_ns: String,
    /// The server's CPU microseconds per connection closed, when it was
    /// our child (or, in a merge, from its `--stats-json`).
    pub server_cpu_us_per_connection: Option<f64>,
}

/// Everything one run measured, as [`Report::from_results`] and the parts
/// beside the report put it together.
pub(super) struct Parts {
    pub(super) report: Report,
    pub(super) latency_ns: hdrhistogram::Histogram<u64>,
    pub(super) totals: Totals,
    pub(super) churn: Option<ChurnFigures>,
}

impl Report {
    #[cfg(test)]
    pub(super) fn from_results(
        config: &LoadConfig,
        threads: usize,
        results: Vec<ThreadResult>,
        server: Option<(CpuTime, Option<u64>)>,
    ) -> Report {
        Report::parts(config, threads, results, server, None).report
    }

    /// The figures of the threads' `results`; `churn`, the round trips each
    /// connection lived, if they were churned.
    pub(super) fn parts(
        config: &LoadConfig,
        threads: usize,
        results: Vec<ThreadResult>,
        server: Option<(CpuTime, Option<u64>)>,
        churn: Option<u64>,
    ) -> Parts {
        let mut latency = results[0].latency_ns.clone();
        let mut connect = results[0].connect_ns.clone();
        let mut errors = Errors::default();
        let mut per_connection = Vec::new();
        let (mut bytes_out, mut bytes_in) = (0, 0);
        let mut client_cpu = CpuTime::default();
        let (mut polls, mut idle, mut unanswered) = (0, Duration::ZERO, 0);
        let (mut lifetimes, mut connects) = (0, 0);
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                let _ = latency.add(&r.latency_ns);
                let _ = connect.add(&r.connect_ns);
            }
            errors.add(&r.errors);
            per_connection.extend_from_slice(&r.per_connection);
            bytes_out += r.bytes_out;
            bytes_in += r.bytes_in;
            client_cpu = client_cpu.add(r.cpu);
            polls += r.polls;
            idle += r.idle;
            unanswered += r.unanswered;
            lifetimes += r.lifetimes;
            connects += r.connects;
        }
        let secs = config.duration.as_secs_f64();
        let round_trips: u64 = per_connection.iter().sum();
        let per_round_trip = |x: f64| if round_trips == 0 { 0.0 } else { x / round_trips as f64 };
        let per_rt = |cpu: Duration| per_round_trip(cpu.as_secs_f64() * 1e6);
        // A busy-polling thread is never descheduled while it waits, so its
        // idle polls took CPU time as long as they took wall-clock time.
        let client_work = client_cpu.total().saturating_sub(idle);
        // Pinned, every client thread shares one CPU.
        let client_cores =
            if config.client_cpu.is_some() { 1 } else { threads.min(crate::procfs::cpu_count()) };
        let client_cpu_utilization = client_work.as_secs_f64() / secs / client_cores.max(1) as f64;
        let churn = churn.map(|n| ChurnFigures {
            round_trips_per_connection: n,
            connections_closed: lifetimes,
            connections_per_s: lifetimes as f64 / secs,
            connects,
            connect_latency_us: super::histogram::latency_us(&connect),
            connect_histogram_ns: super::histogram::encode(&connect),
            server_cpu_us_per_connection: server
                .filter(|_| lifetimes > 0)
                .map(|(cpu, _)| cpu.total().as_secs_f64() * 1e6 / lifetimes as f64),
        });
        let report = Report {
            addr: config.addr.to_string(),
            mode: config.mode.to_string(),
            connections: config.connections,
            size: config.size,
            pipeline: config.pipeline,
            rate: config.rate,
            client_threads: threads,
            spin: config.spin,
            duration_s: secs,
            round_trips,
            unanswered,
            round_trips_per_s: round_trips as f64 / secs,
            mb_per_s_out: bytes_out as f64 / secs / 1e6,
            mb_per_s_in: bytes_in as f64 / secs / 1e6,
            latency_us: super::histogram::latency_us(&latency),
            slowest_connection: per_connection.iter().copied().min().unwrap_or(0),
            fastest_connection: per_connection.iter().copied().max().unwrap_or(0),
            errors,
            client_cpu,
            client_idle_polling_s: idle.as_secs_f64(),
            client_cpu_us_per_round_trip: per_rt(client_work),
            client_cpu_utilization,
            client_polls_per_round_trip: per_round_trip(polls as f64),
            client_saturated: client_cpu_utilization > CLIENT_SATURATED,
            server: server.map(|(cpu, peak_rss_kib)| ServerFigures {
                cpu,
                cpu_us_per_round_trip: per_rt(cpu.total()),
                cpu_utilization: cpu.total().as_secs_f64() / secs,
                peak_rss_kib,
            }),
            samples: Vec::new(),
        };
        let totals = Totals {
            bytes_out,
            bytes_in,
            client_polls: polls,
            client_cores,
            window_start_unix_s: 0.0,
            host: host_name(),
        };
        Parts { report, latency_ns: latency, totals, churn }
    }
}

/// This machine's name, or "" where the kernel does not say.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// A report as text, with what [`Report`]'s own `Display` leaves out: the
/// churn's figures, and a server line from another source than a child
/// process (`merge --server-stats`).
pub struct Text<'a> {
    /// The report.
    pub report: &'a Report,
    /// Its churn figures, if connections were churned.
    pub churn: Option<&'a ChurnFigures>,
    /// Replaces the server CPU line (which says "not measured" when the
    /// report has no server figures).
    pub server_line: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Text { report: self, churn: None, server_line: None }.fmt(f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (this, churn) = (self.report, self.churn);
        let kind = match this.rate {
            Some(rate) => format!("open loop at {rate:.0}/s, latency from each message's due time"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "load on {} (mode {}): {} connection{}, {} B messages, pipeline {}, {kind}, {} client thread(s), {:.1} s measured",
            this.addr,
            this.mode,
            this.connections,
            if this.connections == 1 { "" } else { "s" },
            this.size,
            this.pipeline,
            this.client_threads,
            this.duration_s
        )?;
        writeln!(
            f,
            "  round trips     {} ({:.0}/s) in the window; {} in flight or due when it closed, in the latency",
            this.round_trips, this.round_trips_per_s, this.unanswered
        )?;
        writeln!(f, "  throughput      {:.2} MB/s out, {:.2} MB/s in", this.mb_per_s_out, this.mb_per_s_in)?;
        let l = &this.latency_us;
        writeln!(
            f,
            "  latency (µs)    p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        // Churned, a place is held by one connection after another.
        let (per, whose) = match churn {
            Some(_) => ("per place     ", ", summed over the connections that took turns in it"),
            None => ("per connection", ""),
        };
        writeln!(
            f,
            "  {per}  slowest {} round trips, fastest {}{whose}",
            this.slowest_connection, this.fastest_connection
        )?;
        if let Some(c) = churn {
            let l = &c.connect_latency_us;
            writeln!(
                f,
                "  churn           {} round trips per connection: {} connections closed ({:.0}/s), {} opened in the window",
                c.round_trips_per_connection, c.connections_closed, c.connections_per_s, c.connects
            )?;
            writeln!(
                f,
                "  connect (µs)    p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                l.p50, l.p90, l.p99, l.p999, l.max
            )?;
        }
        let e = &this.errors;
        if e.total() == 0 {
            writeln!(f, "  errors          none")?;
        } else {
            writeln!(
                f,
                "  errors          {} reset, {} closed early, {} broken pipe, {} other",
                e.reset, e.closed, e.broken_pipe, e.other
            )?;
        }
        write!(
            f,
            "  client CPU      {:.2} µs per round trip ({:.0}% of the CPU it could use, {:.2} polls per round trip",
            this.client_cpu_us_per_round_trip,
            this.client_cpu_utilization * 100.0,
            this.client_polls_per_round_trip
        )?;
        if this.spin {
            write!(f, "; busy-polling, {:.2} s more polling with nothing to do", this.client_idle_polling_s)?;
        }
        writeln!(f, ")")?;
        match (&self.server_line, &this.server) {
            (Some(line), _) => writeln!(f, "{line}")?,
            (None, Some(s)) => {
                write!(
                    f,
                    "  server CPU      {:.2} µs per round trip (user {:.2} s, system {:.2} s, {:.0}% of a core)",
                    s.cpu_us_per_round_trip,
                    s.cpu.user.as_secs_f64(),
                    s.cpu.system.as_secs_f64(),
                    s.cpu_utilization * 100.0
                )?;
                match s.peak_rss_kib {
                    Some(kib) => writeln!(f, ", peak RSS {:.1} MiB", kib as f64 / 1024.0)?,
                    None => writeln!(f)?,
                }
                if let Some(per_connection) = churn.and_then(|c| c.server_cpu_us_per_connection) {
                    writeln!(
                        f,
                        "                  {per_connection:.2} µs per connection (its whole lifetime)"
                    )?;
                }
            }
            (None, None) => {
                writeln!(f, "  server CPU      not measured (the server is not a child of this run)")?
            }
        }
        let held = match churn {
            Some(_) => {
                "every connection held open until the client closed it, then closed by the server with nothing more"
            }
            None => "every connection held open",
        };
        writeln!(f, "  verified        every reply byte in its framing, every message answered, {held}")?;
        if this.client_saturated {
            writeln!(
                f,
                "  warning: the client used {:.0}% of the CPU it could use: this run measured the client as much as the server",
                this.client_cpu_utilization * 100.0
            )?;
        }
        Ok(())
    }
}

/// A progress bar over the whole run on a terminal, or `None`.
pub(super) fn progress_bar(config: &LoadConfig, start: Instant, shared: &Shared) -> Option<ProgressBar> {
    if !config.progress || !io::stderr().is_terminal() {
        return None;
    }
    let total = shared.end.saturating_duration_since(start).as_millis() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} [{bar:40}] {elapsed}/{duration} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

#[cfg(test)]
mod tests {
    use hdrhistogram::Histogram;

    use super::*;

    fn config(client_cpu: Option<usize>, spin: bool) -> LoadConfig {
        LoadConfig {
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            client_threads: 2,
            client_cpu,
            spin,
            ..LoadConfig::new("127.0.0.1:1".parse().unwrap(), echo_core::Mode::Got, 2, 64)
        }
    }

    /// A thread that completed `round_trips` on one connection, recorded as
    /// many latencies of 10 µs plus `unanswered` of 1 s, and used `cpu` of
    /// which `idle` polling.
    fn thread(round_trips: u64, unanswered: u64, cpu: Duration, idle: Duration) -> ThreadResult {
        let mut latency_ns = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        latency_ns.record_n(10_000, round_trips).unwrap();
        latency_ns.record_n(1_000_000_000, unanswered).unwrap();
        ThreadResult {
            connect_ns: latency_ns.clone(),
            lifetimes: 0,
            connects: 0,
            latency_ns,
            per_connection: vec![round_trips],
            bytes_out: 0,
            bytes_in: 0,
            errors: Errors::default(),
            cpu: CpuTime { user: Duration::ZERO, system: cpu },
            polls: round_trips,
            idle,
            unanswered,
            unsent: unanswered,
            answered_in_grace: 0,
            owed_after_grace: 0,
            owing_connections: 0,
            connections: Vec::new(),
            failure: None,
        }
    }

    #[test]
    fn unanswered_messages_count_in_the_latency_but_not_as_round_trips() {
        let results = vec![
            thread(900, 100, Duration::from_millis(500), Duration::ZERO),
            thread(1000, 0, Duration::ZERO, Duration::ZERO),
        ];
        let report = Report::from_results(&config(None, false), 2, results, None);
        assert_eq!(report.round_trips, 1900);
        assert_eq!(report.unanswered, 100);
        assert!(report.latency_us.p99 > 900_000.0, "{:?}", report.latency_us);
        assert!(report.latency_us.p50 < 20.0, "{:?}", report.latency_us);
    }

    #[test]
    fn pinned_client_threads_share_one_core() {
        let busy = || {
            (0..2).map(|_| thread(1000, 0, Duration::from_millis(450), Duration::ZERO)).collect::<Vec<_>>()
        };
        let pinned = Report::from_results(&config(Some(0), false), 2, busy(), None);
        assert!((pinned.client_cpu_utilization - 0.9).abs() < 1e-9, "{}", pinned.client_cpu_utilization);
        assert!(pinned.client_saturated);
        if crate::procfs::cpu_count() >= 2 {
            let free = Report::from_results(&config(None, false), 2, busy(), None);
            assert!((free.client_cpu_utilization - 0.45).abs() < 1e-9, "{}", free.client_cpu_utilization);
            assert!(!free.client_saturated);
        }
    }

    #[test]
    fn idle_polling_is_left_out_of_the_client_figures() {
        let results = vec![thread(1000, 0, Duration::from_millis(1000), Duration::from_millis(600))];
        let report = Report::from_results(&config(Some(0), true), 1, results, None);
        assert!((report.client_idle_polling_s - 0.6).abs() < 1e-9);
        assert!((report.client_cpu_utilization - 0.4).abs() < 1e-9, "{}", report.client_cpu_utilization);
        assert!(
            (report.client_cpu_us_per_round_trip - 400.0).abs() < 1e-6,
            "{}",
            report.client_cpu_us_per_round_trip
        );
        assert_eq!(report.client_cpu.total(), Duration::from_millis(1000), "the raw CPU time stays whole");
    }
}
