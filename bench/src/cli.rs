//! The command line: `echo-bench [serve] | check | load | soak | compare | list`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::{PossibleValue, RangedU64ValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use echo_core::{Backend, Mode, ServerConfig};

use crate::backends::{BackendName, Poller};
use crate::compare::CompareArgs;
use crate::serve::Serve;
use crate::spec::ServerSpec;

/// The longest duration any option takes, about 136 years: past any real
/// use, and far enough from `Instant`'s limits that adding it to the clock
/// cannot overflow (which used to kill a server thread or panic on every
/// connection).
pub const MAX_DURATION: Duration = Duration::from_secs(u32::MAX as u64);

/// The shortest `--idle-timeout`: a zero one would close every connection
/// at once and make some backends spin.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(1);

/// The largest `--read-size` and `--max-line`: each is a buffer a
/// connection may allocate, so a typo must not be an allocation of gigabytes.
pub const MAX_BUFFER: u32 = 64 << 20;

/// Parses a duration such as `500ms` or `30s`, at most [`MAX_DURATION`].
pub fn duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if parsed > MAX_DURATION {
        return Err(format!("at most {}s (about 136 years)", MAX_DURATION.as_secs()));
    }
    Ok(parsed)
}

/// Parses `--idle-timeout`: a [`duration`] of at least [`MIN_IDLE_TIMEOUT`].
pub fn idle_timeout(text: &str) -> Result<Duration, String> {
    let parsed = duration(text)?;
    if parsed < MIN_IDLE_TIMEOUT {
        return Err(format!("at least {}", humantime::format_duration(MIN_IDLE_TIMEOUT)));
    }
    Ok(parsed)
}

/// Parses a size in bytes: a number, optionally followed by `B`, `KiB`,
/// `MiB` or `GiB` (any case), such as `65536`, `64KiB` or `256MiB`.
pub fn size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        _ => return Err(format!("expected a size such as 65536, 64KiB or 256MiB, not {text:?}")),
    };
    let number: usize = number
        .parse()
        .map_err(|_| format!("expected a size such as 65536, 64KiB or 256MiB, not {text:?}"))?;
    number.checked_mul(1 << shift).ok_or_else(|| format!("{text} is too large"))
}

/// Parses `--max-buffered`: a [`size`] of at least the high watermark,
/// below which a single connection could not fill its own watermark.
pub fn max_buffered(text: &str) -> Result<usize, String> {
    let parsed = size(text)?;
    let watermark = ServerConfig::default().high_watermark;
    if parsed < watermark {
        return Err(format!("at least {} KiB, the high watermark", watermark >> 10));
    }
    Ok(parsed)
}

/// The seed's address, loopback only: exposing the server on every interface
/// takes an explicit `--addr 0.0.0.0:25000`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:25000";

/// Serve, check, load and compare echo servers built on different I/O engines.
#[derive(Debug, Parser)]
#[command(name = "echo-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; with none, serve (like the seed's `run()`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// More logging: -v for a line per connection, -vv for everything.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the echo protocol until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Run the conformance suite against a live server or a backend.
    Check(CheckArgs),
    /// Load a server with verified round trips and report what it cost.
    Load(LoadArgs),
    /// Hold many verified connections for a long time, watching the
    /// server's descriptors and memory for leaks.
    Soak(SoakArgs),
    /// Add up the `load --json` reports of loads run at the same time
    /// (from several machines) into one report: counts summed, latency
    /// histograms merged exactly.
    Merge(MergeArgs),
    /// Compare backends side by side: a Markdown table, JSON and SVG charts.
    ///
    /// Every cell of backends × connections × sizes × threads × pipeline is
    /// loaded --repeat times with verified round trips, each run against a
    /// fresh server process, the backends taking turns. The table shows each
    /// figure's median and (min–max); a failed run is reported, left out and
    /// makes the command exit non-zero. With the defaults: 8 backends × 3
    /// connection counts × 5 repeats, 120 runs of about 3 s, some 7 minutes.
    Compare(CompareArgs),
    /// Name the backends, one line each.
    List,
}

/// The protocol mode, as the command line spells it.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ModeArg {
    /// `GOT:` + each read of at most --read-size bytes (the seed's).
    #[default]
    Got,
    /// `GOT:` + each line.
    Line,
    /// RFC 862 echo.
    Raw,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Got => Mode::Got,
            ModeArg::Line => Mode::Line,
            ModeArg::Raw => Mode::Raw,
        }
    }
}

impl ValueEnum for BackendName {
    fn value_variants<'a>() -> &'a [Self] {
        &BackendName::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()).help(self.describe().engine))
    }
}

/// The parser of every option that takes a count of at least one
/// (connections, bytes, repeats...), into any unsigned type it fits.
pub fn positive<T>() -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::error::Error + Send + Sync + 'static,
{
    RangedU64ValueParser::new().range(1..)
}

/// The parser of a thread count: [`positive`], at most 65,535.
pub fn threads() -> RangedU64ValueParser<usize> {
    positive().range(1..=u64::from(u16::MAX))
}

/// The parser of a buffer size (`--read-size`, `--max-line`): [`positive`],
/// at most [`MAX_BUFFER`].
pub fn buffer_size() -> RangedU64ValueParser<usize> {
    positive().range(1..=u64::from(MAX_BUFFER))
}

/// backend-select's readiness call.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum PollerArg {
    /// select(2), as the seed; descriptors past 1023 are refused.
    #[default]
    Select,
    /// poll(2): no descriptor limit. With `--backend uring`: the basic
    /// ring (single-shot operations, a read buffer per connection), the
    /// fallback of a kernel without the newer io_uring features.
    Poll,
}

impl From<PollerArg> for Poller {
    fn from(poller: PollerArg) -> Self {
        match poller {
            PollerArg::Select => Poller::Select,
            PollerArg::Poll => Poller::Poll,
        }
    }
}

/// How a server is built: which backend, and what it serves with.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The I/O backend (see `echo-bench list`).
    #[arg(short, long, value_enum, default_value_t = BackendName::Select)]
    pub backend: BackendName,

    /// How replies are formed.
    #[arg(short, long, value_enum, default_value_t)]
    pub mode: ModeArg,

    /// Largest piece answered at once in `got` mode (the seed's recv(1000)).
    #[arg(long, default_value_t = echo_core::protocol::DEFAULT_READ_SIZE, value_parser = buffer_size())]
    pub read_size: usize,

    /// Longest line answered whole in `line` mode.
    #[arg(long, default_value_t = echo_core::protocol::DEFAULT_MAX_LINE, value_parser = buffer_size())]
    pub max_line: usize,

    /// Threads the backend may use (see `echo-bench list` for each one's meaning).
    #[arg(short, long, default_value_t = 1, value_parser = threads())]
    pub threads: usize,

    /// backend-select's readiness call; `poll` also forces uring's basic
    /// design (as `--uring-basic` does).
    #[arg(long, value_enum, default_value_t)]
    pub poller: PollerArg,

    /// With `--backend uring`: the basic design, single-shot operations and
    /// a read buffer per connection, which the backend falls back to where
    /// the kernel lacks the newer io_uring features (`compare`'s
    /// `uring-basic`). Other backends ignore it.
    #[arg(long)]
    pub uring_basic: bool,

    /// Connections served at once; past it new ones are closed and counted
    /// [default: the descriptor limit less a reserve].
    #[arg(long, value_parser = positive::<usize>())]
    pub max_connections: Option<usize>,

    /// Close connections that sent nothing for this long (e.g. 30s) [default: never].
    #[arg(long, value_parser = idle_timeout)]
    pub idle_timeout: Option<Duration>,

    /// Memory for replies, summed over all connections (every thread),
    /// past which connections with replies pending stop reading until
    /// their clients read some (e.g. 64MiB; at least the 64 KiB high
    /// watermark). The default, 256 MiB, is about 2,000 connections each
    /// at its worst case under the watermarks (128 KiB); past that, clients
    /// that do not read only push the server toward the out-of-memory
    /// killer. A connection with nothing pending may still read 64 bytes'
    /// worth, so the bound is about SIZE + 64 B per connection.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = max_buffered)]
    pub max_buffered: usize,
}

impl ServerArgs {
    /// The server these options describe.
    pub fn spec(&self) -> ServerSpec {
        ServerSpec {
            backend: self.backend,
            // One switch inside: the basic uring design is the poll variant,
            // as select's poll(2) is (see `backends::uring_design`).
            poller: if self.uring_basic { Poller::Poll } else { self.poller.into() },
            mode: self.mode.into(),
            read_size: self.read_size,
            max_line: self.max_line,
            threads: self.threads,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            max_buffered: self.max_buffered,
        }
    }

    /// The configuration these options describe.
    pub fn config(&self) -> ServerConfig {
        self.spec().config()
    }

    /// The backend these options name.
    pub fn build(&self) -> Box<dyn Backend> {
        self.spec().build()
    }

    /// The same options as `echo-bench serve` arguments, to start this
    /// server as a child process.
    pub fn to_args(&self) -> Vec<String> {
        self.spec().serve_args()
    }
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(short, long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// On SIGINT/SIGTERM, how long connections may flush before being closed.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub drain: Duration,

    /// Pin the server to this CPU (as `load --pin` and `compare --pin` do).
    #[arg(long)]
    pub cpu: Option<usize>,

    /// Drain and exit when the process with this id, which started this
    /// server, dies: `load` and `compare` pass it so a server of theirs
    /// never outlives them, even when they are killed.
    #[arg(long, hide = true, value_name = "PID")]
    pub exit_with_parent: Option<i32>,

    /// When the server exits (SIGINT/SIGTERM, after its drain), write its
    /// own figures to FILE as JSON: CPU time and peak RSS of the whole
    /// process over its whole life, connections and bytes (for `merge
    /// --server-stats`).
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<std::path::PathBuf>,

    /// The server itself.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl ServeArgs {
    /// What these options ask `serve` to run.
    pub fn to_serve(&self) -> Serve {
        Serve {
            spec: self.server.spec(),
            addr: self.addr,
            drain: self.drain,
            cpu: self.cpu,
            exit_with_parent: self.exit_with_parent,
            stats_json: self.stats_json.clone(),
        }
    }
}

/// Options of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Check the server listening there, instead of starting `--backend`.
    #[arg(short, long, conflicts_with_all = ["backend", "threads", "poller", "max_connections", "idle_timeout", "max_buffered"])]
    pub addr: Option<SocketAddr>,

    /// Run only the cases whose name contains this.
    #[arg(long)]
    pub case: Option<String>,

    /// The server to start (without --addr) and the mode, read size and
    /// line length to expect.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Options of `load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Load the server listening there, instead of starting `--backend` as a
    /// child process (whose CPU time and memory are then reported too).
    #[arg(short, long, conflicts_with_all = ["backend", "threads", "poller", "max_connections", "idle_timeout", "max_buffered", "pin"])]
    pub addr: Option<SocketAddr>,

    /// Connections held open for the whole run.
    #[arg(short, long, default_value_t = 50, value_parser = positive::<usize>())]
    pub connections: usize,

    /// Bytes per message (in line mode, the last one is the newline).
    #[arg(short, long, default_value_t = 64, value_parser = positive::<usize>())]
    pub size: usize,

    /// Time measured, after the warm-up (e.g. 10s, 500ms).
    #[arg(short, long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,

    /// Time loaded but not measured, first.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub warmup: Duration,

    /// Messages in flight per connection.
    #[arg(short, long, default_value_t = 1, value_parser = positive::<usize>())]
    pub pipeline: usize,

    /// Open loop: this many round trips per second in total, latency measured
    /// from each message's due time. Without it, closed loop.
    #[arg(short, long)]
    pub rate: Option<f64>,

    /// How the load generator runs.
    #[command(flatten)]
    pub client: ClientArgs,

    /// After the run, how long to wait for the replies still owed (sending
    /// nothing new); one still missing then fails the run.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub grace: Duration,

    /// Print one JSON object instead of the text report. It carries the
    /// latency histogram and the counts `echo-bench merge` adds up.
    #[arg(long)]
    pub json: bool,

    /// Churn: each connection closes after N round trips (the client
    /// half-closes, reads the server's end of stream, closes) and a new one
    /// takes its place at once. Reports connections/s and connect latency.
    #[arg(long, value_name = "N", value_parser = positive::<u64>())]
    pub churn: Option<u64>,

    /// The server to start (without --addr) and the mode, read size and
    /// line length to expect (with --addr, state the server's).
    #[command(flatten)]
    pub server: ServerArgs,
}

impl LoadArgs {
    /// The load these options describe.
    pub fn job(&self) -> crate::load::command::Job {
        let spec = self.server.spec();
        let addr = self.addr.unwrap_or(([127, 0, 0, 1], 0).into());
        crate::load::command::Job {
            addr: self.addr,
            config: crate::load::LoadConfig {
                duration: self.duration,
                warmup: self.warmup,
                pipeline: self.pipeline,
                rate: self.rate,
                client_threads: self.client.client_threads,
                spin: self.client.spin,
                progress: !self.json,
                ..crate::load::LoadConfig::new(addr, spec.mode, self.connections, self.size)
            },
            spec,
            grace: self.grace,
            churn: self.churn,
            pin: self.client.pin,
            json: self.json,
        }
    }
}

/// How the load generator runs: options `load` and `compare` share.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1, value_parser = threads())]
    pub client_threads: usize,

    /// Put the server (each server, in `compare`) on CPU 1 and the load
    /// generator on CPU 0.
    #[arg(long)]
    pub pin: bool,

    /// Busy-poll: the load generator never sleeps waiting for replies, so
    /// the server never pays to wake it. It takes a whole core (use with
    /// --pin); the time it polls with nothing to do is left out of its CPU
    /// figures.
    #[arg(long)]
    pub spin: bool,
}

/// Options of `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Connections held open for the whole soak.
    #[arg(short, long, default_value_t = 200, value_parser = positive::<usize>())]
    pub connections: usize,

    /// Bytes per message.
    #[arg(short, long, default_value_t = 512, value_parser = positive::<usize>())]
    pub size: usize,

    /// How long to soak (e.g. 10m).
    #[arg(short, long, default_value = "10m", value_parser = duration)]
    pub duration: Duration,

    /// Time loaded before the figures are measured.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub warmup: Duration,

    /// Print a status line this often.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub every: Duration,

    /// Messages in flight per connection.
    #[arg(short, long, default_value_t = 4, value_parser = positive::<usize>())]
    pub pipeline: usize,

    /// Open loop at this many round trips per second in total.
    #[arg(short, long)]
    pub rate: Option<f64>,

    /// After the soak, how long to wait for the replies still owed; one
    /// still missing then fails the soak.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub grace: Duration,

    /// The server to start, as a child process.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl SoakArgs {
    /// The soak these options describe.
    pub fn soak(&self) -> crate::soak::Soak {
        let spec = self.server.spec();
        crate::soak::Soak {
            config: crate::load::LoadConfig {
                duration: self.duration,
                warmup: self.warmup,
                pipeline: self.pipeline,
                rate: self.rate,
                sample_every: Some(self.every),
                ..crate::load::LoadConfig::new(
                    ([127, 0, 0, 1], 0).into(),
                    spec.mode,
                    self.connections,
                    self.size,
                )
            },
            spec,
            grace: self.grace,
        }
    }
}

/// Options of `merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The `load --json` reports, one file each, of loads run at the same
    /// time against one server.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<std::path::PathBuf>,

    /// The server's `serve --stats-json` file: adds its CPU per round trip
    /// (and per connection), over its whole life.
    #[arg(long, value_name = "FILE")]
    pub server_stats: Option<std::path::PathBuf>,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_is_a_backend_value_under_its_name() {
        for backend in BackendName::ALL {
            assert_eq!(backend.to_possible_value().unwrap().get_name(), backend.as_str());
            let cli = Cli::try_parse_from(["echo-bench", "serve", "--backend", backend.as_str()]).unwrap();
            match cli.command {
                Some(Command::Serve(args)) => assert_eq!(args.server.backend, backend),
                other => panic!("parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn counts_must_be_positive() {
        let parse = |args: &[&str]| Cli::try_parse_from(["echo-bench", "serve"].iter().chain(args));
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--threads", "65536"]).is_err());
        assert!(parse(&["--read-size", "0"]).is_err());
        assert!(parse(&["--max-connections", "-1"]).is_err());
        let cli = parse(&["--threads", "3", "--max-line", "7"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
        assert_eq!((args.server.threads, args.server.max_line), (3, 7));
    }

    #[test]
    fn uring_basic_asks_for_the_basic_design() {
        let spec = |args: &[&str]| {
            let cli = Cli::try_parse_from(["echo-bench", "serve", "--backend", "uring"].iter().chain(args))
                .unwrap();
            let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
            args.server.spec()
        };
        assert_eq!(spec(&["--uring-basic"]).label(), "uring (basic)");
        assert_eq!(spec(&[]).label(), "uring");
        assert_eq!(spec(&["--uring-basic"]).serve_args(), spec(&["--poller", "poll"]).serve_args());
    }

    #[test]
    fn server_args_round_trip_through_the_serve_argv() {
        let cli = Cli::try_parse_from([
            "echo-bench",
            "serve",
            "--backend",
            BackendName::ALL[0].as_str(),
            "--mode",
            "line",
            "--poller",
            "poll",
            "--threads",
            "2",
            "--max-connections",
            "9",
            "--idle-timeout",
            "1s 500ms",
            "--max-buffered",
            "3MiB",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("not serve") };
        let spec = args.server.spec();
        let again = Cli::try_parse_from(
            ["echo-bench".to_owned(), "serve".to_owned()].into_iter().chain(spec.serve_args()),
        )
        .unwrap();
        let Some(Command::Serve(again)) = again.command else { panic!("not serve") };
        assert_eq!(again.server.spec(), spec);
        assert_eq!(spec.max_buffered, 3 << 20);
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("256 mib"), Ok(256 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert!(size("").is_err() && size("MiB").is_err() && size("12MB").is_err() && size("-1").is_err());
        assert!(size("99999999999999999999GiB").is_err());
        assert!(max_buffered("0").is_err() && max_buffered("64KiB").is_ok());
    }
}
