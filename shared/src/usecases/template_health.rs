//! Meta's news of templates, from the webhook's `message_template_status_update` and
//! `message_template_quality_update` fields (the app subscribes to both): the template of
//! every account of that WhatsApp Business Account with that name and language gets the new
//! status (or quality score), and when Meta paused, disabled or rejected it, every campaign
//! using it that is sending or scheduled is paused with a `pause_reason` naming Meta's event —
//! a scheduled one loses its schedule and does not start. `start` refuses a template that is
//! not approved (422), so such a campaign waits until Meta approves the template again.

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::domain::delivery::{TemplateChange, TemplateNews};
use crate::usecases::lifecycle::{change_status, forget_schedule};

/// Applies the news; returns how many campaigns it paused. Applying the same news twice does
/// nothing more (the status is set again, the campaigns are paused already).
pub async fn apply(app: &App, news: &[&TemplateNews]) -> Result<usize, StoreError> {
    let mut paused = 0;
    for n in news {
        for account in app.db.accounts_of_business(&n.business_account_id).await? {
            let Some(template) = app.db.template_named(&account.id, &n.name, &n.language).await? else { continue };
            let (reason, quality) = match &n.change {
                TemplateChange::Status { reason, .. } => (reason.as_deref(), None),
                TemplateChange::Quality { score } => (None, Some(score.as_str())),
            };
            tracing::info!(template = %template.id, news = ?n.change, "Meta's news of a template");
            app.db.set_template_health(&template.id, n.status(), reason, quality).await?;
            if !n.stops_sending() {
                continue;
            }
            for status in [CampaignStatus::Sending, CampaignStatus::Scheduled] {
                let campaigns = app.db.account_campaigns_in(&account.id, status).await?;
                for c in campaigns.iter().filter(|c| c.template_id == template.id) {
                    match change_status(app, c, Action::Suspend, Some(&n.pause_reason())).await {
                        Ok(_) => {
                            paused += 1;
                            if status == CampaignStatus::Scheduled {
                                forget_schedule(app, &c.id).await;
                            }
                        }
                        // Paused, cancelled or completed meanwhile.
                        Err(StoreError::ConditionFailed) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(paused)
}
