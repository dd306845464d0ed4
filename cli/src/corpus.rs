//! Corpus files: the messages a report replays.
//!
//! Three formats:
//!
//! - **JSON Lines** (the default, and what `weft capture` writes): one JSON
//!   object per line with exactly one of `"text"` (a string) or `"base64"`
//!   (standard base64 of a binary message), an optional `"dir"` (`"sent"`:
//!   client to server; `"received"`: server to client) and an optional
//!   `"t"` (time in seconds, a number). Other keys are ignored (capture adds
//!   `"conn"`). Lines holding only whitespace are ignored.
//! - **Lines** (`--lines`): a text file, one text message per line (`\n` or
//!   `\r\n`); a final newline does not start an empty message. A line that
//!   is not UTF-8 is an error.
//! - **Directory**: one message per regular file, in file-name order; a file
//!   that is valid UTF-8 is a text message, any other a binary one.
//!   Subdirectories and other non-regular entries are ignored (counted in
//!   [`Corpus::ignored_entries`]).
//!
//! Every bad line fails with an error that names the line (or the file)
//! unless `skip_bad` is set, in which case it is counted in
//! [`Corpus::skipped`] and reported. Memory stays bounded: a line or file
//! longer than the limits in [`Limits`] is never read into memory whole.

use base64::Engine;
use bytes::Bytes;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Sent,
    /// Server to client.
    Received,
}

impl Direction {
    /// `"sent"` or `"received"`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }

    /// Parses `"sent"` or `"received"`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "sent" => Some(Direction::Sent),
            "received" => Some(Direction::Received),
            _ => None,
        }
    }
}

/// One message of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// True for a text message (valid UTF-8), false for binary.
    pub text: bool,
    /// The payload.
    pub payload: Bytes,
    /// Its direction, if the corpus said.
    pub dir: Option<Direction>,
    /// Its time in seconds, if the corpus said.
    pub t: Option<f64>,
}

/// How the corpus was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines.
    JsonLines,
    /// One text message per line.
    Lines,
    /// One message per file of a directory.
    Directory,
}

impl Format {
    /// `"jsonl"`, `"lines"` or `"directory"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Lines => "lines",
            Format::Directory => "directory",
        }
    }
}

/// Limits on what a corpus may hold; every one has a default.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in payload bytes. Default 16 MiB. A larger
    /// message is an error (or skipped with `skip_bad`) and is never held in
    /// memory whole: reading stops at this many bytes (JSON Lines: at
    /// [`Limits::max_line`]).
    pub max_message: usize,
    /// Most payload bytes in the whole corpus. Default 1 GiB.
    pub max_total: u64,
    /// Most messages. Default 10,000,000.
    pub max_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 16 << 20,
            max_total: 1 << 30,
            max_messages: 10_000_000,
        }
    }
}

impl Limits {
    /// Longest JSON line read for a message of at most `max_message` bytes:
    /// JSON escapes can take 6 bytes per payload byte (`\u0000`), base64 4
    /// per 3; plus room for the other keys.
    pub fn max_line(&self) -> usize {
        self.max_message.saturating_mul(6).saturating_add(4096)
    }
}

/// A corpus read into memory.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Where it came from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// The messages, in order.
    pub entries: Vec<Entry>,
    /// Bad lines or files skipped (`skip_bad`), with the reason for each.
    pub skipped: Vec<CorpusError>,
    /// Directory entries that are not regular files.
    pub ignored_entries: usize,
}

impl Corpus {
    /// Total payload bytes.
    pub fn payload_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.payload.len() as u64).sum()
    }

    /// Keeps only messages going `dir`, counting a message without a
    /// direction as going `undirected`; returns how many were dropped.
    pub fn retain_dir(&mut self, dir: Direction, undirected: Direction) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.dir.unwrap_or(undirected) == dir);
        before - self.entries.len()
    }
}

/// Where in the corpus a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line of a file (1-based).
    Line(usize),
    /// A file of a directory.
    File(PathBuf),
    /// The corpus as a whole.
    Whole,
}

/// A problem with a corpus, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{loc}: {message}", path = path.display(), loc = LocDisplay(location))]
pub struct CorpusError {
    /// The corpus path.
    pub path: PathBuf,
    /// Where the problem is.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

struct LocDisplay<'a>(&'a Location);

impl fmt::Display for LocDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Location::Line(n) => write!(f, ": line {n}"),
            Location::File(p) => write!(f, ": file {}", p.display()),
            Location::Whole => Ok(()),
        }
    }
}

/// How to read a corpus.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Plain text, one message per line (ignored for a directory).
    pub lines: bool,
    /// Skip bad lines or files (counted) instead of failing.
    pub skip_bad: bool,
    /// Limits.
    pub limits: Limits,
}

/// Reads the corpus at `path`: a directory, or a file in JSON Lines (or,
/// with `options.lines`, plain lines).
pub fn read(path: &Path, options: &ReadOptions) -> Result<Corpus, CorpusError> {
    let whole = |message: String| CorpusError {
        path: path.to_owned(),
        location: Location::Whole,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot open: {e}")))?;
    let mut reader = Reader {
        path: path.to_owned(),
        options: *options,
        entries: Vec::new(),
        skipped: Vec::new(),
        total: 0,
    };
    let (format, ignored) = if meta.is_dir() {
        (Format::Directory, reader.directory()?)
    } else {
        let file = std::fs::File::open(path).map_err(|e| whole(format!("cannot open: {e}")))?;
        let input = BufReader::with_capacity(64 << 10, file);
        if options.lines {
            reader.lines(input)?;
            (Format::Lines, 0)
        } else {
            reader.json_lines(input)?;
            (Format::JsonLines, 0)
        }
    };
    Ok(Corpus {
        path: path.to_owned(),
        format,
        entries: reader.entries,
        skipped: reader.skipped,
        ignored_entries: ignored,
    })
}

/// Parses JSON Lines text held in memory (for tests and tools).
pub fn parse_json_lines(text: &[u8], options: &ReadOptions) -> Result<Corpus, CorpusError> {
    let mut reader = Reader {
        path: PathBuf::from("<memory>"),
        options: *options,
        entries: Vec::new(),
        skipped: Vec::new(),
        total: 0,
    };
    reader.json_lines(text)?;
    Ok(Corpus {
        path: reader.path.clone(),
        format: Format::JsonLines,
        entries: reader.entries,
        skipped: reader.skipped,
        ignored_entries: 0,
    })
}

/// Parses plain lines held in memory (for tests and tools).
pub fn parse_lines(text: &[u8], options: &ReadOptions) -> Result<Corpus, CorpusError> {
    let mut reader = Reader {
        path: PathBuf::from("<memory>"),
        options: *options,
        entries: Vec::new(),
        skipped: Vec::new(),
        total: 0,
    };
    reader.lines(text)?;
    Ok(Corpus {
        path: reader.path.clone(),
        format: Format::Lines,
        entries: reader.entries,
        skipped: reader.skipped,
        ignored_entries: 0,
    })
}

struct Reader {
    path: PathBuf,
    options: ReadOptions,
    entries: Vec<Entry>,
    skipped: Vec<CorpusError>,
    total: u64,
}

/// One line read with a length cap.
enum Line {
    End,
    /// The line, without its `\n`.
    Complete,
    /// Longer than the cap: the rest was discarded; holds its length.
    TooLong(u64),
}

/// Reads one line into `buf` (cleared first), keeping at most `cap` bytes
/// and discarding the rest of a longer line.
fn read_capped_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut len: u64 = 0;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if !any {
                Line::End
            } else if len > cap as u64 {
                Line::TooLong(len)
            } else {
                Line::Complete
            });
        }
        any = true;
        let (part, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i)),
            None => (chunk, None),
        };
        if len + part.len() as u64 <= cap as u64 {
            buf.extend_from_slice(part);
        } else if (len as usize) < cap {
            buf.extend_from_slice(&part[..cap - len as usize]);
        }
        len += part.len() as u64;
        let used = found.map_or(part.len(), |i| i + 1);
        input.consume(used);
        if found.is_some() {
            return Ok(if len > cap as u64 {
                Line::TooLong(len)
            } else {
                Line::Complete
            });
        }
    }
}

impl Reader {
    fn error(&self, location: Location, message: impl Into<String>) -> CorpusError {
        CorpusError {
            path: self.path.clone(),
            location,
            message: message.into(),
        }
    }

    /// Fails, or records and skips, a bad line or file.
    fn bad(&mut self, location: Location, message: impl Into<String>) -> Result<(), CorpusError> {
        let e = self.error(location, message);
        if self.options.skip_bad {
            self.skipped.push(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    fn push(&mut self, location: Location, entry: Entry) -> Result<(), CorpusError> {
        let len = entry.payload.len();
        if len > self.options.limits.max_message {
            return self.bad(
                location,
                format!(
                    "message of {len} bytes is larger than --max-message ({} bytes)",
                    self.options.limits.max_message
                ),
            );
        }
        if self.entries.len() >= self.options.limits.max_messages {
            return Err(self.error(
                location,
                format!(
                    "more than {} messages (the corpus message limit)",
                    self.options.limits.max_messages
                ),
            ));
        }
        if self.total + len as u64 > self.options.limits.max_total {
            return Err(self.error(
                location,
                format!(
                    "the corpus holds more than {} payload bytes (the corpus size limit)",
                    self.options.limits.max_total
                ),
            ));
        }
        self.total += len as u64;
        self.entries.push(entry);
        Ok(())
    }

    fn io(&self, at: Location, e: std::io::Error) -> CorpusError {
        self.error(at, format!("read error: {e}"))
    }

    fn json_lines(&mut self, mut input: impl BufRead) -> Result<(), CorpusError> {
        let cap = self.options.limits.max_line();
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            n += 1;
            let at = Location::Line(n);
            match read_capped_line(&mut input, &mut buf, cap).map_err(|e| self.io(at.clone(), e))? {
                Line::End => return Ok(()),
                Line::TooLong(len) => {
                    self.bad(
                        at,
                        format!(
                            "line of {len} bytes is longer than --max-message allows \
                             ({cap} bytes of JSON for {} payload bytes)",
                            self.options.limits.max_message
                        ),
                    )?;
                }
                Line::Complete => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_json_line(&buf) {
                        Ok(entry) => self.push(at, entry)?,
                        Err(message) => self.bad(at, message)?,
                    }
                }
            }
        }
    }

    fn lines(&mut self, mut input: impl BufRead) -> Result<(), CorpusError> {
        let cap = self.options.limits.max_message.saturating_add(1);
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            n += 1;
            let at = Location::Line(n);
            match read_capped_line(&mut input, &mut buf, cap).map_err(|e| self.io(at.clone(), e))? {
                Line::End => return Ok(()),
                Line::TooLong(len) => self.bad(
                    at,
                    format!(
                        "line of {len} bytes is larger than --max-message ({} bytes)",
                        self.options.limits.max_message
                    ),
                )?,
                Line::Complete => {
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                    match std::str::from_utf8(&buf) {
                        Ok(_) => {
                            let entry = Entry {
                                text: true,
                                payload: Bytes::copy_from_slice(&buf),
                                dir: None,
                                t: None,
                            };
                            self.push(at, entry)?;
                        }
                        Err(e) => self.bad(
                            at,
                            format!(
                                "not valid UTF-8 (byte {}): --lines takes text; use JSON \
                                 Lines with \"base64\" for binary messages",
                                e.valid_up_to() + 1
                            ),
                        )?,
                    }
                }
            }
        }
    }

    fn directory(&mut self) -> Result<usize, CorpusError> {
        let whole = Location::Whole;
        let list = std::fs::read_dir(&self.path).map_err(|e| self.io(whole.clone(), e))?;
        let mut files = Vec::new();
        let mut ignored = 0;
        for item in list {
            let item = item.map_err(|e| self.io(whole.clone(), e))?;
            let ty = item.file_type().map_err(|e| self.io(whole.clone(), e))?;
            if ty.is_file() {
                files.push(item.path());
            } else {
                ignored += 1;
            }
        }
        files.sort();
        let max = self.options.limits.max_message;
        for file in files {
            let at = Location::File(file.clone());
            let f = std::fs::File::open(&file).map_err(|e| self.io(at.clone(), e))?;
            let mut data = Vec::new();
            // Read at most one byte past the limit, so a huge file costs
            // no more than the limit.
            f.take(max as u64 + 1)
                .read_to_end(&mut data)
                .map_err(|e| self.io(at.clone(), e))?;
            if data.len() > max {
                let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                self.bad(
                    at,
                    format!("file of {len} bytes is larger than --max-message ({max} bytes)"),
                )?;
                continue;
            }
            let text = std::str::from_utf8(&data).is_ok();
            let entry = Entry {
                text,
                payload: Bytes::from(data),
                dir: None,
                t: None,
            };
            self.push(at, entry)?;
        }
        Ok(ignored)
    }
}

/// Parses one JSON Lines record.
fn parse_json_line(line: &[u8]) -> Result<Entry, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object such as {\"text\": \"...\"}".into());
    };
    let text = map.get("text");
    let b64 = map.get("base64");
    let (text, payload) = match (text, b64) {
        (Some(_), Some(_)) => return Err("has both \"text\" and \"base64\"".into()),
        (None, None) => return Err("has neither \"text\" nor \"base64\"".into()),
        (Some(serde_json::Value::String(s)), None) => (true, Bytes::from(s.clone().into_bytes())),
        (Some(_), None) => return Err("\"text\" must be a string".into()),
        (None, Some(serde_json::Value::String(s))) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| format!("\"base64\" is not valid base64: {e}"))?;
            (false, Bytes::from(data))
        }
        (None, Some(_)) => return Err("\"base64\" must be a string".into()),
    };
    let dir = match map.get("dir") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            Direction::parse(s)
                .ok_or_else(|| format!("\"dir\" must be \"sent\" or \"received\", not {s:?}"))?,
        ),
        Some(_) => return Err("\"dir\" must be \"sent\" or \"received\"".into()),
    };
    let t = match map.get("t") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(_) => return Err("\"t\" must be a number (seconds)".into()),
    };
    Ok(Entry {
        text,
        payload,
        dir,
        t,
    })
}

/// One JSON Lines record, as `weft capture` writes it.
pub fn json_line(entry: &Entry, conn: Option<u64>) -> String {
    let mut map = serde_json::Map::new();
    if let Some(c) = conn {
        map.insert("conn".into(), c.into());
    }
    if let Some(d) = entry.dir {
        map.insert("dir".into(), d.name().into());
    }
    if let Some(t) = entry.t
        && let Some(n) = serde_json::Number::from_f64(t)
    {
        map.insert("t".into(), serde_json::Value::Number(n));
    }
    if entry.text {
        let s = String::from_utf8_lossy(&entry.payload).into_owned();
        map.insert("text".into(), s.into());
    } else {
        let s = base64::engine::general_purpose::STANDARD.encode(&entry.payload);
        map.insert("base64".into(), s.into());
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions::default()
    }

    #[test]
    fn json_lines_all_fields() {
        let text = br#"{"text": "hello", "dir": "sent", "t": 1.5}
{"base64": "AAEC", "dir": "received"}

{"text": ""}
"#;
        let c = parse_json_lines(text, &opts()).unwrap();
        assert_eq!(c.entries.len(), 3);
        assert_eq!(c.entries[0].payload, &b"hello"[..]);
        assert!(c.entries[0].text);
        assert_eq!(c.entries[0].dir, Some(Direction::Sent));
        assert_eq!(c.entries[0].t, Some(1.5));
        assert_eq!(c.entries[1].payload, &[0u8, 1, 2][..]);
        assert!(!c.entries[1].text);
        assert_eq!(c.entries[1].dir, Some(Direction::Received));
        assert_eq!(c.entries[2].payload.len(), 0);
    }

    #[test]
    fn json_lines_errors_name_the_line() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"{\"text\": \"a\"}\n{\"text\": \"b\"\n",
                "line 2: not valid JSON",
            ),
            (b"[1]\n", "line 1: expected a JSON object"),
            (b"{\"text\":\"a\"}\n{}\n", "line 2: has neither"),
            (
                b"{\"text\":\"a\",\"base64\":\"AA==\"}\n",
                "line 1: has both",
            ),
            (b"{\"text\": 5}\n", "line 1: \"text\" must be a string"),
            (
                b"{\"base64\": \"!!\"}\n",
                "line 1: \"base64\" is not valid base64",
            ),
            (
                b"\n\n{\"text\":\"a\",\"dir\":\"up\"}\n",
                "line 3: \"dir\" must be",
            ),
            (
                b"{\"text\":\"a\",\"t\":\"noon\"}\n",
                "line 1: \"t\" must be a number",
            ),
            (b"\xff\xfe\n", "line 1: not valid JSON"),
        ];
        for (input, want) in cases {
            let e = parse_json_lines(input, &opts()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn skip_bad_counts_and_keeps_the_rest() {
        let text = b"{\"text\":\"a\"}\nnope\n{\"text\":\"b\"}\n{\"x\":1}\n";
        let o = ReadOptions {
            skip_bad: true,
            ..opts()
        };
        let c = parse_json_lines(text, &o).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.skipped.len(), 2);
        assert_eq!(c.skipped[0].location, Location::Line(2));
        assert_eq!(c.skipped[1].location, Location::Line(4));
    }

    #[test]
    fn lines_mode() {
        let c = parse_lines(b"one\r\ntwo\n\nlast", &opts()).unwrap();
        let got: Vec<&[u8]> = c.entries.iter().map(|e| &e.payload[..]).collect();
        assert_eq!(got, [&b"one"[..], b"two", b"", b"last"]);
        let c = parse_lines(b"a\n", &opts()).unwrap();
        assert_eq!(c.entries.len(), 1, "a final newline adds no message");
        assert_eq!(parse_lines(b"", &opts()).unwrap().entries.len(), 0);
    }

    #[test]
    fn lines_mode_rejects_binary_garbage() {
        let e = parse_lines(b"fine\nok\xc3\x28bad\n", &opts()).unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(e.to_string().contains("not valid UTF-8 (byte 3)"), "{e}");
        let o = ReadOptions {
            skip_bad: true,
            ..opts()
        };
        let c = parse_lines(b"fine\n\x00\xff\xfe\nend\n", &o).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.skipped.len(), 1);
    }

    #[test]
    fn max_message_at_limit_and_one_past() {
        let limits = Limits {
            max_message: 4,
            ..Limits::default()
        };
        let o = ReadOptions { limits, ..opts() };
        assert_eq!(parse_lines(b"abcd\n", &o).unwrap().entries.len(), 1);
        let e = parse_lines(b"abcd\nabcde\n", &o).unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(e.to_string().contains("larger than --max-message"), "{e}");
        assert_eq!(
            parse_json_lines(b"{\"text\":\"abcd\"}\n", &o)
                .unwrap()
                .entries
                .len(),
            1
        );
        let e = parse_json_lines(b"{\"text\":\"abcde\"}\n", &o).unwrap_err();
        assert!(e.to_string().contains("larger than --max-message"), "{e}");
        // A line far past the JSON cap is discarded while reading.
        let long = format!(
            "{{\"text\":\"{}\"}}\n{{\"text\":\"ok\"}}\n",
            "x".repeat(100_000)
        );
        let o2 = ReadOptions {
            skip_bad: true,
            ..o
        };
        let c = parse_json_lines(long.as_bytes(), &o2).unwrap();
        assert_eq!(c.entries.len(), 1);
        assert!(
            c.skipped[0].message.contains("line of 100011 bytes"),
            "{:?}",
            c.skipped
        );
    }

    #[test]
    fn corpus_size_and_count_limits_at_the_limit_and_one_past() {
        let o = |max_total, max_messages| ReadOptions {
            limits: Limits {
                max_total,
                max_messages,
                ..Limits::default()
            },
            ..opts()
        };
        let text = b"ab\ncd\nef\n";
        assert_eq!(parse_lines(text, &o(6, 10)).unwrap().entries.len(), 3);
        let e = parse_lines(text, &o(5, 10)).unwrap_err();
        assert_eq!(e.location, Location::Line(3));
        assert!(e.to_string().contains("corpus size limit"), "{e}");
        assert_eq!(parse_lines(text, &o(100, 3)).unwrap().entries.len(), 3);
        let e = parse_lines(text, &o(100, 2)).unwrap_err();
        assert!(e.to_string().contains("message limit"), "{e}");
        // Not skippable: the corpus as a whole is too big.
        let skip = ReadOptions {
            skip_bad: true,
            ..o(5, 10)
        };
        assert!(parse_lines(text, &skip).is_err());
    }

    #[test]
    fn capped_line_reader_keeps_at_most_the_cap() {
        let data = vec![b'x'; 10_000];
        let mut input = &data[..];
        let mut buf = Vec::new();
        match read_capped_line(&mut input, &mut buf, 100).unwrap() {
            Line::TooLong(n) => assert_eq!(n, 10_000),
            _ => panic!("expected too long"),
        }
        assert!(buf.len() <= 100);
    }

    #[test]
    fn direction_filter_counts_undirected_as_told() {
        let text = b"{\"text\":\"a\",\"dir\":\"sent\"}\n{\"text\":\"b\"}\n{\"text\":\"c\",\"dir\":\"received\"}\n";
        let mut c = parse_json_lines(text, &opts()).unwrap();
        assert_eq!(c.retain_dir(Direction::Received, Direction::Received), 1);
        assert_eq!(c.entries.len(), 2);
        let mut c = parse_json_lines(text, &opts()).unwrap();
        assert_eq!(c.retain_dir(Direction::Received, Direction::Sent), 2);
        assert_eq!(&c.entries[0].payload[..], b"c");
    }

    #[test]
    fn round_trip_through_capture_format() {
        let e = Entry {
            text: false,
            payload: Bytes::from_static(&[0, 255, 10]),
            dir: Some(Direction::Received),
            t: Some(12.25),
        };
        let line = json_line(&e, Some(3));
        let c = parse_json_lines(line.as_bytes(), &opts()).unwrap();
        assert_eq!(c.entries, [e]);
        let e = Entry {
            text: true,
            payload: Bytes::from_static("quote \" newline \n é".as_bytes()),
            dir: None,
            t: None,
        };
        let c = parse_json_lines(json_line(&e, None).as_bytes(), &opts()).unwrap();
        assert_eq!(c.entries, [e]);
    }
}
