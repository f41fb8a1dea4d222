//! Scheduled starts, without I/O: what a start does to a campaign in each status, the one-time
//! schedule a scheduled campaign gets (its name, its `at()` expression, what it carries), how a
//! `PUT` moves or clears it, and when a fired schedule is stale.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::campaign::{Campaign, CampaignStatus};
use super::parse_time;
use crate::error::Invalid;

/// What a campaign's schedule hands the scheduled-start function: the campaign and the time
/// it was scheduled for. A fire whose time is no longer the campaign's is stale and does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledStart {
    pub campaign_id: String,
    pub scheduled_at: String,
}

impl ScheduledStart {
    /// The start a campaign's `scheduled_at` calls for (none without a time).
    pub fn of(c: &Campaign) -> Option<Self> {
        Some(ScheduledStart { campaign_id: c.id.to_string(), scheduled_at: c.scheduled_at.as_ref()?.to_string() })
    }
}

/// Retries of EventBridge Scheduler when the function cannot be invoked (throttling, service
/// errors); after them the start goes to the schedule's dead-letter queue.
pub const MAX_RETRY_ATTEMPTS: i32 = 10;
/// A start not delivered within an hour of its time is not attempted any more (dead-letter queue).
pub const MAX_EVENT_AGE_SECONDS: i32 = 3600;

/// The schedule of a campaign: one per campaign, so moving it updates it in place.
pub fn schedule_name(campaign_id: &str) -> String {
    format!("campaign-{campaign_id}")
}

/// `at(2027-01-01T05:00:00)`: EventBridge Scheduler's one-time expression, read in UTC (the
/// schedule's `ScheduleExpressionTimezone`), from a stored RFC 3339 time.
pub fn at_expression(scheduled_at: &str) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(scheduled_at).ok()?.with_timezone(&Utc);
    Some(format!("at({})", t.format("%Y-%m-%dT%H:%M:%S")))
}

/// The time of an `at(yyyy-mm-ddThh:mm:ss)` expression, taken as UTC.
pub fn parse_at_expression(expr: &str) -> Option<DateTime<Utc>> {
    let inner = expr.trim().strip_prefix("at(")?.strip_suffix(')')?;
    NaiveDateTime::parse_from_str(inner, "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc())
}

fn is_future(at: &str, now: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(at).is_ok_and(|t| t.with_timezone(&Utc) > now)
}

/// What `POST /start` does with a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// Send now: a draft without a future `scheduled_at`, a paused campaign (resume), or a
    /// scheduled one whose time has come.
    Now,
    /// A draft with a future `scheduled_at`: it becomes `scheduled` and starts by itself then.
    Schedule,
}

/// Why `POST /start` refuses (a 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefused {
    /// Sending, completed or cancelled.
    WrongStatus,
    /// Already scheduled for a time still ahead.
    AlreadyScheduled { at: String },
}

pub fn plan_start(c: &Campaign, now: DateTime<Utc>) -> Result<StartPlan, StartRefused> {
    let future = c.scheduled_at.as_deref().is_some_and(|at| is_future(at, now));
    match c.status {
        CampaignStatus::Draft if future => Ok(StartPlan::Schedule),
        CampaignStatus::Draft | CampaignStatus::Paused => Ok(StartPlan::Now),
        CampaignStatus::Scheduled if future => {
            Err(StartRefused::AlreadyScheduled { at: c.scheduled_at.as_deref().unwrap_or_default().to_string() })
        }
        CampaignStatus::Scheduled => Ok(StartPlan::Now),
        _ => Err(StartRefused::WrongStatus),
    }
}

/// What a `PUT` does to a scheduled campaign's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleChange {
    /// Nothing to do: a draft, or the time did not change.
    None,
    /// The time changed: the schedule moves to it.
    Move,
    /// `scheduled_at` was cleared: the campaign is a draft again and its schedule goes.
    Clear,
}

/// Applies a `PUT`'s effect on the schedule to `edited` (the campaign as it was, `was`, with the
/// changes applied): cleared → back to draft; a new time must still be ahead, since a schedule
/// in the past would never fire (to send now, clear the time and start the campaign).
pub fn after_edit(edited: &mut Campaign, was: &Campaign, now: DateTime<Utc>) -> Result<ScheduleChange, Invalid> {
    if was.status != CampaignStatus::Scheduled {
        return Ok(ScheduleChange::None);
    }
    match edited.scheduled_at.as_deref() {
        None => {
            edited.status = CampaignStatus::Draft;
            Ok(ScheduleChange::Clear)
        }
        Some(_) if edited.scheduled_at == was.scheduled_at => Ok(ScheduleChange::None),
        Some(at) if is_future(at, now) => Ok(ScheduleChange::Move),
        Some(at) => Err(Invalid(format!(
            "scheduled_at: {at} is in the past; a scheduled campaign needs a future time \
             (to send now, set scheduled_at to null and start the campaign)"
        ))),
    }
}

/// What a fired scheduled start does with the campaign it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFire {
    /// Start it: it is scheduled for this fire's time, or for another time that has come too
    /// (its own fire may be lost; `POST /start` would start it now as well).
    Start,
    /// Stale, but the campaign is still scheduled for a time ahead: its own schedule is put
    /// again, so that updates racing each other cannot leave it with none.
    KeepSchedule { reason: String },
    /// Nothing to do: the campaign is no longer scheduled (started, cancelled, cleared back to
    /// draft), or the input names no time.
    Stale { reason: String },
}

pub fn on_fire(c: &Campaign, fired: &ScheduledStart, now: DateTime<Utc>) -> OnFire {
    if c.status != CampaignStatus::Scheduled {
        return OnFire::Stale { reason: format!("campaign {} is {}, not scheduled", c.id, c.status.as_str()) };
    }
    let (Ok(fired_at), Some(at)) = (parse_time("scheduled_at", &fired.scheduled_at), c.scheduled_at.as_deref()) else {
        return OnFire::Stale { reason: format!("{} is not a time this service schedules", fired.scheduled_at) };
    };
    if at == fired_at || !is_future(at, now) {
        return OnFire::Start;
    }
    OnFire::KeepSchedule {
        reason: format!(
            "campaign {} is scheduled for {at}, not {}; its schedule stays at {at}",
            c.id, fired.scheduled_at
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::domain::campaign::NewCampaign;
    use chrono::TimeZone;
    use serde_json::json;

    const ACCOUNT: &str = "0b6f4c6e-0000-4000-8000-000000000001";

    fn campaign(status: CampaignStatus, at: Option<&str>) -> Campaign {
        let new: NewCampaign =
            serde_json::from_value(json!({"name": "Sale", "account_id": ACCOUNT, "template_id": ACCOUNT})).unwrap();
        let mut c = new.into_campaign("c1".into(), &"2026-01-01T00:00:00Z".into()).unwrap();
        c.status = status;
        c.scheduled_at = at.map(Timestamp::from);
        c
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    const FUTURE: &str = "2026-06-01T12:00:01Z";
    const PAST: &str = "2026-06-01T12:00:00Z";

    #[test]
    fn the_expression_is_utc_without_offset_and_reads_back() {
        assert_eq!(at_expression("2027-01-01T05:00:00Z").as_deref(), Some("at(2027-01-01T05:00:00)"));
        assert_eq!(at_expression("2027-01-01T00:00:00-05:00").as_deref(), Some("at(2027-01-01T05:00:00)"));
        assert_eq!(at_expression("soon"), None);
        assert_eq!(
            parse_at_expression("at(2027-01-01T05:00:00)"),
            Some(Utc.with_ymd_and_hms(2027, 1, 1, 5, 0, 0).unwrap())
        );
        for bad in ["rate(5 minutes)", "at(2027-01-01)", "cron(0 5 * * ? *)", "at(2027-01-01T05:00:00"] {
            assert_eq!(parse_at_expression(bad), None, "{bad}");
        }
        assert_eq!(
            schedule_name("0b6f4c6e-0000-4000-8000-000000000000"),
            "campaign-0b6f4c6e-0000-4000-8000-000000000000"
        );
        assert!(schedule_name("0b6f4c6e-0000-4000-8000-000000000000").len() <= 64, "EventBridge Scheduler's limit");
    }

    #[test]
    fn start_schedules_a_future_draft_and_starts_everything_else_now() {
        use CampaignStatus::*;
        assert_eq!(plan_start(&campaign(Draft, Some(FUTURE)), now()), Ok(StartPlan::Schedule));
        assert_eq!(plan_start(&campaign(Draft, Some(PAST)), now()), Ok(StartPlan::Now), "a past time starts now");
        assert_eq!(plan_start(&campaign(Draft, None), now()), Ok(StartPlan::Now));
        assert_eq!(plan_start(&campaign(Paused, Some(FUTURE)), now()), Ok(StartPlan::Now), "a resume ignores the time");
        assert_eq!(
            plan_start(&campaign(Scheduled, Some(FUTURE)), now()),
            Err(StartRefused::AlreadyScheduled { at: FUTURE.into() })
        );
        assert_eq!(plan_start(&campaign(Scheduled, Some(PAST)), now()), Ok(StartPlan::Now), "its time has come");
        for s in [Sending, Completed, Cancelled] {
            assert_eq!(plan_start(&campaign(s, None), now()), Err(StartRefused::WrongStatus));
        }
    }

    #[test]
    fn an_edit_moves_or_clears_the_schedule_of_a_scheduled_campaign_only() {
        use CampaignStatus::*;
        let was = campaign(Scheduled, Some(FUTURE));
        let mut moved = campaign(Scheduled, Some("2026-07-01T00:00:00Z"));
        assert_eq!(after_edit(&mut moved, &was, now()), Ok(ScheduleChange::Move));
        let mut same = was.clone();
        same.name = "Renamed".into();
        assert_eq!(after_edit(&mut same, &was, now()), Ok(ScheduleChange::None));
        let mut cleared = campaign(Scheduled, None);
        assert_eq!(after_edit(&mut cleared, &was, now()), Ok(ScheduleChange::Clear));
        assert_eq!(cleared.status, Draft);
        let mut past = campaign(Scheduled, Some("2026-05-01T00:00:00Z"));
        let e = after_edit(&mut past, &was, now()).unwrap_err();
        assert!(e.0.starts_with("scheduled_at: 2026-05-01T00:00:00Z is in the past"), "{}", e.0);
        let draft = campaign(Draft, Some(FUTURE));
        let mut edited = campaign(Draft, Some(PAST));
        assert_eq!(after_edit(&mut edited, &draft, now()), Ok(ScheduleChange::None), "a draft keeps any time");
    }

    #[test]
    fn a_fire_starts_its_campaign_once_its_time_has_come_and_nothing_else() {
        use CampaignStatus::*;
        let start = |c: &Campaign, f: &ScheduledStart| on_fire(c, f, now());
        let fired = ScheduledStart { campaign_id: "c1".into(), scheduled_at: FUTURE.into() };
        assert_eq!(start(&campaign(Scheduled, Some(FUTURE)), &fired), OnFire::Start);
        let same_time_other_offset =
            ScheduledStart { scheduled_at: "2026-06-01T14:00:01+02:00".into(), ..fired.clone() };
        assert_eq!(start(&campaign(Scheduled, Some(FUTURE)), &same_time_other_offset), OnFire::Start);
        // Moved later: stale, and the campaign keeps its schedule for the new time.
        match start(&campaign(Scheduled, Some("2026-07-01T00:00:00Z")), &fired) {
            OnFire::KeepSchedule { reason } => {
                assert!(reason.contains("scheduled for 2026-07-01T00:00:00Z"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Moved to a time that has come as well: it starts (its own fire may be lost).
        assert_eq!(start(&campaign(Scheduled, Some(PAST)), &fired), OnFire::Start);
        for s in [Draft, Sending, Paused, Completed, Cancelled] {
            let OnFire::Stale { reason } = start(&campaign(s, Some(FUTURE)), &fired) else { panic!("{s:?}") };
            assert!(reason.contains("not scheduled"), "{s:?}: {reason}");
        }
        let garbage = ScheduledStart { scheduled_at: "whenever".into(), ..fired };
        assert!(matches!(start(&campaign(Scheduled, Some(PAST)), &garbage), OnFire::Stale { .. }));
        assert_eq!(ScheduledStart::of(&campaign(Scheduled, Some(FUTURE))).unwrap().scheduled_at, FUTURE);
    }
}
