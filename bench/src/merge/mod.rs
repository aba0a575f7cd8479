//! `echo-bench merge`: the `load --json` reports of loads run at the same
//! time against one server, from one machine or several, added up into one
//! report, and with `--server-stats` the server's own cost beside them.
//!
//! Only what adds up is added: counts (round trips, bytes, errors,
//! unanswered messages, CPU time, polls, connections) are summed, and the
//! latency histograms are merged bucket by bucket, exactly, so the merged
//! percentiles are those of every round trip of every report. Percentiles
//! are never averaged.
//!
//! Rates are the summed counts over the *longest* window. The reports must
//! have windows of the same length within [`WINDOW_TOLERANCE`] (same
//! `--duration`), or they are refused; where their clocks say when each
//! window opened, the merge also says how much the windows overlapped, and
//! warns below [`OVERLAP_WARNING`]: loads that did not run at the same time
//! do not add up to one load.
//!
//! Refused, with one line saying why: a report without a histogram, reports
//! of another mode, message size, pipeline, loop (open or closed) or churn,
//! and a report that loaded a server of its own (`load --backend`), which
//! is not the one server the others loaded.
//!
//! ```text
//! echo-bench merge b.json c.json --server-stats server.json
//! ```

mod server_stats;

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Deserialize;

pub use server_stats::ServerStats;

use crate::load::{ChurnFigures, Errors, GraceFigures, Measured, Report, Text, Totals, histogram};
use crate::procfs::CpuTime;

/// How far the windows of merged reports may differ in length, as a share
/// of the longest.
pub const WINDOW_TOLERANCE: f64 = 0.05;

/// Below this share of the longest window, the merge warns that the
/// windows did not overlap.
pub const OVERLAP_WARNING: f64 = 0.9;

/// What merge reads of one `load --json` report.
#[derive(Clone, Debug, Deserialize)]
pub struct Input {
    addr: String,
    mode: String,
    connections: usize,
    size: usize,
    pipeline: usize,
    rate: Option<f64>,
    client_threads: usize,
    spin: bool,
    duration_s: f64,
    round_trips: u64,
    unanswered: u64,
    slowest_connection: u64,
    fastest_connection: u64,
    errors: Errors,
    client_cpu: CpuIn,
    client_idle_polling_s: f64,
    client_cpu_utilization: f64,
    client_saturated: bool,
    /// Non-null when the load started a server of its own.
    server: Option<serde_json::Value>,
    grace: Option<GraceFigures>,
    latency_histogram_ns: Option<String>,
    totals: Option<Totals>,
    churn: Option<ChurnFigures>,
}

/// A [`CpuTime`] as `load --json` writes it.
#[derive(Clone, Copy, Debug, Deserialize)]
struct CpuIn {
    user: std::time::Duration,
    system: std::time::Duration,
}

impl Input {
    /// Reads a report from `path`.
    pub fn read(path: &Path) -> anyhow::Result<Input> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not the JSON of `echo-bench load --json`", path.display()))
    }
}

/// The merged report: a [`Measured`] like one load's, with what the merge
/// itself knows.
#[derive(Clone, Debug)]
pub struct Merged {
    /// The figures, as one load would give them.
    pub measured: Measured,
    /// The names of the reports merged, in order.
    pub reports: Vec<String>,
    /// The longest window, seconds: the rates are over it.
    pub window_s: f64,
    /// How much the windows overlapped, as a share of the longest, by the
    /// load generators' clocks.
    pub windows_overlap: f64,
    /// The server's own cost, with `--server-stats`.
    pub server: Option<ServerCost>,
}

/// The server's cost over its whole life, against the merged round trips.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerCost {
    /// The file it came from.
    pub file: String,
    /// Always true: the figures cover the server's whole life, from its
    /// start to the end of its drain, and nothing is subtracted.
    pub whole_life: bool,
    /// Server CPU microseconds over its life per merged round trip: an
    /// upper bound of the cost of a round trip, the closer the tighter the
    /// server's life was kept around the loads.
    pub cpu_us_per_round_trip: f64,
    /// With churn: server CPU microseconds per merged connection closed.
    pub cpu_us_per_connection: Option<f64>,
    /// Share of one core the server used over its life.
    pub cpu_utilization: f64,
    /// The bytes the windows sent as a share of those the server received
    /// over its life: how much of its life the windows cover.
    pub window_share_of_bytes_in: f64,
    /// The figures the server wrote.
    pub stats: ServerStats,
}

/// Merges `reports` (name, report): see the module's documentation.
pub fn merge(reports: &[(String, Input)]) -> anyhow::Result<Merged> {
    let Some((first_name, first)) = reports.first() else {
        anyhow::bail!("nothing to merge: name at least one `load --json` report");
    };
    let mut latency: Option<Histogram<u64>> = None;
    let mut connect: Option<Histogram<u64>> = None;
    let longest = reports.iter().map(|(_, r)| r.duration_s).fold(0.0, f64::max);
    for (name, r) in reports {
        let differs = |what: &str, a: String, b: String| -> anyhow::Result<()> {
            anyhow::ensure!(
                a == b,
                "cannot merge {first_name} and {name}: {what} {a} against {b}; only loads of one mode, message \
                 size, pipeline, loop and churn, run at the same time against one server, add up"
            );
            Ok(())
        };
        differs("mode", first.mode.clone(), r.mode.clone())?;
        differs("size", first.size.to_string(), r.size.to_string())?;
        differs("pipeline", first.pipeline.to_string(), r.pipeline.to_string())?;
        let kind = |r: &Input| if r.rate.is_some() { "open loop" } else { "closed loop" }.to_owned();
        differs("loop", kind(first), kind(r))?;
        let churn = |r: &Input| match &r.churn {
            Some(c) => format!("churn {}", c.round_trips_per_connection),
            None => "no churn".to_owned(),
        };
        differs("connections churned", churn(first), churn(r))?;
        anyhow::ensure!(
            longest - r.duration_s <= WINDOW_TOLERANCE * longest,
            "cannot merge {name}: its window is {:.3} s and the longest {longest:.3} s; merge adds up loads of \
             one --duration (within {:.0} %) run at the same time",
            r.duration_s,
            WINDOW_TOLERANCE * 100.0
        );
        anyhow::ensure!(
            r.server.as_ref().is_none_or(serde_json::Value::is_null),
            "cannot merge {name}: it loaded a server of its own (`load --backend`); merge adds up loads of one \
             server (`load --addr`), whose own cost `serve --stats-json` gives"
        );
        let text = r.latency_histogram_ns.as_deref().with_context(|| {
            format!("cannot merge {name}: it has no latency histogram, and percentiles cannot be added up")
        })?;
        add_into(&mut latency, text).with_context(|| format!("{name}: latency_histogram_ns"))?;
        anyhow::ensure!(r.totals.is_some(), "cannot merge {name}: it has no \"totals\" to add up");
        if let Some(c) = &r.churn {
            add_into(&mut connect, &c.connect_histogram_ns)
                .with_context(|| format!("{name}: churn.connect_histogram_ns"))?;
        }
    }
    let latency = latency.expect("one report at least");
    let sum = |f: fn(&Input) -> u64| reports.iter().map(|(_, r)| f(r)).sum::<u64>();
    let totals =
        |f: fn(&Totals) -> u64| reports.iter().filter_map(|(_, r)| r.totals.as_ref()).map(f).sum::<u64>();
    let round_trips = sum(|r| r.round_trips);
    let per_round_trip = |x: f64| if round_trips == 0 { 0.0 } else { x / round_trips as f64 };
    let mut errors = Errors::default();
    let mut client_cpu = CpuTime::default();
    for (_, r) in reports {
        errors.add(&r.errors);
        client_cpu = client_cpu.add(CpuTime { user: r.client_cpu.user, system: r.client_cpu.system });
    }
    let idle: f64 = reports.iter().map(|(_, r)| r.client_idle_polling_s).sum();
    let client_work = (client_cpu.total().as_secs_f64() - idle).max(0.0);
    let client_cpu_utilization = reports.iter().map(|(_, r)| r.client_cpu_utilization).fold(0.0, f64::max);
    let (bytes_out, bytes_in, polls) =
        (totals(|t| t.bytes_out), totals(|t| t.bytes_in), totals(|t| t.client_polls));
    let report = Report {
        addr: distinct(reports.iter().map(|(_, r)| r.addr.as_str())),
        mode: first.mode.clone(),
        connections: reports.iter().map(|(_, r)| r.connections).sum(),
        size: first.size,
        pipeline: first.pipeline,
        rate: first.rate.map(|_| reports.iter().filter_map(|(_, r)| r.rate).sum()),
        client_threads: reports.iter().map(|(_, r)| r.client_threads).sum(),
        spin: reports.iter().any(|(_, r)| r.spin),
        duration_s: longest,
        round_trips,
        unanswered: sum(|r| r.unanswered),
        round_trips_per_s: round_trips as f64 / longest,
        mb_per_s_out: bytes_out as f64 / longest / 1e6,
        mb_per_s_in: bytes_in as f64 / longest / 1e6,
        latency_us: histogram::latency_us(&latency),
        slowest_connection: reports.iter().map(|(_, r)| r.slowest_connection).min().unwrap_or(0),
        fastest_connection: reports.iter().map(|(_, r)| r.fastest_connection).max().unwrap_or(0),
        errors,
        client_cpu,
        client_idle_polling_s: idle,
        client_cpu_us_per_round_trip: per_round_trip(client_work * 1e6),
        client_cpu_utilization,
        client_polls_per_round_trip: per_round_trip(polls as f64),
        client_saturated: reports.iter().any(|(_, r)| r.client_saturated),
        server: None,
        samples: Vec::new(),
    };
    let graces: Vec<&GraceFigures> = reports.iter().filter_map(|(_, r)| r.grace.as_ref()).collect();
    let grace = GraceFigures {
        grace_s: graces.iter().map(|g| g.grace_s).fold(0.0, f64::max),
        answered_in_grace: graces.iter().map(|g| g.answered_in_grace).sum(),
        unsent: graces.iter().map(|g| g.unsent).sum(),
    };
    let starts = reports.iter().filter_map(|(_, r)| r.totals.as_ref()).map(|t| t.window_start_unix_s);
    let ends =
        reports.iter().filter_map(|(_, r)| Some(r.totals.as_ref()?.window_start_unix_s + r.duration_s));
    let (first_start, last_start) = starts.fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let first_end = ends.fold(f64::MAX, f64::min);
    let windows_overlap = ((first_end - last_start) / longest).clamp(0.0, 1.0);
    let totals = Totals {
        bytes_out,
        bytes_in,
        client_polls: polls,
        client_cores: reports.iter().filter_map(|(_, r)| r.totals.as_ref()).map(|t| t.client_cores).sum(),
        window_start_unix_s: first_start,
        host: distinct(reports.iter().filter_map(|(_, r)| Some(r.totals.as_ref()?.host.as_str()))),
    };
    let churn = connect.map(|connect| {
        let closed = reports.iter().filter_map(|(_, r)| r.churn.as_ref()).map(|c| c.connections_closed).sum();
        ChurnFigures {
            round_trips_per_connection: first.churn.as_ref().map_or(0, |c| c.round_trips_per_connection),
            connections_closed: closed,
            connections_per_s: closed as f64 / longest,
            connects: reports.iter().filter_map(|(_, r)| r.churn.as_ref()).map(|c| c.connects).sum(),
            connect_latency_us: histogram::latency_us(&connect),
            connect_histogram_ns: histogram::encode(&connect),
            server_cpu_us_per_connection: None,
        }
    });
    Ok(Merged {
        measured: Measured {
            report,
            grace,
            latency_histogram_ns: histogram::encode(&latency),
            totals,
            churn,
        },
        reports: reports.iter().map(|(name, _)| name.clone()).collect(),
        window_s: longest,
        windows_overlap,
        server: None,
    })
}

/// Adds the histogram `text` encodes into `into` (the first one becomes
/// it). Only histograms of the same precision merge exactly; each keeps its
/// range, and the sum grows to hold both.
fn add_into(into: &mut Option<Histogram<u64>>, text: &str) -> anyhow::Result<()> {
    let h = histogram::decode(text)?;
    match into {
        None => {
            let mut sum = Histogram::new_with_bounds(h.low().max(1), h.high().max(2), h.sigfig())?;
            sum.auto(true);
            sum.add(&h)?;
            *into = Some(sum);
        }
        Some(sum) => {
            anyhow::ensure!(
                sum.sigfig() == h.sigfig() && sum.low() == h.low(),
                "a histogram of {} significant figures from {}, against {} from {}: they would not merge exactly",
                h.sigfig(),
                h.low(),
                sum.sigfig(),
                sum.low()
            );
            sum.add(&h)?;
        }
    }
    Ok(())
}

/// The distinct `names`, in order, joined by ", ".
fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    seen.join(", ")
}

impl Merged {
    /// Adds the server's own figures, from `serve --stats-json`, read from
    /// `file`.
    pub fn with_server(mut self, file: String, stats: ServerStats) -> anyhow::Result<Merged> {
        let report = &self.measured.report;
        anyhow::ensure!(
            stats.mode == report.mode,
            "cannot add {file}: the server answered in mode {} and the loads checked mode {}",
            stats.mode,
            report.mode
        );
        let cpu_us = stats.cpu_s() * 1e6;
        let per = |n: u64| if n == 0 { 0.0 } else { cpu_us / n as f64 };
        let cpu_us_per_connection = self.measured.churn.as_ref().map(|c| per(c.connections_closed));
        if let Some(churn) = &mut self.measured.churn {
            churn.server_cpu_us_per_connection = cpu_us_per_connection;
        }
        let life = stats.lifetime_s();
        self.server = Some(ServerCost {
            file,
            whole_life: true,
            cpu_us_per_round_trip: per(report.round_trips),
            cpu_us_per_connection,
            cpu_utilization: if life > 0.0 { stats.cpu_s() / life } else { 0.0 },
            window_share_of_bytes_in: if stats.bytes_in == 0 {
                0.0
            } else {
                self.measured.totals.bytes_out as f64 / stats.bytes_in as f64
            },
            stats,
        });
        Ok(self)
    }

    /// The JSON of `merge --json`: that of `load --json`, with `"merged"`
    /// (the reports, the window, how much the windows overlapped) and, with
    /// `--server-stats`, `"server_stats"`.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        let mut value = self.measured.to_json()?;
        value["merged"] = serde_json::json!({
            "reports": self.reports,
            "window_s": self.window_s,
            "rates_over": "the longest window",
            "windows_overlap": self.windows_overlap,
        });
        value["server_stats"] = serde_json::to_value(&self.server)?;
        Ok(value)
    }
}

impl std::fmt::Display for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "merged {} load reports ({}): counts summed, latency histograms merged exactly, rates over the \
             longest window ({:.1} s); the client CPU share and saturation below are the busiest client's",
            self.reports.len(),
            self.reports.join(", "),
            self.window_s
        )?;
        if self.windows_overlap < OVERLAP_WARNING {
            writeln!(
                f,
                "  warning: by the load generators' clocks the windows overlapped for only {:.0}% of the longest: \
                 loads not run at the same time do not add up to one (or those machines' clocks differ)",
                self.windows_overlap * 100.0
            )?;
        }
        let server_line = self.server.as_ref().map(|s| {
            let per_connection = match s.cpu_us_per_connection {
                Some(us) => format!(", {us:.2} µs per connection"),
                None => String::new(),
            };
            format!(
                "  server CPU      {:.2} µs per round trip{per_connection} over the server's whole life ({:.2} s user, \
                 {:.2} s system, {:.0}% of a core over {:.1} s; peak RSS {:.1} MiB; from {})\n  \
                 whole life      nothing subtracted: warm-ups, graces, connection set-up and idle time are in it \
                 (the windows sent {:.0}% of the bytes it received), so start the server right before the loads \
                 and stop it right after\n  \
                 server          {} connections accepted, {} refused, {} closed, {} ended by an error",
                s.cpu_us_per_round_trip,
                s.stats.cpu_user_s,
                s.stats.cpu_system_s,
                s.cpu_utilization * 100.0,
                s.stats.lifetime_s(),
                s.stats.peak_rss_kib as f64 / 1024.0,
                s.file,
                s.window_share_of_bytes_in * 100.0,
                s.stats.connections_accepted,
                s.stats.connections_refused,
                s.stats.connections_closed,
                s.stats.connection_errors,
            )
        });
        let text = Text {
            report: &self.measured.report,
            churn: self.measured.churn.as_ref(),
            server_line: Some(server_line.unwrap_or_else(|| {
                "  server CPU      not measured (give the server's `serve --stats-json` file with --server-stats)"
                    .to_owned()
            })),
        };
        write!(f, "{text}{}", self.measured.grace)
    }
}

/// Runs `echo-bench merge`: sums the `load --json` reports in `reports`,
/// adds the server's `serve --stats-json` file `server_stats` if given, and
/// prints the result, as one JSON object with `json`.
pub fn run(
    reports: &[std::path::PathBuf],
    server_stats: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<bool> {
    let reports = reports
        .iter()
        .map(|path| Ok((path.display().to_string(), Input::read(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut merged = merge(&reports)?;
    if let Some(path) = server_stats {
        merged = merged.with_server(path.display().to_string(), ServerStats::read(path)?)?;
    }
    if json {
        println!("{}", merged.to_json()?);
    } else {
        print!("{merged}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A histogram of `count` round trips of `us` microseconds each.
    fn histogram(values: &[(u64, u64)]) -> String {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for &(us, count) in values {
            h.record_n(us * 1000, count).unwrap();
        }
        histogram::encode(&h)
    }

    /// A report as `load --json` writes it, of `round_trips` in a window
    /// of `duration_s`, with latencies `values` (µs, count).
    fn report(round_trips: u64, duration_s: f64, values: &[(u64, u64)]) -> serde_json::Value {
        serde_json::json!({
            "addr": "10.0.0.1:25000", "mode": "got", "connections": 2, "size": 64, "pipeline": 1,
            "rate": null, "client_threads": 1, "spin": false, "duration_s": duration_s,
            "round_trips": round_trips, "unanswered": 2, "round_trips_per_s": round_trips as f64 / duration_s,
            "mb_per_s_out": 0.0, "mb_per_s_in": 0.0,
            "latency_us": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0},
            "slowest_connection": round_trips / 4, "fastest_connection": round_trips * 3 / 4,
            "errors": {"reset": 1, "closed": 0, "broken_pipe": 0, "other": 0},
            "client_cpu": {"user": {"secs": 0, "nanos": 100_000_000}, "system": {"secs": 0, "nanos": 300_000_000}},
            "client_idle_polling_s": 0.0, "client_cpu_us_per_round_trip": 0.0,
            "client_cpu_utilization": round_trips as f64 / 1000.0, "client_polls_per_round_trip": 1.0,
            "client_saturated": false, "server": null,
            "grace": {"grace_s": 2.0, "answered_in_grace": 2, "unsent": 0},
            "latency_histogram_ns": histogram(values),
            "totals": {"bytes_out": round_trips * 64, "bytes_in": round_trips * 68, "client_polls": round_trips,
                       "client_cores": 1, "window_start_unix_s": 1000.0, "host": "b"},
            "churn": null,
        })
    }

    fn input(value: serde_json::Value) -> Input {
        serde_json::from_value(value).unwrap()
    }

    fn merged(values: Vec<serde_json::Value>) -> anyhow::Result<Merged> {
        let inputs: Vec<(String, Input)> =
            values.into_iter().enumerate().map(|(i, v)| (format!("{i}.json"), input(v))).collect();
        merge(&inputs)
    }

    #[test]
    fn counts_add_up_and_histograms_merge_exactly() {
        let a = report(100, 2.0, &[(50, 100), (900, 2)]);
        let b = report(300, 2.0, &[(20, 300), (5000, 2)]);
        let m = merged(vec![a.clone(), b.clone()]).unwrap();
        let r = &m.measured.report;
        assert_eq!(r.round_trips, 400);
        assert_eq!(r.unanswered, 4);
        assert_eq!(r.connections, 4);
        assert_eq!(r.round_trips_per_s, 200.0, "400 round trips over the 2 s window");
        assert_eq!(m.measured.totals.bytes_out, 400 * 64);
        assert!((r.mb_per_s_in - 400.0 * 68.0 / 2.0 / 1e6).abs() < 1e-12);
        assert_eq!((r.slowest_connection, r.fastest_connection), (25, 225));
        assert_eq!(r.errors.reset, 2);
        assert_eq!(r.client_cpu.total(), Duration::from_millis(800));
        assert!((r.client_cpu_us_per_round_trip - 2000.0).abs() < 1e-9, "800 ms over 400 round trips");
        assert_eq!(r.client_cpu_utilization, 0.3, "the busiest client's");
        assert_eq!(m.measured.grace.answered_in_grace, 4);
        assert_eq!(m.windows_overlap, 1.0);
        // Exactly the histogram of all the round trips: 300 at 20 µs, 100
        // at 50, 2 at 900, 2 at 5000.
        let h = histogram::decode(&m.measured.latency_histogram_ns).unwrap();
        let expected = histogram::decode(&histogram(&[(20, 300), (50, 100), (900, 2), (5000, 2)])).unwrap();
        let counts = |h: &Histogram<u64>| {
            h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>()
        };
        assert_eq!(counts(&h), counts(&expected));
        assert_eq!(h.len(), 404);
        assert!((r.latency_us.p50 - 20.0).abs() < 0.1, "{:?}", r.latency_us);
        assert!((r.latency_us.max - 5000.0).abs() < 5.0, "{:?}", r.latency_us);
    }

    #[test]
    fn reports_that_do_not_belong_together_are_refused() {
        let base = || report(100, 2.0, &[(50, 100)]);
        let with = |key: &str, value: serde_json::Value| {
            let mut r = base();
            r[key] = value;
            r
        };
        for (other, why) in [
            (with("mode", "line".into()), "mode got against line"),
            (with("size", 1000.into()), "size 64 against 1000"),
            (with("pipeline", 4.into()), "pipeline 1 against 4"),
            (with("rate", 1000.0.into()), "loop closed loop against open loop"),
            (with("duration_s", 1.0.into()), "its window is 1.000 s and the longest 2.000 s"),
            (with("server", serde_json::json!({"cpu_us_per_round_trip": 1.0})), "a server of its own"),
            (with("latency_histogram_ns", serde_json::Value::Null), "no latency histogram"),
        ] {
            let err = merged(vec![base(), other]).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // Within the tolerance, windows merge, and the rate is over the longest.
        let m = merged(vec![base(), with("duration_s", 1.95.into())]).unwrap();
        assert_eq!(m.measured.report.round_trips_per_s, 100.0);
        assert!(merged(vec![]).is_err());
    }

    /// `report` of a churned load: `closed` connections of 5 round trips,
    /// whose connects took `connect_us`.
    fn churned(round_trips: u64, closed: u64, connect_us: u64) -> serde_json::Value {
        let mut r = report(round_trips, 2.0, &[(50, round_trips)]);
        r["churn"] = serde_json::json!({
            "round_trips_per_connection": 5, "connections_closed": closed,
            "connections_per_s": closed as f64 / 2.0, "connects": closed,
            "connect_latency_us": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0},
            "connect_histogram_ns": histogram(&[(connect_us, closed)]),
            "server_cpu_us_per_connection": null,
        });
        r
    }

    #[test]
    fn churned_reports_add_their_connections_and_connect_latencies() {
        let m = merged(vec![churned(500, 100, 40), churned(1500, 300, 90)]).unwrap();
        let churn = m.measured.churn.as_ref().unwrap();
        assert_eq!((churn.connections_closed, churn.connects), (400, 400));
        assert_eq!(churn.connections_per_s, 200.0);
        assert!((churn.connect_latency_us.p50 - 90.0).abs() < 0.1, "{churn:?}");
        assert!((churn.connect_latency_us.max - 90.0).abs() < 0.1, "{churn:?}");
        assert_eq!(histogram::decode(&churn.connect_histogram_ns).unwrap().len(), 400);
        assert!(m.to_string().contains("400 connections closed (200/s)"), "{m}");
        let err = merged(vec![churned(500, 100, 40), report(100, 2.0, &[(50, 100)])]).unwrap_err();
        assert!(err.to_string().contains("churn 5 against no churn"), "{err}");
    }

    #[test]
    fn windows_that_did_not_overlap_are_told() {
        let mut late = report(100, 2.0, &[(50, 100)]);
        late["totals"]["window_start_unix_s"] = 1001.5.into();
        let m = merged(vec![report(100, 2.0, &[(50, 100)]), late]).unwrap();
        assert!((m.windows_overlap - 0.25).abs() < 1e-9, "{}", m.windows_overlap);
        assert!(m.to_string().contains("overlapped for only 25%"), "{m}");
    }

    #[test]
    fn the_server_cost_is_its_whole_life_over_the_merged_round_trips() {
        let m = merged(vec![report(100, 2.0, &[(50, 100)]), report(300, 2.0, &[(50, 300)])]).unwrap();
        let stats = ServerStats {
            backend: "mio".into(),
            mode: "got".into(),
            threads: 1,
            addr: "0.0.0.0:25000".into(),
            started_unix_s: 990.0,
            stopped_unix_s: 1010.0,
            cpu_user_s: 0.1,
            cpu_system_s: 0.3,
            peak_rss_kib: 4096,
            connections_accepted: 4,
            connections_refused: 0,
            connections_closed: 4,
            connection_errors: 0,
            accept_errors: 0,
            bytes_in: 400 * 64 * 2,
            bytes_out: 400 * 68 * 2,
        };
        let with = m.clone().with_server("s.json".into(), stats.clone()).unwrap();
        let s = with.server.as_ref().unwrap();
        assert!((s.cpu_us_per_round_trip - 1000.0).abs() < 1e-9, "400 ms over 400 round trips");
        assert!((s.cpu_utilization - 0.02).abs() < 1e-12);
        assert!((s.window_share_of_bytes_in - 0.5).abs() < 1e-12);
        let text = with.to_string();
        assert!(text.contains("1000.00 µs per round trip") && text.contains("whole life"), "{text}");
        assert_eq!(with.to_json().unwrap()["server_stats"]["whole_life"], true);
        let other_mode = ServerStats { mode: "raw".into(), ..stats };
        assert!(m.with_server("s.json".into(), other_mode).unwrap_err().to_string().contains("mode raw"));
    }
}
