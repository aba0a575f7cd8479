//! The bare servers of `bench/examples/`, each under a short verified load:
//! the shortest honest server on each engine must pass the same check of
//! every reply byte that the backends pass.
//!
//! `cargo test` (and `cargo test --workspace`) builds the examples before it
//! runs the tests, into `examples/` beside the echo-bench binary; a run
//! narrowed to `--test bare` does not, so build them first there
//! (`cargo build -p echo-bench --examples`).

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ServerChild;

/// Where cargo put the example `name`.
fn example(name: &str) -> io::Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_echo-bench"));
    let path = bin.parent().map(|dir| dir.join("examples").join(name)).unwrap_or_default();
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {}: build the examples first (cargo build -p echo-bench --examples)", path.display()),
        ))
    }
}

/// Starts the example `name` on a free loopback port and runs
/// `echo-bench load` against it in `got` mode; the load checks every reply.
fn passes_a_verified_load(name: &str) -> io::Result<()> {
    let mut server = ServerChild::from_command(Command::new(example(name)?).args(["--addr", "127.0.0.1:0"]))?;
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["load", "--addr", &server.addr.to_string(), "--mode", "got", "--connections", "4"])
        .args(["--duration", "300ms", "--warmup", "100ms"])
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "load against {name} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("round trips"), "{name}: no figures\n{stdout}");
    // Still serving after the load's connections closed.
    assert!(server.child.try_wait()?.is_none(), "{name} exited");
    server.signal("TERM")?;
    server.wait_timeout(Duration::from_secs(10))?;
    Ok(())
}

/// Every bare server in `bench/examples/` (each `bare-*.rs` there), found
/// by listing the folder, so a new one is tested without a list to update.
#[test]
fn every_bare_server_passes_a_verified_load() -> io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| Some(file.strip_suffix(".rs")?.to_owned()))
        .filter(|name| name.starts_with("bare-"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "the bare servers are missing: {names:?}");
    for name in &names {
        passes_a_verified_load(name)?;
    }
    Ok(())
}
