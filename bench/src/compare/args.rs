//! The options of `echo-bench compare`, the backend names it accepts and the
//! `--server NAME=COMMAND` contenders it runs beside them.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use backend_select::Poller;
use clap::Args;
use clap::builder::{PossibleValue, TypedValueParser};

use crate::backends::BackendName;
use crate::cli::ModeArg;

/// One row of the comparison: a backend, and for `select` the readiness call
/// it blocks in. `select` with poll(2) is its own row, `select-poll`, because
/// the two differ in cost as much as two backends do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contender {
    /// The backend.
    pub backend: BackendName,
    /// Its readiness call; only `select` looks at it.
    pub poller: Poller,
}

impl Contender {
    /// Every backend of [`BackendName::ALL`], with `select-poll` right
    /// after `select`.
    pub fn all() -> Vec<Contender> {
        let mut all = Vec::new();
        for backend in BackendName::ALL {
            all.push(Contender { backend, poller: Poller::Select });
            if backend == BackendName::Select {
                all.push(Contender { backend, poller: Poller::Poll });
            }
        }
        all
    }

    /// The name on the command line and in the table: the backend's, or
    /// `select-poll`.
    pub fn as_str(self) -> &'static str {
        match (self.backend, self.poller) {
            (BackendName::Select, Poller::Poll) => "select-poll",
            (backend, _) => backend.as_str(),
        }
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Contender {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

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

/// The name of a `--server` contender, as the table, results.json and the
/// charts show it.
///
/// It is leaked once, when the command line is parsed, so that a cell
/// stays `Copy` like a backend's: a comparison has a handful of these and
/// they live as long as the process anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerName(&'static str);

impl ServerName {
    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// A `--server NAME=COMMAND` contender: any program that serves the echo
/// protocol on the port it is given, started fresh for each run as a
/// backend is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerCommand {
    /// Its name in the table, results.json and the charts.
    #[serde(serialize_with = "server_name")]
    pub name: ServerName,
    /// COMMAND as written, `{port}` and all.
    pub command: String,
    /// COMMAND split into the program and its arguments as a POSIX shell
    /// would split it (quotes and backslashes), but run without one: a
    /// shell would stay as a process of its own in the measured tree
    /// (dash does not `exec` the last command of `sh -c`) and add its
    /// memory to the server's. Write `sh -c '...'` for pipes, `&&` or
    /// variables.
    #[serde(skip)]
    pub argv: Vec<String>,
}

/// What `{port}` in a `--server` command is replaced with.
const PORT: &str = "{port}";

impl ServerCommand {
    /// The program and its arguments with `{port}` replaced by `port`.
    pub fn argv(&self, port: u16) -> Vec<String> {
        self.argv.iter().map(|word| word.replace(PORT, &port.to_string())).collect()
    }
}

/// Parses `--server NAME=COMMAND`.
fn server_command(text: &str) -> Result<ServerCommand, String> {
    let (name, command) = text
        .split_once('=')
        .ok_or("expected NAME=COMMAND, e.g. bare-tokio='bare-tokio --addr 127.0.0.1:{port}'")?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("the name {name:?} must be letters, digits, '-', '_' or '.'"));
    }
    if BackendChoice::all().iter().any(|b| b.to_string() == name) || name == "none" {
        return Err(format!("the name {name:?} is a backend's; give the command another"));
    }
    if !command.contains(PORT) {
        return Err(format!(
            "the command must contain {PORT}, where the port to listen on goes: {command:?}"
        ));
    }
    let argv = shlex::split(command).filter(|argv| !argv.is_empty()).ok_or_else(|| {
        format!("cannot split the command {command:?} into words (an unclosed quote, or nothing at all)")
    })?;
    Ok(ServerCommand {
        name: ServerName(Box::leak(name.to_owned().into_boxed_str())),
        command: command.to_owned(),
        argv,
    })
}

fn server_name<S: serde::Serializer>(name: &ServerName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

/// What one row of the comparison runs: one of the backends, or a
/// `--server` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entrant {
    /// A backend, run as `echo-bench serve`.
    Backend(Contender),
    /// A `--server` command, by name.
    Server(ServerName),
}

impl Entrant {
    /// The name in the table, results.json and the charts.
    pub fn as_str(self) -> &'static str {
        match self {
            Entrant::Backend(contender) => contender.as_str(),
            Entrant::Server(name) => name.as_str(),
        }
    }

    /// Whether `--threads` reaches it: a backend's choice; a command's
    /// threads are its own business.
    pub fn has_threads(self) -> bool {
        match self {
            Entrant::Backend(contender) => contender.backend.has_threads(),
            Entrant::Server(_) => false,
        }
    }
}

impl fmt::Display for Entrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Entrant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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
    /// Backends to compare, comma-separated. `select-poll` is the select
    /// backend with `--poller poll`, a row of its own; `none` compares the
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
    #[arg(long = "server", value_name = "NAME=COMMAND", value_parser = server_command)]
    pub servers: Vec<ServerCommand>,

    /// Connections held open during a run, comma-separated.
    #[arg(short, long, value_delimiter = ',', num_args = 1.., default_values_t = [1, 50, 500],
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub connections: Vec<usize>,

    /// Bytes per message, comma-separated.
    #[arg(short, long, value_delimiter = ',', num_args = 1.., default_values_t = [64],
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub sizes: Vec<usize>,

    /// Server threads, comma-separated. Backends that have one thread
    /// whatever `--threads` says (select) run once per cell, at 1.
    #[arg(short, long, value_delimiter = ',', num_args = 1.., default_values_t = [1],
          value_parser = clap::value_parser!(u16).range(1..).map(|n| n as usize))]
    pub threads: Vec<usize>,

    /// Messages in flight per connection, comma-separated.
    #[arg(short, long, value_delimiter = ',', num_args = 1.., default_values_t = [1],
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub pipeline: Vec<usize>,

    /// Time measured per run, after the warm-up.
    #[arg(short, long, default_value = "2s", value_parser = crate::cli::duration)]
    pub duration: Duration,

    /// Time loaded but not measured at the start of each run.
    #[arg(long, default_value = "1s", value_parser = crate::cli::duration)]
    pub warmup: Duration,

    /// Runs per cell; the table shows their median and min–max.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
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

    /// How the servers form replies (the load checks every byte against it).
    #[arg(short, long, value_enum, default_value_t)]
    pub mode: ModeArg,

    /// Open loop: this many round trips per second in total per run, latency
    /// measured from each message's due time. Without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Threads of the load generator.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..).map(|n| n as usize))]
    pub client_threads: usize,

    /// Put each server on CPU 1 and the load generator on CPU 0.
    #[arg(long)]
    pub pin: bool,

    /// Busy-poll in the load generator (see `load --spin`): the servers
    /// never pay to wake it.
    #[arg(long)]
    pub spin: bool,

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

/// A percentage: a number, at least 0, with or without a `%`.
fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim_end_matches('%').trim().parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err("must be a percentage of 0 or more".to_owned())
    }
}
