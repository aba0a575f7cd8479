//! The cells of a comparison and the order their runs go in.

use std::time::Duration;

use echo_core::Mode;
use serde::{Serialize, Serializer};

use super::contender::{Contender, Entrant, ServerCommand, ServerName};
use super::workload::Workload;
use crate::backends::{BackendName, Poller};

/// The most connections the select backend with select(2) can hold: it
/// cannot watch a descriptor of 1024 (`FD_SETSIZE`) or more, and the server
/// process holds a few of its own (stdio, the listener, its poller's).
pub const SELECT_MAX_CONNECTIONS: usize = 1000;

/// One cell of the matrix: a backend or `--server` command and the load it
/// is given. Every repeat of a cell is a run against a fresh server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Cell {
    /// The backend (and, for select, its poller) or the `--server`
    /// command's name; `backend` in results.json either way.
    pub backend: Entrant,
    /// Connections held open.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Server threads (always 1 for a backend that has no others).
    pub threads: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
}

impl Cell {
    /// Why this cell cannot be run, if it cannot: then it is shown as
    /// "not possible" rather than run and failed. Today only the select
    /// backend with select(2) past [`SELECT_MAX_CONNECTIONS`].
    pub fn not_possible(&self) -> Option<&'static str> {
        let select2 = Contender { backend: BackendName::Select, poller: Poller::Select };
        (self.backend == Entrant::Backend(select2) && self.connections > SELECT_MAX_CONNECTIONS)
            .then_some("select(2) cannot watch descriptors of 1024 or more; select-poll can")
    }
}

/// What every run of
/// one comparison shares. Written to results.json as `settings`.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The named workload whose preset filled in what no flag gave; it
    /// also decides the table's figures and the charts.
    pub workload: Workload,
    /// Backends, in the order of the table.
    pub backends: Vec<Contender>,
    /// `--server` commands, in the table after the backends.
    pub servers: Vec<ServerCommand>,
    /// Connection counts.
    pub connections: Vec<usize>,
    /// Message sizes, bytes.
    pub sizes: Vec<usize>,
    /// Server thread counts.
    pub threads: Vec<usize>,
    /// Pipeline depths.
    pub pipeline: Vec<usize>,
    /// Measured time per run.
    #[serde(rename = "duration_s", serialize_with = "seconds")]
    pub duration: Duration,
    /// Warm-up per run.
    #[serde(rename = "warmup_s", serialize_with = "seconds")]
    pub warmup: Duration,
    /// Runs per cell.
    pub repeat: usize,
    /// How far above its cell's cheapest run a run may cost before it is
    /// taken as disturbed, as a fraction (0.05 is 5 %).
    pub tolerance: f64,
    /// At most this many runs made again in place of disturbed ones.
    pub reruns: usize,
    /// The servers' reply mode.
    #[serde(serialize_with = "mode_name")]
    pub mode: Mode,
    /// Open-loop rate per run, or `None` for closed loop.
    pub rate: Option<f64>,
    /// Round trips per connection before the load closes it and opens
    /// another (`load --churn`), or `None` to hold connections open.
    pub churn: Option<u64>,
    /// Load-generator threads.
    pub client_threads: usize,
    /// Whether server and client were pinned to CPUs 1 and 0. False when
    /// `--pin` was asked for on a machine with one CPU.
    pub pinned: bool,
    /// Whether the load generator busy-polled.
    pub spin: bool,
    /// The backend or `--server` whose server CPU per round trip the
    /// table's ratio column divides by, when asked for.
    pub baseline: Option<String>,
}

impl Settings {
    /// Checks these settings as the command line gave them, drops
    /// repeated values from the lists, and sets `reruns` to `reruns` or,
    /// without it, a third of the planned runs.
    pub fn checked(self, reruns: Option<usize>) -> anyhow::Result<Settings> {
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be more than zero");
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number");
        }
        anyhow::ensure!(self.churn != Some(0), "--churn must be at least 1");
        anyhow::ensure!(self.repeat > 0, "--repeat must be at least 1");
        let mut settings = Settings {
            backends: dedup(&self.backends),
            connections: dedup(&self.connections),
            sizes: dedup(&self.sizes),
            threads: dedup(&self.threads),
            pipeline: dedup(&self.pipeline),
            client_threads: self.client_threads.max(1),
            ..self
        };
        for (i, server) in settings.servers.iter().enumerate() {
            anyhow::ensure!(
                settings.servers[..i].iter().all(|s| s.name != server.name),
                "--server {} is given twice",
                server.name.as_str()
            );
        }
        anyhow::ensure!(
            !settings.backends.is_empty() || !settings.servers.is_empty(),
            "nothing to compare: --backends none needs at least one --server"
        );
        if let Some(baseline) = &settings.baseline {
            let names: Vec<&str> = settings.entrants().iter().map(|e| e.as_str()).collect();
            anyhow::ensure!(
                names.contains(&baseline.as_str()),
                "--baseline {baseline} is not compared here (compared: {})",
                names.join(", ")
            );
        }
        anyhow::ensure!(
            !settings.connections.is_empty()
                && !settings.sizes.is_empty()
                && !settings.threads.is_empty()
                && !settings.pipeline.is_empty(),
            "every list option needs at least one value"
        );
        settings.reruns = reruns.unwrap_or_else(|| settings.runs().len().div_ceil(3));
        Ok(settings)
    }

    /// Every backend and `--server` command, in the order of the table.
    pub fn entrants(&self) -> Vec<Entrant> {
        let backends = self.backends.iter().map(|&b| Entrant::Backend(b));
        backends.chain(self.servers.iter().map(|s| Entrant::Server(s.name))).collect()
    }

    /// The `--server` command named `name`.
    pub fn server(&self, name: ServerName) -> Option<&ServerCommand> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Every cell, in the order of the table: grouped by size, pipeline
    /// and threads, then by connections, with the backends side by side
    /// and the `--server` commands after them.
    ///
    /// A backend without threads of its own, and a `--server` command,
    /// runs once per group of threads, in the first group, at 1 thread.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &size in &self.sizes {
            for &pipeline in &self.pipeline {
                for (i, &threads) in self.threads.iter().enumerate() {
                    for &connections in &self.connections {
                        for backend in self.entrants() {
                            let threads = match (backend.has_threads(), i) {
                                (true, _) => threads,
                                (false, 0) => 1,
                                (false, _) => continue,
                            };
                            cells.push(Cell { backend, connections, size, threads, pipeline });
                        }
                    }
                }
            }
        }
        cells
    }

    /// Every run, in the order they go (cells that are not possible have
    /// none): each repeat goes once through
    /// every cell, and the backends of one cell run one after the other
    /// (A B C D A B C D ...), so a burst of noise on the machine falls on
    /// all of them alike and the medians shrug it off.
    pub fn runs(&self) -> Vec<(usize, Cell)> {
        let cells = self.cells();
        let possible: Vec<Cell> = cells.into_iter().filter(|c| c.not_possible().is_none()).collect();
        (0..self.repeat).flat_map(|repeat| possible.iter().map(move |&cell| (repeat, cell))).collect()
    }

    /// A rough guess at how long one run takes: warm-up, measurement, and
    /// starting and stopping a server.
    pub fn run_estimate(&self) -> Duration {
        self.warmup.saturating_add(self.duration).saturating_add(Duration::from_millis(50))
    }
}

fn dedup<T: PartialEq + Copy>(values: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(values.len());
    for &v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn mode_name<S: Serializer>(mode: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mode)
}

#[cfg(test)]
mod tests {
    use crate::backends::BackendName;
    use crate::compare::args::parse_for_tests as settings;

    #[test]
    fn defaults_cover_every_backend_and_select_poll() {
        let s = settings(&[]);
        let names: Vec<_> = s.backends.iter().map(|b| b.as_str()).collect();
        let select = names.iter().position(|&n| n == "select").unwrap();
        assert_eq!(names[select + 1], "select-poll", "select-poll right after select: {names:?}");
        for backend in BackendName::ALL {
            assert!(names.contains(&backend.as_str()), "{names:?}");
        }
        assert_eq!(s.connections, [1, 50, 500]);
        assert_eq!(s.runs().len(), names.len() * 3 * 5);
        assert_eq!(s.reruns, names.len() * 5, "a third of the runs");
        assert_eq!(s.tolerance, 0.05);
    }

    #[test]
    fn tolerance_and_reruns_can_be_set() {
        let s = settings(&["--tolerance", "2.5%", "--reruns", "0"]);
        assert_eq!((s.tolerance, s.reruns), (0.025, 0));
        assert_eq!(settings(&["--tolerance", "10"]).tolerance, 0.1);
    }

    #[test]
    fn runs_interleave_backends_and_spread_repeats() {
        let s = settings(&["--backends", "select,mio", "--connections", "1,4", "--repeat", "2"]);
        let order: Vec<_> = s.runs().iter().map(|(r, c)| (*r, c.backend.as_str(), c.connections)).collect();
        assert_eq!(
            order,
            [
                (0, "select", 1),
                (0, "mio", 1),
                (0, "select", 4),
                (0, "mio", 4),
                (1, "select", 1),
                (1, "mio", 1),
                (1, "select", 4),
                (1, "mio", 4)
            ]
        );
    }

    #[test]
    fn select_runs_once_whatever_the_threads() {
        let s = settings(&["--backends", "select,mio,mio", "--threads", "2,4", "--connections", "1"]);
        let cells: Vec<_> = s.cells().iter().map(|c| (c.backend.as_str(), c.threads)).collect();
        assert_eq!(cells, [("select", 1), ("mio", 2), ("mio", 4)]);
    }

    #[test]
    fn servers_come_after_the_backends_once_per_cell_at_one_thread() {
        let s = settings(&[
            "--backends",
            "none,mio",
            "--server",
            "bare=./bare --addr '127.0.0.1:{port}' --note 'a b'",
            "--threads",
            "1,2",
            "--connections",
            "1",
        ]);
        let cells: Vec<_> = s.cells().iter().map(|c| (c.backend.as_str(), c.threads)).collect();
        assert_eq!(cells, [("mio", 1), ("bare", 1), ("mio", 2)]);
        let server = &s.servers[0];
        assert_eq!(server.argv(4242), ["./bare", "--addr", "127.0.0.1:4242", "--note", "a b"]);
        let only = settings(&["--backends", "none", "--server", "x=x {port}"]);
        assert!(only.backends.is_empty() && only.cells().iter().all(|c| c.backend.as_str() == "x"));
    }

    #[test]
    fn a_workload_fills_in_what_no_flag_gives() {
        let s = settings(&["--workload", "stream"]);
        assert_eq!(
            (s.connections.as_slice(), s.sizes.as_slice()),
            (&[1, 8][..], &[4096, 65_536, 1 << 20][..])
        );
        assert_eq!((s.mode, s.rate, s.churn), (echo_core::Mode::Raw, None, None));
        let s = settings(&["--workload", "stream", "--sizes", "100", "--mode", "got", "--connections", "3"]);
        assert_eq!((s.connections, s.sizes, s.mode), (vec![3], vec![100], echo_core::Mode::Got));
        let c10k = settings(&["--workload", "c10k", "--rate", "500"]);
        assert_eq!((c10k.rate, c10k.connections.len()), (Some(500.0), 4));
        let churn = settings(&["--workload", "churn", "--churn", "3"]);
        assert_eq!((churn.churn, churn.connections), (Some(3), vec![50]));
        assert_eq!(settings(&["--workload", "churn"]).churn, Some(10));
        assert_eq!(settings(&["--workload", "pipeline"]).pipeline, [1, 16, 128]);
        assert_eq!(settings(&["--workload", "pipeline", "-p", "4"]).pipeline, [4]);
    }

    #[test]
    fn select2_past_a_thousand_connections_is_not_possible_and_not_run() {
        let s = settings(&[
            "--backends",
            "select,select-poll,mio",
            "--connections",
            "1000,1001",
            "--repeat",
            "2",
        ]);
        let impossible: Vec<_> = s
            .cells()
            .iter()
            .filter(|c| c.not_possible().is_some())
            .map(|c| (c.backend.as_str(), c.connections))
            .collect();
        assert_eq!(impossible, [("select", 1001)]);
        assert_eq!(s.cells().len(), 6);
        assert_eq!(s.runs().len(), 10, "every possible cell twice");
        assert!(s.runs().iter().all(|(_, c)| c.not_possible().is_none()));
    }
}
