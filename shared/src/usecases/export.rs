//! Exports of a campaign's results: a CSV file in the bucket, one row per recipient (all, or
//! those in one status), written in the background by the export worker as the recipients are
//! read — a part of the multipart upload at a time, so memory stays flat whatever the campaign's
//! size — and fetched with a presigned URL once it is complete. A worker that nears its
//! deadline saves where it is (the upload's parts, the listing position after the last row
//! uploaded) and queues itself to go on; the next one never writes a row twice.

use std::time::{Duration, Instant};

use crate::adapters::objects::ObjectError;
use crate::adapters::store::{Position, Start, StoreError};
use crate::app::App;
use crate::domain::export::{Columns, Export, ExportJob, ExportStatus, csv_lines, includes};
use crate::domain::id::Id;
use crate::domain::job::Job;
use crate::domain::now;
use crate::domain::recipient::RecipientStatus;
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::load;

/// Recipients read per listing page: about a part's worth (rows are some 60 to 150 bytes), at
/// most 3,000 — about the 1 MB one Query answers (a page cut there goes on in the next Query).
fn page_rows(part_bytes: usize) -> u32 {
    (part_bytes / 100).clamp(10, 3000) as u32
}
/// A worker stops this long before its deadline (a part's pages and its upload fit in it).
const MARGIN: Duration = Duration::from_secs(20);
/// How long a download URL works.
const DOWNLOAD_VALID: Duration = Duration::from_secs(3600);

/// Starts an export of the campaign's recipients (those in `filter` only, when given).
pub async fn start(app: &App, campaign_id: &Id, filter: Option<RecipientStatus>) -> AppResult<Export> {
    let campaign = load(app, campaign_id).await?;
    let export = Export::new(&campaign.id, filter, &now());
    app.db.save_export(&export).await.map_err(app.store_err("could not store the export"))?;
    let job = Job::Export(ExportJob { campaign_id: campaign.id.clone(), export_id: export.export_id.clone() });
    if let Err(e) = app.queue.job_later(&job, Duration::ZERO).await {
        let mut failed = export.clone();
        (failed.status, failed.error) = (ExportStatus::Failed, Some("the export could not be queued".into()));
        let _ = app.db.save_export(&failed).await;
        return Err(AppError::unavailable("could not queue the export; try again", e));
    }
    Ok(export)
}

/// An export and, once it is complete, a URL to download its file.
pub async fn get(app: &App, campaign_id: &Id, export_id: &str) -> AppResult<(Export, Option<(String, String)>)> {
    let campaign = load(app, campaign_id).await?;
    let not_found = || AppError::not_found(format!("export {export_id} of campaign {} not found", campaign.id));
    let Some(id) = Id::parse(export_id) else { return Err(not_found()) };
    let export = app.db.get_export(&campaign.id, &id).await.map_err(app.store_err("could not read the export"))?;
    let export = export.ok_or_else(not_found)?;
    if export.status != ExportStatus::Completed {
        return Ok((export, None));
    }
    let url = app
        .objects
        .presign_get(&export.key, DOWNLOAD_VALID)
        .await
        .map_err(|e| AppError::unavailable("could not sign the download URL", e))?;
    Ok((export, Some((url.url, crate::domain::format_time(url.expires_at).to_string()))))
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Objects(#[from] ObjectError),
    #[error("{0}")]
    Queue(#[from] crate::adapters::queue::QueueError),
}

/// Writes (or goes on writing) an export until it is complete or `deadline` nears.
pub async fn write(app: &App, job: &ExportJob, deadline: Instant) -> Result<(), ExportError> {
    let Some(mut export) = app.db.get_export(&job.campaign_id, &job.export_id).await? else { return Ok(()) };
    if export.status != ExportStatus::Exporting {
        return Ok(());
    }
    let campaign = match app.db.get_campaign(&job.campaign_id).await? {
        Some(c) if c.deleting.is_none() => c,
        _ => return Ok(()),
    };
    let upload_id = match export.upload_id.clone() {
        Some(id) => id,
        None => {
            let id = app.objects.start_parts(&export.key, "text/csv; charset=utf-8").await?;
            export.upload_id = Some(id.clone());
            app.db.save_export(&export).await?;
            id
        }
    };
    let mut start = match export.position.as_deref().and_then(Position::decode) {
        Some(p) => Start::At(p),
        None if export.parts.is_empty() => Start::Page(1),
        // Every recipient is in the parts: only the completion is left.
        None => return finish(app, &mut export, &upload_id).await,
    };
    let part_bytes = app.config.export_part_bytes;
    let (mut part, mut rows) = (Vec::with_capacity(part_bytes + 256 * 1024), 0u64);
    loop {
        let page = app.db.list_recipients(&campaign, export.filter, start, page_rows(part_bytes)).await?;
        let kept: Vec<_> = page.items.iter().filter(|r| includes(export.filter, r)).collect();
        let columns = export.columns.get_or_insert_with(|| {
            let columns = Columns::new(&campaign.required_fields(), kept.iter().copied());
            part.extend(csv_lines(&[columns.header()]));
            columns
        });
        let lines: Vec<Vec<String>> = kept.iter().map(|r| columns.row(r)).collect();
        part.extend(csv_lines(&lines));
        rows += lines.len() as u64;
        let last = page.next.is_none();
        if part.len() >= part_bytes || last {
            let number = export.parts.len() as i32 + 1;
            let etag = app.objects.put_part(&export.key, &upload_id, number, std::mem::take(&mut part)).await?;
            export.parts.push((number, etag));
            export.rows += rows;
            rows = 0;
            export.position = page.next.as_ref().map(Position::encode);
            app.db.save_export(&export).await?;
            if last {
                return finish(app, &mut export, &upload_id).await;
            }
            if deadline.saturating_duration_since(Instant::now()) < MARGIN {
                app.queue.job_later(&Job::Export(job.clone()), Duration::ZERO).await?;
                tracing::info!(export = %export.export_id, rows = export.rows, "export goes on in the next job");
                return Ok(());
            }
        }
        start = Start::At(page.next.unwrap_or_default());
    }
}

async fn finish(app: &App, export: &mut Export, upload_id: &str) -> Result<(), ExportError> {
    app.objects.finish_parts(&export.key, upload_id, &export.parts).await?;
    export.status = ExportStatus::Completed;
    export.completed_at = Some(now());
    app.db.save_export(export).await?;
    tracing::info!(export = %export.export_id, rows = export.rows, "export completed");
    Ok(())
}
