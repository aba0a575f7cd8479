//! One round trip on each of 50 open connections per iteration: what a
//! backend does when many connections are ready at once.

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

use crate::client;
use crate::servers::Running;

const CONNECTIONS: usize = 50;
const SIZE: usize = 64;

pub(crate) fn bench(c: &mut Criterion, servers: &[Running]) {
    let mut group = c.benchmark_group("round_trip_50_connections");
    group.throughput(Throughput::Elements(CONNECTIONS as u64));
    let msg = client::message(SIZE);
    for s in servers {
        let addr = s.server.local_addr();
        let mut streams: Vec<_> = (0..CONNECTIONS).map(|_| client::connect(addr).expect("connect")).collect();
        let mut buf = vec![0; 64 * 1024];
        group.bench_function(BenchmarkId::new(s.name, format!("{CONNECTIONS} × {SIZE} B")), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    // Every message first, so the server finds many
                    // connections readable in one wake-up.
                    for stream in &mut streams {
                        stream.write_all(&msg).expect("send");
                    }
                    for stream in &mut streams {
                        client::read_reply(stream, SIZE, &mut buf).expect("reply");
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}
