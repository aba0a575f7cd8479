//! `echo-bench merge` as a user runs it across machines, here on one: a
//! server with `--stats-json`, two `load --addr --json` at the same time,
//! their merge, then the server's own cost once it has exited.

mod common;

use common::finish;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use echo_bench::load::histogram;
use hdrhistogram::Histogram;

/// `echo-bench ARGS` as a child, its output captured.
fn spawn(args: &[&str]) -> io::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .env("RUST_LOG", "error")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Runs `echo-bench ARGS` to the end.
fn echo_bench(args: &[&str]) -> io::Result<Output> {
    finish(spawn(args)?)
}

#[track_caller]
fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A directory of this test's own, emptied.
fn scratch(name: &str) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("echo-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The (value, count) pairs of a histogram, bucket by bucket.
fn counts(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

fn histogram_of(report: &serde_json::Value) -> Histogram<u64> {
    histogram::decode(report["latency_histogram_ns"].as_str().expect("a histogram")).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_loads_at_once_merge_exactly_and_the_server_adds_its_own_cost() -> io::Result<()> {
    let dir = scratch("merge")?;
    let stats = dir.join("server.json");
    let mut server =
        spawn(&["serve", "--backend", "mio", "--addr", "127.0.0.1:0", "--stats-json", path(&stats)])?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line)?;
    let addr = line.split_whitespace().nth(2).expect("listening on ADDR").to_owned();

    // Two load generators at the same time, as two machines would run them.
    let load = |connections: &str| {
        spawn(&[
            "load",
            "--addr",
            &addr,
            "--connections",
            connections,
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--json",
        ])
    };
    let (a, b) = (load("2")?, load("3")?);
    let (a, b) = (json(&finish(a)?), json(&finish(b)?));
    let (fa, fb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&fa, a.to_string())?;
    std::fs::write(&fb, b.to_string())?;

    let merged = json(&echo_bench(&["merge", path(&fa), path(&fb), "--json"])?);
    let rt = |r: &serde_json::Value| r["round_trips"].as_u64().unwrap();
    assert!(rt(&a) > 0 && rt(&b) > 0, "{a}\n{b}");
    assert_eq!(rt(&merged), rt(&a) + rt(&b), "{merged}");
    assert_eq!(merged["connections"], 5);
    assert_eq!(merged["duration_s"], 1.0);
    let bytes = |r: &serde_json::Value| r["totals"]["bytes_out"].as_u64().unwrap();
    assert_eq!(bytes(&merged), bytes(&a) + bytes(&b));
    assert!(merged["merged"]["windows_overlap"].as_f64().unwrap() > 0.5, "{merged}");

    // Exact: the merged histogram is the two added bucket by bucket.
    let (ha, hb, hm) = (histogram_of(&a), histogram_of(&b), histogram_of(&merged));
    assert_eq!(hm.len(), ha.len() + hb.len());
    let mut sum = ha.clone();
    sum.add(&hb).unwrap();
    assert_eq!(counts(&hm), counts(&sum));
    // And so its percentiles lie between the inputs' and its max is theirs.
    let us = |r: &serde_json::Value, q: &str| r["latency_us"][q].as_f64().unwrap();
    assert_eq!(us(&merged, "max"), us(&a, "max").max(us(&b, "max")));
    for q in ["p50", "p99"] {
        let (lo, hi) = (us(&a, q).min(us(&b, q)), us(&a, q).max(us(&b, q)));
        assert!(lo <= us(&merged, q) && us(&merged, q) <= hi, "{q}: {merged}");
    }

    // The server writes its figures when it exits, after its drain.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .map_err(io::Error::from)?;
    let status = finish(server)?.status;
    assert!(status.success(), "{status}");
    let text = echo_bench(&["merge", path(&fa), path(&fb), "--server-stats", path(&stats)])?;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    assert!(stdout.contains("server's whole life") && stdout.contains("nothing subtracted"), "{stdout}");
    let with = json(&echo_bench(&["merge", path(&fa), path(&fb), "--server-stats", path(&stats), "--json"])?);
    let server = &with["server_stats"];
    assert!(server["cpu_us_per_round_trip"].as_f64().unwrap() > 0.0, "{server}");
    assert_eq!(server["whole_life"], true);
    assert_eq!(server["stats"]["connections_accepted"], 5, "{server}");
    assert!(server["stats"]["bytes_in"].as_u64().unwrap() >= bytes(&merged), "{server}");
    assert!(server["stats"]["peak_rss_kib"].as_u64().unwrap() > 0, "{server}");

    // Reports that do not belong together are refused, in one line.
    let mut other = b.clone();
    other["size"] = 1000.into();
    let fc = dir.join("c.json");
    std::fs::write(&fc, other.to_string())?;
    let refused = echo_bench(&["merge", path(&fa), path(&fc)])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("size 64 against 1000"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(refused.stdout.is_empty());
    other = b.clone();
    other.as_object_mut().unwrap().remove("latency_histogram_ns");
    std::fs::write(&fc, other.to_string())?;
    let refused = echo_bench(&["merge", path(&fa), path(&fc)])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("no latency histogram"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn a_stats_file_that_cannot_be_written_or_read_is_said_at_once() -> io::Result<()> {
    let dir = scratch("unwritable")?;
    let missing = dir.join("no-such-dir").join("server.json");
    // Refused before serving: a benchmark's figures are not lost at its end.
    let out = echo_bench(&["serve", "--addr", "127.0.0.1:0", "--stats-json", path(&missing)])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cannot write the server's figures"), "{stderr}");
    assert!(out.stdout.is_empty(), "it served: {}", String::from_utf8_lossy(&out.stdout));
    // Something that is not a report is refused, naming what it should be.
    let report = dir.join("a.json");
    std::fs::write(&report, "{}")?;
    let out = echo_bench(&["merge", path(&report), "--server-stats", path(&missing)])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is not the JSON of `echo-bench load --json`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
