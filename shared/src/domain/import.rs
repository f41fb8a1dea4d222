//! Recipient imports: CSV or JSON rows → normalised, validated, de-duplicated recipients.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::limits::{self, FIELD_NAME_CHARS, FIELD_VALUE_CHARS, FIELDS, IMPORT_ROWS, REPORTED_ERRORS};
use super::phone::{Phone, PhoneParser};
use super::recipient::{PHONE_ALIASES, PHONE_FIELD, RESERVED_FIELDS};
use crate::error::Invalid;

/// One input row before validation. `number` is its 1-based position among the data rows (the
/// CSV header is not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub number: usize,
    pub phone: Option<String>,
    pub fields: BTreeMap<String, String>,
    /// Set when the row could not even be read (bad UTF-8, wrong value types…).
    pub unreadable: Option<String>,
}

/// A row that will not be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub row: usize,
    pub reason: String,
}

/// A row ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub row: usize,
    pub phone: Phone,
    pub fields: BTreeMap<String, String>,
}

/// The outcome of validating every row; the store then drops numbers it already holds.
#[derive(Debug, Default)]
pub struct ImportPlan {
    pub accepted: Vec<Accepted>,
    pub invalid: usize,
    pub duplicates: usize,
    /// The first rejected rows (invalid or repeated), in row order.
    pub errors: Vec<Rejection>,
}

impl ImportPlan {
    fn reject(&mut self, row: usize, reason: String, invalid: bool) {
        if invalid {
            self.invalid += 1;
        } else {
            self.duplicates += 1;
        }
        if self.errors.len() < REPORTED_ERRORS {
            self.errors.push(Rejection { row, reason });
        }
    }
}

fn check_field_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid("every column needs a name in the header row".into()));
    }
    if name.chars().count() > FIELD_NAME_CHARS {
        let start: String = name.chars().take(FIELD_NAME_CHARS).collect();
        return Err(Invalid(format!("column '{start}…' has a name longer than {FIELD_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid(format!("column {name:?} has a control character in its name")));
    }
    if RESERVED_FIELDS.contains(&name) {
        return Err(Invalid(format!("column '{name}' is reserved for the recipient's own data; rename it")));
    }
    Ok(())
}

fn phone_column(names: &[String]) -> Option<usize> {
    PHONE_ALIASES.iter().find_map(|alias| names.iter().position(|n| n.eq_ignore_ascii_case(alias)))
}

/// The columns of a CSV file, read from its header row: their names and which one holds the
/// phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    names: Vec<String>,
    phone: usize,
}

impl CsvColumns {
    /// Checks a header row's names: a phone column, named columns, no reserved or repeated name.
    pub fn new(names: Vec<String>) -> Result<Self, Invalid> {
        if names.iter().all(String::is_empty) {
            return Err(Invalid("the CSV file is empty; it needs a header row such as phone_number,name".into()));
        }
        if names.len() > FIELDS {
            return Err(Invalid(format!("the CSV file has {} columns; the limit is {FIELDS}", names.len())));
        }
        let Some(phone) = phone_column(&names) else {
            return Err(Invalid(format!(
                "the CSV header has no phone column; name it {} (or phone, mobile, number)",
                PHONE_FIELD
            )));
        };
        for (i, n) in names.iter().enumerate() {
            if i == phone {
                continue;
            }
            check_field_name(n)?;
            if names[..i].contains(n) {
                return Err(Invalid(format!("column '{n}' appears twice in the header")));
            }
        }
        Ok(CsvColumns { names, phone })
    }

    /// The columns of a header record.
    pub fn from_header(header: &csv::ByteRecord) -> Result<Self, Invalid> {
        Self::new(header.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect())
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The row of a CSV record numbered `number`; `None` for a line of blanks only.
    pub fn row(&self, number: usize, record: Result<&csv::ByteRecord, &csv::Error>) -> Option<RawRow> {
        let mut row = RawRow { number, phone: None, fields: BTreeMap::new(), unreadable: None };
        let rec = match record {
            Err(e) => {
                row.unreadable = Some(format!("row cannot be read: {e}"));
                return Some(row);
            }
            Ok(rec) => rec,
        };
        if rec.iter().all(|v| v.iter().all(u8::is_ascii_whitespace)) {
            return None;
        }
        for (j, value) in rec.iter().enumerate() {
            let Ok(value) = std::str::from_utf8(value) else {
                row.unreadable = Some("row is not valid UTF-8".into());
                break;
            };
            let value = value.trim();
            match self.names.get(j) {
                None if value.is_empty() => {}
                None => {
                    row.unreadable =
                        Some(format!("row has {} values but the header has {} columns", rec.len(), self.names.len()));
                    break;
                }
                Some(_) if j == self.phone => row.phone = Some(value.to_string()),
                Some(_) if value.is_empty() => {}
                Some(name) => {
                    row.fields.insert(name.clone(), value.to_string());
                }
            }
        }
        Some(row)
    }
}

/// A CSV reader as every import reads CSV: records of any length (a short or long row is the
/// row's error, not the file's), quotes and CRLF as RFC 4180.
pub fn csv_reader<R: std::io::Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(input)
}

/// The UTF-8 byte-order mark some spreadsheets write first.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads CSV: a header row, then one recipient per record. Quoted fields, embedded commas and
/// newlines, CRLF and a UTF-8 byte-order mark are handled by the `csv` crate. Reading stops one
/// row past [`IMPORT_ROWS`], which is enough for the caller to refuse the import.
pub fn parse_csv(body: &[u8]) -> Result<Vec<RawRow>, Invalid> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let mut reader = csv_reader(body);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => csv::ByteRecord::new(),
        Some(h) => h.map_err(|e| Invalid(format!("the CSV header row cannot be read: {e}")))?,
    };
    let columns = CsvColumns::from_header(&header)?;
    let mut rows = Vec::new();
    for (i, record) in records.enumerate() {
        if rows.len() > IMPORT_ROWS {
            break;
        }
        rows.extend(columns.row(i + 1, record.as_ref()));
    }
    Ok(rows)
}

/// Reads the JSON body `{"recipients":[{"phone_number":"+1…","name":"…"},…]}`. Numbers and
/// booleans become text; `null` means absent. Like [`parse_csv`], it returns at most one row
/// past [`IMPORT_ROWS`].
pub fn parse_json(body: &[u8]) -> Result<Vec<RawRow>, JsonBodyError> {
    limits::check_depth(body).map_err(JsonBodyError::Invalid)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| JsonBodyError::Malformed(e.to_string()))?;
    let Value::Object(mut top) = value else {
        return Err(JsonBodyError::Invalid("the body must be an object with a recipients array".into()));
    };
    if let Some(k) = top.keys().find(|k| *k != "recipients") {
        return Err(JsonBodyError::Invalid(format!("unknown field '{k}': the body takes only recipients")));
    }
    let Some(Value::Array(items)) = top.remove("recipients") else {
        return Err(JsonBodyError::Invalid("recipients must be an array of objects".into()));
    };
    let rows = items.into_iter().take(IMPORT_ROWS + 1).enumerate().map(|(i, item)| json_row(i + 1, item));
    Ok(rows.collect())
}

/// The row of one JSON recipient numbered `number`: text, numbers and booleans are its fields
/// (numbers and booleans as text), `null` means absent.
pub fn json_row(number: usize, item: Value) -> RawRow {
    let mut row = RawRow { number, phone: None, fields: BTreeMap::new(), unreadable: None };
    let Value::Object(obj) = item else {
        row.unreadable = Some("recipient must be an object".into());
        return row;
    };
    if obj.len() > FIELDS {
        row.unreadable = Some(format!("recipient has {} fields; the limit is {FIELDS}", obj.len()));
    }
    let phone_key = PHONE_ALIASES.iter().find(|a| obj.contains_key(**a)).copied();
    for (k, v) in obj {
        let text = match v {
            Value::Null => continue,
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(_) | Value::Object(_) => {
                row.unreadable = Some(format!("field '{k}' must be text, a number or a boolean"));
                continue;
            }
        };
        if Some(k.as_str()) == phone_key {
            row.phone = Some(text);
        } else if let Err(e) = check_field_name(&k) {
            row.unreadable = Some(e.0);
        } else if !text.is_empty() {
            row.fields.insert(k, text);
        }
    }
    row
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonBodyError {
    /// Not JSON at all (400).
    Malformed(String),
    /// JSON of the wrong shape (422).
    Invalid(String),
}

/// Validates every row: the number must normalise, every field the campaign's mapping needs
/// must be present, values must fit; a number seen earlier in the same request is a duplicate.
pub fn plan(rows: Vec<RawRow>, required: &[String], phones: &PhoneParser) -> ImportPlan {
    let mut plan = ImportPlan::default();
    let mut seen: HashMap<Phone, usize> = HashMap::with_capacity(rows.len());
    for row in rows {
        if let Some(reason) = row.unreadable {
            plan.reject(row.number, reason, true);
            continue;
        }
        let phone = match row.phone.as_deref().map(|p| phones.normalize(p)) {
            None => {
                plan.reject(row.number, "phone number is missing".into(), true);
                continue;
            }
            Some(Err(reason)) => {
                plan.reject(row.number, reason.to_string(), true);
                continue;
            }
            Some(Ok(p)) => p,
        };
        if let Some(missing) = required.iter().find(|f| !row.fields.contains_key(*f)) {
            plan.reject(
                row.number,
                format!("field '{missing}' is missing; the campaign's variable_mapping needs it"),
                true,
            );
            continue;
        }
        if let Some((k, _)) = row.fields.iter().find(|(_, v)| v.chars().count() > FIELD_VALUE_CHARS) {
            plan.reject(row.number, format!("field '{k}' is longer than {FIELD_VALUE_CHARS} characters"), true);
            continue;
        }
        if let Some(first) = seen.get(&phone) {
            plan.reject(row.number, format!("{phone} repeats row {first}"), false);
            continue;
        }
        seen.insert(phone.clone(), row.number);
        plan.accepted.push(Accepted { row: row.number, phone, fields: row.fields });
    }
    plan
}

/// Merges the plan's rejections with those found against the store (numbers already in the
/// campaign), keeping the first [`REPORTED_ERRORS`] in row order.
pub fn merge_errors(mut a: Vec<Rejection>, b: Vec<Rejection>) -> Vec<Rejection> {
    a.extend(b);
    a.sort_by_key(|r| r.row);
    a.truncate(REPORTED_ERRORS);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> PhoneParser {
        PhoneParser::new("US")
    }

    #[test]
    fn csv_with_quotes_newlines_crlf_and_bom() {
        let csv = "\u{feff}Phone,name,note\r\n\"+1 415 555 0123\",\"Doe, John\",\"line1\nline2\"\r\n(415) 555-0124,Jane,\r\n\r\n";
        let rows = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].phone.as_deref(), Some("+1 415 555 0123"));
        assert_eq!(rows[0].fields["name"], "Doe, John");
        assert_eq!(rows[0].fields["note"], "line1\nline2");
        assert!(!rows[1].fields.contains_key("note"));
        let p = plan(rows, &["name".to_string()], &us());
        let phones: Vec<_> = p.accepted.iter().map(|a| a.phone.as_str()).collect();
        assert_eq!(phones, ["+14155550123", "+14155550124"]);
    }

    #[test]
    fn csv_header_problems_are_refused() {
        assert!(parse_csv(b"").unwrap_err().0.contains("empty"));
        assert!(parse_csv(b"name,code\nJohn,1\n").unwrap_err().0.contains("no phone column"));
        assert!(parse_csv(b"phone,status\n1,2\n").unwrap_err().0.contains("reserved"));
        assert!(parse_csv(b"phone,a,a\n1,2,3\n").unwrap_err().0.contains("twice"));
        assert!(parse_csv(b"phone,,b\n1,2,3\n").unwrap_err().0.contains("needs a name"));
    }

    #[test]
    fn invalid_and_duplicate_rows_are_counted_and_reported() {
        let csv = b"mobile,name\n+14155550123,A\nnot-a-number,B\n+14155550125,\n4155550123,D\n+14155550126,E,extra\n\xff\xfe,F\n";
        let rows = parse_csv(csv).unwrap();
        let p = plan(rows, &["name".to_string()], &us());
        assert_eq!((p.accepted.len(), p.invalid, p.duplicates), (1, 4, 1));
        let rows: Vec<_> = p.errors.iter().map(|e| e.row).collect();
        assert_eq!(rows, [2, 3, 4, 5, 6]);
        assert!(p.errors[1].reason.contains("'name' is missing"), "{:?}", p.errors[1]);
        assert!(p.errors[2].reason.contains("repeats row 1"), "{:?}", p.errors[2]);
        assert!(p.errors[3].reason.contains("3 values"), "{:?}", p.errors[3]);
        assert!(p.errors[4].reason.contains("UTF-8"), "{:?}", p.errors[4]);
    }

    #[test]
    fn errors_are_capped_at_one_hundred() {
        let mut csv = String::from("phone_number\n");
        for _ in 0..150 {
            csv.push_str("bad\n");
        }
        let p = plan(parse_csv(csv.as_bytes()).unwrap(), &[], &us());
        assert_eq!((p.invalid, p.errors.len()), (150, REPORTED_ERRORS));
        let merged = merge_errors(p.errors, vec![Rejection { row: 1, reason: "x".into() }]);
        assert_eq!(merged.len(), REPORTED_ERRORS);
        assert_eq!((merged[1].row, merged[1].reason.as_str(), merged[2].row), (1, "x", 2));
    }

    #[test]
    fn json_rows_take_text_numbers_and_booleans() {
        let body = br#"{"recipients":[
            {"phone_number":"+14155550123","name":"John","vip":true,"n":5,"gone":null},
            {"phone":"4155550124","name":"Jane"},
            "oops",
            {"phone_number":"+14155550125","name":{"first":"x"}}]}"#;
        let rows = parse_json(body).unwrap();
        assert_eq!(rows[0].fields["vip"], "true");
        assert_eq!(rows[0].fields["n"], "5");
        assert!(!rows[0].fields.contains_key("gone"));
        assert_eq!(rows[1].phone.as_deref(), Some("4155550124"));
        let p = plan(rows, &["name".to_string()], &us());
        assert_eq!((p.accepted.len(), p.invalid), (2, 2));
        assert!(matches!(parse_json(b"{"), Err(JsonBodyError::Malformed(_))));
        assert!(matches!(parse_json(br#"{"recipients":{}}"#), Err(JsonBodyError::Invalid(_))));
        assert!(matches!(parse_json(br#"{"people":[]}"#), Err(JsonBodyError::Invalid(m)) if m.contains("people")));
    }
}
