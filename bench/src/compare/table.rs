//! The Markdown table `echo-bench compare` prints.

use std::fmt::Write;

use super::matrix::{Cell, Settings};
use super::stats::Spread;
use super::summary::CellSummary;
use super::workload::Figure;

/// One load parameter of a cell, read for its column.
type Param = fn(&Cell) -> usize;

/// The table: one line describing what every run shared, then a row per
/// cell with the median and (min–max) of each figure, then footnotes for
/// the rows that need them.
pub fn render(settings: &Settings, summaries: &[CellSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", preamble(settings, summaries));

    // Only the parameters that vary get a column; the rest are in the preamble.
    let varies = |f: fn(&Cell) -> usize| summaries.iter().any(|s| f(&s.cell) != f(&summaries[0].cell));
    let mut params: Vec<(&str, Param)> = vec![("connections", |c| c.connections)];
    if varies(|c| c.size) {
        params.push(("size (B)", |c| c.size));
    }
    if varies(|c| c.threads) {
        params.push(("threads", |c| c.threads));
    }
    if varies(|c| c.pipeline) {
        params.push(("pipeline", |c| c.pipeline));
    }
    // Which figures: the workload decides (see `Workload::figures`).
    let shown = settings.workload.figures();
    let mut figures: Vec<&str> = shown.iter().map(|f| f.header()).collect();
    let ratio_header = settings.baseline.as_ref().map(|b| format!("server CPU × {b}"));
    if let Some(header) = &ratio_header {
        figures.push(header);
    }

    let header: Vec<&str> =
        ["backend"].into_iter().chain(params.iter().map(|p| p.0)).chain(figures.iter().copied()).collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> =
        header.iter().enumerate().map(|(i, _)| if i == 0 { "---" } else { "---:" }).collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));

    for s in summaries {
        let mut name = s.cell.backend.to_string();
        if s.client_saturated {
            name.push('*');
        }
        if s.failed > 0 {
            name.push('†');
        }
        if s.short_of(settings.repeat) {
            name.push('‡');
        }
        if s.not_possible.is_some() {
            name.push('§');
        }
        let mut row = vec![name];
        row.extend(params.iter().map(|(_, f)| f(&s.cell).to_string()));
        if s.not_possible.is_some() {
            row.extend(figures.iter().map(|_| "not possible".to_owned()));
        } else if s.runs == 0 {
            row.extend(figures.iter().map(|_| "failed".to_owned()));
        } else {
            for figure in shown {
                let format: fn(f64) -> String = match figure {
                    f if f.whole() => whole,
                    Figure::PeakRss => one_decimal,
                    _ => short,
                };
                row.push(cell(figure.of(s), format));
            }
            if let Some(baseline) = &settings.baseline {
                row.push(ratio(s, baseline, summaries));
            }
        }
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }

    let notes = footnotes(summaries, settings.repeat);
    if !notes.is_empty() {
        let _ = writeln!(out, "\n{notes}");
    }
    out
}

fn preamble(settings: &Settings, summaries: &[CellSummary]) -> String {
    let mut fixed = Vec::new();
    let first = summaries.first().map(|s| s.cell);
    let same = |f: fn(&Cell) -> usize| first.is_some_and(|c| summaries.iter().all(|s| f(&s.cell) == f(&c)));
    if let Some(c) = first {
        if same(|c| c.size) {
            fixed.push(format!("{} B messages", c.size));
        }
        if same(|c| c.threads) {
            fixed.push(format!("{} server thread{}", c.threads, if c.threads == 1 { "" } else { "s" }));
        }
        if same(|c| c.pipeline) {
            fixed.push(format!("pipeline {}", c.pipeline));
        }
    }
    let load = match settings.rate {
        Some(rate) => format!("open loop at {rate:.0} round trips/s (latency from each message's due time)"),
        None => "closed loop".to_owned(),
    };
    let pinning = if settings.pinned { "server on CPU 1, client on CPU 0" } else { "not pinned" };
    let spinning = if settings.spin {
        ", the client busy-polling (`--spin`: the servers never wake it; its idle polls are left out of its CPU)"
    } else {
        ""
    };
    let churn = match settings.churn {
        Some(n) => format!(
            ", each connection closed and replaced after {n} round trip{}",
            if n == 1 { "" } else { "s" }
        ),
        None => String::new(),
    };
    let mut text = format!("Workload {}: mode {}, {load}{churn}", settings.workload.as_str(), settings.mode);
    for f in fixed {
        let _ = write!(text, ", {f}");
    }
    let _ = write!(
        text,
        ", {} client thread{}, {} measured after {} warm-up, {pinning}{spinning}. \
         Each figure: median (min–max) of {} run{} per cell, each against a fresh server process.",
        settings.client_threads,
        if settings.client_threads == 1 { "" } else { "s" },
        humantime::format_duration(settings.duration),
        humantime::format_duration(settings.warmup),
        settings.repeat,
        if settings.repeat == 1 { "" } else { "s" },
    );
    if !settings.servers.is_empty() {
        let names: Vec<&str> = settings.servers.iter().map(|s| s.name.as_str()).collect();
        let _ = write!(
            text,
            " {} {} a `--server` command run as written (its threads, mode and limits are its own); its \
             CPU is that of its whole process tree, its peak RSS the sum of its processes' peaks.",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are each" },
        );
    }
    let disturbed: usize = summaries.iter().map(|s| s.disturbed).sum();
    if disturbed > 0 {
        let _ = write!(
            text,
            " {disturbed} run{} cost more than {}% above the cheapest run of {} cell (server and client CPU \
             per round trip together), were taken as disturbed by other load on the machine and were left \
             out and made again (as is a server reading under half its cell's median: a failed reading, \
             never the cheapest); results.json keeps them.",
            if disturbed == 1 { "" } else { "s" },
            settings.tolerance * 100.0,
            if disturbed == 1 { "its" } else { "their" },
        );
    }
    text
}

fn footnotes(summaries: &[CellSummary], repeat: usize) -> String {
    let mut notes = String::new();
    if summaries.iter().any(|s| s.client_saturated) {
        let _ = writeln!(
            notes,
            "`*` The load generator was saturated (it used most of the CPU it could use) in at least one \
             run: the client, not only the server, limited that row, and the server's CPU per round trip \
             there is an upper bound (with time to spare, a server wakes more often for fewer replies \
             each)."
        );
    }
    let failed: Vec<String> = summaries
        .iter()
        .filter(|s| s.failed > 0)
        .map(|s| {
            format!(
                "{} at {} ({} of {})",
                s.cell.backend,
                connections(s.cell.connections),
                s.failed,
                s.failed + s.runs + s.disturbed
            )
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            notes,
            "`†` Runs FAILED and left out of the figures (the errors are on stderr and in results.json): {}.",
            failed.join(", ")
        );
    }
    let short: Vec<String> = summaries
        .iter()
        .filter(|s| s.short_of(repeat))
        .map(|s| {
            format!("{} at {} ({} of {repeat})", s.cell.backend, connections(s.cell.connections), s.runs)
        })
        .collect();
    if !short.is_empty() {
        let _ = writeln!(
            notes,
            "`‡` Fewer undisturbed runs than asked for (the rerun budget ran out, or the cell varies by more \
             than the tolerance by itself): {}.",
            short.join(", ")
        );
    }
    let impossible: Vec<String> = summaries
        .iter()
        .filter_map(|s| {
            Some(format!("{} at {} ({})", s.cell.backend, connections(s.cell.connections), s.not_possible?))
        })
        .collect();
    if !impossible.is_empty() {
        let _ = writeln!(notes, "`§` Not possible, so not run: {}.", impossible.join(", "));
    }
    notes
}

/// `s`'s median server CPU per round trip over that of `baseline` at the
/// same load, as `1.14×`; `–` where either is missing.
fn ratio(s: &CellSummary, baseline: &str, summaries: &[CellSummary]) -> String {
    let same_load = |b: &&CellSummary| {
        let (x, y) = (&b.cell, &s.cell);
        b.cell.backend.as_str() == baseline
            && (x.connections, x.size, x.pipeline) == (y.connections, y.size, y.pipeline)
            && (x.threads == y.threads || !x.backend.has_threads())
    };
    let base = summaries.iter().find(same_load).and_then(|b| b.server_cpu_us_per_round_trip);
    match (s.server_cpu_us_per_round_trip, base) {
        (Some(own), Some(base)) if base.median > 0.0 => format!("{:.2}×", own.median / base.median),
        _ => "–".to_owned(),
    }
}

/// "1 connection", "50 connections".
fn connections(count: usize) -> String {
    if count == 1 { "1 connection".to_owned() } else { format!("{count} connections") }
}

/// `median (min–max)`, or the median alone when all are equal; `–` when
/// nothing was measured.
fn cell(spread: Option<Spread>, format: fn(f64) -> String) -> String {
    match spread {
        None => "–".to_owned(),
        Some(s) if s.min == s.max => format(s.median),
        Some(s) => format!("{} ({}–{})", format(s.median), format(s.min), format(s.max)),
    }
}

fn whole(v: f64) -> String {
    format!("{v:.0}")
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

/// Three significant figures or so: 1234, 123, 12.3, 1.23.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::BackendName;
    use crate::compare::{Contender, Entrant};
    use backend_select::Poller;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            workload: crate::compare::Workload::Ping,
            churn: None,
            backends: Contender::all(),
            servers: Vec::new(),
            connections: vec![1, 50],
            sizes: vec![64],
            threads: vec![1],
            pipeline: vec![1],
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            repeat: 3,
            tolerance: 0.05,
            reruns: 6,
            mode: echo_core::Mode::Got,
            rate: None,
            client_threads: 1,
            pinned: true,
            spin: false,
            baseline: None,
        }
    }

    fn summary(backend: Contender, connections: usize, runs: usize, failed: usize) -> CellSummary {
        summary_with(backend, connections, runs, failed, 0)
    }

    fn summary_with(
        backend: Contender,
        connections: usize,
        runs: usize,
        failed: usize,
        disturbed: usize,
    ) -> CellSummary {
        let spread = |median, min, max| Some(Spread { median, min, max });
        CellSummary {
            cell: Cell { backend: Entrant::Backend(backend), connections, size: 64, threads: 1, pipeline: 1 },
            runs,
            failed,
            disturbed,
            client_saturated: connections > 1,
            round_trips_per_s: spread(45_000.4, 44_000.0, 46_000.0),
            latency_p50_us: spread(21.04, 20.0, 22.5),
            latency_p99_us: spread(150.0, 150.0, 150.0),
            server_cpu_us_per_round_trip: spread(12.345, 12.0, 13.0),
            client_cpu_us_per_round_trip: None,
            server_peak_rss_kib: spread(2048.0, 2048.0, 3072.0),
            not_possible: None,
            mb_per_s_out: None,
            mb_per_s_in: None,
            server_cpu_us_per_mb: None,
            connections_per_s: None,
            server_cpu_us_per_connection: None,
        }
    }

    #[test]
    fn rows_show_median_spread_and_marks() {
        let select = Contender { backend: BackendName::Select, poller: Poller::Poll };
        let mio = Contender { backend: BackendName::Mio, poller: Poller::Select };
        let table =
            render(&settings(), &[summary(select, 1, 3, 0), summary(mio, 50, 2, 1), summary(mio, 1, 0, 3)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with(
                "Workload ping: mode got, closed loop, 64 B messages, 1 server thread, pipeline 1"
            )
        );
        assert!(lines[0].contains("median (min–max) of 3 runs"), "{}", lines[0]);
        assert_eq!(
            lines[2],
            "| backend | connections | round trips/s | p50 latency (µs) | p99 latency (µs) \
             | server CPU (µs/round trip) | client CPU (µs/round trip) | server peak RSS (MiB) |"
        );
        assert_eq!(
            lines[4],
            "| select-poll | 1 | 45000 (44000–46000) | 21.0 (20.0–22.5) | 150 | 12.3 (12.0–13.0) | – | 2.0 (2.0–3.0) |"
        );
        assert!(lines[5].starts_with("| mio*† | 50 | 45000 "), "{}", lines[5]);
        assert!(lines[6].starts_with("| mio† | 1 | failed | failed"), "{}", lines[6]);
        assert!(table.contains("`*` The load generator was saturated"));
        assert!(table.contains("mio at 50 connections (1 of 3), mio at 1 connection (3 of 3)"), "{table}");
    }

    #[test]
    fn disturbed_runs_are_counted_and_short_cells_marked() {
        let mio = Contender { backend: BackendName::Mio, poller: Poller::Select };
        let poll = Contender { backend: BackendName::Select, poller: Poller::Poll };
        let table = render(&settings(), &[summary_with(mio, 1, 3, 0, 2), summary_with(poll, 1, 2, 0, 4)]);
        let first = table.lines().next().unwrap_or_default();
        assert!(first.contains(" 6 runs cost more than 5% above the cheapest run of their cell"), "{first}");
        assert!(table.contains("| mio | 1 |"), "{table}");
        assert!(table.contains("| select-poll‡ | 1 |"), "{table}");
        assert!(table.contains("by itself): select-poll at 1 connection (2 of 3)."), "{table}");
        let quiet = render(&settings(), &[summary(mio, 1, 3, 0)]);
        assert!(!quiet.contains("disturbed") && !quiet.contains('‡'), "{quiet}");
    }

    #[test]
    fn a_busy_polling_client_is_named_in_the_preamble() {
        let mio = Contender { backend: BackendName::Mio, poller: Poller::Select };
        let spinning = render(&Settings { spin: true, ..settings() }, &[summary(mio, 1, 3, 0)]);
        let first = spinning.lines().next().unwrap_or_default();
        assert!(first.contains("client on CPU 0, the client busy-polling (`--spin`"), "{first}");
        let sleeping = render(&settings(), &[summary(mio, 1, 3, 0)]);
        assert!(!sleeping.contains("busy-polling"), "{sleeping}");
    }

    #[test]
    fn a_baseline_adds_a_ratio_of_server_cpu_at_the_same_load() {
        let mio = Contender { backend: BackendName::Mio, poller: Poller::Select };
        let poll = Contender { backend: BackendName::Select, poller: Poller::Poll };
        let mut slower = summary(poll, 50, 3, 0);
        slower.server_cpu_us_per_round_trip = Some(Spread { median: 14.814, min: 14.0, max: 15.0 });
        let rows = [summary(mio, 50, 3, 0), slower, summary(poll, 1, 3, 0)];
        let table = render(&Settings { baseline: Some("mio".into()), ..settings() }, &rows);
        assert!(table.contains("| server peak RSS (MiB) | server CPU × mio |"), "{table}");
        assert!(table.contains("| 2.0 (2.0–3.0) | 1.00× |"), "{table}");
        assert!(table.contains("| 2.0 (2.0–3.0) | 1.20× |"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("| select-poll | 1 |") && l.ends_with("| – |")),
            "{table}"
        );
    }

    #[test]
    fn a_cell_that_is_not_possible_is_marked_not_failed() {
        let select = Contender { backend: BackendName::Select, poller: Poller::Select };
        let mut impossible = summary(select, 2000, 0, 0);
        impossible.client_saturated = false;
        impossible.not_possible = Some("select(2) cannot watch descriptors of 1024 or more");
        let table = render(&settings(), &[summary(select, 1, 3, 0), impossible]);
        assert!(table.contains("| select§ | 2000 | not possible | not possible |"), "{table}");
        assert!(table.contains("`§` Not possible, so not run: select at 2000 connections (select(2) cannot"));
        assert!(!table.contains("failed") && !table.contains('†'), "{table}");
    }

    #[test]
    fn each_workload_decides_its_columns() {
        let mio = Contender { backend: BackendName::Mio, poller: Poller::Select };
        let mut row = summary(mio, 1, 3, 0);
        row.mb_per_s_in = Some(Spread { median: 123.4, min: 120.0, max: 130.0 });
        let stream = Settings { workload: crate::compare::Workload::Stream, ..settings() };
        let table = render(&stream, &[row]);
        assert!(table.starts_with("Workload stream: "), "{table}");
        assert!(
            table.contains(
                "| backend | connections | MB/s to server | MB/s from server | server CPU (µs/MB) |"
            ),
            "{table}"
        );
        assert!(table.contains("| mio | 1 | – | 123 (120–130) | – |"), "{table}");
    }

    #[test]
    fn numbers_keep_about_three_figures() {
        assert_eq!(short(1234.5), "1234");
        assert_eq!(short(12.345), "12.3");
        assert_eq!(short(1.2345), "1.23");
    }
}
