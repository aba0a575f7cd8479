//! The options of `echo-bench compare`: the command line, turned into
//! [`Settings`] by [`CompareArgs::settings`].

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Args;
use clap::builder::PossibleValue;

use super::contender::{Contender, ServerCommand};
use super::matrix::Settings;
use super::workload::Workload;
use crate::backends::{BackendName, Poller};
use crate::cli::{ModeArg, positive, threads};

impl clap::ValueEnum for Contender {
    fn value_variants<'a>() -> &'a [Self] {
        // Built from `BackendName::ALL` so a new backend is listed here too.
        static ALL: OnceLock<Vec<Contender>> = OnceLock::new();
        ALL.get_or_init(Contender::all)
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match (self.backend, self.poller) {
            (BackendName::Select, Poller::Poll) => "the seed's scheduler with poll(2)",
            (BackendName::Select, _) => "the seed's scheduler with select(2)",
            (BackendName::Uring, Poller::Poll) => {
                "io_uring's basic design: single-shot operations, a buffer per connection"
            }
            (backend, _) => backend.describe().engine,
        };
        Some(PossibleValue::new(self.as_str()).help(help))
    }
}

/// One value of `--backends`: a backend, or `none` for a comparison of
/// `--server` commands alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// This backend.
    Backend(Contender),
    /// No backend at all.
    None,
}

impl BackendChoice {
    /// Every backend, the default of `--backends`.
    pub fn all() -> Vec<BackendChoice> {
        Contender::all().into_iter().map(BackendChoice::Backend).collect()
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Backend(contender) => contender.fmt(f),
            BackendChoice::None => f.write_str("none"),
        }
    }
}

impl clap::ValueEnum for BackendChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: OnceLock<Vec<BackendChoice>> = OnceLock::new();
        ALL.get_or_init(|| BackendChoice::all().into_iter().chain([BackendChoice::None]).collect())
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            BackendChoice::Backend(contender) => contender.to_possible_value(),
            BackendChoice::None => {
                Some(PossibleValue::new("none").help("no backend: only the --server commands"))
            }
        }
    }
}

/// Options of `echo-bench compare`.
///
/// Every combination of the list options is a cell; each cell runs
/// `--repeat` times against a fresh server process. Runs are interleaved
/// across backends (A B C A B C ...) and repeats are spread over the whole
/// comparison, so a burst of noise on the machine hits every backend alike.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// A named workload: a preset of connections, sizes, pipeline, mode,
    /// rate and churn (a flag given explicitly wins over it), and the
    /// table's figures and the charts that suit it.
    #[arg(long, value_enum, default_value_t)]
    pub workload: Workload,

    /// Backends to compare, comma-separated. `select-poll` is the select
    /// backend with `--poller poll`, a row of its own, and `uring-basic` the
    /// uring backend's fallback design; `none` compares the
    /// `--server` commands alone.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 1.., default_values_t = BackendChoice::all())]
    pub backends: Vec<BackendChoice>,

    /// Another contender, repeatable: NAME=COMMAND, run beside the backends
    /// in the same turns and measured the same way. COMMAND must listen on
    /// 127.0.0.1:{port}; `{port}` is replaced with a free port for each run.
    /// It is split into words as a shell would split it but run without one
    /// (write `sh -c '...'` for shell syntax), in a process group of its
    /// own, stopped after each run with SIGTERM to the group (SIGKILL after
    /// 5 s). Its CPU time is that of the process and all its descendants,
    /// its peak memory the sum of theirs. `--mode` is what the load checks;
    /// the command's own mode is its business. `--threads` does not reach
    /// it: it runs at the first thread count, shown as 1.
    #[arg(long = "server", value_name = "NAME=COMMAND", value_parser = ServerCommand::parse)]
    pub servers: Vec<ServerCommand>,

    /// Connections held open during a run, comma-separated [default: the
    /// workload's; ping: 1,50,500].
    #[arg(short, long, value_delimiter = ',', num_args = 1.., value_parser = positive::<usize>())]
    pub connections: Option<Vec<usize>>,

    /// Bytes per message, comma-separated [default: the workload's; ping: 64].
    #[arg(short, long, value_delimiter = ',', num_args = 1.., value_parser = positive::<usize>())]
    pub sizes: Option<Vec<usize>>,

    /// Server threads, comma-separated. Backends that have one thread
    /// whatever `--threads` says (select) run once per cell, at 1.
    #[arg(short, long, value_delimiter = ',', num_args = 1.., default_values_t = [1],
          value_parser = threads())]
    pub threads: Vec<usize>,

    /// Messages in flight per connection, comma-separated [default: the
    /// workload's; ping: 1].
    #[arg(short, long, value_delimiter = ',', num_args = 1..,
          value_parser = positive::<usize>())]
    pub pipeline: Option<Vec<usize>>,

    /// Time measured per run, after the warm-up.
    #[arg(short, long, default_value = "2s", value_parser = crate::cli::duration)]
    pub duration: Duration,

    /// Time loaded but not measured at the start of each run.
    #[arg(long, default_value = "1s", value_parser = crate::cli::duration)]
    pub warmup: Duration,

    /// Runs per cell; the table shows their median and min–max.
    #[arg(long, default_value_t = 5, value_parser = positive::<usize>())]
    pub repeat: usize,

    /// A run whose server and client together spent more than this many
    /// percent more CPU per round trip than the cheapest run of its cell
    /// is taken as disturbed by other load on the machine: it is left out
    /// of the figures (results.json keeps it) and the cell runs again.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT", value_parser = percent)]
    pub tolerance: f64,

    /// At most this many runs made again in place of disturbed ones
    /// [default: a third of the planned runs; a cell makes at most half its repeats again]. 0 runs none again; the
    /// disturbed runs are still left out of the figures.
    #[arg(long, value_name = "RUNS")]
    pub reruns: Option<usize>,

    /// How the servers form replies (the load checks every byte against
    /// it) [default: the workload's; got but for stream's raw].
    #[arg(short, long, value_enum)]
    pub mode: Option<ModeArg>,

    /// Open loop: this many round trips per second in total per run, latency
    /// measured from each message's due time. Without it, the workload's
    /// (closed loop but for c10k's 5000).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Close each connection after this many round trips and open another
    /// in its place (see `load --churn`) [default: the workload's; churn: 10].
    #[arg(long, value_name = "ROUND_TRIPS", value_parser = positive::<u64>())]
    pub churn: Option<u64>,

    /// How the load generator runs, as in `load`.
    #[command(flatten)]
    pub client: crate::cli::ClientArgs,

    /// Add a column to the table: each row's median server CPU per round
    /// trip as a multiple of this backend's or `--server`'s at the same
    /// load (e.g. `--baseline bare-mio`).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,

    /// Also write results.json (every run, the medians, the environment)
    /// and SVG charts into this directory, creating it if needed.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

impl CompareArgs {
    /// The comparison these options ask for, checked; `pinned` is whether
    /// pinning is both asked for and possible here.
    pub fn settings(&self, pinned: bool) -> anyhow::Result<Settings> {
        let backends = self.backends.iter().filter_map(|choice| match choice {
            BackendChoice::Backend(contender) => Some(*contender),
            BackendChoice::None => None,
        });
        let preset = self.workload.preset();
        let or_preset =
            |given: &Option<Vec<usize>>, preset: &[usize]| given.clone().unwrap_or_else(|| preset.to_vec());
        Settings {
            workload: self.workload,
            backends: backends.collect(),
            servers: self.servers.clone(),
            connections: or_preset(&self.connections, preset.connections),
            sizes: or_preset(&self.sizes, preset.sizes),
            threads: self.threads.clone(),
            pipeline: or_preset(&self.pipeline, preset.pipeline),
            duration: self.duration,
            warmup: self.warmup,
            repeat: self.repeat,
            tolerance: self.tolerance / 100.0,
            reruns: 0,
            mode: self.mode.map_or(preset.mode, Into::into),
            rate: self.rate.or(preset.rate),
            churn: self.churn.or(preset.churn),
            client_threads: self.client.client_threads,
            pinned,
            spin: self.client.spin,
            baseline: self.baseline.clone(),
        }
        .checked(self.reruns)
    }
}

/// The settings `echo-bench compare ARGS...` would run with, for tests.
#[cfg(test)]
pub(crate) fn parse_for_tests(args: &[&str]) -> Settings {
    use clap::Parser;
    let cli = crate::cli::Cli::parse_from(["echo-bench", "compare"].iter().chain(args));
    match cli.command {
        Some(crate::cli::Command::Compare(args)) => args.settings(false).unwrap(),
        other => panic!("parsed as {other:?}"),
    }
}

/// A percentage: a number, at least 0, with or without a `%`.
fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim_end_matches('%').trim().parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err("must be a percentage of 0 or more".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    #[test]
    fn bad_values_are_refused() {
        let parse = |args: &[&str]| Cli::try_parse_from(["echo-bench", "compare"].iter().chain(args));
        assert!(parse(&["--backends", "nosuch"]).is_err());
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--repeat", "0"]).is_err());
        assert!(parse(&["--tolerance", "-1"]).is_err());
        assert!(parse(&["--tolerance", "lots"]).is_err());
        assert!(parse(&["--backends", "select-poll,mio"]).is_ok());
    }
}
