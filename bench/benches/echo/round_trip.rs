//! One message and its reply on one open connection.

use criterion::{BenchmarkId, Criterion, Throughput};

use crate::client;
use crate::servers::Running;

/// Message sizes: a small request, and the seed's read size.
const SIZES: [usize; 2] = [64, 1000];

pub(crate) fn bench(c: &mut Criterion, servers: &[Running]) {
    let mut group = c.benchmark_group("round_trip");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let msg = client::message(size);
        for s in servers {
            let mut stream = client::connect(s.server.local_addr()).expect("connect");
            let mut buf = vec![0; 64 * 1024];
            group.bench_with_input(BenchmarkId::new(s.name, format!("{size} B")), &msg, |b, msg| {
                b.iter(|| client::round_trip(&mut stream, msg, &mut buf).expect("round trip"))
            });
        }
    }
    group.finish();
}
