//! Work done in the background, a step at a time: each job on the job queue is one of these,
//! and a step that nears its function's deadline queues the next one.

use serde::{Deserialize, Serialize};

use super::export::ExportJob;
use super::id::Id;

/// A message on the job queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Remove a deleted campaign's items, a page at a time, going on where the last step
    /// stopped.
    DeleteCampaign { campaign_id: Id },
    /// Write (or go on writing) a results export.
    Export(ExportJob),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_tagged_by_kind() {
        let job = Job::DeleteCampaign { campaign_id: "c1".into() };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(text, r#"{"delete_campaign":{"campaign_id":"c1"}}"#);
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        assert!(serde_json::from_str::<Job>(r#"{"campaign_id":"c1"}"#).is_err());
    }
}
