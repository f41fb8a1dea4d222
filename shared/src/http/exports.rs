//! `/api/campaigns/{id}/exports`: a campaign's results as a CSV file, written in the background
//! ([`crate::usecases::export`]).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::export::Export;
use crate::domain::recipient::RecipientStatus;
use crate::error::{AppError, AppResult};
use crate::usecases::export;

/// The optional body of a new export.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewExport {
    /// `Some(None)`: `"status": null`, which is not a status (absent means every recipient).
    #[serde(default, deserialize_with = "present")]
    status: Option<Option<String>>,
}

/// A field that is present, even as null.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn view(e: &Export, download: Option<(String, String)>) -> Value {
    let (url, expires) = download.map_or((None, None), |(u, x)| (Some(u), Some(x)));
    json!({
        "export_id": e.export_id, "campaign_id": e.campaign_id, "status": e.status.as_str(),
        "filter": e.filter.map(|s| s.as_str()), "rows": e.rows, "created_at": e.created_at,
        "completed_at": e.completed_at, "error": e.error, "download_url": url, "download_expires_at": expires,
    })
}

/// `POST /api/campaigns/{id}/exports`: 202 with the export, being written.
pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let campaign = req.id("campaign")?;
    let new: NewExport = req.optional_json()?;
    let filter = new
        .status
        .map(|s| {
            let s = s.unwrap_or_else(|| "null".into());
            RecipientStatus::parse(&s).ok_or_else(|| {
                AppError::invalid(format!(
                    "status must be one of pending, sending, sent, delivered, read, failed (got '{s}')"
                ))
            })
        })
        .transpose()?;
    let e = export::start(&app, &campaign, filter).await?;
    Ok(Reply::accepted(view(&e, None)))
}

/// `GET /api/campaigns/{id}/exports/{export_id}`: the export, with a download URL once complete.
pub async fn get(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let campaign = req.id("campaign")?;
    let (e, download) = export::get(&app, &campaign, req.param("export_id")).await?;
    Ok(Reply::ok(view(&e, download)))
}
