//! A campaign's results as a CSV file: one row per recipient with its number, its imported
//! fields, its status, the WhatsApp message id, its times and Meta's error. The file is written
//! as the recipients are read, a part at a time, so its size never sits in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::Id;
use super::recipient::{Recipient, RecipientStatus};

/// The columns after the imported fields.
const RESULT_COLUMNS: [&str; 9] = [
    "status",
    "wamid",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "error_code",
    "error_message",
    "other_fields",
];

/// Where an export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Exporting,
    Completed,
    Failed,
}

/// An export as stored: what it is, how far it got, and where it goes on from (the multipart
/// upload and its parts so far, the listing position after the last row of the last part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub export_id: Id,
    pub campaign_id: Id,
    pub status: ExportStatus,
    /// Only recipients in this status (all when absent).
    #[serde(default)]
    pub filter: Option<RecipientStatus>,
    #[serde(default)]
    pub rows: u64,
    pub created_at: super::Timestamp,
    #[serde(default)]
    pub completed_at: Option<super::Timestamp>,
    #[serde(default)]
    pub error: Option<String>,
    /// The object the file is written to.
    pub key: String,
    #[serde(default)]
    pub columns: Option<Columns>,
    #[serde(default)]
    pub upload_id: Option<String>,
    /// The parts uploaded: number and ETag, in order.
    #[serde(default)]
    pub parts: Vec<(i32, String)>,
    /// The listing position after the last row uploaded (none: from the start).
    #[serde(default)]
    pub position: Option<String>,
}

impl Export {
    pub fn new(campaign_id: &Id, filter: Option<RecipientStatus>, now: &super::Timestamp) -> Self {
        let export_id = Id::generate();
        Export {
            key: format!("exports/{campaign_id}/{export_id}.csv"),
            export_id,
            campaign_id: campaign_id.clone(),
            status: ExportStatus::Exporting,
            filter,
            rows: 0,
            created_at: now.clone(),
            completed_at: None,
            error: None,
            columns: None,
            upload_id: None,
            parts: Vec::new(),
            position: None,
        }
    }
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Exporting => "exporting",
            ExportStatus::Completed => "completed",
            ExportStatus::Failed => "failed",
        }
    }
}

/// A queue message: write (or go on writing) one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJob {
    pub campaign_id: Id,
    pub export_id: Id,
}

/// The columns of an export: `phone_number`, the imported fields (those the campaign's
/// messages need and those of the first recipients read, in name order), then the results.
/// A field only later recipients carry goes into `other_fields`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    pub fields: Vec<String>,
}

impl Columns {
    pub fn new<'a>(required: &[String], first: impl IntoIterator<Item = &'a Recipient>) -> Self {
        let mut fields: Vec<String> = required.to_vec();
        for r in first {
            fields.extend(r.fields.keys().cloned());
        }
        fields.sort();
        fields.dedup();
        Columns { fields }
    }

    /// The header row.
    pub fn header(&self) -> Vec<String> {
        let mut row = vec!["phone_number".to_string()];
        row.extend(self.fields.iter().cloned());
        row.extend(RESULT_COLUMNS.iter().map(|c| c.to_string()));
        row
    }

    /// One recipient's row.
    pub fn row(&self, r: &Recipient) -> Vec<String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let time = |v: &Option<super::Timestamp>| v.as_ref().map(|t| t.to_string()).unwrap_or_default();
        let mut row = vec![r.phone_number.to_string()];
        row.extend(self.fields.iter().map(|f| r.fields.get(f).cloned().unwrap_or_default()));
        let other: BTreeMap<&String, &String> = r.fields.iter().filter(|(k, _)| !self.fields.contains(k)).collect();
        row.extend([
            r.status.as_str().to_string(),
            text(&r.wamid),
            time(&r.sent_at),
            time(&r.delivered_at),
            time(&r.read_at),
            time(&r.failed_at),
            r.error_code.map(|c| c.to_string()).unwrap_or_default(),
            text(&r.error_message),
            if other.is_empty() { String::new() } else { serde_json::to_string(&other).unwrap_or_default() },
        ]);
        row
    }
}

/// Rows as CSV text (RFC 4180: quoted where needed, CRLF line ends).
pub fn csv_lines(rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    for row in rows {
        // Writing to a Vec cannot fail.
        let _ = w.write_record(row);
    }
    w.into_inner().unwrap_or_default()
}

/// Whether an export with the filter `status` includes `r`.
pub fn includes(status: Option<RecipientStatus>, r: &Recipient) -> bool {
    status.is_none_or(|s| s == r.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(phone: &str, fields: &[(&str, &str)]) -> Recipient {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Recipient::pending(&"c".into(), 32, phone.into(), fields, &"2026-01-01T00:00:00Z".into())
    }

    #[test]
    fn rows_carry_the_fields_the_results_and_quote_what_csv_needs() {
        let mut sent = recipient("+14155550101", &[("name", "Ann, \"A\""), ("code", "X1")]);
        sent.status = RecipientStatus::Failed;
        sent.failed_at = Some("2026-01-01T10:00:00Z".into());
        sent.error_code = Some(131026);
        sent.error_message = Some("Message undeliverable".into());
        let later = recipient("+14155550102", &[("name", "Bo"), ("city", "Lyon")]);
        let columns = Columns::new(&["code".to_string()], [&sent]);
        assert_eq!(columns.fields, ["code", "name"]);
        let text = String::from_utf8(csv_lines(&[columns.header(), columns.row(&sent), columns.row(&later)])).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "phone_number,code,name,status,wamid,sent_at,delivered_at,read_at,failed_at,error_code,error_message,other_fields"
        );
        assert_eq!(
            lines[1],
            "+14155550101,X1,\"Ann, \"\"A\"\"\",failed,,,,,2026-01-01T10:00:00Z,131026,Message undeliverable,"
        );
        assert_eq!(lines[2], "+14155550102,,Bo,pending,,,,,,,,\"{\"\"city\"\":\"\"Lyon\"\"}\"");
        assert!(includes(None, &later) && includes(Some(RecipientStatus::Pending), &later));
        assert!(!includes(Some(RecipientStatus::Failed), &later));
    }
}
