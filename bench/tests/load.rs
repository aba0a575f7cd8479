//! `echo-bench load` and `soak` as a user runs them: a valid run reports
//! real figures, a corrupt reply voids the run, an open-loop run keeps its
//! rate.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

fn echo_bench(args: &str) -> io::Result<Output> {
    echo_bench_argv(&args.split(' ').collect::<Vec<_>>())
}

/// Runs `echo-bench` with these arguments to the end.
fn echo_bench_argv(args: &[&str]) -> io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_echo-bench")).env("RUST_LOG", "error").args(args).output()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs `echo-bench ARGS --json` (ARGS split at spaces), which must
/// succeed; its report.
fn json_report(args: &str) -> io::Result<serde_json::Value> {
    let out = echo_bench(&format!("{args} --json"))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(json(&out))
}

/// [`json_report`] of `load ARGS --addr ADDR`.
fn load_json(addr: std::net::SocketAddr, args: &str) -> io::Result<serde_json::Value> {
    json_report(&format!("{args} --addr {addr}"))
}

#[test]
fn a_closed_loop_run_reports_every_figure() -> io::Result<()> {
    let report = json_report("load --backend mio --connections 8 --size 64 --duration 1s --warmup 200ms")?;
    let rt = report["round_trips"].as_u64().unwrap();
    assert!(rt > 1000, "{report}");
    assert_eq!(report["errors"]["reset"], 0);
    let latency = &report["latency_us"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    let server = &report["server"];
    assert!(server["cpu_us_per_round_trip"].as_f64().unwrap() > 0.0, "{server}");
    assert!(server["peak_rss_kib"].as_u64().unwrap() > 0, "{server}");
    assert!(report["client_cpu_us_per_round_trip"].as_f64().unwrap() > 0.0);
    let slowest = report["slowest_connection"].as_u64().unwrap();
    assert!(slowest > 0 && slowest <= report["fastest_connection"].as_u64().unwrap());
    // The grace collects what was in flight when the window closed, at
    // most one message per connection here, and sends nothing new.
    let in_grace = report["grace"]["answered_in_grace"].as_u64().unwrap();
    assert!(in_grace <= 8, "{report}");
    Ok(())
}

#[test]
fn the_json_report_carries_its_latency_histogram() -> io::Result<()> {
    let report = json_report("load --backend mio --connections 2 --size 64 --duration 300ms --warmup 0s")?;
    let text = report["latency_histogram_ns"].as_str().expect("a histogram");
    let histogram = echo_bench::load::histogram::decode(text).unwrap();
    // Every round trip of the window, and the replies of the grace.
    let counted =
        report["round_trips"].as_u64().unwrap() + report["grace"]["answered_in_grace"].as_u64().unwrap();
    assert_eq!(histogram.len(), counted, "{report}");
    // (JSON numbers come back to within a unit of the last place.)
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    assert!(close(histogram.max() as f64 / 1e3, report["latency_us"]["max"].as_f64().unwrap()), "{report}");
    let totals = &report["totals"];
    let mb_out = totals["bytes_out"].as_f64().unwrap() / 0.3 / 1e6;
    assert!(close(mb_out, report["mb_per_s_out"].as_f64().unwrap()), "{report}");
    assert!(totals["window_start_unix_s"].as_f64().unwrap() > 1.6e9, "{totals}");
    assert_eq!(report["churn"], serde_json::Value::Null);
    Ok(())
}

#[test]
fn a_churned_run_reports_connections_per_second_and_connect_latency() -> io::Result<()> {
    let report = json_report("load --backend mio --churn 5 --connections 4 --duration 1s --warmup 200ms")?;
    let churn = &report["churn"];
    assert_eq!(churn["round_trips_per_connection"], 5, "{report}");
    let closed = churn["connections_closed"].as_u64().unwrap();
    assert!(closed > 0 && churn["connections_per_s"].as_f64().unwrap() > 0.0, "{report}");
    // Five round trips per connection, four places: the round trips of the
    // window come from the connections closed in it, but for at most two a
    // place at each edge of the window (one retired and waiting for the
    // server's close, one under way).
    let rt = report["round_trips"].as_u64().unwrap();
    assert!(rt >= 5 * closed.saturating_sub(8) && rt <= 5 * (closed + 8), "{report}");
    let connect = &churn["connect_latency_us"];
    let (p50, max) = (connect["p50"].as_f64().unwrap(), connect["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= max, "{report}");
    let connects =
        echo_bench::load::histogram::decode(churn["connect_histogram_ns"].as_str().unwrap()).unwrap();
    assert_eq!(connects.len(), churn["connects"].as_u64().unwrap());
    assert!(churn["server_cpu_us_per_connection"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["server"]["cpu_us_per_round_trip"].as_f64().unwrap() > 0.0, "{report}");
    // And the text says so.
    let out = echo_bench("load --backend mio --churn 3 --connections 2 --duration 300ms --warmup 0s")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 round trips per connection") && stdout.contains("connect (µs)"), "{stdout}");
    assert!(stdout.contains("per connection (its whole lifetime)"), "{stdout}");
    Ok(())
}

#[test]
fn an_open_loop_run_keeps_its_rate() -> io::Result<()> {
    let report = json_report(
        "load --backend mio --mode line --connections 10 --rate 2000 --duration 1s --warmup 200ms",
    )?;
    let rate = report["round_trips_per_s"].as_f64().unwrap();
    assert!((1800.0..=2200.0).contains(&rate), "asked 2000/s, got {rate}/s");
    Ok(())
}

#[test]
fn an_open_loop_rate_is_shared_alike_by_connections_split_unevenly_across_threads() -> io::Result<()> {
    // Three connections on two client threads: one thread has two of them.
    let args =
        "load --backend mio --connections 3 --client-threads 2 --rate 3000 --duration 1s --warmup 200ms";
    let report = json_report(args)?;
    let slowest = report["slowest_connection"].as_f64().unwrap();
    let fastest = report["fastest_connection"].as_f64().unwrap();
    assert!(slowest > 0.9 * fastest, "each connection should carry 1000/s: {report}");
    Ok(())
}

/// An echo server on a loopback port, a thread per connection, that shows
/// each chunk it reads to `on_chunk` (with the count of bytes echoed before
/// it) before echoing it back.
fn echo_server(on_chunk: fn(usize, &mut [u8])) -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut echoed = 0usize;
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    on_chunk(echoed, &mut buf[..n]);
                    echoed += n;
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// An echo server that flips one bit of the 10,000th byte it returns.
fn corrupting_server() -> io::Result<std::net::SocketAddr> {
    echo_server(|echoed, chunk| {
        if (echoed..echoed + chunk.len()).contains(&10_000) {
            chunk[10_000 - echoed] ^= 1;
        }
    })
}

#[test]
fn one_corrupt_byte_fails_the_run() -> io::Result<()> {
    let addr = corrupting_server()?.to_string();
    let out =
        echo_bench(&format!("load --addr {addr} --mode raw --connections 2 --duration 2s --warmup 0s"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt reply must fail the run");
    assert!(!stdout.contains("round trips"), "no figures reported for a void run: {stdout}");
    assert!(stderr.contains("FAILED") && stderr.contains("expected"), "{stderr}");
    Ok(())
}

/// An echo server that stops for 300 ms once, after its first 200 64-byte
/// messages.
fn stalling_server() -> io::Result<std::net::SocketAddr> {
    echo_server(|echoed, chunk| {
        if (echoed..echoed + chunk.len()).contains(&(200 * 64)) {
            thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn an_open_loop_run_shows_a_server_stall_in_its_percentiles() -> io::Result<()> {
    let args = "load --mode raw --connections 1 --rate 1000 --duration 1s --warmup 0s";
    let report = load_json(stalling_server()?, args)?;
    // The 300 messages due during the stall wait behind it and go out one
    // by one after it: counted from when they were due, a quarter of the
    // run waited 0–300 ms. Counted from when they were finally sent, only
    // the one in flight would show the stall, and p90 would be well under
    // a millisecond.
    let p90 = report["latency_us"]["p90"].as_f64().unwrap();
    assert!(p90 > 50_000.0, "the stall is hidden: {report}");
    let rate = report["round_trips_per_s"].as_f64().unwrap();
    assert!(rate > 800.0, "the backlog was not sent after the stall: {report}");
    Ok(())
}

#[test]
fn messages_still_unanswered_after_the_grace_fail_the_run() -> io::Result<()> {
    // Answers 300 messages, then nothing for longer than the run and its
    // grace.
    let addr = echo_server(|echoed, chunk| {
        if (echoed..echoed + chunk.len()).contains(&(300 * 64)) {
            thread::sleep(Duration::from_secs(5));
        }
    })?
    .to_string();
    let args = "--mode raw --connections 1 --rate 1000 --duration 1s --warmup 0s --grace 300ms";
    let out =
        echo_bench_argv(&[&["load", "--addr", &addr][..], &args.split(' ').collect::<Vec<_>>()].concat())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // How many were owed, and how many came in the grace: none here.
    assert!(stderr.contains("FAILED") && stderr.contains("1 messages still unanswered"), "{stderr}");
    assert!(stderr.contains("0 replies completed in the grace"), "{stderr}");
    assert!(out.stdout.is_empty(), "no figures for a void run");
    Ok(())
}

#[test]
fn a_reply_that_comes_in_the_grace_counts_its_true_latency_but_not_as_a_round_trip() -> io::Result<()> {
    // Answers the first message at once and the second 1.5 s later: after
    // the 1 s window, inside the grace.
    let addr = echo_server(|echoed, _| {
        if echoed == 64 {
            thread::sleep(Duration::from_millis(1500));
        }
    })?;
    let report =
        load_json(addr, "load --mode raw --connections 1 --size 64 --duration 1s --warmup 0s --grace 10s")?;
    assert_eq!(report["round_trips"], 1, "{report}");
    assert_eq!(report["grace"]["answered_in_grace"], 1, "{report}");
    assert_eq!(report["grace"]["grace_s"], 10.0, "{report}");
    let max = report["latency_us"]["max"].as_f64().unwrap();
    assert!(max >= 1_500_000.0, "the latency of a reply of the grace is its true latency: {report}");
    Ok(())
}

#[test]
fn a_server_that_never_answers_fails_the_run() -> io::Result<()> {
    let addr = echo_server(|_, _| thread::sleep(Duration::from_secs(5)))?.to_string();
    let out = echo_bench(&format!(
        "load --addr {addr} --connections 2 --duration 300ms --warmup 0s --grace 300ms"
    ))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("FAILED") && stderr.contains("2 messages still unanswered on 2"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("round trips"), "no figures for a void run");
    Ok(())
}

#[test]
fn options_no_schedule_or_core_can_honour_are_refused() -> io::Result<()> {
    let impossible_rate = echo_bench("load --addr 127.0.0.1:1 --rate 1e10")?;
    let stderr = String::from_utf8_lossy(&impossible_rate.stderr);
    assert!(!impossible_rate.status.success() && stderr.contains("no schedule can keep"), "{stderr}");
    let crowded = echo_bench("load --backend mio --pin --spin --client-threads 2")?;
    let stderr = String::from_utf8_lossy(&crowded.stderr);
    assert!(
        !crowded.status.success() && stderr.contains("--spin with --pin needs --client-threads 1"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn options_are_refused_before_a_server_is_started() -> io::Result<()> {
    // The backend is one that would take time to start and a port to bind:
    // refused first, nothing starts, and the error names the option.
    for (args, why) in [
        ("--size 67108865", "--size 67108865 is more than"),
        ("--pipeline 65521", "--pipeline 65521 must be below 65521"),
        ("--grace 0s", "--grace must be more than zero"),
        ("--rate 1e10", "no schedule can keep"),
    ] {
        let mut argv = vec!["load", "--backend", "mio", "--duration", "100ms"];
        argv.extend(args.split(' '));
        let out = echo_bench_argv(&argv)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{args}: {stderr}");
        assert!(!stderr.contains("listening"), "{args}: a server was started: {stderr}");
    }
    let soak = echo_bench("soak --backend mio --pipeline 70000 --duration 100ms")?;
    let stderr = String::from_utf8_lossy(&soak.stderr);
    assert!(!soak.status.success() && stderr.contains("--pipeline 70000 must be below"), "{stderr}");
    assert!(soak.stdout.is_empty(), "the soak started: {}", String::from_utf8_lossy(&soak.stdout));
    Ok(())
}

/// An echo server that waits 20 ms before each reply.
fn slow_server() -> io::Result<std::net::SocketAddr> {
    echo_server(|_, _| thread::sleep(Duration::from_millis(20)))
}

/// `load` against a server that answers after 20 ms, with or without
/// `--spin`; the JSON report.
fn load_slow_server(spin: bool) -> io::Result<serde_json::Value> {
    let args = "load --mode raw --connections 1 --duration 600ms --warmup 0s";
    load_json(slow_server()?, &if spin { format!("{args} --spin") } else { args.to_owned() })
}

#[test]
fn a_busy_polling_client_waits_without_sleeping_and_counts_only_its_work() -> io::Result<()> {
    let report = load_slow_server(true)?;
    assert_eq!(report["spin"], true);
    assert!(report["round_trips"].as_u64().unwrap() > 0, "{report}");
    // Some 30 round trips of 20 ms each: a client that never sleeps polls
    // thousands of times while it waits, and nearly all the window is idle
    // polling, which its CPU figures leave out.
    let polls = report["client_polls_per_round_trip"].as_f64().unwrap();
    assert!(polls > 100.0, "{report}");
    // Most of the CPU time the client got was idle polling. (Not "most of
    // the window": on a busy machine the spinning thread gets only part of
    // a core, and the run must not depend on how much.)
    let cpu = &report["client_cpu"];
    let secs = |d: &serde_json::Value| d["secs"].as_f64().unwrap() + d["nanos"].as_f64().unwrap() / 1e9;
    let cpu = secs(&cpu["user"]) + secs(&cpu["system"]);
    let idle = report["client_idle_polling_s"].as_f64().unwrap();
    assert!(idle > 0.0 && idle >= 0.5 * cpu, "{report}");
    assert!(report["client_cpu_utilization"].as_f64().unwrap() < 0.5, "{report}");
    assert_eq!(report["client_saturated"], false, "{report}");

    // Without it, the client sleeps until each reply: one poll per reply.
    let report = load_slow_server(false)?;
    assert_eq!(report["spin"], false);
    let polls = report["client_polls_per_round_trip"].as_f64().unwrap();
    assert!((0.5..3.0).contains(&polls), "{report}");
    assert_eq!(report["client_idle_polling_s"], 0.0, "{report}");
    Ok(())
}

#[test]
fn a_short_soak_is_clean_and_leaks_nothing() -> io::Result<()> {
    let out = echo_bench("soak --backend mio --connections 16 --duration 1s --warmup 200ms --every 300ms")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.lines().filter(|l| l.contains("round trips verified")).count() >= 3, "{stderr}");
    assert!(stdout.contains("descriptors leaked: 0"), "{stdout}");
    assert!(stdout.contains("drift           descriptors +0 "), "{stdout}");
    Ok(())
}
