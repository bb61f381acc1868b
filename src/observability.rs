//! What watchdog tells operators: one log event per invocation and Prometheus
//! metrics (CONTRACT §7). Routing and invokers only fill in an
//! [`InvocationRecord`]; this module decides what is logged and counted.

pub mod metrics;
pub mod record;
pub mod sparse;

pub use record::{InvocationRecord, Requested};
