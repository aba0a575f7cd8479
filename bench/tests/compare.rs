//! `echo-bench compare` end to end, on a tiny matrix: the table, results.json
//! and the charts.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory under the system's temp dir that no other test run uses,
/// removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        TempDir(std::env::temp_dir().join(format!("echo-bench-{name}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The contents of an SVG's `<text>` elements, trimmed.
fn texts(svg: &str) -> impl Iterator<Item = &str> {
    svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
}

#[test]
fn compare_writes_table_json_and_charts() -> io::Result<()> {
    let dir = TempDir::new("compare");
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["compare", "--backends", "select-poll,mio", "--connections", "1,4", "--repeat", "2"])
        // No reruns, so that the runs are exactly the matrix's.
        .args(["--duration", "200ms", "--warmup", "100ms", "--reruns", "0", "--out"])
        .arg(&dir.0)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    // The table: a header, then a row per backend and connection count,
    // each with a value in every column.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| backend | connections | round trips/s |"))
        .ok_or_else(|| invalid(format!("no table header:\n{stdout}")))?;
    for (backend, connections) in [("select-poll", 1), ("mio", 1), ("select-poll", 4), ("mio", 4)] {
        let prefix = format!("| {backend}");
        let row = stdout
            .lines()
            .find(|l| {
                l.starts_with(&prefix) && l.split('|').nth(2).map(str::trim) == Some(&connections.to_string())
            })
            .ok_or_else(|| invalid(format!("no row for {backend} at {connections}:\n{stdout}")))?;
        assert_eq!(row.matches('|').count(), header.matches('|').count(), "{row}");
        assert!(!row.contains("failed") && !row.contains('†'), "{row}");
    }
    assert_eq!(stderr.lines().filter(|l| l.contains("/8] ")).count(), 8, "one line per run:\n{stderr}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("results.json"))?)
        .map_err(|e| invalid(e.to_string()))?;
    let runs = json["runs"].as_array().ok_or_else(|| invalid("no runs".into()))?;
    assert_eq!(runs.len(), 2 * 2 * 2);
    assert!(runs.iter().all(|r| r["report"]["round_trips"].as_u64() > Some(0)), "{runs:?}");
    assert!(runs.iter().all(|r| r["report"]["server"]["cpu_us_per_round_trip"].is_number()));
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(0));
    assert_eq!(json["medians"].as_array().map(Vec::len), Some(4));
    assert!(json["medians"][0]["round_trips_per_s"]["median"].is_number());
    for key in ["kernel", "cpu_model", "cores", "rustc", "git_revision", "date", "command_line"] {
        assert!(json["env"].get(key).is_some(), "env has no {key}: {}", json["env"]);
    }
    assert!(
        json["env"]["command_line"]
            .as_str()
            .is_some_and(|c| c.contains("compare --backends select-poll,mio"))
    );
    assert_eq!(json["settings"]["repeat"], 2);

    for chart in ["round_trips.svg", "p99_latency.svg", "server_cpu.svg"] {
        let svg = std::fs::read_to_string(dir.0.join(chart))?;
        assert!(svg.contains("<svg"), "{chart} is not an SVG");
        assert!(svg.contains("<text"), "{chart} has no text");
        for backend in ["select-poll", "mio"] {
            // The legend's label, as text the viewer renders.
            assert!(texts(&svg).any(|t| t == backend), "{chart} does not name {backend}");
        }
        assert!(svg.contains("connections"), "{chart} has no axis title");
    }
    Ok(())
}

#[test]
fn disturbed_runs_are_left_out_and_made_again_within_the_budget() -> io::Result<()> {
    // With no tolerance at all, every run but the cheapest counts as
    // disturbed, so the cell keeps asking for runs until the budget of one
    // is spent.
    let dir = TempDir::new("compare-rerun");
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["compare", "--backends", "mio", "--connections", "2", "--repeat", "3"])
        .args(["--tolerance", "0", "--reruns", "1", "--duration", "100ms", "--warmup", "50ms", "--out"])
        .arg(&dir.0)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.contains("(again)")).count(), 1, "{stderr}");
    assert!(stderr.contains("running 1 cell again"), "{stderr}");
    assert!(stderr.contains("1 cell has fewer than 3 undisturbed runs"), "{stderr}");
    assert!(stdout.contains("| mio‡ | 2 |"), "{stdout}");
    assert!(stdout.contains("were left out and made again"), "{stdout}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("results.json"))?)
        .map_err(|e| invalid(e.to_string()))?;
    let runs = json["runs"].as_array().ok_or_else(|| invalid("no runs".into()))?;
    let repeats: Vec<_> = runs.iter().map(|r| r["repeat"].as_u64()).collect();
    assert_eq!(repeats, [Some(0), Some(1), Some(2), Some(3)], "three planned and one made again");
    let clean = runs.iter().filter(|r| r["disturbed"] == false).count();
    assert_eq!(clean, 1, "only the cheapest run is clean: {runs:?}");
    assert_eq!(json["medians"][0]["runs"], 1);
    assert_eq!(json["medians"][0]["disturbed"], 3);
    assert_eq!(json["settings"]["reruns"], 1);
    Ok(())
}

#[test]
fn compare_refuses_an_unknown_backend() -> io::Result<()> {
    let output =
        Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(["compare", "--backends", "nosuch"]).output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("select-poll"), "the error lists the backends: {stderr}");
    Ok(())
}

#[test]
fn a_failed_run_is_reported_left_out_and_fails_the_command() -> io::Result<()> {
    // Under a soft limit of 64 descriptors the load generator cannot open
    // 100 connections (the server raises its own limit and starts): every
    // run of the cell fails, the same way on any machine.
    let dir = TempDir::new("compare-fail");
    let output = Command::new("sh")
        .args(["-c", r#"ulimit -Sn 64 && exec "$0" "$@""#, env!("CARGO_BIN_EXE_echo-bench")])
        .args(["compare", "--backends", "mio", "--connections", "100", "--repeat", "2"])
        .args(["--duration", "100ms", "--warmup", "0s", "--out"])
        .arg(&dir.0)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "compare succeeded:\n{stdout}\n{stderr}");
    assert!(stderr.contains("2 of 2 runs FAILED"), "{stderr}");
    assert!(stderr.contains("FAILED: the load failed"), "{stderr}");
    assert!(stdout.contains("| mio† | 100 | failed |"), "{stdout}");
    assert!(stdout.contains("mio at 100 connections (2 of 2)"), "{stdout}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("results.json"))?)
        .map_err(|e| invalid(e.to_string()))?;
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(0));
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["failures"][0]["backend"], "mio");
    assert!(json["failures"][0]["error"].as_str().is_some_and(|e| e.contains("connection")), "{json}");
    assert_eq!(json["medians"][0]["failed"], 2);
    assert_eq!(json["medians"][0]["runs"], 0);
    Ok(())
}
