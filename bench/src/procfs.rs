//! CPU time, memory and CPU pinning, read from the kernel: `/proc` (through
//! the `procfs` crate) for a server child, `getrusage` for the load
//! generator's own threads. Read at the edges of a measured window, never
//! per round trip.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::Pid;
use procfs::ProcError;
use procfs::process::Process;

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

/// Process `pid` of `/proc`, as the `procfs` crate reads it.
fn process(pid: u32) -> io::Result<Process> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "no such pid"))?;
    Process::new(pid).map_err(io_error)
}

/// `procfs`'s error as the `io::Error` this module's callers expect: a
/// process that has gone is `NotFound`.
fn io_error(err: ProcError) -> io::Error {
    match err {
        ProcError::Io(err, _) => err,
        ProcError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, err.to_string()),
        ProcError::PermissionDenied(_) => io::Error::new(io::ErrorKind::PermissionDenied, err.to_string()),
        other => io::Error::other(other.to_string()),
    }
}

/// The state of process `pid` (`R`, `S`, `Z` for a zombie...).
pub fn state(pid: u32) -> io::Result<char> {
    Ok(process(pid)?.stat().map_err(io_error)?.state)
}

/// The id of process `pid`'s parent.
pub fn parent_id(pid: u32) -> io::Result<u32> {
    let ppid = process(pid)?.stat().map_err(io_error)?.ppid;
    u32::try_from(ppid).map_err(|_| io::Error::other(format!("process {pid} has parent {ppid}")))
}

/// Clock ticks as time.
fn ticks(t: u64) -> Duration {
    Duration::from_nanos(t.saturating_mul(1_000_000_000) / procfs::ticks_per_second().max(1))
}

/// CPU time of every thread of process `pid`, exited threads included, from
/// `/proc/PID/stat` (in clock ticks, usually 10 ms: fine over seconds).
pub fn process_cpu(pid: u32) -> io::Result<CpuTime> {
    Ok(process_and_children_cpu(pid)?.0)
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

/// Reads the CPU time of process `pid` and of every process descended
/// from it (see [`tree`]); see [`ProcessCpu`]. A server that is one process,
/// as `echo-bench serve` is, is read alone; a `compare --server` command
/// that forks (a shell, a supervisor, workers) is read whole. The ticks
/// add each process's reaped children (`cutime`, `cstime`), so a
/// descendant that exits between two readings keeps its time as long as a
/// process of the tree reaps it; its threads are gone then, so the
/// difference of the two readings falls back to the ticks.
pub fn process_cpu_reading(pid: u32) -> io::Result<ProcessCpu> {
    let mut ticks = CpuTime::default();
    let mut threads = HashMap::new();
    for (i, member) in tree(pid)?.into_iter().enumerate() {
        // A descendant may exit between listing and reading: it is just left
        // out. The process asked about must be there.
        let (own, reaped) = match process_and_children_cpu(member) {
            Ok(times) => times,
            Err(err) if i == 0 => return Err(err),
            Err(_) => continue,
        };
        ticks = ticks.add(own).add(reaped);
        // A thread may exit between listing and reading: it is just left out.
        let Ok(tasks) = process(member).and_then(|p| p.tasks().map_err(io_error)) else { continue };
        for task in tasks.flatten() {
            if let (Ok(tid), Ok(schedstat)) = (u32::try_from(task.tid), task.schedstat()) {
                threads.insert(tid, Duration::from_nanos(schedstat.sum_exec_runtime));
            }
        }
    }
    Ok(ProcessCpu { ticks, threads })
}

/// The CPU time of process `pid`'s own threads and that of the children it
/// has reaped (`utime`, `stime`, `cutime`, `cstime`), in clock ticks.
fn process_and_children_cpu(pid: u32) -> io::Result<(CpuTime, CpuTime)> {
    let stat = process(pid)?.stat().map_err(io_error)?;
    let own = CpuTime { user: ticks(stat.utime), system: ticks(stat.stime) };
    // Signed in the kernel's interface, never negative in fact.
    let reaped = |t: i64| ticks(u64::try_from(t).unwrap_or(0));
    Ok((own, CpuTime { user: reaped(stat.cutime), system: reaped(stat.cstime) }))
}

/// Process `pid` and every live process descended from it, `pid` first,
/// parents before their children. Read from each thread's
/// `/proc/PID/task/TID/children` where the kernel has it (the usual case),
/// otherwise from the parent ids of every process in `/proc`. A process
/// whose parent exited is re-parented out of the tree (to init or a
/// subreaper) and is no longer found.
pub fn tree(pid: u32) -> io::Result<Vec<u32>> {
    let root = process(pid)?;
    let has_children_files = root.task_from_tid(root.pid).is_ok_and(|task| task.children().is_ok());
    let parents = if has_children_files { None } else { Some(parent_ids()?) };
    let mut members = vec![pid];
    let mut next = 0;
    while let Some(&parent) = members.get(next) {
        next += 1;
        let children: Vec<u32> = match &parents {
            Some(parents) => parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c).collect(),
            None => {
                let Ok(tasks) = process(parent).and_then(|p| p.tasks().map_err(io_error)) else { continue };
                tasks.flatten().filter_map(|task| task.children().ok()).flatten().collect()
            }
        };
        for child in children {
            if !members.contains(&child) {
                members.push(child);
            }
        }
    }
    Ok(members)
}

/// Every process in `/proc` with its parent's id.
fn parent_ids() -> io::Result<Vec<(u32, u32)>> {
    let all = procfs::process::all_processes().map_err(io_error)?;
    // A process that exits while the list is read is just left out.
    let pairs = all
        .flatten()
        .filter_map(|p| {
            let stat = p.stat().ok()?;
            Some((u32::try_from(stat.pid).ok()?, u32::try_from(stat.ppid).ok()?))
        })
        .collect();
    Ok(pairs)
}

/// A `kB` field of `/proc/PID/status` summed over process `pid` and its
/// descendants (see [`tree`]). For `VmHWM` that is the sum of each live
/// process's own peak: the tree's peak if they peaked together, more than
/// it otherwise; a process that has exited is not counted.
pub fn tree_status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let mut total = 0;
    for (i, member) in tree(pid)?.into_iter().enumerate() {
        match status_kib(member, field) {
            Ok(kib) => total += kib,
            Err(err) if i == 0 => return Err(err),
            // Exited since it was listed.
            Err(_) => {}
        }
    }
    Ok(total)
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

/// A `kB` field of `/proc/PID/status`, in KiB: `VmRSS`, `VmHWM`, `VmPeak`,
/// `VmSize`, `VmData` or `VmSwap`.
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = process(pid)?.status().map_err(io_error)?;
    let value = match field {
        "VmRSS" => status.vmrss,
        "VmHWM" => status.vmhwm,
        "VmPeak" => status.vmpeak,
        "VmSize" => status.vmsize,
        "VmData" => status.vmdata,
        "VmSwap" => status.vmswap,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{field} is not read here"))),
    };
    value.ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

/// Descriptors process `pid` has open.
///
/// Counted by listing `/proc/PID/fd`, not with `procfs`'s
/// `Process::fd_count`: on Linux 6.2 and later that reads the directory's
/// size, which counts descriptor numbers reserved but not yet in use, and a
/// thread blocked in accept(2) holds one. A server's count would then move
/// by one as its acceptor enters and leaves accept(2), and a count taken
/// before it first blocks would never be seen again (the scale test waits
/// for exactly that).
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

    #[test]
    fn a_tree_holds_the_children_and_their_time() {
        // A shell that burns CPU in a child it waits for: the child's time is
        // the tree's, while it runs and once the shell has reaped it.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'; sleep 5"])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tree(pid).unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no child appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        let members = tree(pid).unwrap();
        assert_eq!(members[0], pid);
        assert!(tree_status_kib(pid, "VmHWM").unwrap() > status_kib(pid, "VmHWM").unwrap());
        let own = process_cpu(pid).unwrap().total();
        let whole = process_cpu_reading(pid).unwrap();
        assert!(whole.threads.len() >= 2, "{whole:?}");
        // Once the busy child is done and reaped, the shell starts `sleep`:
        // the child's time stays in the tree, in the shell's `cutime`.
        let comm = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        while !tree(pid).unwrap().iter().any(|p| comm(p).trim() == "sleep") {
            assert!(std::time::Instant::now() < deadline, "the busy child did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = process_cpu_reading(pid).unwrap();
        assert!(after.ticks.total() > own, "{after:?} against the shell's own {own:?}");
        let _ = shell.kill();
        let _ = shell.wait();
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
