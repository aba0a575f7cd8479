//! Each cell's figures over its repeats: what the table and charts show.

use serde::Serialize;

use super::matrix::Cell;
use super::stats::Spread;
use crate::load::Report;

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
}

impl CellSummary {
    /// Whether the cell has some clean runs but fewer than `repeat`, failed
    /// ones counted: the rerun budget ran out, or the cell varies by itself.
    pub fn short_of(&self, repeat: usize) -> bool {
        self.runs > 0 && self.runs + self.failed < repeat
    }

    /// Sums up `reports`, the clean runs of `cell`, beside `failed` failed
    /// and `disturbed` disturbed ones.
    pub fn new(cell: Cell, reports: &[&Report], failed: usize, disturbed: usize) -> CellSummary {
        let spread =
            |figure: fn(&Report) -> Option<f64>| Spread::of(reports.iter().filter_map(|r| figure(r)));
        CellSummary {
            cell,
            runs: reports.len(),
            failed,
            disturbed,
            client_saturated: reports.iter().any(|r| r.client_saturated),
            round_trips_per_s: spread(|r| Some(r.round_trips_per_s)),
            latency_p50_us: spread(|r| Some(r.latency_us.p50)),
            latency_p99_us: spread(|r| Some(r.latency_us.p99)),
            server_cpu_us_per_round_trip: spread(|r| r.server.as_ref().map(|s| s.cpu_us_per_round_trip)),
            client_cpu_us_per_round_trip: spread(|r| Some(r.client_cpu_us_per_round_trip)),
            server_peak_rss_kib: spread(|r| Some(r.server.as_ref()?.peak_rss_kib? as f64)),
        }
    }
}
