#!/usr/bin/env bash
# Counts the system calls each backend's server makes per round trip:
# `perf stat -e raw_syscalls:sys_enter` watches the server process while
# `echo-bench load` drives it, and the count is divided by the round trips
# the load verified. perf counts without slowing the server (strace -c would
# slow it enough to change how many sockets each readiness call returns).
#
# usage: docs/syscalls.sh [CONNECTIONS] [BACKENDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/echo-bench
[ -x "$bin" ] || cargo build --release -p echo-bench
conns=${1:-50}
shift || true
backends=${*:-threads select select-poll mio tokio async-std smol uring}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for b in $backends; do
  args=(--backend "$b")
  [ "$b" = select-poll ] && args=(--backend select --poller poll)
  [ "$b" = uring-basic ] && args=(--backend uring --uring-basic)
  "$bin" serve --addr 127.0.0.1:0 --cpu 1 "${args[@]}" > "$out/$b.addr" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$b.addr" 2>/dev/null && break; sleep 0.1; done
  addr=$(awk '{print $3; exit}' "$out/$b.addr")
  perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$out/$b.perf" -- \
    taskset -c 0 "$bin" load --addr "$addr" --connections "$conns" --size 64 --duration 3s --warmup 0s --json \
    > "$out/$b.json"
  kill -INT "$pid"; wait "$pid" || true
  rt=$(sed -E 's/.*"round_trips":([0-9]+).*/\1/' "$out/$b.json")
  calls=$(awk -F, '/raw_syscalls/ {print $1; exit}' "$out/$b.perf")
  awk -v b="$b" -v c="$calls" -v r="$rt" -v n="$conns" \
    'BEGIN { printf "%-12s %4d conns  %10d syscalls / %8d round trips = %5.2f per round trip\n", b, n, c, r, c / r }'
done
