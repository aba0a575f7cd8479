//! `echo-bench compare` end to end, on a tiny matrix: the table, results.json
//! and the charts.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    // Under a hard limit of 64 descriptors the load generator cannot open
    // 100 connections (it raises its soft limit, but only to the hard one;
    // the server needs few to start): every run of the cell fails, the
    // same way on any machine.
    let dir = TempDir::new("compare-fail");
    let output = Command::new("sh")
        .args(["-c", r#"ulimit -n 64 && exec "$0" "$@""#, env!("CARGO_BIN_EXE_echo-bench")])
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

/// `'PATH'`, the echo-bench binary quoted for a `--server` command.
fn quoted_exe() -> String {
    format!("'{}'", env!("CARGO_BIN_EXE_echo-bench"))
}

/// Runs `echo-bench compare ARGS... --out DIR` on a tiny matrix (one
/// connection, one run per cell, no reruns) and returns its output and
/// results.json.
fn compare_tiny(dir: &TempDir, args: &[&str]) -> io::Result<(std::process::Output, serde_json::Value)> {
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .arg("compare")
        .args(args)
        .args(["--connections", "1", "--repeat", "1", "--reruns", "0"])
        .args(["--duration", "200ms", "--warmup", "100ms", "--out"])
        .arg(&dir.0)
        .output()?;
    let json = std::fs::read_to_string(dir.0.join("results.json")).map_err(|e| {
        invalid(format!("no results.json ({e}): {}", String::from_utf8_lossy(&output.stderr)))
    })?;
    let json = serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
    Ok((output, json))
}

/// The processes whose command line contains `text`, this one's aside.
fn processes_with(text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok_and(|p| p != std::process::id()))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(text))
        .collect()
}

#[test]
fn a_server_command_is_a_contender_beside_the_backends() -> io::Result<()> {
    let dir = TempDir::new("compare-server");
    // `self` is a process of its own; `shell` keeps dash as a parent that
    // spends next to no CPU, so its figures are right only if the whole
    // process tree is read.
    let exe = quoted_exe();
    let own = format!("self={exe} serve --addr 127.0.0.1:{{port}} --backend mio");
    let shell = format!("shell=sh -c '{exe} serve --addr 127.0.0.1:$0 --backend mio; exit 0' {{port}}");
    let (output, json) = compare_tiny(
        &dir,
        &["--backends", "mio", "--server", &own, "--server", &shell, "--baseline", "self"],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for name in ["mio", "self", "shell"] {
        let row = format!("| {name} | 1 | ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&row) && !l.contains("failed")),
            "no row {row}\n{stdout}"
        );
    }

    let medians = json["medians"].as_array().ok_or_else(|| invalid("no medians".into()))?;
    let names: Vec<_> = medians.iter().map(|m| m["backend"].as_str().unwrap_or_default()).collect();
    assert_eq!(names, ["mio", "self", "shell"], "the servers come after the backends");
    for median in medians {
        let cpu = median["server_cpu_us_per_round_trip"]["median"].as_f64().unwrap_or_default();
        let rss = median["server_peak_rss_kib"]["median"].as_f64().unwrap_or_default();
        // A server spends microseconds per round trip and megabytes; a shell
        // waiting for it, next to nothing of the one.
        assert!(cpu > 1.0 && rss > 1024.0, "{}: cpu {cpu} µs/rt, rss {rss} KiB", median["backend"]);
    }
    let run =
        |name: &str| json["runs"].as_array().and_then(|r| r.iter().find(|r| r["backend"] == name)).cloned();
    let (own_run, shell_run) = (run("self").unwrap_or_default(), run("shell").unwrap_or_default());
    // The shell's tree holds a whole echo-bench and dash beside it.
    let rss = |run: &serde_json::Value| run["report"]["server"]["peak_rss_kib"].as_u64().unwrap_or_default();
    assert!(rss(&shell_run) > rss(&own_run) / 2, "shell {} KiB, self {} KiB", rss(&shell_run), rss(&own_run));
    assert_eq!(json["settings"]["servers"][1]["name"], "shell");
    assert!(json["settings"]["servers"][0]["command"].as_str().is_some_and(|c| c.contains("{port}")));

    // Stopped with their whole process group: nothing still serves the
    // ports the runs used.
    // (A process killed last may take a moment to be gone.)
    for run in [own_run, shell_run] {
        let addr = run["report"]["addr"].as_str().unwrap_or("?").to_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_with(&addr).is_empty() {
            assert!(Instant::now() < deadline, "left running: {:?}", processes_with(&addr));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for chart in ["round_trips.svg", "server_cpu.svg"] {
        let svg = std::fs::read_to_string(dir.0.join(chart))?;
        assert!(texts(&svg).any(|t| t == "shell"), "{chart} does not name shell");
    }
    Ok(())
}

#[test]
fn a_broken_server_command_fails_its_cell_and_the_command() -> io::Result<()> {
    let dir = TempDir::new("compare-server-fail");
    let raw = format!("raw={} serve --addr 127.0.0.1:{{port}} --mode raw", quoted_exe());
    let gone = "gone=sh -c 'echo no such server >&2; exit 3' {port}";
    let (output, json) = compare_tiny(&dir, &["--backends", "none", "--server", &raw, "--server", gone])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "compare succeeded:\n{stdout}\n{stderr}");
    assert!(stderr.contains("2 of 2 runs FAILED"), "{stderr}");
    assert!(stderr.contains("raw, 1 conns, 64 B, 1 thread, pipeline 1, run 1: wrong reply"), "{stderr}");
    assert!(
        stderr.contains("\"sh\" exited before it listened on 127.0.0.1:")
            && stderr.contains("(exit status: 3); its stderr ended: no such server"),
        "{stderr}"
    );
    assert!(
        stdout.contains("| raw† | 1 | failed |") && stdout.contains("| gone† | 1 | failed |"),
        "{stdout}"
    );
    let failed: Vec<_> =
        json["failures"].as_array().into_iter().flatten().map(|f| f["backend"].clone()).collect();
    assert_eq!(failed, ["raw", "gone"]);
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[test]
fn bad_server_values_are_refused_with_one_line() -> io::Result<()> {
    for (value, reason) in [
        ("nothing", "expected NAME=COMMAND"),
        ("x=serve --addr 127.0.0.1:25000", "the command must contain {port}"),
        ("mio=serve {port}", "the name \"mio\" is a backend's"),
        ("select-poll=serve {port}", "the name \"select-poll\" is a backend's"),
        ("a b=serve {port}", "must be letters, digits"),
        ("x=serve '{port}", "cannot split the command"),
    ] {
        let output =
            Command::new(env!("CARGO_BIN_EXE_echo-bench")).args(["compare", "--server", value]).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: invalid value") && first.contains(reason), "{value}: {stderr}");
    }
    for (args, reason) in [
        (&["--backends", "none"][..], "nothing to compare: --backends none needs at least one --server"),
        (&["--server", "a=x {port}", "--server", "a=y {port}"][..], "--server a is given twice"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_echo-bench")).arg("compare").args(args).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.trim() == format!("echo-bench: {reason}"),
            "{args:?}: {stderr}"
        );
    }
    Ok(())
}

/// Runs `echo-bench compare ARGS... --out DIR` with one short run per cell
/// and no reruns; returns its stdout, stderr and results.json.
fn compare_workload(dir: &TempDir, args: &[&str]) -> io::Result<(String, String, serde_json::Value)> {
    let output = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .arg("compare")
        .args(args)
        .args(["--repeat", "1", "--reruns", "0", "--duration", "200ms", "--warmup", "100ms", "--out"])
        .arg(&dir.0)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let json = std::fs::read_to_string(dir.0.join("results.json"))?;
    let json = serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
    Ok((stdout, stderr, json))
}

#[test]
fn the_pipeline_workload_varies_depth_and_a_flag_overrides_its_preset() -> io::Result<()> {
    let dir = TempDir::new("compare-pipeline");
    let (stdout, _, json) =
        compare_workload(&dir, &["--workload", "pipeline", "--backends", "mio", "--connections", "2"])?;
    assert!(stdout.starts_with("Workload pipeline: mode got"), "{stdout}");
    assert!(
        stdout.contains("| backend | connections | pipeline | messages/s | server CPU (µs/message) |"),
        "{stdout}"
    );
    for depth in [1, 16, 128] {
        assert!(stdout.contains(&format!("| mio | 2 | {depth} |")), "{stdout}");
    }
    assert_eq!(json["settings"]["workload"], "pipeline");
    assert_eq!(json["settings"]["connections"], serde_json::json!([2]), "--connections wins over the preset");
    assert_eq!(json["settings"]["pipeline"], serde_json::json!([1, 16, 128]));
    let svg = std::fs::read_to_string(dir.0.join("messages_per_s.svg"))?;
    assert!(texts(&svg).any(|t| t == "pipeline depth"), "no x axis title");
    assert!(texts(&svg).any(|t| t == "mio"), "no legend");
    Ok(())
}

#[test]
fn c10k_shows_select2_past_a_thousand_connections_as_not_possible() -> io::Result<()> {
    let dir = TempDir::new("compare-c10k");
    let (stdout, stderr, json) = compare_workload(
        &dir,
        &["--workload", "c10k", "--connections", "10,2000", "--backends", "select,mio", "--rate", "500"],
    )?;
    assert!(stdout.contains("open loop at 500 round trips/s"), "{stdout}");
    assert!(stdout.contains("| select§ | 2000 | not possible |"), "{stdout}");
    assert!(
        stdout.contains("`§` Not possible, so not run: select at 2000 connections (select(2)"),
        "{stdout}"
    );
    assert!(!stdout.contains("failed") && !stdout.contains('†'), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("| mio | 2000 |") && !l.contains("not possible")),
        "{stdout}"
    );
    assert_eq!(stderr.lines().filter(|l| l.contains("/3] ")).count(), 3, "three runs:\n{stderr}");
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(3));
    let medians = json["medians"].as_array().ok_or_else(|| invalid("no medians".into()))?;
    let impossible: Vec<_> = medians.iter().filter(|m| m["not_possible"].is_string()).collect();
    assert_eq!(impossible.len(), 1, "{medians:?}");
    assert_eq!((&impossible[0]["backend"], &impossible[0]["connections"]), (&"select".into(), &2000.into()));
    for chart in ["server_cpu.svg", "server_rss.svg"] {
        let svg = std::fs::read_to_string(dir.0.join(chart))?;
        assert!(texts(&svg).any(|t| t == "connections"), "{chart} has no x axis title");
    }
    Ok(())
}

#[test]
fn the_churn_workload_shows_connections_per_second() -> io::Result<()> {
    let dir = TempDir::new("compare-churn");
    let (stdout, _, json) = compare_workload(
        &dir,
        &["--workload", "churn", "--backends", "mio", "--connections", "2", "--churn", "3"],
    )?;
    assert!(stdout.contains("each connection closed and replaced after 3 round trips"), "{stdout}");
    assert!(stdout.contains("| connections/s | server CPU (µs/connection) |"), "{stdout}");
    assert_eq!(json["settings"]["churn"], 3);
    assert!(json["medians"][0]["connections_per_s"]["median"].as_f64() > Some(0.0), "{}", json["medians"]);
    assert!(json["runs"][0]["churn"]["connections_closed"].as_u64() > Some(0));
    assert!(dir.0.join("connections_per_s.svg").exists());
    Ok(())
}

#[test]
fn the_stream_workload_shows_megabytes_per_second_in_raw_mode() -> io::Result<()> {
    let dir = TempDir::new("compare-stream");
    let (stdout, _, json) = compare_workload(
        &dir,
        &["--workload", "stream", "--backends", "mio", "--connections", "1", "--sizes", "4096,65536"],
    )?;
    assert!(stdout.starts_with("Workload stream: mode raw"), "{stdout}");
    assert!(stdout.contains("| MB/s to server | MB/s from server | server CPU (µs/MB) |"), "{stdout}");
    assert_eq!(json["settings"]["mode"], "raw");
    assert!(json["medians"][1]["mb_per_s_in"]["median"].as_f64() > Some(0.0), "{}", json["medians"]);
    let svg = std::fs::read_to_string(dir.0.join("mb_per_s.svg"))?;
    assert!(texts(&svg).any(|t| t == "message size (bytes)"), "no x axis title");
    Ok(())
}
