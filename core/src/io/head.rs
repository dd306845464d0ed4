//! Reading an HTTP head (the opening handshake's request or response) from
//! a stream in linear time and bounded memory.
//!
//! Parsing the whole head again after every read makes a peer that sends
//! it a byte at a time cost time quadratic in its size (the failure behind
//! tungstenite's CVE-2023-43669). [`HeadReader`] asks for a parse only when
//! one can finish: when the bytes just read hold the blank line that ends a
//! head, when the buffer has doubled since the last parse (so malformed
//! input is still refused early, at a total cost of at most twice the
//! bytes), or once it holds more than the limit. Reads are capped so the
//! buffer never holds more than `limit + 1` bytes.

use crate::handshake::HandshakeError;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked of the stream per read at most.
const READ_CHUNK: usize = 4096;

/// An HTTP head being read; see the module docs.
pub(crate) struct HeadReader {
    buf: BytesMut,
    limit: usize,
    /// Buffer length at the last parse (0: none yet).
    parsed_len: usize,
    /// Bytes already scanned for the end of the head.
    scanned: usize,
    /// A byte other than CR or LF was seen: blank lines before it are the
    /// empty lines a parser skips, not the end of a head.
    content: bool,
    /// The end of a head may be in the buffer.
    ended: bool,
}

impl HeadReader {
    pub(crate) fn new(limit: usize) -> Self {
        HeadReader {
            buf: BytesMut::with_capacity(READ_CHUNK.min(limit + 1)),
            limit,
            parsed_len: 0,
            scanned: 0,
            content: false,
            ended: false,
        }
    }

    /// The bytes read so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether a parse is due now (and, if so, records that one is made).
    pub(crate) fn parse_due(&mut self) -> bool {
        let len = self.buf.len();
        let due = len > 0 && (self.ended || len >= 2 * self.parsed_len || len > self.limit);
        if due {
            self.parsed_len = len;
            self.ended = false;
        }
        due
    }

    /// Reads more (at least one byte, at most up to `limit + 1` in all).
    pub(crate) async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<(), HandshakeError> {
        let room = (self.limit + 1).saturating_sub(self.buf.len()).max(1);
        let want = room.min(READ_CHUNK);
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        // `take` caps what this read may add, whatever the spare capacity.
        let n = (&mut *stream)
            .take(want as u64)
            .read_buf(&mut self.buf)
            .await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        self.scan();
        Ok(())
    }

    /// Looks at the new bytes for a blank line (`\n\n` or `\n\r\n`) after
    /// some content.
    fn scan(&mut self) {
        let b = &self.buf;
        for i in self.scanned..b.len() {
            let c = b[i];
            if c != b'\r' && c != b'\n' {
                self.content = true;
            } else if c == b'\n'
                && self.content
                && ((i >= 1 && b[i - 1] == b'\n')
                    || (i >= 2 && b[i - 1] == b'\r' && b[i - 2] == b'\n'))
            {
                self.ended = true;
            }
        }
        self.scanned = b.len();
    }

    /// The buffer, for what follows the head.
    pub(crate) fn into_bytes(self) -> BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` `step` bytes per read; returns how many parses were
    /// due before the one that saw the whole head.
    async fn parses(input: &[u8], step: usize, limit: usize) -> (usize, bool) {
        let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in input.chunks(step) {
                if tx.write_all(c).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let mut h = HeadReader::new(limit);
        let mut n = 0;
        let complete = loop {
            if h.parse_due() {
                n += 1;
                if h.bytes().windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
                if h.bytes().len() > limit {
                    break false;
                }
            }
            if h.fill(&mut rx).await.is_err() {
                break false;
            }
            assert!(h.bytes().len() <= limit + 1);
        };
        writer.abort();
        (n, complete)
    }

    #[tokio::test]
    async fn a_head_read_a_byte_at_a_time_is_parsed_a_logarithmic_number_of_times() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() < 8000 {
            head.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let (n, complete) = parses(&head, 1, 16 << 10).await;
        assert!(complete);
        // Doubling from 1 byte to 8 KB: at most 14 parses, plus the end.
        assert!(n <= 15, "{n} parses");
    }

    #[tokio::test]
    async fn leading_blank_lines_do_not_count_as_the_end() {
        let mut input = b"\r\n".repeat(500);
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (n, complete) = parses(&input, 2, 16 << 10).await;
        assert!(complete);
        assert!(n <= 12, "{n} parses");
    }

    #[tokio::test]
    async fn the_buffer_stops_one_past_the_limit() {
        let input = vec![b'a'; 10_000];
        let (_, complete) = parses(&input, 3000, 1000).await;
        assert!(!complete);
    }
}
