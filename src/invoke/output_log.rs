//! A function's stderr (and a warm worker's stdout), forwarded to watchdog's log
//! one line at a time.
//!
//! Lines are tagged with the route and request id. A line longer than
//! [`MAX_LINE`] is logged in pieces, so a function that never ends a line cannot grow
//! memory without bound. Each stream has its own log, so a line half written on
//! one is never joined to a line of the other.

use bytes::BytesMut;

pub const MAX_LINE: usize = 16 * 1024;

/// Which of a process's output streams a log follows: stderr lines are logged
/// as warnings, a worker's stdout (`console.log`, `print`) as information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub struct OutputLog {
    route: String,
    request_id: String,
    partial: BytesMut,
    /// The last byte seen was a `\r`, which ended a line: a `\n` right after
    /// it ends no other.
    after_cr: bool,
    stream: Stream,
    /// Lines start with `[request-id] ` (the Node adapter's console): that id
    /// is the line's, in the log's own field, so filtering by request id finds it.
    tagged: bool,
}

impl OutputLog {
    /// A CGI function's stderr, all of it this request's.
    pub fn new(route: &str, request_id: &str) -> Self {
        Self::of_worker(route, request_id, Stream::Stderr, false)
    }

    /// One output stream of a warm worker, which serves many requests; `worker`
    /// stands for the request id of lines that name none.
    pub fn of_worker(route: &str, worker: &str, stream: Stream, tagged: bool) -> Self {
        Self {
            route: route.to_owned(),
            request_id: worker.to_owned(),
            partial: BytesMut::new(),
            after_cr: false,
            stream,
            tagged,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        for line in split_lines(&mut self.partial, &mut self.after_cr, chunk) {
            self.emit(&line);
        }
    }

    /// Logs whatever is left without a final newline.
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            let rest = self.partial.split();
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.as_ref();
        let (request_id, text) = match self.tagged.then(|| split_tag(line)).flatten() {
            Some((id, text)) => (id, text),
            None => (self.request_id.as_str(), line),
        };
        match self.stream {
            Stream::Stderr => tracing::warn!(
                target: "watchdog::function",
                route = %self.route,
                request_id = %request_id,
                "{text}"
            ),
            Stream::Stdout => tracing::info!(
                target: "watchdog::function",
                route = %self.route,
                request_id = %request_id,
                "{text}"
            ),
        }
    }
}

/// `[abc-123] text` as (`abc-123`, `text`). Request ids hold no spaces, so the
/// first `] ` ends the id.
fn split_tag(line: &str) -> Option<(&str, &str)> {
    let (id, text) = line.strip_prefix('[')?.split_once("] ")?;
    (!id.is_empty()).then_some((id, text))
}

/// Appends `chunk` to `partial` and returns the complete lines (without their
/// end), cutting any line at [`MAX_LINE`] bytes.
///
/// A line ends at `\n`, `\r\n` or a lone `\r`. The official Lambda runtime
/// clients (awslambdaric, the Node one) write a multi-line record, such as an
/// error's traceback, as one line with `\r` between its lines, for CloudWatch;
/// logged as it came, the `\r`s sent a terminal back to the start of the line
/// over and over, and a log file held one line of glued fragments.
fn split_lines(partial: &mut BytesMut, after_cr: &mut bool, mut chunk: &[u8]) -> Vec<BytesMut> {
    let mut lines = Vec::new();
    while let Some(&first) = chunk.first() {
        if std::mem::take(after_cr) && first == b'\n' {
            chunk = &chunk[1..];
            continue;
        }
        // Whole runs at a time, not byte by byte: a chatty function's stderr
        // passes through here.
        let room = MAX_LINE - partial.len();
        let end = (chunk.iter().take(room)).position(|&b| b == b'\n' || b == b'\r');
        if let Some(at) = end {
            partial.extend_from_slice(&chunk[..at]);
            lines.push(partial.split());
            *after_cr = chunk[at] == b'\r';
            chunk = &chunk[at + 1..];
        } else {
            let taken = chunk.len().min(room);
            partial.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
            if partial.len() >= MAX_LINE {
                lines.push(partial.split());
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_the_request() {
        assert_eq!(split_tag("[abc] hello"), Some(("abc", "hello")));
        assert_eq!(split_tag("[a]b] x y"), Some(("a]b", "x y")));
        assert_eq!(split_tag("[] x"), None);
        assert_eq!(split_tag("plain"), None);
        assert_eq!(split_tag("[INFO]no space"), None);
    }

    #[test]
    fn lines_across_chunks_and_long_lines() {
        let mut partial = BytesMut::new();
        let mut cr = false;
        assert_eq!(
            split_lines(&mut partial, &mut cr, b"ab"),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            split_lines(&mut partial, &mut cr, b"c\nd\n\ne"),
            vec![b"abc".to_vec(), b"d".to_vec(), vec![]]
        );
        assert_eq!(&partial[..], b"e");
        let long = vec![b'x'; MAX_LINE * 2 + 1];
        let mut partial = BytesMut::new();
        let lines = split_lines(&mut partial, &mut cr, &long);
        assert_eq!(lines.len(), 2);
        assert_eq!(partial.len(), 1);
    }

    #[test]
    fn where_the_output_is_split_into_reads_does_not_change_its_lines() {
        let mut input = b"a\r\nb\rc\n\nd\r\r\ne\r".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 3));
        input.extend_from_slice(b"\r\nend\n");
        let whole = split_lines(&mut BytesMut::new(), &mut false, &input);
        // Every split among the short lines, around the long line's cut, and
        // in the end.
        let start = 14;
        let cut = start + MAX_LINE;
        let splits = (0..=start + 2)
            .chain(cut - 2..=cut + 5)
            .chain(input.len() - 8..=input.len());
        for at in splits {
            let (mut partial, mut cr) = (BytesMut::new(), false);
            let mut lines = split_lines(&mut partial, &mut cr, &input[..at]);
            lines.extend(split_lines(&mut partial, &mut cr, &input[at..]));
            assert_eq!(lines, whole, "split at {at}");
            assert!(partial.is_empty(), "split at {at}");
        }
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_and_crlf_ends_one() {
        let mut partial = BytesMut::new();
        let mut cr = false;
        // awslambdaric's traceback: one record, `\r` between its lines.
        assert_eq!(
            split_lines(
                &mut partial,
                &mut cr,
                b"[ERROR] boom\rTraceback:\r  File x\n"
            ),
            vec![
                b"[ERROR] boom".to_vec(),
                b"Traceback:".to_vec(),
                b"  File x".to_vec()
            ]
        );
        // CRLF is one end, also when a chunk ends between the two bytes.
        assert_eq!(
            split_lines(&mut partial, &mut cr, b"one\r\ntwo\r"),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(
            split_lines(&mut partial, &mut cr, b"\nthree\r\r\n"),
            vec![b"three".to_vec(), vec![]]
        );
        assert!(partial.is_empty());
    }
}
