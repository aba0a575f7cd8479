//! The machine and build a comparison ran on, recorded beside its figures
//! so that two results files can be told apart.

use std::process::Command;
use std::time::SystemTime;

use serde::Serialize;

/// Where and when a comparison ran. Facts that cannot be found are `None`
/// (or `"unknown"`), never an error: they describe the run, they are not
/// needed for it.
#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    /// The kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// The CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs available to this process.
    pub cores: usize,
    /// `rustc -V`, when rustc is on the PATH.
    pub rustc: Option<String>,
    /// `git rev-parse HEAD` in the working directory, when it is a checkout.
    pub git_revision: Option<String>,
    /// When the comparison started, RFC 3339, UTC.
    pub date: String,
    /// The command line, as typed (arguments joined by spaces, quoted where
    /// they hold any).
    pub command_line: String,
}

impl Environment {
    /// Gathers the facts now.
    pub fn capture() -> Environment {
        Environment {
            kernel: kernel(),
            cpu_model: cpu_model(),
            cores: crate::procfs::cpu_count(),
            rustc: command_output("rustc", &["-V"]),
            git_revision: command_output("git", &["rev-parse", "HEAD"]),
            date: humantime::format_rfc3339(SystemTime::now()).to_string(),
            command_line: command_line(std::env::args()),
        }
    }
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|uts| uts.release().to_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cpu_model() -> String {
    use procfs::Current;
    let cpuinfo = procfs::CpuInfo::current().ok();
    // x86 says "model name"; some ARM kernels only "Hardware" or "Processor".
    let field = |key| {
        let cpuinfo = cpuinfo.as_ref()?;
        let value = cpuinfo.get_field(0, key).or_else(|| cpuinfo.fields.get(key).map(String::as_str))?;
        Some(value.trim().to_owned()).filter(|v| !v.is_empty())
    };
    ["model name", "Hardware", "Processor", "cpu model"]
        .into_iter()
        .find_map(field)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The first line a command prints, if it runs and succeeds.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (output.status.success() && !line.is_empty()).then(|| line.to_owned())
}

fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| {
            if !arg.is_empty() && !arg.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_what_needs_it() {
        let args = ["echo-bench", "compare", "--out", "my dir", "it's", ""].map(String::from);
        assert_eq!(command_line(args), r"echo-bench compare --out 'my dir' 'it'\''s' ''");
    }

    #[test]
    fn environment_is_found_on_linux() {
        let env = Environment::capture();
        assert_ne!(env.kernel, "unknown");
        assert!(env.cores >= 1);
        assert!(env.date.ends_with('Z'), "{}", env.date);
    }
}
