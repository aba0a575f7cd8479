#!/usr/bin/env bash
# Counts the user-space instructions a server spends per round trip: the
# server runs under `valgrind --tool=callgrind` while `echo-bench load`
# drives it over 50 connections (CONNS=N for another count); the counters
# are zeroed when the load's 2 s warm-up ends, so the server's start-up and
# its connections' (a thread each, for some servers) are left out, and the
# instruction total over the 4 s measured is divided by the round trips the
# load verified in them. Unlike CPU time, the count does not move with other
# load on the machine, so it can tell two builds of a server apart on a
# noisy machine (kernel time is not in it: see docs/syscalls.sh). CACHE=1
# adds callgrind's cache simulation: first-level and last-level data cache
# misses per round trip, reads and writes together.
#
# usage: [CONNS=N] [CACHE=1] docs/instructions.sh SERVER_COMMAND...   (with {port} where the port goes)
#   docs/instructions.sh target/release/echo-bench serve --backend mio --addr 127.0.0.1:{port}
#   CONNS=500 CACHE=1 docs/instructions.sh target/release/examples/bare-threads --addr 127.0.0.1:{port}
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: docs/instructions.sh SERVER_COMMAND... (with {port})" >&2; exit 2; }
load=target/release/echo-bench
[ -x "$load" ] || cargo build --release -p echo-bench
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
conns=${CONNS:-50}
cache=()
[ "${CACHE:-0}" = 1 ] && cache=(--cache-sim=yes)
valgrind --tool=callgrind --max-threads=1200 "${cache[@]}" --callgrind-out-file="$out/cg.%p" "${@//\{port\}/$port}" > "$out/server.out" 2> "$out/vg" &
pid=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$load" load --addr "127.0.0.1:$port" --connections "$conns" --size 64 --duration 4s --warmup 2s --json > "$out/json" &
loader=$!
sleep 2
callgrind_control -z "$pid" > /dev/null 2>&1
wait "$loader"
callgrind_control -d "$pid" > /dev/null 2>&1
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
callgrind_annotate "$(ls -S "$out"/cg.* | head -1)" 2>/dev/null | grep -m1 -B2 'PROGRAM TOTALS' > "$out/totals"
python3 - "$out/json" "$out/totals" "$conns" "$*" <<'PY'
import json, sys
round_trips = json.load(open(sys.argv[1]))['round_trips']
lines = open(sys.argv[2]).read().split('\n')
names = [l for l in lines if l.startswith('Ir')][0].split()
# One column per event: a count, with its share in brackets, or '.' for none.
values = [0 if v == '.' else int(v.replace(',', ''))
          for v in [l for l in lines if 'PROGRAM TOTALS' in l][0].split('PROGRAM')[0].split()
          if not v.startswith('(')]
per = dict(zip(names, (v / round_trips for v in values)))
line = f"{sys.argv[4]} : {round_trips} round trips over {sys.argv[3]} connections, {per['Ir']:.0f} instructions per round trip"
if 'D1mr' in per:
    line += f", L1d misses {per['D1mr'] + per['D1mw']:.1f}, last-level misses {per['DLmr'] + per['DLmw']:.1f}"
print(line)
PY
