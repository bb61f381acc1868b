//! A function's stderr, forwarded to watchdog's log one line at a time.
//!
//! Lines are tagged with the route and request id. A line longer than
//! [`MAX_LINE`] is logged in pieces, so a function that never ends a line cannot grow
//! memory without bound.

use bytes::BytesMut;

pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug)]
pub struct StderrLog {
    route: String,
    request_id: String,
    partial: BytesMut,
}

impl StderrLog {
    pub fn new(route: &str, request_id: &str) -> Self {
        Self {
            route: route.to_owned(),
            request_id: request_id.to_owned(),
            partial: BytesMut::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        for line in split_lines(&mut self.partial, chunk) {
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
        tracing::warn!(
            target: "watchdog::function",
            route = %self.route,
            request_id = %self.request_id,
            "{}",
            line.trim_end_matches('\r')
        );
    }
}

/// Appends `chunk` to `partial` and returns the complete lines (without `\n`),
/// cutting any line at [`MAX_LINE`] bytes.
fn split_lines(partial: &mut BytesMut, chunk: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for &byte in chunk {
        if byte == b'\n' {
            lines.push(partial.split().to_vec());
        } else {
            partial.extend_from_slice(&[byte]);
            if partial.len() >= MAX_LINE {
                lines.push(partial.split().to_vec());
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks_and_long_lines() {
        let mut partial = BytesMut::new();
        assert_eq!(split_lines(&mut partial, b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(
            split_lines(&mut partial, b"c\nd\n\ne"),
            vec![b"abc".to_vec(), b"d".to_vec(), vec![]]
        );
        assert_eq!(&partial[..], b"e");
        let long = vec![b'x'; MAX_LINE * 2 + 1];
        let mut partial = BytesMut::new();
        let lines = split_lines(&mut partial, &long);
        assert_eq!(lines.len(), 2);
        assert_eq!(partial.len(), 1);
    }
}
