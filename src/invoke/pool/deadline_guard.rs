//! A warm answer's deadline, kept even when nobody reads the answer.
//!
//! An answer's body checks its deadline when it is polled. A client that stops
//! reading fills the sockets' buffers and hyper stops polling the body, so that
//! check never ran: the worker stayed lent, and its pool's place taken, until
//! the client went away, and `max` such clients shut everyone else out of the
//! function (found by a hostile-client probe). A [`Guarded`] body arms a timer
//! of its own once it has passed on a piece of the answer that is not the last
//! (an answer whole at its first poll never waits on the client): at the
//! deadline the timer expires the body, which gives its worker back as stuck
//! (stopped, as a CGI function's group is) and writes its log line, and the
//! client's response is cut off when hyper next polls it.

use std::sync::{Arc, Mutex, MutexGuard};

/// A body that can be ended from outside at its deadline.
pub trait Expire: Send + 'static {
    /// Gives the worker back as stuck and makes the next poll an error.
    fn expire(&mut self);
}

/// A body shared with the timer that expires it.
pub struct Guarded<B: Expire> {
    body: Arc<Mutex<B>>,
    deadline: tokio::time::Instant,
    timer: Option<tokio::task::AbortHandle>,
}

impl<B: Expire> Guarded<B> {
    pub fn new(body: B, deadline: tokio::time::Instant) -> Self {
        Self {
            body: Arc::new(Mutex::new(body)),
            deadline,
            timer: None,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, B> {
        lock(&self.body)
    }

    /// Starts the timer, once: after a piece of the answer that is not its
    /// last, from which point hyper may stop polling.
    pub fn arm(&mut self) {
        if self.timer.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let held = Arc::downgrade(&self.body);
        let deadline = self.deadline;
        let timer = runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(body) = held.upgrade() {
                lock(&body).expire();
            }
        });
        self.timer = Some(timer.abort_handle());
    }
}

fn lock<B>(body: &Mutex<B>) -> MutexGuard<'_, B> {
    body.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<B: Expire> Drop for Guarded<B> {
    fn drop(&mut self) {
        // Ended or left before its deadline: the timer has nothing to do.
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}
