//! Bounded file sources: JSON lines and CSV (with a header row, one record per line). The
//! files are cut into byte ranges dealt round-robin to the subtasks, so parallel subtasks
//! share even a single file and move through it side by side (see [`byte_ranges`]). A
//! record that cannot be decoded is reported with its file, line and reason; the
//! decode-error policy fails the job (default) or skips and counts it.

use super::{ReaderPoll, Source, SourceReader};
use crate::config::DecodeErrorPolicy;
use crate::error::{Error, Result};
use crate::runtime::{Rec, SubtaskInfo};
use crate::time::NO_TIMESTAMP;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The encoding of a file's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values; the first row names the fields.
    Csv,
}

/// Reads records of type `T` (any `serde::Deserialize` type) from a file or directory.
///
/// ```no_run
/// use serde::Deserialize;
/// use weir_engine::connectors::FileSource;
/// use weir_engine::config::DecodeErrorPolicy;
/// #[derive(Clone, Deserialize)]
/// struct Event { user_id: String, amount: f64, ts: i64 }
/// let source = FileSource::<Event>::json_lines("data/events")
///     .on_decode_error(DecodeErrorPolicy::Skip);
/// # let _ = source;
/// ```
pub struct FileSource<T> {
    path: PathBuf,
    format: FileFormat,
    policy: Option<DecodeErrorPolicy>,
    /// Makes each reader's line decoder, replacing serde for JSON lines.
    decoder: Option<MakeLineDecoder<T>>,
    /// Makes each reader's record decoder, replacing serde for CSV.
    csv_decoder: Option<MakeCsvDecoder<T>>,
    _p: PhantomData<fn() -> T>,
}

/// Decodes one line (trimmed, never empty) into a record, or says why it cannot.
pub type LineDecoder<T> = Box<dyn FnMut(&[u8]) -> std::result::Result<T, String> + Send>;

/// Makes a [`LineDecoder`] for each reader (so a decoder may keep state, such as where the
/// fields of the previous line were).
pub type MakeLineDecoder<T> = Arc<dyn Fn() -> LineDecoder<T> + Send + Sync>;

/// Decodes the fields of one CSV record (the header row excluded) into a record, or says why
/// it cannot.
pub type CsvDecoder<T> =
    Box<dyn FnMut(&csv::StringRecord) -> std::result::Result<T, String> + Send>;

/// Makes a [`CsvDecoder`] for each reader.
pub type MakeCsvDecoder<T> = Arc<dyn Fn() -> CsvDecoder<T> + Send + Sync>;

impl<T> FileSource<T> {
    /// JSON lines from `path` (a file, or every file in a directory).
    pub fn json_lines(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            format: FileFormat::JsonLines,
            policy: None,
            decoder: None,
            csv_decoder: None,
            _p: PhantomData,
        }
    }

    /// Lines from `path`, each decoded by a decoder `make` returns (one per reader) instead
    /// of serde: e.g. JSON decoded straight into a row, reading only the fields a query
    /// uses. A line the decoder refuses is a decode error like any other (file, line and
    /// the decoder's reason; `pipeline.decode-error-policy` applies).
    pub fn lines_with(path: impl Into<PathBuf>, make: MakeLineDecoder<T>) -> Self {
        FileSource {
            decoder: Some(make),
            ..Self::json_lines(path)
        }
    }

    /// CSV with a header row from `path`.
    pub fn csv(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            format: FileFormat::Csv,
            policy: None,
            decoder: None,
            csv_decoder: None,
            _p: PhantomData,
        }
    }

    /// CSV with a header row from `path`, each record decoded by a decoder `make` returns
    /// (one per reader) from its fields instead of by serde. A record the decoder refuses is
    /// a decode error like any other (file, line, reason; the policy applies).
    pub fn csv_with(path: impl Into<PathBuf>, make: MakeCsvDecoder<T>) -> Self {
        FileSource {
            csv_decoder: Some(make),
            ..Self::csv(path)
        }
    }

    /// Overrides the job's `pipeline.decode-error-policy` for this source.
    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.policy = Some(policy);
        self
    }
}

/// The files under `path`, sorted; hidden and `_`-prefixed files are ignored.
fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read input", path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).map_err(|e| Error::io("cannot list input directory", path, e))?
    {
        let entry = entry.map_err(|e| Error::io("cannot list input directory", path, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Byte ranges per subtask the source aims for: enough that subtasks reading ranges in turn
/// stay close together in the file (and so in event time), few enough that opening a range
/// costs nothing measurable.
const RANGES_PER_SUBTASK: u64 = 8;
/// The smallest range cut from a file: smaller files are read whole by one subtask.
const MIN_RANGE_BYTES: u64 = 64 << 10;
/// The largest range: bounds how far apart in a huge file two subtasks' positions get.
const MAX_RANGE_BYTES: u64 = 64 << 20;

/// Cuts `files` (with their sizes) into byte ranges and returns subtask `index`'s share, in
/// file order: range `k` (counted over all files) goes to subtask `k % parallelism`.
/// Dealing consecutive ranges round-robin (rather than one contiguous block per subtask)
/// keeps every subtask at about the same position in time-ordered input, so the watermark,
/// the minimum over subtasks, advances steadily and windows fire as they would with one
/// reader. A range owns the lines that start inside it (see [`FileSplit`]).
fn byte_ranges(files: &[(PathBuf, u64)], index: usize, parallelism: usize) -> Vec<FileSplit> {
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let range =
        (total / (parallelism as u64 * RANGES_PER_SUBTASK)).clamp(MIN_RANGE_BYTES, MAX_RANGE_BYTES);
    let mut k = 0usize;
    let mut out = Vec::new();
    for (path, len) in files {
        let mut start = 0;
        loop {
            // The last range of a file takes the rest, so no range is a sliver.
            let end = if len - start < range + range / 2 {
                u64::MAX
            } else {
                start + range
            };
            if k % parallelism == index {
                out.push(FileSplit {
                    path: path.to_string_lossy().into_owned(),
                    start,
                    end,
                    offset: start,
                    line: 0,
                    done: false,
                });
            }
            k += 1;
            if end == u64::MAX {
                break;
            }
            start = end;
        }
    }
    out
}

impl<T: DeserializeOwned + Clone + Send + 'static> Source<T> for FileSource<T> {
    fn create_reader(&self, info: &SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        let splits = match &info.restored {
            // A restored reader resumes the splits its checkpoint recorded, wherever they
            // were: in file order, so ranges that came from different subtasks are still
            // read in the order their records were written.
            Some(state) => {
                let mut splits: Vec<FileSplit> = state
                    .list
                    .iter()
                    .map(|b| {
                        FileSplit::decode(b).map_err(|e| {
                            Error::Restore(format!(
                                "file source '{}' split state is corrupt: {e}",
                                info.name
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                splits.sort_by(|a, b| (&a.path, a.start).cmp(&(&b.path, b.start)));
                splits
            }
            None => {
                let files = list_files(&self.path)?
                    .into_iter()
                    .map(|f| {
                        let len = std::fs::metadata(&f)
                            .map_err(|e| Error::io("cannot read input", &f, e))?
                            .len();
                        Ok((f, len))
                    })
                    .collect::<Result<Vec<_>>>()?;
                byte_ranges(&files, info.index, info.parallelism)
            }
        };
        Ok(Box::new(FileReader {
            splits,
            next: 0,
            format: self.format,
            policy: self.policy.unwrap_or(info.decode_errors),
            current: None,
            skipped: 0,
            decoder: self.decoder.as_ref().map(|make| make()),
            csv_decoder: self.csv_decoder.as_ref().map(|make| make()),
            _p: PhantomData,
        }))
    }
}

/// A byte range of one file and how far it has been read: the checkpointed state of a file
/// source. The range owns every line that starts at an offset in `[start, end)` (a line
/// starts at 0 or right after a `\n`), so ranges cut anywhere share a file's lines out
/// exactly once: the last line may run past `end`, and a range starting inside a line
/// begins at the next one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FileSplit {
    path: String,
    start: u64,
    /// `u64::MAX`: to the end of the file.
    end: u64,
    /// Byte offset of the next unread record.
    offset: u64,
    /// Lines consumed since `start` (for error messages after a restore).
    line: u64,
    done: bool,
}

/// A split as checkpoints before byte ranges recorded it: a whole file.
#[derive(serde::Deserialize)]
struct WholeFileSplit {
    path: String,
    offset: u64,
    line: u64,
    done: bool,
}

impl FileSplit {
    /// Decodes a split of the current format or, failing that, a whole-file split of older
    /// checkpoints (postcard is positional: the older record is too short for this one).
    fn decode(bytes: &[u8]) -> std::result::Result<Self, postcard::Error> {
        postcard::from_bytes::<FileSplit>(bytes).or_else(|e| {
            postcard::from_bytes::<WholeFileSplit>(bytes)
                .map(|w| FileSplit {
                    path: w.path,
                    start: 0,
                    end: u64::MAX,
                    offset: w.offset,
                    line: w.line,
                    done: w.done,
                })
                .map_err(|_| e)
        })
    }
}

/// A file being read, line by line for both formats: a CSV record is one line, so a quote
/// left open is that line's error and never swallows the lines after it.
struct Open {
    path: PathBuf,
    reader: BufReader<File>,
    /// Lines consumed so far: since the file's start when the range starts there, else
    /// since the range's first line (error messages then count the lines before it).
    line: u64,
    /// Whether `line` counts from the file's start.
    line_absolute: bool,
    /// Where the range ends: the first line starting at or after it belongs to the next.
    end: u64,
    /// Byte offset of the next unread line.
    offset: u64,
    /// A line across the read buffer's end, copied out.
    buf: Vec<u8>,
    /// The header row (CSV only).
    headers: Option<csv::StringRecord>,
    /// The fields of the current CSV line (reused).
    record: csv::StringRecord,
}

struct FileReader<T> {
    splits: Vec<FileSplit>,
    /// Index of the split being read (or to read next).
    next: usize,
    format: FileFormat,
    policy: DecodeErrorPolicy,
    current: Option<Open>,
    skipped: u64,
    decoder: Option<LineDecoder<T>>,
    csv_decoder: Option<CsvDecoder<T>>,
    _p: PhantomData<fn() -> T>,
}

/// Reads one line with its newline into `buf`; 0 at the end of the file.
fn read_line(reader: &mut BufReader<File>, buf: &mut Vec<u8>, path: &Path) -> Result<usize> {
    buf.clear();
    reader
        .read_until(b'\n', buf)
        .map_err(|e| Error::io("cannot read", path, e))
}

/// Splits one CSV line (RFC 4180 within the line: `"` quotes a field, `""` is a quote
/// inside one) into `record`. A quote still open at the end of the line is an error: records
/// are one line each.
fn split_csv_line(line: &[u8], record: &mut csv::StringRecord) -> std::result::Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    record.clear();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut column = 1;
    loop {
        field.clear();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(format!(
                            "unterminated quote in CSV field {column}: a quoted field must end \
                             with '\"' on the same line (a CSV record is one line)"
                        ));
                    }
                }
            }
            // Anything between the closing quote and the next comma belongs to the field.
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        record.push_field(&field);
        if chars.next().is_none() {
            return Ok(());
        }
        column += 1;
    }
}

impl<T: DeserializeOwned> FileReader<T> {
    fn open_next(&mut self) -> Result<bool> {
        while self.next < self.splits.len() && self.splits[self.next].done {
            self.next += 1;
        }
        let Some(split) = self.splits.get(self.next) else {
            return Ok(false);
        };
        let path = PathBuf::from(&split.path);
        let (mut offset, mut line) = (split.offset, split.line);
        let (start, end) = (split.start, split.end);
        let file = File::open(&path).map_err(|e| Error::io("cannot open", &path, e))?;
        let mut reader = BufReader::with_capacity(1 << 18, file);
        let mut buf = Vec::new();
        let mut record = csv::StringRecord::new();
        let headers = match self.format {
            FileFormat::JsonLines => None,
            FileFormat::Csv => {
                // The header is read again on a restore; the position then skips past it.
                let n = read_line(&mut reader, &mut buf, &path)?;
                split_csv_line(trim_newline(&buf), &mut record).map_err(|reason| {
                    Error::Decode {
                        file: path.clone(),
                        line: 1,
                        reason: format!("bad CSV header: {reason}"),
                    }
                })?;
                if offset == 0 {
                    (offset, line) = (n as u64, 1);
                }
                Some(record.clone())
            }
        };
        use std::io::Seek;
        if offset == start && start > 0 {
            // A range starting inside a line begins at the next line: skip through the first
            // newline at or after `start - 1` (just that newline when a line starts at
            // `start`, so doing it again after a restore lands on the same line).
            reader
                .seek(std::io::SeekFrom::Start(start - 1))
                .map_err(|e| Error::io("cannot seek in", &path, e))?;
            offset = start - 1 + read_line(&mut reader, &mut buf, &path)? as u64;
        } else if offset > 0 {
            reader
                .seek(std::io::SeekFrom::Start(offset))
                .map_err(|e| Error::io("cannot seek in", &path, e))?;
        }
        self.current = Some(Open {
            path,
            reader,
            line,
            line_absolute: start == 0,
            end,
            offset,
            buf,
            headers,
            record,
        });
        Ok(true)
    }

    /// Copies the open file's position into its split.
    fn sync_position(&mut self) {
        let Some(open) = &self.current else { return };
        let split = &mut self.splits[self.next];
        (split.offset, split.line) = (open.offset, open.line);
    }

    fn bad(&mut self, file: &Path, at: LineAt, reason: String) -> Result<()> {
        match self.policy {
            DecodeErrorPolicy::Fail => Err(Error::Decode {
                file: file.to_path_buf(),
                line: at.line(file)?,
                reason,
            }),
            DecodeErrorPolicy::Skip => {
                self.skipped += 1;
                if self.skipped <= 10 || self.skipped.is_power_of_two() {
                    let line = at.line(file)?;
                    tracing::warn!(file = %file.display(), line, %reason, skipped = self.skipped, "skipping undecodable record");
                }
                Ok(())
            }
        }
    }
}

/// Where an undecodable record is, to name its line.
struct LineAt {
    /// Its line as the reader counted it.
    counted: u64,
    /// Whether the reader counted from the file's start.
    absolute: bool,
    /// Byte offset of the record's first byte.
    offset: u64,
}

impl LineAt {
    /// The record's 1-based line in its file. A range that starts inside the file did not
    /// count the lines before it: they are counted now, once per reported error, rather
    /// than by every reader for every range.
    fn line(&self, file: &Path) -> Result<u64> {
        if self.absolute {
            return Ok(self.counted);
        }
        use std::io::Read;
        let mut f = File::open(file)
            .map_err(|e| Error::io("cannot open", file, e))?
            .take(self.offset);
        let mut chunk = vec![0u8; 1 << 18];
        let mut newlines = 0u64;
        loop {
            let n = f
                .read(&mut chunk)
                .map_err(|e| Error::io("cannot read", file, e))?;
            if n == 0 {
                return Ok(newlines + 1);
            }
            newlines += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
        }
    }
}

/// The line without its `\n` or `\r\n`.
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<T: DeserializeOwned + Send + 'static> SourceReader<T> for FileReader<T> {
    fn poll(&mut self, max: usize) -> Result<ReaderPoll<T>> {
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            if self.current.is_none() && !self.open_next()? {
                break;
            }
            // Decode errors are collected, then handled after the borrow of `current` ends.
            let mut error = None;
            let mut eof = false;
            let Open {
                path,
                reader,
                line,
                line_absolute,
                end,
                offset,
                buf,
                headers,
                record,
            } = self.current.as_mut().expect("opened above");
            while out.len() < max {
                if *offset >= *end {
                    // The next line belongs to the next range.
                    eof = true;
                    break;
                }
                // A line wholly inside the read buffer is decoded where it lies; only a line
                // across the buffer's end is copied out first.
                let avail = reader
                    .fill_buf()
                    .map_err(|e| Error::io("cannot read", path.clone(), e))?;
                // Bytes of the line with its newline, and how many of them are still in the
                // read buffer (to consume once decoded).
                let (len, in_buffer, text) = match memchr::memchr(b'\n', avail) {
                    Some(end) => (end + 1, end + 1, &avail[..end]),
                    None => {
                        let n = read_line(reader, buf, path)?;
                        if n == 0 {
                            eof = true;
                            break;
                        }
                        (n, 0, trim_newline(buf))
                    }
                };
                *line += 1;
                *offset += len as u64;
                let decoded = match headers {
                    None => {
                        let text = text.trim_ascii();
                        (!text.is_empty()).then(|| match &mut self.decoder {
                            Some(decode) => decode(text),
                            // Bytes, not a String: serde_json validates UTF-8 in strings.
                            None => serde_json::from_slice::<T>(text).map_err(|e| e.to_string()),
                        })
                    }
                    Some(headers) => {
                        let text = text.strip_suffix(b"\r").unwrap_or(text);
                        (!text.trim_ascii().is_empty()).then(|| {
                            split_csv_line(text, record)?;
                            match &mut self.csv_decoder {
                                Some(decode) => decode(record),
                                None => record
                                    .deserialize::<T>(Some(headers))
                                    .map_err(|e| e.to_string()),
                            }
                        })
                    }
                };
                reader.consume(in_buffer);
                match decoded {
                    None => {}
                    Some(Ok(v)) => out.push(Rec {
                        ts: NO_TIMESTAMP,
                        value: v,
                    }),
                    Some(Err(reason)) => {
                        let at = LineAt {
                            counted: *line,
                            absolute: *line_absolute,
                            offset: *offset - len as u64,
                        };
                        error = Some((path.clone(), at, reason));
                        break;
                    }
                }
            }
            if let Some((path, at, reason)) = error {
                self.bad(&path, at, reason)?;
            }
            if eof {
                self.sync_position();
                self.splits[self.next].done = true;
                self.current = None;
                self.next += 1;
            }
        }
        if out.is_empty() && self.current.is_none() && self.next >= self.splits.len() {
            return Ok(ReaderPoll::End);
        }
        Ok(ReaderPoll::Records(out))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        self.sync_position();
        Ok(self
            .splits
            .iter()
            .map(|s| postcard::to_allocvec(s).expect("plain data encodes"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_cover_every_file_once_and_alternate_between_subtasks() {
        let files = vec![
            (PathBuf::from("a"), 10 << 20),
            (PathBuf::from("b"), 1000),
            (PathBuf::from("c"), 3 << 20),
        ];
        let shares: Vec<Vec<FileSplit>> = (0..2).map(|i| byte_ranges(&files, i, 2)).collect();
        // 13 MiB over 2 x 8 ranges: 832 KiB each; b is too small to cut.
        let mut all: Vec<(String, u64, u64)> = shares
            .iter()
            .flatten()
            .map(|s| (s.path.clone(), s.start, s.end))
            .collect();
        all.sort();
        for (path, len) in [("a", 10u64 << 20), ("b", 1000), ("c", 3 << 20)] {
            let mut at = 0;
            for (_, start, end) in all.iter().filter(|r| r.0 == path) {
                assert_eq!(*start, at, "{path}: ranges are contiguous");
                assert!(*end == u64::MAX || end - start >= MIN_RANGE_BYTES);
                at = *end;
            }
            assert_eq!(at, u64::MAX, "{path}: the last range runs to the end");
            assert!(all.iter().filter(|r| r.0 == path).count() as u64 <= len / MIN_RANGE_BYTES + 1);
        }
        // Consecutive ranges of a file go to different subtasks.
        let a0: Vec<u64> = shares[0]
            .iter()
            .filter(|s| s.path == "a")
            .map(|s| s.start)
            .collect();
        let a1: Vec<u64> = shares[1]
            .iter()
            .filter(|s| s.path == "a")
            .map(|s| s.start)
            .collect();
        assert!(
            a0.len().abs_diff(a1.len()) <= 1 && !a1.is_empty(),
            "{a0:?} {a1:?}"
        );
        assert!(a0.iter().all(|s| !a1.contains(s)));
    }

    #[test]
    fn whole_file_splits_of_older_checkpoints_still_restore() {
        #[derive(serde::Serialize)]
        struct Old<'a> {
            path: &'a str,
            offset: u64,
            line: u64,
            done: bool,
        }
        let old = Old {
            path: "/data/in.jsonl",
            offset: 1234,
            line: 17,
            done: false,
        };
        let split = FileSplit::decode(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(split.path, "/data/in.jsonl");
        assert_eq!((split.start, split.end), (0, u64::MAX));
        assert_eq!((split.offset, split.line, split.done), (1234, 17, false));

        let new = FileSplit {
            path: "/data/in.jsonl".into(),
            start: 4096,
            end: 8192,
            offset: 5000,
            line: 3,
            done: false,
        };
        let back = FileSplit::decode(&postcard::to_allocvec(&new).unwrap()).unwrap();
        assert_eq!((back.start, back.end, back.offset), (4096, 8192, 5000));
        assert!(FileSplit::decode(b"\x01").is_err());
    }
}
