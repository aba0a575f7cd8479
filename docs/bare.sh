#!/usr/bin/env bash
# Each backend beside the shortest honest server on its engine
# (bench/examples/bare-*.rs), in one interleaved, pinned `compare` run at 50
# and 500 connections: "What robustness costs" in docs/RESULTS.md.
#
# usage: docs/bare.sh OUT_DIR [more compare options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: docs/bare.sh OUT_DIR [compare options...]}
shift
cargo build --release -p echo-bench --bin echo-bench --examples
B=target/release/examples
target/release/echo-bench compare --pin --backends tokio,smol,async-std,mio,threads \
  --server bare-tokio="$B/bare-tokio --addr 127.0.0.1:{port}" \
  --server bare-smol="$B/bare-smol --addr 127.0.0.1:{port}" \
  --server bare-async-std="$B/bare-async-std --addr 127.0.0.1:{port}" \
  --server bare-mio="$B/bare-mio --addr 127.0.0.1:{port}" \
  --server bare-threads="$B/bare-threads --addr 127.0.0.1:{port}" \
  --baseline bare-mio --connections 50,500 --out "$out" "$@"
