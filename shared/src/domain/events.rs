//! Campaign lifecycle events: which change announces which event, and the event's `detail`.
//! The schema is documented in docs/delivery.md ("Campaign events").

use serde_json::{Value, json};

use crate::domain::campaign::{Action, Campaign, CampaignStatus};

/// The `source` of every event this service publishes.
pub const SOURCE: &str = "whatsapp-campaigns";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignEvent {
    Started,
    Paused,
    Resumed,
    Cancelled,
    Completed,
}

impl CampaignEvent {
    /// The event an action taken from status `from` announces.
    pub fn of(action: Action, from: CampaignStatus) -> Option<Self> {
        Some(match action {
            Action::Start if from == CampaignStatus::Paused => CampaignEvent::Resumed,
            Action::Start | Action::StartScheduled => CampaignEvent::Started,
            Action::Schedule | Action::Unschedule => return None,
            Action::Pause | Action::Suspend => CampaignEvent::Paused,
            Action::Cancel => CampaignEvent::Cancelled,
            Action::Complete => CampaignEvent::Completed,
            // A completed campaign sends its failed recipients again.
            Action::Retry if from == CampaignStatus::Completed => CampaignEvent::Resumed,
            Action::Retry => return None,
        })
    }

    /// The event's `detail-type`.
    pub fn name(self) -> &'static str {
        match self {
            CampaignEvent::Started => "CampaignStarted",
            CampaignEvent::Paused => "CampaignPaused",
            CampaignEvent::Resumed => "CampaignResumed",
            CampaignEvent::Cancelled => "CampaignCancelled",
            CampaignEvent::Completed => "CampaignCompleted",
        }
    }
}

/// The event's `detail`: the campaign as it is right after the change, with its counters, and
/// when the change happened (milliseconds, so events of one campaign sort in order).
pub fn detail(event: CampaignEvent, c: &Campaign, previous: CampaignStatus) -> Value {
    json!({
        "event": event.name(),
        "campaign_id": c.id,
        "name": c.name,
        "account_id": c.account_id,
        "template_id": c.template_id,
        "template_name": c.template_name,
        "status": c.status,
        "previous_status": previous,
        "pause_reason": c.pause_reason,
        "total_recipients": c.total_recipients,
        "sent_count": c.sent_count,
        "delivered_count": c.delivered_count,
        "read_count": c.read_count,
        "failed_count": c.failed_count,
        "scheduled_at": c.scheduled_at,
        "started_at": c.started_at,
        "completed_at": c.completed_at,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_announce_their_events() {
        use CampaignStatus::*;
        assert_eq!(CampaignEvent::of(Action::Start, Draft), Some(CampaignEvent::Started));
        assert_eq!(CampaignEvent::of(Action::Start, Paused), Some(CampaignEvent::Resumed));
        assert_eq!(CampaignEvent::of(Action::StartScheduled, Scheduled), Some(CampaignEvent::Started));
        assert_eq!(CampaignEvent::of(Action::Schedule, Draft), None);
        assert_eq!(CampaignEvent::of(Action::Pause, Sending), Some(CampaignEvent::Paused));
        assert_eq!(CampaignEvent::of(Action::Cancel, Scheduled), Some(CampaignEvent::Cancelled));
        assert_eq!(CampaignEvent::of(Action::Complete, Sending).map(CampaignEvent::name), Some("CampaignCompleted"));
    }
}
