//! CPU time, memory and CPU pinning, read from the kernel: `/proc` for a
//! server child, `getrusage` for the load generator's own threads.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::{Pid, SysconfVar, sysconf};

/// CPU time spent in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CpuTime {
    /// Time in user space.
    pub user: Duration,
    /// Time in the kernel (system calls, the network stack).
    pub system: Duration,
}

impl CpuTime {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// Adds another thread's time.
    pub fn add(&self, other: CpuTime) -> CpuTime {
        CpuTime { user: self.user + other.user, system: self.system + other.system }
    }
}

/// CPU time of the calling thread, to the microsecond.
pub fn thread_cpu() -> io::Result<CpuTime> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).map_err(io::Error::from)?;
    let micros = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    Ok(CpuTime { user: micros(usage.user_time()), system: micros(usage.system_time()) })
}

/// The fields of `/proc/PID/stat` after the command name, from the state
/// (field 3 of the file, 0 here) on: the name may hold spaces and
/// parentheses, the fields after its last `)` do not.
pub fn stat_fields(pid: u32) -> io::Result<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    Ok(after_name.split_whitespace().map(str::to_owned).collect())
}

/// CPU time of every thread of process `pid`, exited threads included, from
/// `/proc/PID/stat` (in clock ticks, usually 10 ms: fine over seconds).
pub fn process_cpu(pid: u32) -> io::Result<CpuTime> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15 of the file, 12 and 13 here.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))
    };
    let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    let to_duration = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Ok(CpuTime { user: to_duration(ticks(11)?), system: to_duration(ticks(12)?) })
}

/// A reading of a process's CPU time, to take the difference of two: the
/// clock ticks of `/proc/PID/stat` (every thread, exited ones included, but
/// only to 10 ms) and the run time of each live thread from
/// `/proc/PID/task/TID/schedstat` (to the nanosecond).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessCpu {
    ticks: CpuTime,
    /// Run time by thread id; empty where the kernel does not report it.
    threads: HashMap<u32, Duration>,
}

/// Reads process `pid`'s CPU time; see [`ProcessCpu`].
pub fn process_cpu_reading(pid: u32) -> io::Result<ProcessCpu> {
    let ticks = process_cpu(pid)?;
    let mut threads = HashMap::new();
    // A thread may exit between listing and reading: it is just left out.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse().ok()) else { continue };
        let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        if let Some(ns) = schedstat.split_whitespace().next().and_then(|field| field.parse().ok()) {
            threads.insert(tid, Duration::from_nanos(ns));
        }
    }
    Ok(ProcessCpu { ticks, threads })
}

impl ProcessCpu {
    /// The CPU time spent between `earlier` and `self`. To the nanosecond
    /// when every thread of `earlier` is still there and the two sources
    /// agree (split into user and system time as the ticks split it);
    /// otherwise, when a thread exited in between and took its run time with
    /// it, in clock ticks.
    pub fn since(&self, earlier: &ProcessCpu) -> CpuTime {
        let ticks = self.ticks.since(earlier.ticks);
        let all_there =
            !earlier.threads.is_empty() && earlier.threads.keys().all(|tid| self.threads.contains_key(tid));
        if !all_there {
            return ticks;
        }
        // A thread born in between ran only in between: all of its time counts.
        let precise: Duration = self
            .threads
            .iter()
            .map(|(tid, now)| now.saturating_sub(earlier.threads.get(tid).copied().unwrap_or_default()))
            .sum();
        // Two ticks of rounding (one per reading), and a little slack.
        let tolerance = Duration::from_millis(20) + ticks.total() / 20;
        if precise.abs_diff(ticks.total()) > tolerance {
            return ticks;
        }
        let user = match ticks.total().as_nanos() {
            0 => Duration::ZERO,
            total => precise.mul_f64(ticks.user.as_nanos() as f64 / total as f64),
        };
        CpuTime { user, system: precise.saturating_sub(user) }
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

/// Descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Pins the calling thread (and threads it starts later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// CPUs this machine has online.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_figures_are_read() {
        let pid = std::process::id();
        // Burn a little CPU so the tick counter moves.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_cpu(pid).unwrap().total() > Duration::ZERO);
        assert!(!process_cpu_reading(pid).unwrap().threads.is_empty());
        assert!(thread_cpu().unwrap().total() > Duration::ZERO);
        assert!(status_kib(pid, "VmHWM").unwrap() > 0);
        assert!(fd_count(pid).unwrap() >= 3);
    }

    fn reading(user_ms: u64, system_ms: u64, threads: &[(u32, u64)]) -> ProcessCpu {
        ProcessCpu {
            ticks: CpuTime { user: Duration::from_millis(user_ms), system: Duration::from_millis(system_ms) },
            threads: threads.iter().map(|&(tid, ms)| (tid, Duration::from_millis(ms))).collect(),
        }
    }

    #[test]
    fn live_threads_give_the_time_to_the_nanosecond_split_as_the_ticks_split_it() {
        let before = reading(100, 300, &[(1, 50), (2, 350)]);
        // Thread 3 was born in between; ticks say 520 ms, threads 512.
        let after = reading(230, 690, &[(1, 60), (2, 852), (3, 0)]);
        let between = after.since(&before);
        assert_eq!(between.total(), Duration::from_millis(512));
        assert_eq!(between.user, Duration::from_millis(128));
    }

    #[test]
    fn a_thread_gone_in_between_or_no_run_times_fall_back_to_the_ticks() {
        let before = reading(100, 300, &[(1, 50), (2, 350)]);
        let exited = reading(230, 690, &[(1, 560)]);
        assert_eq!(exited.since(&before).total(), Duration::from_millis(520));
        let unreported = reading(230, 690, &[(1, 0), (2, 0)]);
        assert_eq!(
            unreported.since(&reading(100, 300, &[(1, 0), (2, 0)])).total(),
            Duration::from_millis(520)
        );
        assert_eq!(exited.since(&reading(100, 300, &[])).total(), Duration::from_millis(520));
    }
}
