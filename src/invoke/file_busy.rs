//! A function's file that is being saved in place (`printf ... > api/f.sh`,
//! an editor that truncates and writes) is open for writing for the moment
//! the write takes, and the kernel will not exec it then (ETXTBSY,
//! [`InvokeError::FileBusy`]). A request that meets that moment waits for it
//! to pass instead of failing: a CGI request got a 500 that said "Text file
//! busy", and a warm worker's start counted as a crash. A script run by its
//! interpreter has no such guard: met between truncation and write it is
//! empty ([`InvokeError::FileEmpty`]), and waits the same way.

use std::future::Future;
use std::time::Duration;

use super::InvokeError;

/// How long a start refused because the file is open for writing is tried
/// again, in all.
pub const RETRY_FOR: Duration = Duration::from_millis(200);

/// Runs `attempt`, and again while it fails with [`InvokeError::FileBusy`] or
/// [`InvokeError::FileEmpty`],
/// for up to [`RETRY_FOR`] or `deadline`, whichever comes first; then that
/// error (a 503 for a busy file, a 500 for one still empty, each saying why)
/// or the attempt's own result.
pub async fn retry_while_busy<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut attempt: F,
) -> Result<T, InvokeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, InvokeError>>,
{
    // The clock is read only once the file was found busy: not per request.
    let mut give_up = None;
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt().await {
            Err(err @ (InvokeError::FileBusy { .. } | InvokeError::FileEmpty { .. })) => {
                let now = tokio::time::Instant::now();
                let give_up = *give_up.get_or_insert((now + RETRY_FOR).min(deadline));
                if now + pause >= give_up {
                    return Err(err);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
