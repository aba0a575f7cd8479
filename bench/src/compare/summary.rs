//! Each cell's figures over its repeats: what the table and charts show.

use serde::Serialize;

use super::matrix::Cell;
use super::results::Run;
use super::stats::Spread;

/// The median and min–max of each figure over a cell's clean runs: those
/// that succeeded and were not disturbed.
/// A figure no run measured is `None`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellSummary {
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
    /// Runs that succeeded: the figures are theirs.
    pub runs: usize,
    /// Runs that failed, left out of every figure.
    pub failed: usize,
    /// Runs disturbed by other load on the machine, left out of every
    /// figure (and made again while the rerun budget lasted).
    pub disturbed: usize,
    /// Why the cell was not run, when it cannot be (see
    /// [`Cell::not_possible`]): then it has no runs and no failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_possible: Option<&'static str>,
    /// Whether the load generator was saturated in any run: the figures
    /// then say as much about the client as about the server.
    pub client_saturated: bool,
    /// Round trips per second.
    pub round_trips_per_s: Option<Spread>,
    /// Median round-trip latency, µs.
    pub latency_p50_us: Option<Spread>,
    /// 99th-percentile round-trip latency, µs.
    pub latency_p99_us: Option<Spread>,
    /// Server CPU time per round trip, µs.
    pub server_cpu_us_per_round_trip: Option<Spread>,
    /// Load-generator CPU time per round trip, µs.
    pub client_cpu_us_per_round_trip: Option<Spread>,
    /// The server's peak resident memory, KiB.
    pub server_peak_rss_kib: Option<Spread>,
    /// Megabytes (10^6 bytes) per second from client to server.
    pub mb_per_s_out: Option<Spread>,
    /// Megabytes per second from server to client.
    pub mb_per_s_in: Option<Spread>,
    /// Server CPU time per megabyte sent to it, µs.
    pub server_cpu_us_per_mb: Option<Spread>,
    /// With churn, connections opened and closed per second.
    pub connections_per_s: Option<Spread>,
    /// With churn, server CPU time per connection, µs.
    pub server_cpu_us_per_connection: Option<Spread>,
}

impl CellSummary {
    /// Whether the cell has some clean runs but fewer than `repeat`, failed
    /// ones counted: the rerun budget ran out, or the cell varies by itself.
    pub fn short_of(&self, repeat: usize) -> bool {
        self.runs > 0 && self.runs + self.failed < repeat
    }

    /// Sums up `runs`, the clean runs of `cell`, beside `failed` failed
    /// and `disturbed` disturbed ones.
    pub fn new(cell: Cell, runs: &[&Run], failed: usize, disturbed: usize) -> CellSummary {
        let spread = |figure: fn(&Run) -> Option<f64>| Spread::of(runs.iter().filter_map(|r| figure(r)));
        CellSummary {
            cell,
            runs: runs.len(),
            failed,
            disturbed,
            not_possible: cell.not_possible(),
            client_saturated: runs.iter().any(|r| r.report.client_saturated),
            round_trips_per_s: spread(|r| Some(r.report.round_trips_per_s)),
            latency_p50_us: spread(|r| Some(r.report.latency_us.p50)),
            latency_p99_us: spread(|r| Some(r.report.latency_us.p99)),
            server_cpu_us_per_round_trip: spread(|r| Some(r.report.server.as_ref()?.cpu_us_per_round_trip)),
            client_cpu_us_per_round_trip: spread(|r| Some(r.report.client_cpu_us_per_round_trip)),
            server_peak_rss_kib: spread(|r| Some(r.report.server.as_ref()?.peak_rss_kib? as f64)),
            mb_per_s_out: spread(|r| Some(r.report.mb_per_s_out)),
            mb_per_s_in: spread(|r| Some(r.report.mb_per_s_in)),
            // µs per round trip × round trips per second = µs per second,
            // over MB per second.
            server_cpu_us_per_mb: spread(|r| {
                let cpu = r.report.server.as_ref()?.cpu_us_per_round_trip;
                (r.report.mb_per_s_out > 0.0)
                    .then(|| cpu * r.report.round_trips_per_s / r.report.mb_per_s_out)
            }),
            connections_per_s: spread(|r| Some(r.churn.as_ref()?.connections_per_s)),
            server_cpu_us_per_connection: spread(|r| r.churn.as_ref()?.server_cpu_us_per_connection),
        }
    }
}
