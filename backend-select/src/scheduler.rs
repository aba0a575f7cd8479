//! The seed's `run()`: a deque of ready `tasks`, the `recv_wait` and
//! `send_wait` maps of parked ones, and a readiness call over their
//! descriptors when nothing is ready.
//!
//! A task is a Rust `async fn`, which the compiler turns into a resumable
//! state machine just as Python turns a function with `yield` into a
//! generator. Where a seed task does `yield 'recv', sock`, ours does
//! `handle.readable(fd, until).await`: the [`Park`] future records the
//! [`Wait`] in a slot shared with the scheduler and returns `Pending` once;
//! the scheduler, seeing `Pending`, reads the slot and parks the task, as the
//! seed reads the yielded `(raison, ressource)`. When the task is polled
//! again the same future returns `Ready`, and the task carries on after its
//! `await`. No `std::task::Waker` is ever used to wake anything: the
//! scheduler alone decides when to poll, so a no-op waker suffices.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use echo_core::ShutdownSignal;
use echo_core::budget::RECHECK;

use crate::Poller;
use crate::sys::{self, Interest, WakePipe};

/// One task: the seed's generator.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Why a task gave up the thread: the seed's `raison`, with its `ressource`.
///
/// Every task of this scheduler owns exactly one descriptor (the listener,
/// or its connection), so a descriptor names a parked task, as a socket
/// names one in the seed's dictionaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The seed's `'recv'`: resume once `fd` is readable.
    Recv(RawFd),
    /// The seed's `'send'`: resume once `fd` is writable.
    Send(RawFd),
    /// Resume once `fd` is readable *or* writable: a handler with a reply
    /// pending that may also read. Waiting for writable alone would stop it
    /// reading, and a peer that sends everything before it reads would then
    /// never unblock; waiting for readable alone would strand the reply.
    RecvOrSend(RawFd),
    /// Resume only at the deadline (an accept back-off); `fd` is the task's
    /// own descriptor, which names it while it is parked but is not watched.
    Sleep(RawFd),
    /// Still runnable, but let every other task (and the readiness call) go
    /// first: what keeps one busy connection from starving the rest.
    Yield,
}

/// What a task waits for: a [`Reason`] and, optionally, a time after which
/// it is resumed anyway (an idle timeout, the drain deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// What the task waits for.
    pub(crate) reason: Reason,
    /// Resume the task at this time even if its descriptor never got ready.
    pub(crate) until: Option<Instant>,
}

/// A parked task and the deadline it is also filed under, so that waking it
/// for readiness can unfile the deadline too.
struct Parked {
    task: Task,
    until: Option<Instant>,
}

/// What tasks and scheduler share: the slot a task's `yield` goes into, and
/// tasks spawned from inside a task.
#[derive(Default)]
struct Shared {
    /// The `Wait` of the task that just returned `Pending`.
    yielded: Cell<Option<Wait>>,
    /// Descriptors of the tasks stopped by the budget: see [`Handle::hold`].
    /// A descriptor closed and reused meanwhile only costs a spurious
    /// resumption.
    held: RefCell<HashSet<RawFd>>,
    /// Tasks spawned while another task ran; the scheduler moves them to
    /// the back of `tasks` after every poll (the seed's `tasks.append`).
    spawned: RefCell<Vec<Task>>,
}

/// What a task holds to talk to its scheduler: to yield and to spawn.
#[derive(Clone, Default)]
pub(crate) struct Handle {
    shared: Rc<Shared>,
}

impl Handle {
    /// Adds a task, which runs once the current one yields.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.shared.spawned.borrow_mut().push(Box::pin(task));
    }

    /// Yields `reason`, to be resumed when it holds or at `until`.
    pub(crate) fn wait(&self, reason: Reason, until: Option<Instant>) -> Park<'_> {
        Park { slot: &self.shared.yielded, wait: Some(Wait { reason, until }) }
    }

    /// The seed's `yield 'recv', sock`.
    pub(crate) fn readable(&self, fd: RawFd, until: Option<Instant>) -> Park<'_> {
        self.wait(Reason::Recv(fd), until)
    }

    /// The seed's `yield 'send', sock`.
    pub(crate) fn writable(&self, fd: RawFd, until: Option<Instant>) -> Park<'_> {
        self.wait(Reason::Send(fd), until)
    }

    /// Resumes on whichever of readable or writable comes first.
    pub(crate) fn readable_or_writable(&self, fd: RawFd, until: Option<Instant>) -> Park<'_> {
        self.wait(Reason::RecvOrSend(fd), until)
    }

    /// Sleeps until `until`; with `None`, until shutdown resumes every task.
    pub(crate) fn sleep(&self, fd: RawFd, until: Option<Instant>) -> Park<'_> {
        self.wait(Reason::Sleep(fd), until)
    }

    /// Marks the task about to park on `fd` as stopped by the server's
    /// budget of buffered replies, which other connections free without
    /// any readiness on `fd`: the scheduler also resumes it once the budget
    /// has room, looking every [`RECHECK`] while any task is marked.
    pub(crate) fn hold(&self, fd: RawFd) {
        self.shared.held.borrow_mut().insert(fd);
    }

    /// Lets every other ready task run first.
    pub(crate) fn yield_now(&self) -> Park<'_> {
        self.wait(Reason::Yield, None)
    }
}

/// The future behind every `await` of a task: `Pending` once, after putting
/// its [`Wait`] in the shared slot, then `Ready` when polled again.
///
/// Being polled again means the scheduler judged the wait over, though it
/// may be spurious (a deadline, shutdown, a readiness that another read
/// already consumed): tasks therefore retry their I/O and park again on
/// `WouldBlock`, never assume it succeeds.
pub(crate) struct Park<'a> {
    slot: &'a Cell<Option<Wait>>,
    wait: Option<Wait>,
}

impl Future for Park<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        match self.wait.take() {
            Some(wait) => {
                self.slot.set(Some(wait));
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

/// The seed's module-level state and its `run()`.
pub(crate) struct Scheduler {
    /// Tasks ready to run, oldest first: the seed's `tasks`.
    tasks: VecDeque<Task>,
    /// Tasks waiting to read, by descriptor: the seed's `recv_wait`.
    recv_wait: HashMap<RawFd, Parked>,
    /// Tasks waiting to write, by descriptor: the seed's `send_wait`.
    send_wait: HashMap<RawFd, Parked>,
    /// Tasks waiting to read or write, whichever comes first. A third map
    /// rather than an entry in both of the seed's: a task is one object
    /// and can be parked in one place only; this one is watched for both.
    recv_or_send_wait: HashMap<RawFd, Parked>,
    /// Tasks waiting only for their deadline.
    sleep_wait: HashMap<RawFd, Parked>,
    /// The deadline of every parked task that has one, earliest first; the
    /// first one is the readiness call's timeout.
    deadlines: BTreeSet<(Instant, RawFd)>,
    /// Tasks that yielded while runnable; they rejoin `tasks` after the next
    /// readiness call, so parked tasks get their turn under load.
    yielded: Vec<Task>,
    /// The readiness call: select(2), as in the seed, or poll(2).
    poller: Poller,
    /// Always watched, so another thread can interrupt a readiness call.
    wake: Arc<WakePipe>,
    /// What the tasks share with us.
    handle: Handle,
    /// Reused between readiness calls, to save an allocation per loop.
    interests: Vec<Interest>,
    /// Reused between readiness calls, to save an allocation per loop.
    ready: Vec<RawFd>,
    /// Whether the server's budget of buffered replies has room, for the
    /// tasks marked by [`Handle::hold`]. While any is marked and it has
    /// none, a wake-up every [`RECHECK`] costs one readiness call and this.
    budget_room: Box<dyn Fn() -> bool>,
    /// The longest wait while tasks are marked by [`Handle::hold`]:
    /// [`RECHECK`], doubled after each wake-up that finds the budget still
    /// spent, up to [`RECHECK_MOST`]. Every wake-up is a readiness call over
    /// every descriptor, so a budget spent for long costs a few calls a
    /// second rather than 200; a task then resumes at most 80 ms late.
    recheck: Duration,
}

/// The longest [`Scheduler::recheck`].
const RECHECK_MOST: Duration = Duration::from_millis(80);

impl Scheduler {
    /// An empty scheduler waiting with `poller`, woken through `wake`.
    pub(crate) fn new(poller: Poller, wake: Arc<WakePipe>, budget_room: Box<dyn Fn() -> bool>) -> Self {
        Scheduler {
            tasks: VecDeque::new(),
            recv_wait: HashMap::new(),
            send_wait: HashMap::new(),
            recv_or_send_wait: HashMap::new(),
            sleep_wait: HashMap::new(),
            deadlines: BTreeSet::new(),
            yielded: Vec::new(),
            poller,
            wake,
            handle: Handle::default(),
            interests: Vec::new(),
            ready: Vec::new(),
            budget_room,
            recheck: RECHECK,
        }
    }

    /// The handle tasks use to yield and spawn.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until every task has ended: the seed's `run()`.
    ///
    /// Once `signal` is triggered, and again once its deadline has passed,
    /// every parked task is resumed so that it can notice: the listener task
    /// ends, handlers drain and then close.
    pub(crate) fn run(&mut self, signal: &ShutdownSignal) -> io::Result<()> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut shutdown_seen = false;
        let mut expiry_seen = false;
        loop {
            self.tasks.extend(self.handle.shared.spawned.borrow_mut().drain(..));
            if signal.is_triggered() && !shutdown_seen {
                shutdown_seen = true;
                self.unpark_all();
            }
            if signal.is_expired() && !expiry_seen {
                expiry_seen = true;
                self.unpark_all();
            }
            let Some(mut task) = self.tasks.pop_front() else {
                if self.is_empty() {
                    return Ok(());
                }
                self.wait_for_readiness()?;
                continue;
            };
            match task.as_mut().poll(&mut cx) {
                // The seed's StopIteration: dropping the task closes its socket.
                Poll::Ready(()) => {}
                Poll::Pending => match self.handle.shared.yielded.take() {
                    Some(wait) => self.park(task, wait),
                    // Only `Park` makes our tasks pending; anything else is a
                    // bug that would leave the task stranded for ever.
                    None => tracing::error!("a task returned Pending without a reason; dropped"),
                },
            }
        }
    }

    /// No task left, ready or parked: the seed's `not any([...])`.
    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.yielded.is_empty()
            && self.recv_wait.is_empty()
            && self.send_wait.is_empty()
            && self.recv_or_send_wait.is_empty()
            && self.sleep_wait.is_empty()
    }

    /// Files `task` under what it waits for: the seed's
    /// `recv_wait[ressource] = tâche`.
    fn park(&mut self, task: Task, wait: Wait) {
        let (map, fd) = match wait.reason {
            Reason::Recv(fd) => (&mut self.recv_wait, fd),
            Reason::Send(fd) => (&mut self.send_wait, fd),
            Reason::RecvOrSend(fd) => (&mut self.recv_or_send_wait, fd),
            Reason::Sleep(fd) => (&mut self.sleep_wait, fd),
            Reason::Yield => return self.yielded.push(task),
        };
        if let Some(until) = wait.until {
            self.deadlines.insert((until, fd));
        }
        let previous = map.insert(fd, Parked { task, until: wait.until });
        debug_assert!(previous.is_none(), "two tasks parked on descriptor {fd}");
    }

    /// Takes the task parked on `fd`, wherever it is, out of every map.
    fn unpark(&mut self, fd: RawFd) -> Option<Task> {
        let parked = self
            .recv_wait
            .remove(&fd)
            .or_else(|| self.send_wait.remove(&fd))
            .or_else(|| self.recv_or_send_wait.remove(&fd))
            .or_else(|| self.sleep_wait.remove(&fd))?;
        if let Some(until) = parked.until {
            self.deadlines.remove(&(until, fd));
        }
        Some(parked.task)
    }

    /// Makes every parked task ready, so that each looks at the shutdown
    /// signal.
    fn unpark_all(&mut self) {
        for map in
            [&mut self.recv_wait, &mut self.send_wait, &mut self.recv_or_send_wait, &mut self.sleep_wait]
        {
            self.tasks.extend(map.drain().map(|(_, parked)| parked.task));
        }
        self.tasks.extend(self.yielded.drain(..));
        self.deadlines.clear();
    }

    /// Blocks until a parked descriptor is ready, a deadline passes or the
    /// wake pipe is written, then moves every task that may go on to `tasks`:
    /// the seed's `select(recv_wait, send_wait, [])` loop.
    fn wait_for_readiness(&mut self) -> io::Result<()> {
        let holding = !self.handle.shared.held.borrow().is_empty();
        let timeout = if self.yielded.is_empty() {
            let next =
                self.deadlines.first().map(|(until, _)| until.saturating_duration_since(Instant::now()));
            match (next, holding) {
                (Some(next), true) => Some(next.min(self.recheck)),
                (None, true) => Some(self.recheck),
                (next, false) => next,
            }
        } else {
            // Yielded tasks are ready: only look, do not wait.
            Some(Duration::ZERO)
        };
        let mut interests = std::mem::take(&mut self.interests);
        interests.clear();
        interests.push(Interest { fd: self.wake.fd(), read: true, write: false });
        interests.extend(self.recv_wait.keys().map(|&fd| Interest { fd, read: true, write: false }));
        interests.extend(self.send_wait.keys().map(|&fd| Interest { fd, read: false, write: true }));
        interests.extend(self.recv_or_send_wait.keys().map(|&fd| Interest { fd, read: true, write: true }));
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let result = match self.poller {
            Poller::Select => sys::select(&interests, timeout, &mut ready),
            Poller::Poll => sys::poll(&interests, timeout, &mut ready),
        };
        self.interests = interests;
        result?;
        for &fd in &ready {
            if fd == self.wake.fd() {
                self.wake.drain();
            } else if let Some(task) = self.unpark(fd) {
                self.tasks.push_back(task);
            }
        }
        self.ready = ready;
        let now = Instant::now();
        while let Some(&(until, fd)) = self.deadlines.first() {
            if until > now {
                break;
            }
            self.deadlines.remove(&(until, fd));
            if let Some(task) = self.unpark(fd) {
                self.tasks.push_back(task);
            }
        }
        if holding && (self.budget_room)() {
            let held = std::mem::take(&mut *self.handle.shared.held.borrow_mut());
            for fd in held {
                if let Some(task) = self.unpark(fd) {
                    self.tasks.push_back(task);
                }
            }
            self.recheck = RECHECK;
        } else if holding {
            self.recheck = (self.recheck * 2).min(RECHECK_MOST);
        }
        self.tasks.extend(self.yielded.drain(..));
        Ok(())
    }
}
