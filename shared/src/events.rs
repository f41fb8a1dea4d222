//! Campaign lifecycle events on an EventBridge bus, so that users can hook their own automation
//! onto campaigns. The schema is documented in docs/delivery.md ("Campaign events").

use serde_json::{Value, json};

use crate::api::App;
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::now;
use crate::store::StoreResult;

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
            Action::Pause => CampaignEvent::Paused,
            Action::Cancel => CampaignEvent::Cancelled,
            Action::Complete => CampaignEvent::Completed,
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

/// Publishes to the configured bus. A failure to publish is logged and does not undo or fail
/// the change it announces.
#[derive(Clone, Debug)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        EventBus { client, bus }
    }

    pub async fn publish(&self, event: CampaignEvent, c: &Campaign, previous: CampaignStatus) {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.name())
            .resources(format!("campaign/{}", c.id))
            .detail(detail(event, c, previous).to_string())
            .build();
        match self.client.put_events().entries(entry).send().await {
            Ok(out) if out.failed_entry_count == 0 => {
                tracing::info!(campaign = %c.id, event = event.name(), "event published");
            }
            Ok(out) => {
                let reason = out.entries().first().and_then(|e| e.error_message()).unwrap_or("unknown").to_string();
                tracing::error!(campaign = %c.id, event = event.name(), reason, "event not published");
            }
            Err(e) => {
                let e = aws_sdk_eventbridge::error::DisplayErrorContext(&e);
                tracing::error!(campaign = %c.id, event = event.name(), error = %e, "event not published");
            }
        }
    }
}

impl App {
    /// Moves the campaign through its state machine (see [`crate::store::Db::transition`]) and
    /// announces the change on the event bus.
    pub async fn change_status(
        &self,
        c: &Campaign,
        action: Action,
        pause_reason: Option<&str>,
    ) -> StoreResult<Campaign> {
        let changed = self.db.transition(c, action, &now(), pause_reason).await?;
        if let Some(event) = CampaignEvent::of(action, c.status) {
            self.events.publish(event, &changed, c.status).await;
        }
        Ok(changed)
    }
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
