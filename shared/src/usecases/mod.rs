//! The workflows, one module per use case. Each takes the [`App`] and typed input (parsed at
//! the edge by [`crate::http`] or a Lambda trigger) and answers a domain value or an
//! [`AppError`] (whose kind the HTTP layer maps to a status code and the envelope).
//!
//! - [`accounts`], [`templates`]: create, change and delete them (an account's token lives in
//!   its own secret).
//! - [`campaigns`]: create, change and delete a campaign; [`lifecycle`]: start, schedule,
//!   pause, cancel and resume it, and announce each change; [`retry_failed`]: send the
//!   recipients that failed for a passing reason again; [`test_send`]: one rendered message to a
//!   number given, before the campaign goes out.
//! - [`import`]: recipients into a campaign from a request's body; [`upload`]: from a file
//!   uploaded to the bucket, imported in the background.
//! - [`schedule`]: what a campaign's schedule does when it fires.
//! - [`send`]: the dispatcher, the sender and the reconciler (queue consumers).
//! - [`statuses`]: Meta's delivery statuses applied to recipients and counters;
//!   [`template_health`]: Meta's news of templates (paused, disabled, quality);
//!   [`engagement`]: replies and button clicks attributed to campaigns.
//! - [`tally`]: the counters of sends' outcomes and delivery statuses, from the table's
//!   stream.
//! - [`keys`]: API keys: issue, check, the authorizer and the first key.

pub mod accounts;
pub mod campaigns;
pub mod engagement;
pub mod export;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod retry_failed;
pub mod schedule;
pub mod send;
pub mod statuses;
pub mod tally;
pub mod template_health;
pub mod templates;
pub mod test_send;
pub mod upload;

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::id::Id;
use crate::error::{AppError, AppResult};

/// Reads an item by id for a use case: 404 when the id names nothing, 503 when the store fails.
pub async fn load_by_id<T, F>(app: &App, kind: &str, id: &Id, read: F) -> AppResult<T>
where
    F: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    let not_found = || AppError::not_found(format!("{kind} {id} not found"));
    read.await.map_err(app.store_err(&format!("could not read the {kind}")))?.ok_or_else(not_found)
}
