//! Named workloads (`compare --workload NAME`): a preset matrix each, and
//! what its table and charts show. Every explicit flag wins over a preset.
//!
//! | workload | connections | sizes | pipeline | mode | load | table shows |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `ping` | 1, 50, 500 | 64 | 1 | got | closed loop | round trips/s, latency, CPU per round trip |
//! | `c10k` | 10, 100, 1000, 10000 | 64 | 1 | got | 5000 round trips/s in all | latency, CPU per round trip, RSS |
//! | `churn` | 50 | 64 | 1 | got | 10 round trips per connection | connections/s, CPU per connection |
//! | `stream` | 1, 8 | 4 KiB, 64 KiB, 1 MiB | 1 | raw | closed loop | MB/s each way, CPU per MB |
//! | `pipeline` | 50 | 64 | 1, 16, 128 | got | closed loop | messages/s, CPU per message |

use clap::ValueEnum;
use echo_core::Mode;
use serde::Serialize;

use super::stats::Spread;
use super::summary::CellSummary;

/// A named workload: a preset of the matrix and the figures shown for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// 64 B, closed loop, 1, 50 and 500 connections: round trips/s,
    /// latency, CPU per round trip.
    #[default]
    Ping,
    /// Sparse activity: 10 to 10,000 connections at 5000 round trips/s in
    /// all: CPU per round trip and memory against connections.
    C10k,
    /// 50 connections, each closed and replaced after 10 round trips:
    /// connections/s, CPU per connection.
    Churn,
    /// Raw mode, 4 KiB, 64 KiB and 1 MiB messages on 1 and 8 connections:
    /// MB/s each way, CPU per MB.
    Stream,
    /// 64 B at pipeline depths 1, 16 and 128 on 50 connections:
    /// messages/s, CPU per message.
    Pipeline,
}

/// The matrix a workload runs when no flag says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// Connection counts.
    pub connections: &'static [usize],
    /// Message sizes, bytes.
    pub sizes: &'static [usize],
    /// Pipeline depths.
    pub pipeline: &'static [usize],
    /// The servers' reply mode.
    pub mode: Mode,
    /// Open-loop total rate, or closed loop.
    pub rate: Option<f64>,
    /// Round trips per connection before it is closed and replaced.
    pub churn: Option<u64>,
}

/// Which load parameter a chart's x axis shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Connections (log scale).
    Connections,
    /// Message size in bytes (log scale).
    Size,
    /// Pipeline depth (log scale).
    Pipeline,
}

/// One chart a workload draws: a figure against a load parameter, one
/// line per backend.
#[derive(Clone, Copy, Debug)]
pub struct Chart {
    /// The SVG's file name.
    pub file: &'static str,
    /// What it shows.
    pub figure: Figure,
    /// Against what.
    pub x: Axis,
}

/// A figure a table column or a chart shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Round trips per second.
    RoundTrips,
    /// Messages per second: round trips, named for pipelining.
    Messages,
    /// Median latency.
    P50,
    /// 99th-percentile latency.
    P99,
    /// Server CPU per round trip.
    ServerCpu,
    /// Server CPU per message (per round trip, named for pipelining).
    ServerCpuPerMessage,
    /// Load-generator CPU per round trip.
    ClientCpu,
    /// Server peak RSS, MiB.
    PeakRss,
    /// Connections opened and closed per second (churn).
    ConnectionsPerS,
    /// Server CPU per connection opened and closed (churn).
    ServerCpuPerConnection,
    /// MB/s from client to server.
    MbOut,
    /// MB/s from server to client.
    MbIn,
    /// Server CPU per MB echoed.
    ServerCpuPerMb,
}

impl Figure {
    /// The column header, which is also the chart's y axis label.
    pub fn header(self) -> &'static str {
        match self {
            Figure::RoundTrips => "round trips/s",
            Figure::Messages => "messages/s",
            Figure::P50 => "p50 latency (µs)",
            Figure::P99 => "p99 latency (µs)",
            Figure::ServerCpu => "server CPU (µs/round trip)",
            Figure::ServerCpuPerMessage => "server CPU (µs/message)",
            Figure::ClientCpu => "client CPU (µs/round trip)",
            Figure::PeakRss => "server peak RSS (MiB)",
            Figure::ConnectionsPerS => "connections/s",
            Figure::ServerCpuPerConnection => "server CPU (µs/connection)",
            Figure::MbOut => "MB/s to server",
            Figure::MbIn => "MB/s from server",
            Figure::ServerCpuPerMb => "server CPU (µs/MB)",
        }
    }

    /// Its median and min–max in a cell, if measured.
    pub fn of(self, s: &CellSummary) -> Option<Spread> {
        match self {
            Figure::RoundTrips | Figure::Messages => s.round_trips_per_s,
            Figure::P50 => s.latency_p50_us,
            Figure::P99 => s.latency_p99_us,
            Figure::ServerCpu | Figure::ServerCpuPerMessage => s.server_cpu_us_per_round_trip,
            Figure::ClientCpu => s.client_cpu_us_per_round_trip,
            Figure::PeakRss => s.server_peak_rss_kib.map(|k| k.scale(1.0 / 1024.0)),
            Figure::ConnectionsPerS => s.connections_per_s,
            Figure::ServerCpuPerConnection => s.server_cpu_us_per_connection,
            Figure::MbOut => s.mb_per_s_out,
            Figure::MbIn => s.mb_per_s_in,
            Figure::ServerCpuPerMb => s.server_cpu_us_per_mb,
        }
    }

    /// Whether the table shows it without decimals (rates).
    pub fn whole(self) -> bool {
        matches!(self, Figure::RoundTrips | Figure::Messages | Figure::ConnectionsPerS)
    }
}

impl Workload {
    /// The matrix this workload runs unless a flag says otherwise.
    pub fn preset(self) -> Preset {
        let ping = Preset {
            connections: &[1, 50, 500],
            sizes: &[64],
            pipeline: &[1],
            mode: Mode::Got,
            rate: None,
            churn: None,
        };
        match self {
            Workload::Ping => ping,
            Workload::C10k => Preset { connections: &[10, 100, 1000, 10_000], rate: Some(5000.0), ..ping },
            Workload::Churn => Preset { connections: &[50], churn: Some(10), ..ping },
            Workload::Stream => {
                Preset { connections: &[1, 8], sizes: &[4096, 65_536, 1 << 20], mode: Mode::Raw, ..ping }
            }
            Workload::Pipeline => Preset { connections: &[50], pipeline: &[1, 16, 128], ..ping },
        }
    }

    /// The figures its table shows, in column order.
    pub fn figures(self) -> &'static [Figure] {
        use Figure::*;
        match self {
            Workload::Ping => &[RoundTrips, P50, P99, ServerCpu, ClientCpu, PeakRss],
            Workload::C10k => &[RoundTrips, P50, P99, ServerCpu, PeakRss],
            Workload::Churn => &[ConnectionsPerS, ServerCpuPerConnection, RoundTrips, P99, PeakRss],
            Workload::Stream => &[MbOut, MbIn, ServerCpuPerMb, P99, PeakRss],
            Workload::Pipeline => &[Messages, ServerCpuPerMessage, P50, P99, ClientCpu, PeakRss],
        }
    }

    /// The charts it draws.
    pub fn charts(self) -> &'static [Chart] {
        use Figure::*;
        const fn c(file: &'static str, figure: Figure, x: Axis) -> Chart {
            Chart { file, figure, x }
        }
        const PING: &[Chart] = &[
            c("round_trips.svg", RoundTrips, Axis::Connections),
            c("p99_latency.svg", P99, Axis::Connections),
            c("server_cpu.svg", ServerCpu, Axis::Connections),
        ];
        const C10K: &[Chart] = &[
            c("server_cpu.svg", ServerCpu, Axis::Connections),
            c("server_rss.svg", PeakRss, Axis::Connections),
            c("p99_latency.svg", P99, Axis::Connections),
        ];
        const CHURN: &[Chart] = &[
            c("connections_per_s.svg", ConnectionsPerS, Axis::Connections),
            c("server_cpu_per_connection.svg", ServerCpuPerConnection, Axis::Connections),
        ];
        const STREAM: &[Chart] =
            &[c("mb_per_s.svg", MbIn, Axis::Size), c("server_cpu_per_mb.svg", ServerCpuPerMb, Axis::Size)];
        const PIPELINE: &[Chart] = &[
            c("messages_per_s.svg", Messages, Axis::Pipeline),
            c("server_cpu_per_message.svg", ServerCpuPerMessage, Axis::Pipeline),
        ];
        match self {
            Workload::Ping => PING,
            Workload::C10k => C10K,
            Workload::Churn => CHURN,
            Workload::Stream => STREAM,
            Workload::Pipeline => PIPELINE,
        }
    }

    /// Its command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Ping => "ping",
            Workload::C10k => "c10k",
            Workload::Churn => "churn",
            Workload::Stream => "stream",
            Workload::Pipeline => "pipeline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_as_documented() {
        assert_eq!(Workload::Ping.preset().connections, [1, 50, 500]);
        let c10k = Workload::C10k.preset();
        assert_eq!((c10k.connections, c10k.rate), (&[10, 100, 1000, 10_000][..], Some(5000.0)));
        assert_eq!(Workload::Churn.preset().churn, Some(10));
        let stream = Workload::Stream.preset();
        assert_eq!((stream.mode, stream.sizes), (Mode::Raw, &[4096, 65_536, 1 << 20][..]));
        assert_eq!(Workload::Pipeline.preset().pipeline, [1, 16, 128]);
    }

    #[test]
    fn every_workload_has_figures_and_charts_with_distinct_files() {
        for w in Workload::value_variants() {
            assert!(!w.figures().is_empty() && !w.charts().is_empty(), "{w:?}");
            let files: Vec<_> = w.charts().iter().map(|c| c.file).collect();
            assert!(files.iter().enumerate().all(|(i, f)| !files[..i].contains(f)), "{files:?}");
            assert_eq!(w.to_possible_value().map(|v| v.get_name().to_owned()).as_deref(), Some(w.as_str()));
        }
    }
}
