#!/usr/bin/env python3
"""Two servers measured at the same time, to tell a few percent apart on a noisy machine.

`echo-bench compare` runs servers one after another, so each pair of runs it
compares is seconds apart, and on a shared machine the noise of those seconds
(another tenant, a phase of the host) differs: paired ratios of two runs of
the same server spread by ±10-20 % there. Here both servers run at once,
pinned to CPU 1, each driven by its own `echo-bench load` pinned to CPU 0, so
whatever the machine does in those seconds falls on both. In each turn, over
one window (after both loads hold all their connections and have run for a
second), the script reads each server's CPU time from /proc/PID/stat (every
thread, ended ones too) and its round trips from the kernel's count of bytes
each of its connections received (`ss -ti`, bytes_received / message size),
so neither figure depends on when a load's own measured period began; a
server that accepts slowly while the other's traffic has the CPU only
delays the window. The turns alternate which server starts first. It prints
each turn and the median of the ratios A/B with the middle half and the
extremes.

Run a server against itself first (A/A): the ratios should sit at 1.00 with
a middle half of about ±1 %; that is the method's own noise (wider for
servers with hundreds of threads, which share the one core unevenly). The figures are
each server's CPU per round trip while sharing a core with the other, not
alone: compare them with each other, not with `compare`'s.

usage: docs/side-by-side.py TURNS CONNECTIONS "SERVER_A_COMMAND" "SERVER_B_COMMAND" [load options...]
  (each command with {port} where the port goes, run from the repository's root;
  `cargo build --release -p echo-bench --bin echo-bench --examples` first)
  docs/side-by-side.py 10 500 \\
    "target/release/echo-bench serve --backend threads --addr 127.0.0.1:{port}" \\
    "target/release/examples/bare-threads --addr 127.0.0.1:{port}"
"""
import os
import socket
import statistics
import subprocess
import sys
import time

# Bytes per message: the load's --size, and what one round trip adds to
# the server's bytes received.
SIZE = 64
# Seconds the loads run before the window opens, once both are connected.
SETTLE = 1.0
# Seconds the window lasts.
WINDOW = 3.0
# How long each load is told to run: longer than any turn, it is stopped.
LOAD_S = 60
LOAD = 'target/release/echo-bench'
TICK_NS = 1e9 / os.sysconf('SC_CLK_TCK')


def free_port(taken):
    while True:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def cpu_ns(pid):
    """User and system time of the whole process, threads that ended included."""
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_NS


def received(port):
    """Bytes received so far on each of the server's connections on `port`, by peer."""
    out = subprocess.run(['ss', '-tinH', 'state', 'established', f'( sport = :{port} )'],
                         capture_output=True, text=True, check=True).stdout
    counts, peer = {}, None
    for word in out.split():
        if word.startswith('127.0.0.1:') and not word.endswith(f':{port}'):
            peer = word
        elif word.startswith('bytes_received:') and peer:
            counts[peer] = int(word.split(':')[1])
    return counts


def wait_listening(port):
    for _ in range(300):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f'no server listening on {port}')


def turn(commands, conns, load_options):
    """One turn: the servers' CPU time per round trip, in the order given."""
    ports, servers, loads = [], [], []
    try:
        for command in commands:
            ports.append(free_port(ports))
            servers.append(subprocess.Popen(
                ['taskset', '-c', '1', 'sh', '-c', 'exec ' + command.replace('{port}', str(ports[-1]))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            wait_listening(port)
        # Each load starts once the one before holds all its connections: a
        # server accepting on one thread beside hundreds of the other's busy
        # ones may take seconds to, and its load's connects would sit in SYN
        # retries meanwhile.
        for port in ports:
            loads.append(subprocess.Popen(
                ['taskset', '-c', '0', LOAD, 'load', '--addr', f'127.0.0.1:{port}', '--connections', str(conns),
                 '--size', str(SIZE), '--duration', f'{LOAD_S}s', '--warmup', '0s'] + load_options,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 10
            while len(received(port)) < conns:
                if time.monotonic() > deadline or loads[-1].poll() is not None:
                    sys.exit(f'the load on port {port} did not open its {conns} connections')
                time.sleep(0.05)
        time.sleep(SETTLE)
        start = [(cpu_ns(s.pid), received(p)) for s, p in zip(servers, ports)]
        time.sleep(WINDOW)
        end = [(cpu_ns(s.pid), received(p)) for s, p in zip(servers, ports)]
        if any(p.poll() is not None for p in servers + loads):
            sys.exit('a server or a load stopped inside the window')
    finally:
        for p in loads + servers:
            p.kill()
            p.wait()
    costs = []
    for (cpu_a, bytes_a), (cpu_b, bytes_b) in zip(start, end):
        # Over the connections open at both readings (all of them, checked above).
        round_trips = sum(bytes_b[peer] - bytes_a[peer] for peer in bytes_a if peer in bytes_b) / SIZE
        costs.append((cpu_b - cpu_a) / 1000 / round_trips)
    return costs


def main():
    if len(sys.argv) < 5:
        sys.exit('usage: ' + __doc__.split('usage: ')[1])
    # Commands and the load are found from the repository's root, as the
    # other scripts here do.
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    if not os.access(LOAD, os.X_OK):
        sys.exit(f'{LOAD} is not built: cargo build --release -p echo-bench --bin echo-bench --examples')
    turns, conns = int(sys.argv[1]), int(sys.argv[2])
    a, b = sys.argv[3], sys.argv[4]
    ratios = []
    for i in range(turns):
        # Alternate which starts (and is connected) first.
        if i % 2 == 0:
            cost_a, cost_b = turn([a, b], conns, sys.argv[5:])
        else:
            cost_b, cost_a = turn([b, a], conns, sys.argv[5:])
        ratios.append(cost_a / cost_b)
        print(f'turn {i + 1}: A {cost_a:.2f} µs/round trip, B {cost_b:.2f}, A/B {ratios[-1]:.3f}', flush=True)
    r = sorted(ratios)
    quartile = lambda f: r[min(len(r) - 1, int(f * len(r)))]
    print(f'A/B median {statistics.median(r):.3f} (middle half {quartile(0.25):.3f}-{quartile(0.75):.3f}; '
          f'{r[0]:.3f}-{r[-1]:.3f}; {len(r)} turns)')


if __name__ == '__main__':
    main()
