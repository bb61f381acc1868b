//! The request a connection last took in, for the lines logged when the
//! connection ends badly.
//!
//! A connection closed at the send timeout is the connection's, found where no
//! request is at hand: [`LastTaken`] lets its line name the request being
//! answered, whose invocation line has the same request id.

use std::sync::{Arc, Mutex};

use axum::http::{Method, Uri};

/// A request as hyper handed it over.
pub struct Taken {
    pub id: String,
    pub method: Method,
    pub uri: Uri,
}

/// The last request a connection took in.
#[derive(Clone, Default)]
pub struct LastTaken(Arc<Mutex<Option<Arc<Taken>>>>);

impl LastTaken {
    pub fn set(&self, taken: Arc<Taken>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(taken);
    }

    pub fn get(&self) -> Option<Arc<Taken>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
