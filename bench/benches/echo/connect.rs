//! Connection set-up and tear-down: connect, one round trip, half-close,
//! and wait for the server to close its side.

use std::io::Read;
use std::net::Shutdown;

use criterion::{BenchmarkId, Criterion, Throughput};

use crate::client;
use crate::servers::Running;

const SIZE: usize = 64;

pub(crate) fn bench(c: &mut Criterion, servers: &[Running]) {
    let mut group = c.benchmark_group("connect");
    group.throughput(Throughput::Elements(1));
    let msg = client::message(SIZE);
    for s in servers {
        let addr = s.server.local_addr();
        let mut buf = vec![0; 64 * 1024];
        group.bench_function(BenchmarkId::new(s.name, format!("{SIZE} B")), |b| {
            b.iter(|| {
                let mut stream = client::connect(addr).expect("connect");
                client::round_trip(&mut stream, &msg, &mut buf).expect("round trip");
                // Half-close and wait for the server's close: the server
                // closes first, so the TIME_WAIT state is its, and a long
                // run does not use up this side's ephemeral ports.
                stream.shutdown(Shutdown::Write).expect("shutdown");
                while stream.read(&mut buf).expect("read to the server's close") > 0 {}
            })
        });
    }
    group.finish();
}
