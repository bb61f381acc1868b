//! The server-wide cap on invocations running at once (`--max-concurrency`),
//! shared by the connection threads, and the queue in front of it.
//!
//! Why not one tokio `Semaphore`: it hands each freed slot to its oldest
//! waiter, whichever thread that waiter is on. Connections are dealt out to
//! one thread per core ([`super::connection_threads`]), and under a queue the
//! clients of one thread move in step. Measured with static C at 64
//! connections and a cap of 16, all 16 invocations sat on one thread at a
//! time while the other thread idled: the most frequent states in 1 ms
//! samples were (16, 0) and (0, 16), taking turns. The machine was 71% busy
//! and did 6,400 req/s, against 8,950 without a cap.
//!
//! Here a freed slot goes to the thread (lane) with waiters that runs the
//! fewest invocations, its oldest waiter first; between lanes that run as
//! many, to the oldest waiter of them all. Under a queue each thread runs its
//! share, and no waiter is passed over for a younger one on a lane that runs
//! as many or more, so none starves (a cap smaller than the number of
//! threads included).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::invoke::InvokeError;

thread_local! {
    /// This thread's lane: its index among the connection threads, or the
    /// last lane for every other thread (cron, `watchdog invoke`).
    static LANE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Makes the calling thread connection thread `index`, for the lanes.
pub fn enter_lane(index: usize) {
    LANE.with(|lane| lane.set(Some(index)));
}

/// The slots and their queue.
#[derive(Debug)]
pub struct Admission {
    cap: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    running: usize,
    lanes: Vec<Lane>,
    /// Numbers the waiters in the order they came, across lanes.
    next_waiter: u64,
}

#[derive(Debug, Default)]
struct Lane {
    running: usize,
    /// Oldest first, each with its number. A waiter that gives up takes
    /// itself out ([`LeaveQueue`]).
    waiters: VecDeque<(u64, oneshot::Sender<Slot>)>,
}

impl State {
    /// The lane that gets a freed slot, and its oldest waiter: the lane with
    /// waiters that runs the fewest, the oldest waiter between equals.
    fn next_waiter(&mut self) -> Option<(usize, oneshot::Sender<Slot>)> {
        let next = (0..self.lanes.len())
            .filter_map(|lane| {
                let (number, _) = self.lanes[lane].waiters.front()?;
                Some((self.lanes[lane].running, *number, lane))
            })
            .min()?
            .2;
        let (_, waiter) = self.lanes[next].waiters.pop_front()?;
        Some((next, waiter))
    }
}

/// One running invocation's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    /// None once disarmed: its counts were undone where it was made.
    admission: Option<Arc<Admission>>,
    lane: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.release(self.lane);
        }
    }
}

/// Takes a waiter out of its lane's queue when it stops waiting (its queue
/// timeout passed, or its client left and its future was dropped): a dead
/// waiter would otherwise stay queued, to be skipped one by one by a later
/// release under the lock.
struct LeaveQueue<'a> {
    admission: &'a Admission,
    lane: usize,
    number: u64,
}

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        let waiters = &mut state.lanes[self.lane].waiters;
        if let Some(at) = waiters
            .iter()
            .position(|(number, _)| *number == self.number)
        {
            waiters.remove(at);
        }
    }
}

/// What an invocation holds while it runs: the server-wide slot, and its
/// function's own when the function has `max_concurrency`.
#[derive(Debug)]
pub enum Held {
    Server(Slot),
    Function(OwnedSemaphorePermit),
}

impl Held {
    pub fn is_server(&self) -> bool {
        matches!(self, Held::Server(_))
    }
}

/// How long one request may wait for its slots, and what to answer when it
/// could not: one budget of `--queue-timeout` for its function's slot and the
/// server's, never past the invocation's deadline.
#[derive(Debug, Clone, Copy)]
pub struct QueueWait {
    /// When the wait began plus `--queue-timeout`.
    queue_end: tokio::time::Instant,
    deadline: tokio::time::Instant,
    /// The function's timeout, which the deadline is the end of.
    timeout: Duration,
    queue_timeout: Duration,
}

impl QueueWait {
    /// A wait that begins now.
    pub fn starting_now(
        queue_timeout: Duration,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            queue_end: tokio::time::Instant::now() + queue_timeout,
            deadline,
            timeout,
            queue_timeout,
        }
    }

    /// When to stop waiting.
    pub fn give_up(&self) -> tokio::time::Instant {
        self.queue_end.min(self.deadline)
    }

    /// Why a wait for a slot (the server's, or the function's own under
    /// `max_concurrency`) ended without one: the queue timeout passed (503),
    /// or the invocation's own timeout came first (504).
    pub fn refusal(&self, file: &str, function_limit: Option<u32>) -> InvokeError {
        if self.deadline < self.queue_end {
            InvokeError::QueuedPastTimeout {
                file: file.to_owned(),
                after: self.timeout,
                function_limit,
            }
        } else {
            InvokeError::QueueFull {
                waited: self.queue_timeout,
                function_limit,
            }
        }
    }
}

/// The server-wide slot an invocation takes when it starts to run. A request
/// for a warm function first waits for a place in its pool, and takes its
/// slot only then ([`crate::invoke::Invoker::admits_once_placed`]): requests
/// queued for one busy pool hold no slots other routes could run in, as
/// `--max-concurrency` counts invocations running, not waiting.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    file: String,
    wait: QueueWait,
}

impl Ticket {
    pub fn new(admission: &Arc<Admission>, file: &str, wait: QueueWait) -> Self {
        Self {
            admission: Arc::clone(admission),
            file: file.to_owned(),
            wait,
        }
    }

    /// The slot, within the request's queue wait.
    ///
    /// # Errors
    /// [`QueueWait::refusal`]'s, when it did not come in time.
    pub async fn admit(&self) -> Result<Held, InvokeError> {
        admit(&self.admission, &self.file, self.wait).await
    }
}

/// The server-wide slot, within `wait`: what a [`Ticket`] does, without one
/// (and its copies) for the invocations that take their slot at once.
///
/// # Errors
/// [`QueueWait::refusal`]'s, when it did not come in time.
pub async fn admit(
    admission: &Arc<Admission>,
    file: &str,
    wait: QueueWait,
) -> Result<Held, InvokeError> {
    match admission.acquire(wait.give_up()).await {
        Some(slot) => Ok(Held::Server(slot)),
        None => Err(wait.refusal(file, None)),
    }
}

impl Admission {
    /// `cap` invocations at once, over `threads` connection threads (and
    /// one lane for every other thread).
    pub fn new(cap: usize, threads: usize) -> Arc<Self> {
        let lanes = (0..=threads).map(|_| Lane::default()).collect();
        Arc::new(Self {
            cap,
            state: Mutex::new(State {
                running: 0,
                lanes,
                next_waiter: 0,
            }),
        })
    }

    /// How many invocations hold a slot now.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot, at once or when one is freed; `None` when `give_up` comes first.
    pub async fn acquire(self: &Arc<Self>, give_up: tokio::time::Instant) -> Option<Slot> {
        let (lane, number, mut granted) = {
            let mut state = self.lock();
            let lane = LANE
                .with(Cell::get)
                .unwrap_or(usize::MAX)
                .min(state.lanes.len() - 1);
            if state.running < self.cap {
                state.running += 1;
                state.lanes[lane].running += 1;
                return Some(Slot {
                    admission: Some(Arc::clone(self)),
                    lane,
                });
            }
            let (sender, receiver) = oneshot::channel();
            let number = state.next_waiter;
            state.next_waiter += 1;
            state.lanes[lane].waiters.push_back((number, sender));
            (lane, number, receiver)
        };
        let _leave = LeaveQueue {
            admission: self,
            lane,
            number,
        };
        match tokio::time::timeout_at(give_up, &mut granted).await {
            Ok(slot) => slot.ok(),
            Err(_) => {
                // A slot sent at the last moment is kept rather than lost:
                // closed first, nothing can arrive after the look.
                granted.close();
                granted.try_recv().ok()
            }
        }
    }

    /// Frees `lane`'s slot, and hands it on to a waiter if there is one. The
    /// waiter is woken after the lock is let go: waking a task on another
    /// thread is a system call.
    fn release(self: &Arc<Self>, lane: usize) {
        let mut state = self.lock();
        state.running -= 1;
        state.lanes[lane].running -= 1;
        loop {
            let Some((next, waiter)) = state.next_waiter() else {
                return;
            };
            state.running += 1;
            state.lanes[next].running += 1;
            drop(state);
            let slot = Slot {
                admission: Some(Arc::clone(self)),
                lane: next,
            };
            match waiter.send(slot) {
                Ok(()) => return,
                Err(mut returned) => {
                    // That waiter gave up as the slot was on its way: undone
                    // here, and on to the next.
                    returned.admission = None;
                    state = self.lock();
                    state.running -= 1;
                    state.lanes[next].running -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later(ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn the_cap_holds_and_a_freed_slot_goes_to_a_waiter() {
        let admission = Admission::new(2, 2);
        let first = admission.acquire(later(10)).await.unwrap();
        let _second = admission.acquire(later(10)).await.unwrap();
        assert_eq!(admission.running(), 2);
        // Full: a third gives up at its time.
        assert!(admission.acquire(later(20)).await.is_none());
        assert_eq!(admission.running(), 2);
        let waiting = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.acquire(later(5_000)).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap());
        // The waiter's slot was dropped with its task's result: freed.
        assert_eq!(admission.running(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_left_does_not_keep_a_slot() {
        let admission = Admission::new(1, 2);
        let held = admission.acquire(later(10)).await.unwrap();
        let gone = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.acquire(later(5_000)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        assert_eq!(admission.running(), 0);
        assert!(admission.acquire(later(10)).await.is_some());
    }

    /// Queues a waiter on `lane` by hand, as another thread's request would.
    fn queue(admission: &Admission, lane: usize) -> oneshot::Receiver<Slot> {
        let (sender, receiver) = oneshot::channel();
        let mut state = admission.lock();
        let number = state.next_waiter;
        state.next_waiter += 1;
        state.lanes[lane].waiters.push_back((number, sender));
        receiver
    }

    // On the test's own thread (current-thread runtime), so `enter_lane`
    // holds for the whole test.
    #[tokio::test]
    async fn a_freed_slot_goes_to_the_lane_that_runs_fewest() {
        let admission = Admission::new(2, 2);
        // Lane 0 holds both slots.
        enter_lane(0);
        let a = admission.acquire(later(10)).await.unwrap();
        let b = admission.acquire(later(10)).await.unwrap();
        // A waiter on lane 0 first, then one on lane 1.
        let mut local = queue(&admission, 0);
        let mut remote = queue(&admission, 1);
        // Lane 0 frees one: lane 1 runs none, so it gets it, though the
        // lane 0 waiter is older.
        drop(a);
        let remote = remote.try_recv().expect("lane 1 got the slot");
        assert!(local.try_recv().is_err());
        assert_eq!(remote.lane, 1);
        // Then lane 0 runs none: its own waiter gets the slot.
        drop(b);
        let local = local.try_recv().expect("lane 0's waiter got it");
        assert_eq!(local.lane, 0);
        assert_eq!(admission.running(), 2);
    }

    /// A cap smaller than the lanes: between lanes that run as many, the
    /// oldest waiter. The releasing lane used to win the tie, and with a cap
    /// of 1 kept the slot for as long as it had a queue.
    // On the test's own thread (current-thread runtime), so `enter_lane`
    // holds for the whole test.
    #[tokio::test]
    async fn between_equal_lanes_the_oldest_waiter_gets_the_slot() {
        let admission = Admission::new(1, 2);
        enter_lane(0);
        let held = admission.acquire(later(10)).await.unwrap();
        let mut older = queue(&admission, 1);
        let mut newer = queue(&admission, 0);
        drop(held);
        let next = older.try_recv().expect("the older waiter, on lane 1");
        assert_eq!(next.lane, 1);
        assert!(newer.try_recv().is_err());
        drop(next);
        assert_eq!(newer.try_recv().expect("then lane 0's").lane, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_queue() {
        let admission = Admission::new(1, 2);
        let _held = admission.acquire(later(10)).await.unwrap();
        for _ in 0..3 {
            assert!(admission.acquire(later(5)).await.is_none());
        }
        let queued: usize = admission
            .lock()
            .lanes
            .iter()
            .map(|lane| lane.waiters.len())
            .sum();
        assert_eq!(queued, 0);
    }
}
