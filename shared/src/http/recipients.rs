//! `/api/campaigns/{id}/recipients`: import them (JSON, CSV, or a CSV file upload) and list them.

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::import::{JsonBodyError, RawRow, parse_csv, parse_json};
use crate::domain::recipient::RecipientStatus;
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::load;
use crate::usecases::import;

const STATUSES: &str = "pending, sending, sent, delivered, read, failed";
const IMPORT_TYPES: &str = "application/json, text/csv or multipart/form-data with a file field";

/// Reads the rows of the body, whichever of the accepted forms it has.
async fn rows(req: &ApiRequest) -> AppResult<Vec<RawRow>> {
    let from_json = |body: &[u8]| {
        parse_json(body).map_err(|e| match e {
            JsonBodyError::Malformed(m) => AppError::bad_request(format!("malformed JSON: {m}")),
            JsonBodyError::Invalid(m) => AppError::invalid(m),
        })
    };
    match req.content_type().as_deref() {
        Some("application/json") => from_json(&req.body),
        Some("text/csv" | "application/csv") => Ok(parse_csv(&req.body)?),
        Some("multipart/form-data") => {
            let (body, is_json) = uploaded_file(req).await?;
            if is_json { from_json(&body) } else { Ok(parse_csv(&body)?) }
        }
        None => Err(AppError::unsupported_media(format!("Content-Type is required: send {IMPORT_TYPES}"))),
        Some(other) => Err(AppError::unsupported_media(format!(
            "Content-Type {other} is not supported for imports; send {IMPORT_TYPES}"
        ))),
    }
}

/// The `file` part of a multipart upload, and whether it is JSON rather than CSV.
async fn uploaded_file(req: &ApiRequest) -> AppResult<(bytes::Bytes, bool)> {
    let header = req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(header)
        .map_err(|_| AppError::bad_request("multipart/form-data needs a boundary in its Content-Type"))?;
    let body = req.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| AppError::bad_request(format!("the multipart body cannot be read: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let is_json = field.content_type().is_some_and(|m| m.subtype() == "json")
            || field.file_name().is_some_and(|f| f.to_ascii_lowercase().ends_with(".json"));
        return Ok((field.bytes().await.map_err(bad)?, is_json));
    }
    Err(AppError::invalid("the multipart body has no field named file; send the CSV as file=@recipients.csv"))
}

/// `POST /recipients/import`: the campaign is checked first (404, 409), then the body read.
pub async fn import(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let campaign = import::open(&app, &req.id("campaign")?).await?;
    let rows = rows(&req).await?;
    Ok(Reply::ok(json!(import::add(&app, &campaign, rows).await?)))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let (p, start) = req.listing(50)?;
    let status = req.query_enum("status", RecipientStatus::parse, STATUSES)?;
    let campaign = load(&app, &req.id("campaign")?).await?;
    let page = app
        .db
        .list_recipients(&campaign, status, start.clone(), p.limit)
        .await
        .map_err(app.store_err("could not list the recipients"))?;
    Ok(Reply::listed(page.items.iter().map(|r| r.to_json()).collect(), page.total, p, &start, page.next))
}
