//! `/api/campaigns/{id}/recipients`: import them (JSON, CSV, or a CSV file upload) and list them.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::campaigns::{load, wrong_status};
use super::{ApiRequest, App, Reply};
use crate::domain::campaign::Campaign;
use crate::domain::import::{self, JsonBodyError, RawRow, Rejection};
use crate::domain::limits::{IMPORT_ROWS, REPORTED_ERRORS};
use crate::domain::now;
use crate::domain::recipient::RecipientStatus;
use crate::domain::template::Category;
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

const STATUSES: &str = "pending, sending, sent, delivered, read, failed";
const IMPORT_TYPES: &str = "application/json, text/csv or multipart/form-data with a file field";

/// Reads the rows of the body, whichever of the accepted forms it has.
async fn rows(req: &ApiRequest) -> ApiResult<Vec<RawRow>> {
    let from_json = |body: &[u8]| {
        import::parse_json(body).map_err(|e| match e {
            JsonBodyError::Malformed(m) => ApiError::bad_request(format!("malformed JSON: {m}")),
            JsonBodyError::Invalid(m) => ApiError::invalid(m),
        })
    };
    match req.content_type().as_deref() {
        Some("application/json") => from_json(&req.body),
        Some("text/csv" | "application/csv") => Ok(import::parse_csv(&req.body)?),
        Some("multipart/form-data") => {
            let (body, is_json) = uploaded_file(req).await?;
            if is_json { from_json(&body) } else { Ok(import::parse_csv(&body)?) }
        }
        None => Err(ApiError::unsupported_media(format!("Content-Type is required: send {IMPORT_TYPES}"))),
        Some(other) => Err(ApiError::unsupported_media(format!(
            "Content-Type {other} is not supported for imports; send {IMPORT_TYPES}"
        ))),
    }
}

/// The `file` part of a multipart upload, and whether it is JSON rather than CSV.
async fn uploaded_file(req: &ApiRequest) -> ApiResult<(bytes::Bytes, bool)> {
    let header = req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(header)
        .map_err(|_| ApiError::bad_request("multipart/form-data needs a boundary in its Content-Type"))?;
    let body = req.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request(format!("the multipart body cannot be read: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let is_json = field.content_type().is_some_and(|m| m.subtype() == "json")
            || field.file_name().is_some_and(|f| f.to_ascii_lowercase().ends_with(".json"));
        return Ok((field.bytes().await.map_err(bad)?, is_json));
    }
    Err(ApiError::invalid("the multipart body has no field named file; send the CSV as file=@recipients.csv"))
}

/// Adds recipients to a draft (or scheduled) campaign. Rows that cannot be used are counted
/// and the first 100 are listed with their reasons; numbers already in the campaign or
/// repeated in the request count as duplicates. One import runs at a time per campaign.
pub async fn import(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let campaign = load(&app, req.param("id")).await?;
    if !campaign.status.accepts_imports() {
        return Err(wrong_status(&campaign, "recipients can be imported only into draft or scheduled campaigns"));
    }
    let started = std::time::Instant::now();
    let rows = rows(&req).await?;
    if rows.is_empty() {
        return Err(ApiError::invalid("the import has no recipient rows"));
    }
    if rows.len() > IMPORT_ROWS {
        return Err(ApiError::too_large(format!(
            "the import has more than {IMPORT_ROWS} rows; the limit is {IMPORT_ROWS} rows per import: split the file"
        )));
    }
    let lock = match app.db.lock_import(&campaign.id, chrono::Utc::now().timestamp()).await {
        Ok(lock) => lock,
        Err(StoreError::ConditionFailed) => {
            let current = load(&app, &campaign.id).await?;
            return Err(if current.status.accepts_imports() {
                ApiError::conflict(format!(
                    "another import into campaign {} is in progress; send this one when it has finished",
                    current.id
                ))
            } else {
                wrong_status(&current, "recipients can be imported only into draft or scheduled campaigns")
            });
        }
        Err(e) => return Err(app.store_err("could not start the import")(e)),
    };
    let required = lock.campaign.required_fields();
    let phones = app.phones;
    let mut plan = tokio::task::spawn_blocking(move || import::plan(rows, &required, &phones))
        .await
        .map_err(|e| ApiError::unavailable("the import could not be processed", e))?;

    let planned = started.elapsed();
    // Numbers the campaign already holds are duplicates too.
    let mut already = Vec::new();
    if lock.campaign.total_recipients > 0 && !plan.accepted.is_empty() {
        let candidates: Vec<&str> = plan.accepted.iter().map(|a| a.phone.as_str()).collect();
        let existing: HashSet<String> = match app.db.existing_phones(&campaign.id, &candidates).await {
            Ok(e) => e,
            Err(e) => {
                let _ = app.db.finish_import(&lock, 0, &now()).await;
                return Err(app.store_err("could not read the campaign's recipients")(e));
            }
        };
        plan.accepted.retain(|a| {
            let keep = !existing.contains(&a.phone);
            if !keep && already.len() < REPORTED_ERRORS {
                already.push(Rejection { row: a.row, reason: format!("{} is already in the campaign", a.phone) });
            }
            keep
        });
        plan.duplicates += existing.len();
    }

    let opted_out = match withhold_opted_out(&app, &lock.campaign, &mut plan, &mut already).await {
        Ok(n) => n,
        Err(e) => {
            let _ = app.db.finish_import(&lock, 0, &now()).await;
            return Err(e);
        }
    };

    let checked = started.elapsed();
    let wanted = plan.accepted.len();
    let stamp = now();
    let written = app.db.put_recipients(&campaign.id, plan.accepted, &stamp).await;
    let added = match &written {
        Ok(n) | Err((n, _)) => *n,
    };
    let finished = app.db.finish_import(&lock, added, &stamp).await;
    tracing::info!(
        campaign = %campaign.id, added, invalid = plan.invalid, duplicates = plan.duplicates,
        parse_ms = planned.as_millis() as u64, existing_ms = (checked - planned).as_millis() as u64,
        write_ms = (started.elapsed() - checked).as_millis() as u64, "import finished"
    );
    if let Err((n, e)) = written {
        return Err(app.store_err(&format!(
            "the store failed after {n} of {wanted} recipients were added (they are counted in total_recipients); \
             send the same import again: numbers already added count as duplicates"
        ))(e));
    }
    let campaign =
        finished.map_err(app.store_err("the recipients were added but the campaign could not be updated"))?;
    Ok(Reply::ok(json!({
        "imported": added,
        "duplicates": plan.duplicates,
        "invalid": plan.invalid,
        "opted_out": opted_out,
        "errors": import::merge_errors(plan.errors, already),
        "total_recipients": campaign.total_recipients,
    })))
}

/// Numbers that opted out of the account's marketing messages: counted, and for a MARKETING
/// template not added (each listed among the errors).
async fn withhold_opted_out(
    app: &App,
    campaign: &Campaign,
    plan: &mut import::ImportPlan,
    rejected: &mut Vec<Rejection>,
) -> ApiResult<usize> {
    if plan.accepted.is_empty() {
        return Ok(0);
    }
    let read = app.store_err("could not read the account's opt-outs");
    let candidates: Vec<&str> = plan.accepted.iter().map(|a| a.phone.as_str()).collect();
    let opted_out = app.db.opted_out(&campaign.account_id, &candidates).await.map_err(&read)?;
    if opted_out.is_empty() {
        return Ok(0);
    }
    let marketing = app
        .db
        .get_template(&campaign.template_id)
        .await
        .map_err(&read)?
        .is_some_and(|t| t.category == Category::Marketing);
    if marketing {
        plan.accepted.retain(|a| {
            let keep = !opted_out.contains(&a.phone);
            if !keep && rejected.len() < REPORTED_ERRORS {
                let reason = format!("{} opted out of this account's marketing messages; not added", a.phone);
                rejected.push(Rejection { row: a.row, reason });
            }
            keep
        });
    }
    Ok(opted_out.len())
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let p = req.pagination(50)?;
    let status = req.query_enum("status", RecipientStatus::parse, STATUSES)?;
    let campaign = load(&app, req.param("id")).await?;
    let page = app
        .db
        .list_recipients(&campaign, status, p.page, p.limit)
        .await
        .map_err(app.store_err("could not list the recipients"))?;
    Ok(Reply::page(page.items.iter().map(|r| r.to_json()).collect(), page.total, p))
}
