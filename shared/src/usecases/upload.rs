//! Recipient files uploaded to the bucket and imported in the background.
//!
//! `POST /recipients/uploads` records an upload (`waiting_for_file`) and answers a presigned
//! `PUT` URL. The bucket's notice of the object arrives on the import queue; the import worker
//! takes the campaign's import lock (so the campaign cannot start meanwhile), streams the
//! object and imports it a chunk at a time with the rules of the request-body import
//! ([`crate::domain::import`]). After each chunk it records, in one transaction, the chunk's
//! recipients onto `total_recipients` and the checkpoint (byte offset, counts, first errors),
//! renewing the lock. Near its deadline it puts the next step on the queue and returns; the
//! next invocation starts at the checkpoint. The recipients a chunk writes carry the chunk's
//! tag (upload and chunk number): after a crash, the numbers the campaign holds with the tag of
//! the chunk that was not recorded were written by this import, and are counted once. The
//! next chunk is read and parsed while one is written.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::objects::{ObjectError, ObjectStream};
use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::campaign::Campaign;
use crate::domain::id::Id;
use crate::domain::import::{self, Accepted, RawRow, Rejection};
use crate::domain::limits::{REPORTED_ERRORS, UPLOAD_BYTES, UPLOAD_ROWS, UPLOAD_URL_SECONDS};
use crate::domain::upload::{RowReader, Upload, UploadFormat, UploadStatus, parse_object_key};
use crate::domain::{Timestamp, now};
use crate::error::{AppError, AppResult};
use crate::usecases::import::withhold_opted_out;
use crate::usecases::send::Incoming;

/// A new upload and where to put its file.
#[derive(Debug)]
pub struct NewUpload {
    pub upload: Upload,
    pub upload_url: String,
    pub expires_at: Timestamp,
}

/// Records an upload into a campaign that takes imports (404, 409 as the request-body import)
/// and presigns the `PUT` of its file.
pub async fn create(app: &App, campaign_id: &Id, format: UploadFormat) -> AppResult<NewUpload> {
    let campaign = crate::usecases::import::open(app, campaign_id).await?;
    let upload = Upload::new(campaign.id, format, now());
    let valid = Duration::from_secs(UPLOAD_URL_SECONDS);
    let put = app
        .objects
        .presign_put(&upload.object_key, valid)
        .await
        .map_err(|e| AppError::unavailable("could not prepare the upload", e))?;
    app.db.create_upload(&upload).await.map_err(app.store_err("could not record the upload"))?;
    Ok(NewUpload { upload, upload_url: put.url, expires_at: crate::domain::format_time(put.expires_at) })
}

pub async fn get(app: &App, campaign_id: &Id, upload_id: &Id) -> AppResult<Upload> {
    let read = app.db.get_upload(campaign_id, upload_id);
    crate::usecases::load_by_id(app, "upload", upload_id, read).await
}

/// An import's next step, as the worker puts it on the import queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStep {
    pub campaign_id: Id,
    pub upload_id: Id,
}

/// The uploads a message of the import queue names: S3's notice of created objects (its test
/// event names none), or a step the worker queued.
pub fn steps(body: &str) -> Result<Vec<ImportStep>, String> {
    if let Ok(step) = serde_json::from_str::<ImportStep>(body) {
        return Ok(vec![step]);
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = v.get("Records").and_then(Value::as_array).ok_or("neither an S3 notice nor an import step")?;
    Ok(records
        .iter()
        .filter(|r| r["eventName"].as_str().is_some_and(|e| e.starts_with("ObjectCreated")))
        .filter_map(|r| parse_object_key(&notice_key(r["s3"]["object"]["key"].as_str()?)))
        .map(|(campaign_id, upload_id, _)| ImportStep { campaign_id, upload_id })
        .collect())
}

/// An object key as S3's notices carry it: URL-encoded as a form value (`+` for a space).
fn notice_key(encoded: &str) -> String {
    form_urlencoded::parse(encoded.as_bytes()).map(|(k, _)| k.into_owned()).next().unwrap_or_default()
}

/// How many deliveries of a step fail (the store or S3 failing) before its upload is marked
/// failed; the queue's dead-letter queue takes the message after 5.
const ATTEMPTS: u32 = 4;

/// Handles a batch of the import queue's messages; returns the ids of those to deliver again.
pub async fn consume(app: &App, messages: Vec<Incoming>, deadline: Instant) -> Vec<String> {
    let mut failed = Vec::new();
    for m in messages {
        let steps = match steps(&m.body) {
            Ok(steps) => steps,
            Err(e) => {
                tracing::error!(message = %m.id, error = %e, "the import queue's message is neither a notice nor a step");
                failed.push(m.id);
                continue;
            }
        };
        if steps.is_empty() {
            tracing::info!(message = %m.id, "the import queue's message names no upload (a test notice, another key)");
        }
        for step in steps {
            if let Err(e) = run(app, &step, deadline).await {
                tracing::warn!(upload = %step.upload_id, error = %e, attempt = m.receive_count, "import step failed");
                if m.receive_count >= ATTEMPTS {
                    give_up(app, &step, &e).await;
                } else {
                    failed.push(m.id.clone());
                }
            }
        }
    }
    failed
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Object(#[from] ObjectError),
    #[error("{0}")]
    Queue(#[from] crate::adapters::queue::QueueError),
    #[error("{}", .0.message)]
    App(#[from] AppError),
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    #[error("another import into the campaign is in progress")]
    Busy,
    #[error("the campaign's import lock was lost (the import paused for longer than the lock lasts)")]
    LockLost,
}

/// What an invocation knows of its campaign, read once.
struct Target {
    campaign: Campaign,
    required: Vec<String>,
    /// Whether the account has any opt-out at all (else no number is looked up).
    opt_outs: bool,
    /// Whether this invocation is the upload's first (no earlier one wrote any of its rows).
    fresh: bool,
}

/// Runs one invocation's share of an upload's import: from its checkpoint to the end of the
/// file, or until `deadline` is near.
pub async fn run(app: &App, step: &ImportStep, deadline: Instant) -> Result<(), ImportError> {
    let Some(mut u) = app.db.get_upload(&step.campaign_id, &step.upload_id).await? else {
        tracing::warn!(upload = %step.upload_id, "a file arrived for an upload not known; ignored");
        return Ok(());
    };
    if u.status.is_final() {
        return Ok(());
    }
    let Some(target) = claim(app, &mut u).await? else { return Ok(()) };
    let size = app.objects.size(&u.object_key).await?;
    let refused = match size {
        None => Some(format!("no file was found at {}; upload it with the upload_url", u.object_key)),
        Some(size) if size > UPLOAD_BYTES => Some(format!(
            "the file has {size} bytes; the limit is {UPLOAD_BYTES} bytes (1 GB) per upload: split the file"
        )),
        _ => None,
    };
    if let Some(message) = refused {
        return finish(app, &mut u, Some(message)).await;
    }
    let mut reader = match RowReader::new(u.format, &u.position) {
        Ok(r) => r,
        Err(e) => return finish(app, &mut u, Some(e.0)).await,
    };
    // Nothing is left to read when the last invocation stopped at the end of the file.
    let stream = match size {
        Some(size) if u.position.offset < size => Some(app.objects.read_from(&u.object_key, u.position.offset).await?),
        _ => None,
    };
    let mut file = File { stream, fetched: u.position.offset };
    // The numbers this invocation has seen, when it reads the file from its first row, the
    // campaign had none before and no earlier invocation wrote any: a number not among them
    // needs no lookup in the campaign.
    let mut seen = (target.fresh && u.campaign_was_empty && u.rows_read == 0).then(Seen::default);
    let (chunk, key) = (app.config.import_chunk_rows, u.object_key.clone());
    let mut slowest = Duration::ZERO;
    let mut next = file.rows(app, &key, &mut reader, chunk).await?;
    loop {
        let rows = match next {
            Ok(rows) => rows,
            Err(reason) => return finish(app, &mut u, Some(reason)).await,
        };
        if rows.is_empty() {
            return finish(app, &mut u, None).await;
        }
        if u.rows_read + rows.len() as u64 > UPLOAD_ROWS {
            let message = format!(
                "the file has more than {UPLOAD_ROWS} rows, the limit per upload: the import stopped after row {} \
                 (the rows before it were imported); upload the rest as another file",
                u.position.next_row
            );
            return finish(app, &mut u, Some(message)).await;
        }
        let started = Instant::now();
        let position = reader.position();
        // The next chunk is read while this one is written.
        let (imported, following) = tokio::join!(
            import_chunk(app, &target, &mut u, rows, &mut seen, position),
            file.rows(app, &key, &mut reader, chunk)
        );
        if !imported? {
            return Ok(());
        }
        next = following?;
        slowest = slowest.max(started.elapsed());
        // Stop while there is time to record the stop: twice the slowest chunk and a margin.
        if Instant::now() + slowest * 2 + Duration::from_secs(2) >= deadline {
            let url = app.config.import_queue_url.as_deref().ok_or(ImportError::NotConfigured("IMPORT_QUEUE_URL"))?;
            app.queue.put(url, step).await?;
            tracing::info!(upload = %u.upload_id, rows_read = u.rows_read, "import continues in the next invocation");
            return Ok(());
        }
    }
}

/// Takes the campaign's import lock for the upload (or renews its own, on a resume): `None`
/// when there is nothing to do (another invocation has the upload, or the upload failed
/// because its campaign no longer takes imports).
async fn claim(app: &App, u: &mut Upload) -> Result<Option<Target>, ImportError> {
    let first = u.lock_token.is_none();
    u.lock_token.get_or_insert_with(|| Id::generate().into());
    u.status = UploadStatus::Importing;
    let stamp = now();
    u.started_at.get_or_insert_with(|| stamp.clone());
    u.updated_at = stamp;
    u.version += 1;
    match app.db.claim_upload(u, unix_now()).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            let current = app.db.get_upload(&u.campaign_id, &u.upload_id).await?;
            if current.as_ref().is_none_or(|c| c.version != u.version - 1) {
                return Ok(None);
            }
            let campaign = app.db.get_campaign(&u.campaign_id).await?;
            let Some(campaign) = campaign.filter(|c| !c.status.accepts_imports()) else {
                return Err(ImportError::Busy);
            };
            u.version -= 1;
            let message = crate::usecases::campaigns::wrong_status(
                &campaign,
                "recipients can be imported only into draft or scheduled campaigns: the file was not imported",
            )
            .message;
            fail_unlocked(app, u, message).await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    // Read under the lock: no other import changes the campaign's recipients now.
    let Some(campaign) = app.db.get_campaign(&u.campaign_id).await? else { return Ok(None) };
    if first {
        u.campaign_was_empty = campaign.total_recipients == 0;
    }
    let opt_outs = app.db.account_has_opt_outs(&campaign.account_id).await?;
    Ok(Some(Target { required: campaign.required_fields(), campaign, opt_outs, fresh: first }))
}

/// Marks an upload failed without its campaign's lock (it never took it).
async fn fail_unlocked(app: &App, u: &mut Upload, message: String) -> Result<(), StoreError> {
    u.status = UploadStatus::Failed;
    u.error = Some(message);
    u.lock_token = None;
    (u.finished_at, u.version) = (Some(now()), u.version + 1);
    u.updated_at = now();
    match app.db.save_upload(u).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ends the import: completed, or failed with `error`; the lock released.
async fn finish(app: &App, u: &mut Upload, error: Option<String>) -> Result<(), ImportError> {
    u.status = if error.is_some() { UploadStatus::Failed } else { UploadStatus::Completed };
    u.error = error;
    u.finished_at = Some(now());
    u.updated_at = now();
    u.version += 1;
    match app.db.record_upload_chunk(u, 0, unix_now(), true).await {
        Ok(()) => {}
        // Every chunk is recorded already: without the lock (it expired), the end is recorded
        // alone, unless another invocation has the upload now (it ends it).
        Err(StoreError::ConditionFailed) => match app.db.save_upload(u).await {
            Ok(()) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        upload = %u.upload_id, campaign = %u.campaign_id, status = ?u.status, rows_read = u.rows_read,
        imported = u.imported, duplicates = u.duplicates, invalid = u.invalid, opted_out = u.opted_out,
        "upload import finished"
    );
    Ok(())
}

/// Marks the upload failed after its step failed [`ATTEMPTS`] times.
async fn give_up(app: &App, step: &ImportStep, e: &ImportError) {
    let Ok(Some(mut u)) = app.db.get_upload(&step.campaign_id, &step.upload_id).await else { return };
    if u.status.is_final() {
        return;
    }
    let message = format!(
        "the import failed {ATTEMPTS} times ({e}); the rows before row {} were imported",
        u.position.next_row + 1
    );
    let ended = if u.lock_token.is_some() {
        finish(app, &mut u, Some(message)).await.map_err(|e| e.to_string())
    } else {
        fail_unlocked(app, &mut u, message).await.map_err(|e| e.to_string())
    };
    if let Err(e) = ended {
        tracing::error!(upload = %step.upload_id, error = %e, "could not mark the upload failed");
    }
}

/// The object being read (none once it has all been read), and how many of its bytes have
/// arrived.
struct File {
    stream: Option<ObjectStream>,
    fetched: u64,
}

impl File {
    /// The next chunk of up to `max` rows (none at the end of the file), or why the file cannot
    /// be read. A broken connection is reopened where it broke (a ranged `GET`).
    async fn rows(
        &mut self,
        app: &App,
        key: &str,
        reader: &mut RowReader,
        max: usize,
    ) -> Result<Result<Vec<RawRow>, String>, ObjectError> {
        let mut rows = Vec::new();
        let (mut at_end, mut broken) = (false, 0);
        while rows.len() < max {
            match reader.rows(max - rows.len(), at_end) {
                Err(e) => return Ok(Err(e.0)),
                Ok(got) if !got.is_empty() => rows.extend(got),
                Ok(_) if at_end || reader.finished() => break,
                Ok(_) => match self.next().await {
                    Some(Ok(bytes)) => {
                        self.fetched += bytes.len() as u64;
                        reader.push(&bytes);
                    }
                    None => at_end = true,
                    Some(Err(e)) if broken < 3 => {
                        broken += 1;
                        tracing::warn!(error = %e, at = self.fetched, "reading the file broke off; reading on from there");
                        self.stream = Some(app.objects.read_from(key, self.fetched).await?);
                    }
                    Some(Err(e)) => return Err(e),
                },
            }
        }
        Ok(Ok(rows))
    }

    async fn next(&mut self) -> Option<Result<bytes::Bytes, ObjectError>> {
        self.stream.as_mut()?.next().await
    }
}

/// Numbers seen earlier in this invocation, as 64-bit hashes (8 bytes each; a collision only
/// costs a lookup), up to a bound on memory.
#[derive(Default)]
struct Seen {
    hashes: HashSet<u64>,
    hasher: RandomState,
}

/// The most numbers [`Seen`] holds (about 32 MB); past it every chunk is looked up.
const SEEN_LIMIT: usize = 2_000_000;

/// Imports one chunk: the rows checked (the import's rules, numbers the campaign holds, opt-
/// outs), the new ones written and the chunk recorded. `false`: another invocation has the
/// upload now, stop.
async fn import_chunk(
    app: &App,
    target: &Target,
    u: &mut Upload,
    rows: Vec<RawRow>,
    seen: &mut Option<Seen>,
    position: crate::domain::upload::ReadPosition,
) -> Result<bool, ImportError> {
    let read = rows.len() as u64;
    let (required, phones) = (target.required.clone(), app.phones);
    let plan = tokio::task::spawn_blocking(move || import::plan(rows, &required, &phones))
        .await
        .map_err(|e| StoreError::Dynamo(format!("the chunk could not be checked: {e}")))?;
    let mut plan = plan;
    // The numbers to look up in the campaign: all of them, unless the invocation has seen
    // every earlier row and the campaign had no recipients (then only those seen before).
    let candidates: Vec<&str> = match seen.as_mut() {
        Some(seen) => plan
            .accepted
            .iter()
            .filter(|a| !seen.hashes.insert(seen.hasher.hash_one(a.phone.as_str())))
            .map(|a| a.phone.as_str())
            .collect(),
        None => plan.accepted.iter().map(|a| a.phone.as_str()).collect(),
    };
    let existing = if candidates.is_empty() {
        HashMap::new()
    } else {
        app.db.existing_phones(&target.campaign, &candidates).await?
    };
    if seen.as_ref().is_some_and(|s| s.hashes.len() > SEEN_LIMIT) {
        *seen = None;
    }
    // Numbers tagged with this chunk were written by an invocation that stopped before
    // recording it: they are this import's, counted now.
    let tag = u.chunk_tag();
    let (mut recovered, mut rejected) = (0u64, Vec::new());
    plan.accepted.retain(|a| {
        let Some(found) = existing.get(&a.phone) else { return true };
        if found.as_deref() == Some(tag.as_str()) {
            recovered += 1;
        } else {
            plan.duplicates += 1;
            if rejected.len() < REPORTED_ERRORS {
                rejected.push(Rejection { row: a.row, reason: format!("{} is already in the campaign", a.phone) });
            }
        }
        false
    });
    let opted_out =
        if target.opt_outs { withhold_opted_out(app, &target.campaign, &mut plan, &mut rejected).await? } else { 0 };
    let to_write: Vec<Accepted> = std::mem::take(&mut plan.accepted);
    let written = match app.db.put_recipients(&target.campaign, to_write, &now(), Some(&tag)).await {
        Ok(n) => n as u64,
        Err((_, e)) => return Err(e.into()),
    };
    u.rows_read += read;
    u.imported += written + recovered;
    u.duplicates += plan.duplicates as u64;
    u.invalid += plan.invalid as u64;
    u.opted_out += opted_out as u64;
    u.add_errors(import::merge_errors(plan.errors, rejected));
    u.position = position;
    u.chunks += 1;
    u.updated_at = now();
    u.version += 1;
    match app.db.record_upload_chunk(u, written + recovered, unix_now(), false).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => lost(app, u).await.map(|()| false),
        Err(e) => Err(e.into()),
    }
}

/// After a record of the upload was refused: fine when another invocation changed the upload
/// (it carries on); an error when the upload is as it was, so the campaign's lock was lost.
async fn lost(app: &App, u: &Upload) -> Result<(), ImportError> {
    let current = app.db.get_upload(&u.campaign_id, &u.upload_id).await?;
    match current {
        Some(c) if c.version == u.version - 1 => Err(ImportError::LockLost),
        _ => Ok(()),
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
