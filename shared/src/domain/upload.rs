//! Recipient files uploaded to the bucket and imported in the background: the upload's state
//! and counts, and the streaming reader that turns the file's bytes into rows a chunk at a
//! time, remembering the byte offset where the next row starts (the checkpoint a resumed
//! import starts from).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;
use super::id::Id;
use super::import::{BOM, CsvColumns, RawRow, Rejection, csv_reader, json_row};
use super::limits::{MAX_ROW_BYTES, REPORTED_ERRORS};
use crate::error::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UploadFormat {
    #[default]
    Csv,
    Json,
}

impl UploadFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(UploadFormat::Csv),
            "json" => Some(UploadFormat::Json),
            _ => None,
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            UploadFormat::Csv => "csv",
            UploadFormat::Json => "json",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            UploadFormat::Csv => "text/csv",
            UploadFormat::Json => "application/json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    WaitingForFile,
    Importing,
    Completed,
    Failed,
}

impl UploadStatus {
    pub fn is_final(self) -> bool {
        matches!(self, UploadStatus::Completed | UploadStatus::Failed)
    }
}

/// The object key of an upload's file: `uploads/<campaign>/<upload>.<csv|json>`.
pub fn object_key(campaign_id: &Id, upload_id: &Id, format: UploadFormat) -> String {
    format!("uploads/{campaign_id}/{upload_id}.{}", format.extension())
}

/// The campaign, upload and format an object key names (`None` for any other key).
pub fn parse_object_key(key: &str) -> Option<(Id, Id, UploadFormat)> {
    let rest = key.strip_prefix("uploads/")?;
    let (campaign, file) = rest.split_once('/')?;
    let (upload, ext) = file.rsplit_once('.')?;
    Some((Id::parse(campaign)?, Id::parse(upload)?, UploadFormat::parse(ext)?))
}

/// Where a resumed import starts reading: the byte offset after the last row counted, the
/// number of the next row, the CSV header's names and, for a JSON file, whether it is an array.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadPosition {
    pub offset: u64,
    pub next_row: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_array: Option<bool>,
}

/// An upload and its import's progress, as stored beside its campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    pub upload_id: Id,
    pub campaign_id: Id,
    pub format: UploadFormat,
    pub status: UploadStatus,
    pub object_key: String,
    pub rows_read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub opted_out: u64,
    pub errors: Vec<Rejection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Where the next invocation starts reading.
    #[serde(default)]
    pub position: ReadPosition,
    /// How many chunks were recorded. The chunk being written tags its recipients with
    /// [`Upload::chunk_tag`]: after a crash, the numbers found in the campaign with that tag
    /// were written by this import (and are counted once), the others are duplicates.
    #[serde(default)]
    pub chunks: u64,
    /// The campaign's import lock while this import holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_token: Option<String>,
    /// Whether the campaign had no recipients when the import began (numbers need no lookup
    /// in the campaign then, only among the file's own earlier rows).
    #[serde(default)]
    pub campaign_was_empty: bool,
    /// Bumped by every write, which is conditional on the value read: two invocations of the
    /// same upload never both record a chunk.
    pub version: u64,
}

impl Upload {
    /// The tag the recipients of the chunk being written carry.
    pub fn chunk_tag(&self) -> String {
        format!("{}#{}", self.upload_id, self.chunks)
    }

    pub fn new(campaign_id: Id, format: UploadFormat, now: Timestamp) -> Self {
        let upload_id = Id::generate();
        Upload {
            object_key: object_key(&campaign_id, &upload_id, format),
            upload_id,
            campaign_id,
            format,
            status: UploadStatus::WaitingForFile,
            rows_read: 0,
            imported: 0,
            duplicates: 0,
            invalid: 0,
            opted_out: 0,
            errors: Vec::new(),
            error: None,
            created_at: now.clone(),
            updated_at: now,
            started_at: None,
            finished_at: None,
            position: ReadPosition::default(),
            chunks: 0,
            lock_token: None,
            campaign_was_empty: false,
            version: 0,
        }
    }

    /// What the API shows of it.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "upload_id": self.upload_id, "campaign_id": self.campaign_id, "format": self.format,
            "status": self.status, "rows_read": self.rows_read, "imported": self.imported,
            "duplicates": self.duplicates, "invalid": self.invalid, "opted_out": self.opted_out,
            "errors": self.errors, "created_at": self.created_at, "updated_at": self.updated_at,
        });
        for (k, t) in [("started_at", &self.started_at), ("finished_at", &self.finished_at)] {
            if let Some(t) = t {
                v[k] = serde_json::json!(t);
            }
        }
        if let Some(e) = &self.error {
            v["error"] = serde_json::json!(e);
        }
        v
    }

    /// Adds a chunk's rejections, keeping the first [`REPORTED_ERRORS`] (chunks come in row order).
    pub fn add_errors(&mut self, errors: Vec<Rejection>) {
        let room = REPORTED_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(errors.into_iter().take(room));
    }
}

/// Reads rows from a file's bytes as they arrive, whatever the read boundaries: CSV (a header
/// row, then records; quoted fields may hold newlines) or JSON (an array of objects, or one
/// object per line). A row is handed out only once its end has arrived, so [`RowReader::offset`]
/// is always where a row starts.
#[derive(Debug)]
pub struct RowReader {
    format: UploadFormat,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    offset: u64,
    next_row: usize,
    columns: Option<CsvColumns>,
    json_array: Option<bool>,
    /// A JSON array's closing bracket was read: the rest is ignored.
    done: bool,
}

impl RowReader {
    /// A reader starting at `position` (the start of the file, or a checkpoint).
    pub fn new(format: UploadFormat, position: &ReadPosition) -> Result<Self, Invalid> {
        let columns = position.columns.clone().map(CsvColumns::new).transpose()?;
        Ok(RowReader {
            format,
            buf: Vec::new(),
            offset: position.offset,
            next_row: position.next_row,
            columns,
            json_array: position.json_array,
            done: false,
        })
    }

    /// Where the next row starts, to resume from.
    pub fn position(&self) -> ReadPosition {
        ReadPosition {
            offset: self.offset,
            next_row: self.next_row,
            columns: self.columns.as_ref().map(|c| c.names().to_vec()),
            json_array: self.json_array,
        }
    }

    /// Bytes held that are not a whole row yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if !self.done {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Up to `max` whole rows from what has arrived (fewer when no more have arrived whole).
    /// With `at_end`, what is left is the last row even without a line end.
    pub fn rows(&mut self, max: usize, at_end: bool) -> Result<Vec<RawRow>, Invalid> {
        if self.done {
            self.buf.clear();
            return Ok(Vec::new());
        }
        self.start(at_end)?;
        let (end, lines, full) = match self.format {
            UploadFormat::Csv => csv_lines(&self.buf, max),
            UploadFormat::Json => json_items(&self.buf, max, self.json_array == Some(true)),
        };
        let end = match end {
            _ if at_end && !full => self.buf.len(),
            Some(end) => end,
            None if self.buf.len() > MAX_ROW_BYTES => {
                return Err(Invalid(format!(
                    "row {} is longer than {MAX_ROW_BYTES} bytes (is a quote or bracket left open?)",
                    self.next_row + 1
                )));
            }
            None => return Ok(Vec::new()),
        };
        let rows = match self.format {
            UploadFormat::Csv => self.csv_rows(end),
            UploadFormat::Json => self.json_rows(&lines, end)?,
        };
        self.buf.drain(..end);
        self.offset += end as u64;
        Ok(rows)
    }

    /// At the start of the file: a byte-order mark skipped, the CSV header read or the JSON
    /// form told (an array, or one object per line).
    fn start(&mut self, at_end: bool) -> Result<(), Invalid> {
        if self.offset == 0 && self.buf.starts_with(BOM) {
            self.buf.drain(..BOM.len());
            self.offset = BOM.len() as u64;
        }
        match self.format {
            UploadFormat::Csv if self.columns.is_none() => {
                let end = match csv_lines(&self.buf, 1) {
                    (Some(end), _, _) => end,
                    _ if at_end => self.buf.len(),
                    _ => return Ok(()),
                };
                let mut reader = csv_reader(&self.buf[..end]);
                let header = match reader.byte_records().next() {
                    None => csv::ByteRecord::new(),
                    Some(h) => h.map_err(|e| Invalid(format!("the CSV header row cannot be read: {e}")))?,
                };
                self.columns = Some(CsvColumns::from_header(&header)?);
                self.buf.drain(..end);
                self.offset += end as u64;
            }
            UploadFormat::Json if self.json_array.is_none() => {
                let Some(first) = self.buf.iter().position(|b| !b.is_ascii_whitespace()) else {
                    if at_end {
                        return Err(Invalid("the JSON file is empty; it needs an array of recipients".into()));
                    }
                    return Ok(());
                };
                let array = self.buf[first] == b'[';
                if !array && self.buf[first] != b'{' {
                    return Err(Invalid(
                        "the JSON file must be an array of recipient objects, or one object per line".into(),
                    ));
                }
                let skip = if array { first + 1 } else { first };
                self.buf.drain(..skip);
                self.offset += skip as u64;
                self.json_array = Some(array);
            }
            _ => {}
        }
        Ok(())
    }

    fn csv_rows(&mut self, end: usize) -> Vec<RawRow> {
        let Some(columns) = &self.columns else { return Vec::new() };
        let mut reader = csv_reader(&self.buf[..end]);
        let mut rows = Vec::new();
        for record in reader.byte_records() {
            self.next_row += 1;
            rows.extend(columns.row(self.next_row, record.as_ref()));
        }
        rows
    }

    fn json_rows(&mut self, items: &[(usize, usize)], end: usize) -> Result<Vec<RawRow>, Invalid> {
        let mut rows = Vec::with_capacity(items.len());
        let mut spans = items.to_vec();
        // The last bytes of the file when no separator follows them.
        let last = spans.last().map_or(0, |s| s.1 + 1).min(end);
        if last < end {
            spans.push((last, end));
        }
        for (from, to) in spans {
            let text = self.buf[from..to].trim_ascii();
            if text.is_empty() {
                continue;
            }
            if text == b"]" && self.json_array == Some(true) {
                self.done = true;
                break;
            }
            self.next_row += 1;
            let row = match serde_json::from_slice::<Value>(text) {
                Ok(v) => json_row(self.next_row, v),
                Err(e) => {
                    let mut row = json_row(self.next_row, Value::Null);
                    row.unreadable = Some(format!("row is not valid JSON: {e}"));
                    row
                }
            };
            rows.push(row);
        }
        Ok(rows)
    }

    /// Whether a JSON array's closing bracket has been read.
    pub fn finished(&self) -> bool {
        self.done
    }
}

/// The end (after its line break) of the last of up to `max` whole CSV records of `buf`, and
/// whether `max` were found. A line break ends a record unless it is inside a quoted field;
/// a quote opens a quoted field only at the start of a field, as the `csv` crate reads it (a
/// quote inside an unquoted field is text). CSV needs no spans.
fn csv_lines(buf: &[u8], max: usize) -> (Option<usize>, Vec<(usize, usize)>, bool) {
    #[derive(Clone, Copy)]
    enum At {
        FieldStart,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let (mut at, mut lines, mut end) = (At::FieldStart, 0, None);
    for (i, &b) in buf.iter().enumerate() {
        at = match (at, b) {
            (At::Quoted, b'"') => At::QuoteInQuoted,
            (At::Quoted, _) => At::Quoted,
            (At::QuoteInQuoted, b'"') | (At::FieldStart, b'"') => At::Quoted,
            (_, b',' | b'\r') => At::FieldStart,
            (_, b'\n') => {
                lines += 1;
                end = Some(i + 1);
                if lines >= max {
                    return (end, Vec::new(), true);
                }
                At::FieldStart
            }
            _ => At::Field,
        };
    }
    (end, Vec::new(), false)
}

/// The spans of up to `max` whole JSON items of `buf` and where the last one's separator ends:
/// items of an array end at a `,` (or the closing `]`) outside strings and nested values;
/// lines end at a line break outside them.
fn json_items(buf: &[u8], max: usize, array: bool) -> (Option<usize>, Vec<(usize, usize)>, bool) {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut start, mut end, mut items) = (0, None, Vec::new());
    for (i, &b) in buf.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b']' if depth == 0 && array => {
                // The array's end: the item before it, then the bracket alone.
                items.push((start, i));
                items.push((i, i + 1));
                return (Some(i + 1), items, true);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 && array => {
                items.push((start, i));
                (start, end) = (i + 1, Some(i + 1));
            }
            b'\n' if depth == 0 && !array => {
                items.push((start, i));
                (start, end) = (i + 1, Some(i + 1));
            }
            _ => {}
        }
        if items.len() >= max {
            return (end, items, true);
        }
    }
    (end, items, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` fed `step` bytes at a time, `max` rows per call.
    fn read(format: UploadFormat, input: &[u8], step: usize, max: usize) -> Result<Vec<RawRow>, Invalid> {
        let mut reader = RowReader::new(format, &ReadPosition::default())?;
        let mut rows = Vec::new();
        for piece in input.chunks(step) {
            reader.push(piece);
            loop {
                let got = reader.rows(max, false)?;
                if got.is_empty() {
                    break;
                }
                rows.extend(got);
            }
        }
        rows.extend(reader.rows(usize::MAX, true)?);
        Ok(rows)
    }

    fn phones(rows: &[RawRow]) -> Vec<(usize, Option<&str>)> {
        rows.iter().map(|r| (r.number, r.phone.as_deref())).collect()
    }

    const CSV: &str = "\u{feff}Phone,name,note\r\n\"+1 415 555 0123\",\"Doe, John\",\"line1\nline2\"\r\n   ,  ,\r\n\r\n(415) 555-0124,Jane,\r\n+14155550125,\"Q \"\"x\"\"\",z";

    #[test]
    fn csv_rows_are_the_same_whatever_the_read_boundaries() {
        let whole = read(UploadFormat::Csv, CSV.as_bytes(), CSV.len(), usize::MAX).unwrap();
        assert_eq!(
            phones(&whole),
            [(1, Some("+1 415 555 0123")), (3, Some("(415) 555-0124")), (4, Some("+14155550125"))]
        );
        assert_eq!(whole[0].fields["note"], "line1\nline2");
        assert_eq!(whole[0].fields["name"], "Doe, John");
        assert_eq!(whole[2].fields["name"], "Q \"x\"");
        // The same as the request-body import reads.
        assert_eq!(whole, super::super::import::parse_csv(CSV.as_bytes()).unwrap());
        for step in 1..12 {
            for max in [1, 2, 100] {
                assert_eq!(read(UploadFormat::Csv, CSV.as_bytes(), step, max).unwrap(), whole, "step {step} max {max}");
            }
        }
    }

    #[test]
    fn a_reader_resumed_at_its_position_reads_the_rest() {
        let mut first = RowReader::new(UploadFormat::Csv, &ReadPosition::default()).unwrap();
        first.push(CSV.as_bytes());
        let one = first.rows(1, false).unwrap();
        assert_eq!(phones(&one), [(1, Some("+1 415 555 0123"))]);
        let at = first.position();
        assert_eq!(at.columns.as_deref().map(<[String]>::len), Some(3));
        let mut resumed = RowReader::new(UploadFormat::Csv, &at).unwrap();
        resumed.push(&CSV.as_bytes()[at.offset as usize..]);
        let rest = resumed.rows(usize::MAX, true).unwrap();
        assert_eq!(phones(&rest), [(3, Some("(415) 555-0124")), (4, Some("+14155550125"))]);
    }

    #[test]
    fn json_arrays_and_lines_are_read_item_by_item() {
        let array = br#" [ {"phone_number":"+14155550123","name":"A, \"b\" ]}","n":5},
            {"phone":"4155550124","tags":{"x":[1]}}, "oops", {"phone":"+1 bad" ] trailing"#;
        let whole = read(UploadFormat::Json, array, array.len(), usize::MAX).unwrap();
        assert_eq!(phones(&whole), [(1, Some("+14155550123")), (2, Some("4155550124")), (3, None), (4, None)]);
        assert_eq!(whole[0].fields["name"], "A, \"b\" ]}");
        assert!(whole[1].unreadable.as_deref().unwrap().contains("'tags'"));
        assert!(whole[2].unreadable.as_deref().unwrap().contains("object"));
        assert!(whole[3].unreadable.as_deref().unwrap().contains("not valid JSON"));
        for step in [1, 2, 3, 7, 50] {
            assert_eq!(read(UploadFormat::Json, array, step, 1).unwrap(), whole, "step {step}");
        }
        let lines = b"{\"phone\":\"+14155550123\"}\n\n{\"phone\":\"+14155550124\",\"name\":\"x\\ny\"}\r\n{\"phone\":\"+14155550125\"}";
        for step in [1, 4, 100] {
            let rows = read(UploadFormat::Json, lines, step, 2).unwrap();
            assert_eq!(
                phones(&rows),
                [(1, Some("+14155550123")), (2, Some("+14155550124")), (3, Some("+14155550125"))]
            );
            assert_eq!(rows[1].fields["name"], "x\ny");
        }
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = |f, input: &[u8]| read(f, input, 3, 10).unwrap_err().0;
        assert!(err(UploadFormat::Csv, b"name,code\nA,B\n").contains("no phone column"));
        assert!(err(UploadFormat::Csv, b"").contains("empty"));
        assert!(err(UploadFormat::Json, b"\"text\"").contains("array of recipient objects"));
        assert!(err(UploadFormat::Json, b"  ").contains("empty"));
        let open_quote = format!("phone\n\"{}", "x".repeat(MAX_ROW_BYTES + 10));
        let too_long = read(UploadFormat::Csv, open_quote.as_bytes(), 64 * 1024, 10).unwrap_err().0;
        assert!(too_long.contains("row 1 is longer than"), "{too_long}");
    }

    #[test]
    fn object_keys_name_their_upload() {
        let (c, u) = (Id::generate(), Id::generate());
        let key = object_key(&c, &u, UploadFormat::Json);
        assert_eq!(parse_object_key(&key), Some((c, u, UploadFormat::Json)));
        assert_eq!(parse_object_key("exports/x.csv"), None);
        assert_eq!(parse_object_key("uploads/not-an-id/x.csv"), None);
    }
}
