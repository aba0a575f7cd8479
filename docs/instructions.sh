#!/usr/bin/env bash
# Counts the user-space instructions a server spends per round trip: the
# server runs under `valgrind --tool=callgrind` while `echo-bench load`
# drives it for 4 s over 50 connections, and the instruction total is divided
# by the round trips the load verified. Unlike CPU time, the count does not
# move with other load on the machine, so it can tell two builds of a server
# apart on a noisy machine (kernel time is not in it: see docs/syscalls.sh).
#
# usage: docs/instructions.sh SERVER_COMMAND...   (with {port} where the port goes)
#   docs/instructions.sh target/release/echo-bench serve --backend mio --addr 127.0.0.1:{port}
#   docs/instructions.sh target/release/examples/bare-mio --addr 127.0.0.1:{port}
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: docs/instructions.sh SERVER_COMMAND... (with {port})" >&2; exit 2; }
load=target/release/echo-bench
[ -x "$load" ] || cargo build --release -p echo-bench
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "${@//\{port\}/$port}" > "$out/server.out" 2> "$out/vg" &
pid=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
callgrind_control -z "$pid" > /dev/null
"$load" load --addr "127.0.0.1:$port" --connections 50 --size 64 --duration 4s --warmup 0s --json > "$out/json"
callgrind_control -d "$pid" > /dev/null
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
rt=$(python3 -c "import json; print(json.load(open('$out/json'))['round_trips'])")
ir=$(callgrind_annotate "$(ls -S "$out"/cg.* | head -1)" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
echo "$* : $rt round trips, $((ir / rt)) instructions per round trip"
