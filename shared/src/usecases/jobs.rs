//! The background jobs' consumer: each job to the workflow that does it.

use std::time::Instant;

use crate::app::App;
use crate::domain::job::Job;
use crate::usecases::send::SendError;

/// Runs one step of `job`; a job that is not done queues its next step itself.
pub async fn run(app: &App, job: Job, deadline: Instant) -> Result<(), SendError> {
    match job {
        Job::DeleteCampaign { campaign_id } => {
            crate::usecases::campaigns::purge(app, &campaign_id, deadline).await?;
        }
        Job::Export(job) => crate::usecases::export::write(app, &job, deadline).await?,
    }
    Ok(())
}
