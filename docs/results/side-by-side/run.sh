#!/usr/bin/env bash
# The side-by-side matrix: each backend against its bare server at 500 and 50 connections, 10 turns each,
# after two A/A runs (the method's own noise) and the backends on core's shared connection loop against a
# build of the commit before this round's changes to it.
cd "$(dirname "$0")/../../.."
OLD=${OLD:?set OLD to an echo-bench binary built at d5f1381}
B=target/release/examples
E=target/release/echo-bench
run() { echo "== $1, $2 connections"; python3 docs/side-by-side.py "$3" "$2" "$4" "$5" | tail -1; }
echo "# at $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
run "tokio/tokio (A/A)" 50 8 "$E serve --backend tokio --addr 127.0.0.1:{port}" "$E serve --backend tokio --addr 127.0.0.1:{port}"
run "threads/threads (A/A)" 500 8 "$E serve --backend threads --addr 127.0.0.1:{port}" "$E serve --backend threads --addr 127.0.0.1:{port}"
for b in tokio smol async-std; do
run "$b/$b at d5f1381" 500 8 "$E serve --backend $b --addr 127.0.0.1:{port}" "$OLD serve --backend $b --addr 127.0.0.1:{port}"
done
for c in 500 50; do
for b in threads async-std tokio smol mio; do
run "$b/bare-$b" $c 10 "$E serve --backend $b --addr 127.0.0.1:{port}" "$B/bare-$b --addr 127.0.0.1:{port}"
done
done
