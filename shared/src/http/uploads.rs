//! `/api/campaigns/{id}/recipients/uploads`: a recipient file uploaded to the bucket with a
//! presigned URL and imported in the background ([`crate::usecases::upload`]).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::id::Id;
use crate::domain::upload::UploadFormat;
use crate::error::{AppError, AppResult};
use crate::usecases::upload;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewUpload {
    #[serde(default)]
    format: UploadFormat,
}

/// `POST`: the campaign is checked (404, 409), the upload recorded, the `PUT` URL presigned.
pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let campaign = req.id("campaign")?;
    let new: NewUpload = req.optional_json()?;
    let created = upload::create(&app, &campaign, new.format).await?;
    let mut data = created.upload.to_json();
    data["upload_url"] = json!(created.upload_url);
    data["upload_method"] = json!("PUT");
    data["expires_at"] = json!(created.expires_at);
    Ok(Reply::created(data))
}

/// `GET /{upload_id}`: the upload's status and counts.
pub async fn get(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let campaign = req.id("campaign")?;
    let raw = req.param("upload_id");
    let id = Id::parse(raw).ok_or_else(|| AppError::not_found(format!("upload {raw} not found")))?;
    Ok(Reply::ok(upload::get(&app, &campaign, &id).await?.to_json()))
}
