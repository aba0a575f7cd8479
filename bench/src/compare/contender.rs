//! Who takes part in a comparison: the backends (with select's two
//! pollers as rows of their own) and the `--server` commands.

use std::fmt;

use crate::backends::{BackendName, Poller};

/// One row of the comparison: a backend, and for `select` the readiness call
/// it blocks in. `select` with poll(2) is its own row, `select-poll`, because
/// the two differ in cost as much as two backends do; so is `uring-basic`,
/// uring with `--poller poll`, its fallback design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contender {
    /// The backend.
    pub backend: BackendName,
    /// Its readiness call; only `select` looks at it.
    pub poller: Poller,
}

impl Contender {
    /// Every backend of [`BackendName::ALL`], with `select-poll` right
    /// after `select` and `uring-basic` (uring's fallback design) after
    /// `uring`.
    pub fn all() -> Vec<Contender> {
        let mut all = Vec::new();
        for backend in BackendName::ALL {
            all.push(Contender { backend, poller: Poller::Select });
            if matches!(backend, BackendName::Select | BackendName::Uring) {
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
            (BackendName::Uring, Poller::Poll) => "uring-basic",
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

impl ServerCommand {
    /// Parses `NAME=COMMAND`, as `--server` takes it.
    pub fn parse(text: &str) -> Result<ServerCommand, String> {
        let (name, command) = text
            .split_once('=')
            .ok_or("expected NAME=COMMAND, e.g. bare-mio='bare-mio --addr 127.0.0.1:{port}'")?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("the name {name:?} must be letters, digits, '-', '_' or '.'"));
        }
        if Contender::all().iter().any(|b| b.as_str() == name) || name == "none" {
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
