//! Importing recipients into a draft (or scheduled) campaign: rows that cannot be used are
//! counted and the first 100 listed with their reasons; numbers already in the campaign or
//! repeated in the import count as duplicates; numbers that opted out of the account's
//! marketing are withheld from a MARKETING campaign. One import runs at a time per campaign
//! (an import lock on the campaign item, released however the import ends).

use std::collections::HashMap;

use serde::Serialize;

use crate::adapters::store::{ImportLock, StoreError};
use crate::app::App;
use crate::domain::campaign::Campaign;
use crate::domain::id::Id;
use crate::domain::import::{self, Accepted, ImportPlan, RawRow, Rejection};
use crate::domain::limits::{IMPORT_ROWS, REPORTED_ERRORS};
use crate::domain::now;
use crate::domain::opt_out;
use crate::domain::phone::Phone;
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::{load, wrong_status};

const CLOSED: &str = "recipients can be imported only into draft or scheduled campaigns";

/// What an import did.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub imported: usize,
    pub duplicates: usize,
    pub invalid: usize,
    pub opted_out: usize,
    pub errors: Vec<Rejection>,
    pub total_recipients: u64,
    /// Whether every accepted row was written; `false` when the import stopped at its deadline
    /// (see `message`: the rows from `first_row_not_imported` on are to be sent again).
    pub complete: bool,
    pub not_imported: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_row_not_imported: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The campaign to import into, if it takes imports (checked before the rows are read).
pub async fn open(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    if !campaign.status.accepts_imports() {
        return Err(wrong_status(&campaign, CLOSED));
    }
    Ok(campaign)
}

/// Adds the rows to the campaign.
pub async fn add(app: &App, campaign: &Campaign, rows: Vec<RawRow>) -> AppResult<Imported> {
    if rows.is_empty() {
        return Err(AppError::invalid("the import has no recipient rows"));
    }
    if rows.len() > IMPORT_ROWS {
        return Err(AppError::too_large(format!(
            "the import has more than {IMPORT_ROWS} rows; the limit is {IMPORT_ROWS} rows per import: split the file"
        )));
    }
    let started = std::time::Instant::now();
    let lock = take_lock(app, campaign).await?;
    let checked = match check(app, &lock, rows).await {
        Ok(checked) => checked,
        Err(e) => {
            let _ = app.db.finish_import(&lock, 0, &now()).await;
            return Err(e);
        }
    };
    let checked_in = started.elapsed();
    let Checked { plan, already, opted_out } = checked;
    let wanted = plan.accepted.len();
    let stamp = now();
    let deadline = started + std::time::Duration::from_secs(app.config.import_request_seconds);
    let (written, left) = write_until(app, &lock.campaign, plan.accepted, &stamp, deadline).await;
    let added = match &written {
        Ok(n) | Err((n, _)) => *n,
    };
    let finished = app.db.finish_import(&lock, added, &stamp).await;
    tracing::info!(
        campaign = %campaign.id, added, invalid = plan.invalid, duplicates = plan.duplicates,
        check_ms = checked_in.as_millis() as u64, write_ms = (started.elapsed() - checked_in).as_millis() as u64,
        "import finished"
    );
    if let Err((n, e)) = written {
        return Err(app.store_err(&format!(
            "the store failed after {n} of {wanted} recipients were added (they are counted in total_recipients); \
             send the same import again: numbers already added count as duplicates"
        ))(e));
    }
    let campaign =
        finished.map_err(app.store_err("the recipients were added but the campaign could not be updated"))?;
    let first_row_not_imported = left.first().map(|a| a.row);
    let message = first_row_not_imported.map(|row| {
        format!(
            "the import stopped before its time ran out: {} rows were not imported, from row {row} on; \
             send them again (numbers already added count as duplicates), or upload large files \
             with POST /api/campaigns/{}/recipients/uploads",
            left.len(),
            campaign.id
        )
    });
    Ok(Imported {
        complete: left.is_empty(),
        not_imported: left.len(),
        first_row_not_imported,
        message,
        imported: added,
        duplicates: plan.duplicates,
        invalid: plan.invalid,
        opted_out,
        errors: import::merge_errors(plan.errors, already),
        total_recipients: campaign.total_recipients,
    })
}

/// Writes the rows a chunk at a time until they are all written or `deadline` has passed,
/// so that the request answers in time with exactly what it wrote. Returns how many were
/// written (or the store's error and how many were written before it) and the rows left.
async fn write_until(
    app: &App,
    campaign: &Campaign,
    mut rows: Vec<Accepted>,
    stamp: &crate::domain::Timestamp,
    deadline: std::time::Instant,
) -> (Result<usize, (usize, StoreError)>, Vec<Accepted>) {
    let mut written = 0;
    while !rows.is_empty() {
        if written > 0 && std::time::Instant::now() >= deadline {
            break;
        }
        let rest = rows.split_off(rows.len().min(app.config.import_chunk_rows));
        match app.db.put_recipients(campaign, rows, stamp, None).await {
            Ok(n) => written += n,
            Err((n, e)) => return (Err((written + n, e)), rest),
        }
        rows = rest;
    }
    (Ok(written), rows)
}

/// Takes the campaign's import lock: 409 while another import runs or once the campaign no
/// longer takes imports.
async fn take_lock(app: &App, campaign: &Campaign) -> AppResult<ImportLock> {
    match app.db.lock_import(&campaign.id, chrono::Utc::now().timestamp()).await {
        Ok(lock) => Ok(lock),
        Err(StoreError::ConditionFailed) => {
            let current = load(app, &campaign.id).await?;
            Err(if current.status.accepts_imports() {
                AppError::conflict(format!(
                    "another import into campaign {} is in progress; send this one when it has finished",
                    current.id
                ))
            } else {
                wrong_status(&current, CLOSED)
            })
        }
        Err(e) => Err(app.store_err("could not start the import")(e)),
    }
}

/// The rows checked: the plan of what to add, the rows refused because the campaign already
/// holds their number or it opted out, and how many opted out.
struct Checked {
    plan: ImportPlan,
    already: Vec<Rejection>,
    opted_out: usize,
}

async fn check(app: &App, lock: &ImportLock, rows: Vec<RawRow>) -> AppResult<Checked> {
    let required = lock.campaign.required_fields();
    let phones = app.phones;
    let mut plan = tokio::task::spawn_blocking(move || import::plan(rows, &required, &phones))
        .await
        .map_err(|e| AppError::unavailable("the import could not be processed", e))?;
    // Numbers the campaign already holds are duplicates too.
    let mut already = Vec::new();
    if lock.campaign.total_recipients > 0 && !plan.accepted.is_empty() {
        let candidates: Vec<&str> = plan.accepted.iter().map(|a| a.phone.as_str()).collect();
        let existing: HashMap<Phone, Option<String>> = app
            .db
            .existing_phones(&lock.campaign, &candidates)
            .await
            .map_err(app.store_err("could not read the campaign's recipients"))?;
        plan.accepted.retain(|a| {
            let keep = !existing.contains_key(&a.phone);
            if !keep && already.len() < REPORTED_ERRORS {
                already.push(Rejection { row: a.row, reason: format!("{} is already in the campaign", a.phone) });
            }
            keep
        });
        plan.duplicates += existing.len();
    }
    let opted_out = withhold_opted_out(app, &lock.campaign, &mut plan, &mut already).await?;
    Ok(Checked { plan, already, opted_out })
}

/// Numbers that opted out of the account's marketing messages: counted, and for a MARKETING
/// template not added (each listed among the errors).
pub(crate) async fn withhold_opted_out(
    app: &App,
    campaign: &Campaign,
    plan: &mut ImportPlan,
    rejected: &mut Vec<Rejection>,
) -> AppResult<usize> {
    if plan.accepted.is_empty() {
        return Ok(0);
    }
    let read = app.store_err("could not read the account's opt-outs");
    let candidates: Vec<&str> = plan.accepted.iter().map(|a| a.phone.as_str()).collect();
    let opted_out = app.db.opted_out(&campaign.account_id, &candidates).await.map_err(&read)?;
    if opted_out.is_empty() {
        return Ok(0);
    }
    let held_back = app
        .db
        .get_template(&campaign.template_id)
        .await
        .map_err(&read)?
        .is_some_and(|t| opt_out::applies_to(t.category));
    if held_back {
        plan.accepted.retain(|a| {
            let keep = !opted_out.contains(&a.phone);
            if !keep && rejected.len() < REPORTED_ERRORS {
                rejected.push(Rejection { row: a.row, reason: opt_out::not_added(&a.phone) });
            }
            keep
        });
    }
    Ok(opted_out.len())
}
