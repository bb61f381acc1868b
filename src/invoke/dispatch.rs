//! Chooses the invoker for each request: the warm pool for functions marked
//! `warm`, the CGI spawner for everything else. Routing, limits and observability
//! see only [`super::Invoker`].

use std::sync::Arc;

use super::cgi::CgiInvoker;
use super::pool::PoolInvoker;
use super::{Invocation, InvokeFuture, Invoker};

pub struct Dispatcher {
    pub cgi: CgiInvoker,
    pub pool: Arc<PoolInvoker>,
}

impl Invoker for Dispatcher {
    fn invoke(&self, invocation: Invocation) -> InvokeFuture {
        if invocation.route.function.settings.warm.is_some() {
            self.pool.invoke(invocation)
        } else {
            self.cgi.invoke(invocation)
        }
    }

    fn admits_once_placed(&self, function: &crate::routes::Function) -> bool {
        function.settings.warm.is_some()
    }
}
