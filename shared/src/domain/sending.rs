//! What the sending side decides without I/O: queue messages, the message body a recipient
//! gets, how each WhatsApp error is handled, back-off, and the pace of an account.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::campaign::Campaign;
use super::header::{HeaderLocation, HeaderMedia, MEDIA_KEY, MediaType, location_parameter, media_parameter};
use super::id::Id;
use super::phone::Phone;
use super::recipient::{PHONE_FIELD, Recipient};
use super::template::{HeaderFormat, ParameterFormat, Slot, Template};

/// A dispatch job: one step of a campaign's dispatch run. Each step reads the campaign,
/// queues send jobs for the pending recipients after `cursor` (a phone number, the last one
/// queued) while fewer than a window of them are queued and not yet processed, and queues the
/// next step a second later. So the send queue never holds more than a few seconds of an
/// account's pace, and a campaign's recipients are released as the previous ones drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchJob {
    pub campaign_id: Id,
    /// The dispatch run this step belongs to (set by every start and resume); a step of an
    /// older run does nothing.
    #[serde(default)]
    pub run: Option<String>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// Recipients queued by this run so far.
    #[serde(default)]
    pub queued: u64,
    /// The campaign's `processed_count` when the run began (read by its first step).
    #[serde(default)]
    pub base: Option<u64>,
    /// The run's readings of `processed_count` over about the last minute (unix milliseconds,
    /// count): the campaign's measured rate ([`measure_rate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<(i64, u64)>,
    /// The earliest a recipient this run passed by (outside their send window) may go (unix
    /// seconds): once the run has read every pending recipient it starts over then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<i64>,
    /// A run that starts over for a send window does nothing before this (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// The run has queued every pending recipient: its steps only measure the rate until what
    /// it queued is processed (or nothing was for a minute), then it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_all: bool,
}

impl DispatchJob {
    /// The first step of a new run.
    pub fn start(campaign_id: &Id, run: Option<String>) -> Self {
        DispatchJob {
            campaign_id: campaign_id.clone(),
            run,
            cursor: None,
            queued: 0,
            base: None,
            samples: Vec::new(),
            opens_at: None,
            not_before: None,
            read_all: false,
        }
    }
}

/// The window a campaign's rate is measured over.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// Adds a reading of `processed` at `at_ms` to `samples`, keeps those of the last
/// [`RATE_WINDOW_MS`] (and the one just before, so the window is whole once the run is that
/// old), and answers the messages per second between the oldest and the newest — none until
/// they are two seconds apart.
pub fn measure_rate(samples: &mut Vec<(i64, u64)>, at_ms: i64, processed: u64) -> Option<f64> {
    samples.push((at_ms, processed));
    let keep_from = samples.iter().rposition(|(t, _)| at_ms - t >= RATE_WINDOW_MS).unwrap_or(0);
    samples.drain(..keep_from);
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.0 - first.0;
    (span >= 2000).then(|| last.1.saturating_sub(first.1) as f64 * 1000.0 / span as f64)
}

/// A send job: recipients (by number) of one campaign, sent by one sender invocation.
/// `job_id` names the claims the job makes; a redelivered message keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendJob {
    pub job_id: Id,
    pub campaign_id: Id,
    /// The dispatch run that queued it: a job of an older run (the campaign was paused and
    /// resumed meanwhile, which queued its recipients again) is dropped. A retry has none: its
    /// recipients wait for it (`retry_at`), so it is always handled.
    #[serde(default)]
    pub run: Option<String>,
    pub phones: Vec<Phone>,
    /// How many times these recipients were tried and put back (transient errors, pair rate).
    #[serde(default)]
    pub attempt: u32,
}

impl SendJob {
    pub fn new(campaign_id: &Id, run: Option<String>, phones: Vec<Phone>, attempt: u32) -> Self {
        SendJob { job_id: Id::generate(), campaign_id: campaign_id.clone(), run, phones, attempt }
    }
}

/// Most recipients in one send job: its claims and its outcomes are each two batches of 25
/// updates, and its recipients and their opt-out records one BatchGetItem (100 keys).
pub const MAX_JOB_SIZE: usize = 50;

/// Recipients per send job for an account sending `rate` messages per second: half a second
/// of its pace (1 to [`MAX_JOB_SIZE`]), so a job holds its claims for about a second at most.
pub fn job_size(rate: u32) -> usize {
    ((rate / 2) as usize).clamp(1, MAX_JOB_SIZE)
}

/// Recipients a campaign may have queued and not yet processed: three seconds of the
/// account's pace (at least three jobs), about a second being sent and the rest waiting, plus
/// what may be sent and not yet counted processed ([`counted_late`]). Counting three seconds
/// from the processed count alone, what was still to send ran 1.3–2.2 s of pace short of it,
/// and at 200 msg/s the pace ran dry for a few hundred milliseconds every few dispatch steps.
pub fn dispatch_window(rate: u32) -> u64 {
    (3 * rate as u64).max(3 * job_size(rate) as u64) + counted_late(rate)
}

/// How many recipients one dispatch step queues: what the window has room for, in whole jobs
/// (only the last job of a campaign may be short: fewer are pending), and at most two seconds of
/// pace (1,000 below 500 msg/s), which bounds a step's reads and queue writes. Steps come
/// about 1.2 s apart, so a step must be able to queue more than a second of pace: with 1,000 at
/// most, an account at 1,000 msg/s could not have been sent faster than about 850.
pub fn step_room(window: u64, in_flight: u64, rate: u32) -> u64 {
    let size = job_size(rate) as u64;
    (window.saturating_sub(in_flight) / size * size).min(2 * (rate as u64).max(500))
}

/// How many of the recipients a campaign counts in flight may be sent already: a job's outcomes
/// are written once the answer to its last message came ([`IN_PROGRESS`]) and counted from the
/// table's stream up to [`COUNTING_LAG`] later, and a message woken too late for its slot takes
/// a new one up to [`SLOT_HORIZON`] ahead, so a job counts in flight up to its span, the
/// horizon, [`IN_PROGRESS`] and [`COUNTING_LAG`] after its first slot.
pub fn counted_late(rate: u32) -> u64 {
    let late_ms = (IN_PROGRESS + SLOT_HORIZON + COUNTING_LAG).as_millis() as u64;
    (rate as u64 * late_ms).div_ceil(1000) + job_size(rate) as u64
}

/// How many recipients the account's pace surely has to send before a job queued now: what
/// the pace has reserved ahead of now (`reserved_ahead_us`, the account's other campaigns
/// included), and at least what the campaign counts in flight less what of it may be sent
/// already ([`counted_late`]).
pub fn still_to_send(in_flight: u64, reserved_ahead_us: i64, rate: u32) -> u64 {
    let reserved = reserved_ahead_us.max(0) as u64 * rate as u64 / 1_000_000;
    in_flight.saturating_sub(counted_late(rate)).max(reserved)
}

/// How far ahead of now a sender may take send slots: a job whose first slot would be later
/// goes back to the queue for the time being instead of waiting in an invocation (its last
/// slot is at most half a second after its first, see [`job_size`]).
pub const SLOT_HORIZON: Duration = Duration::from_secs(1);

/// How long the recipients a campaign counts in flight take to be counted processed once their
/// slot came: WhatsApp's answer (a few hundred milliseconds) and the outcome's write.
pub const IN_PROGRESS: Duration = Duration::from_millis(500);

/// How long after its write an outcome is counted: the stream's batching window for the
/// `tally` function in template.yaml (a second).
pub const COUNTING_LAG: Duration = Duration::from_secs(1);

/// The queue delay of the `index`-th job (of `size` recipients) a dispatch step queues behind
/// `ahead` recipients (see [`still_to_send`]) at `rate` per second: when the account's pace
/// reaches it, less half the horizon a sender may take slots ahead, in whole seconds rounded
/// down (SQS delays whole seconds). So a job comes half a second to a second and a half before
/// its slots: in time for its read and claims, and seldom so early that it looks at the pace
/// together with many others and finds the room taken after claiming. The count it is timed
/// on is the least there can be: a job that comes late leaves a hole in the pace.
pub fn job_due(ahead: u64, index: usize, size: usize, rate: u32) -> Duration {
    let at = (ahead + (index * size) as u64) as f64 / rate.max(1) as f64;
    Duration::from_secs((at - SLOT_HORIZON.as_secs_f64() / 2.0).max(0.0).floor() as u64)
}

/// How much the arrivals of messages at WhatsApp may drift against their slots — the send
/// margin ([`send_margin`]) and the request's way there (a busy machine, the network: up to
/// 10-18 ms now and then on a loaded two-core machine) together — without WhatsApp counting
/// more than rate + 1 messages in any second.
pub const ARRIVAL_JITTER_US: u64 = 20_000;

/// The spacing of messages at `rate` per second, in microseconds: a second divided by the
/// rate, widened where needed so that rate + 2 consecutive slots are never less than a second
/// plus [`ARRIVAL_JITTER_US`] apart. With exactly 1/rate, a message arriving late and the one
/// rate + 1 slots after it arriving early, by one interval between them (5 ms at 200 msg/s),
/// made a second of rate + 2. The cost is a little of the rate: none up to 49 msg/s, 0.7 % at
/// 80, 1.5 % at 200, 1.9 % at 1,000.
pub fn interval_micros(rate: u32) -> u64 {
    let rate = rate.max(1) as u64;
    (1_000_000 / rate).max((1_000_000 + ARRIVAL_JITTER_US).div_ceil(rate + 1))
}

/// How many seconds `messages` take at `rate` per second, at the spacing the sender keeps
/// ([`interval_micros`]): what an estimate of the time left divides by.
pub fn seconds_at_pace(messages: u64, rate: u32) -> f64 {
    messages as f64 * interval_micros(rate) as f64 / 1e6
}

/// How early and how late (microseconds) a message may go out around its slot, at slots
/// `interval_us` apart: up to a millisecond (a quarter of the interval above 250 msg/s) before,
/// up to half the interval or 4 ms after, whichever is more. What the spacing
/// ([`interval_micros`]) leaves beyond that is for the request's way to WhatsApp: 15 ms at
/// 200 msg/s and above, 12.7 ms at 80, never less than 9 ms (near 50 msg/s). A sender wakes
/// `early` before its slot (timers round up to the next millisecond and a busy machine wakes
/// them later still), so that most wake-ups land inside the margin: one that misses it leaves
/// its slot unused.
pub fn send_margin(interval_us: u64) -> (i64, i64) {
    let interval = interval_us as i64;
    ((interval / 4).min(1_000), (interval / 2).max(ARRIVAL_JITTER_US as i64 / 5))
}

/// The `i`-th of consecutive slots from `first`, `interval_us` apart (microseconds).
pub fn nth_slot(first: i64, i: usize, interval_us: u64) -> i64 {
    first + (i as u64 * interval_us) as i64
}

/// How many of `count` slots from `first` (`interval_us` apart) have passed at `now_us`: their
/// margin's start ([`send_margin`]) is behind. A reservation whose answer came late has these
/// first; they are taken again at the end of the pace.
pub fn passed_slots(first: i64, count: usize, interval_us: u64, now_us: i64) -> usize {
    let (early, _) = send_margin(interval_us);
    (0..count).take_while(|&i| nth_slot(first, i, interval_us) - early < now_us).count()
}

/// How a WhatsApp error is handled, decided on Meta's `error.code` (never the HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 130429: the number's throughput was exceeded — slow the account, retry the message.
    Throughput,
    /// 131056: too many messages to this user — retry this recipient after 4^n seconds.
    PairRate,
    /// Service or call limits, unknown errors: retry with back-off, then fail the recipient.
    Transient,
    /// The recipient cannot get this message: fail it with Meta's code and message.
    Permanent,
    /// The template or the campaign cannot be sent: pause the campaign.
    Campaign,
    /// The account cannot send (token, restriction): pause every sending campaign of it.
    Account,
}

pub fn classify(code: i64) -> ErrorClass {
    match code {
        130429 => ErrorClass::Throughput,
        131056 => ErrorClass::PairRate,
        4 | 80007 | 131000 | 1 | 2 | 131057 => ErrorClass::Transient,
        132001 | 132007 | 132015 | 132016 | 131048 => ErrorClass::Campaign,
        190 | 368 | 131031 => ErrorClass::Account,
        _ => ErrorClass::Permanent,
    }
}

/// Meta's per-user marketing limit: the person was sent too many marketing messages lately
/// (by any business). Not final: the number may be tried again [`MARKETING_LIMIT_WAIT_HOURS`]
/// after the failure.
pub const MARKETING_LIMIT_CODE: i64 = 131049;
pub const MARKETING_LIMIT_WAIT_HOURS: i64 = 24;

/// Whether a recipient that failed with `code` may be sent again by `retry-failed`: failures
/// that said nothing about the person — throughput, pair rate, transient and unknown errors
/// that outlasted their attempts, outcomes that stayed unknown (no code) — and the marketing
/// limit once its wait is over. Never a permanent refusal (131026 undeliverable, 131050
/// opted out, 131008 a missing field, …) or a code not known as retryable.
pub fn retryable(code: Option<i64>) -> bool {
    match code {
        None | Some(MARKETING_LIMIT_CODE) => true,
        Some(c) => matches!(classify(c), ErrorClass::Throughput | ErrorClass::PairRate | ErrorClass::Transient),
    }
}

/// Attempts of one message against transient errors before the recipient fails.
pub const MAX_ATTEMPTS: u32 = 4;
/// Times a recipient is put back after a pair-rate limit before it fails.
pub const MAX_PAIR_RATE_ATTEMPTS: u32 = 3;

/// The delay before recipients put back after a transient or throughput error are tried
/// again (`attempt` from 1): 1, 2, 4, 8 s, with a second of jitter.
pub fn retry_delay(attempt: u32, random: f64) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(4))
        + Duration::from_millis((1000.0 * random.clamp(0.0, 1.0)) as u64)
}

/// The delay before a pair-rate-limited recipient is tried again: 4^n seconds (n from 1).
pub fn pair_rate_delay(attempt: u32) -> Duration {
    Duration::from_secs(4u64.pow(attempt.clamp(1, 4)))
}

/// Why a recipient's message cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// A field the message needs but the recipient lacks.
    MissingField(String),
    /// The campaign lacks the value of its template's header (`header_media`,
    /// `header_location`); its checks at start make this unlikely (the template changed).
    MissingHeader(&'static str, HeaderFormat),
}

impl std::fmt::Display for Unsendable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsendable::MissingField(field) => {
                write!(f, "the recipient has no value for '{field}', which the variable_mapping needs")
            }
            Unsendable::MissingHeader(field, format) => {
                write!(f, "the campaign has no {field}, which the template's {} header needs", format.label())
            }
        }
    }
}

/// What a campaign gives every message besides its mapping: the values of a media or location
/// header.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderValues<'a> {
    pub media: Option<&'a HeaderMedia>,
    pub location: Option<&'a HeaderLocation>,
}

impl<'a> HeaderValues<'a> {
    pub fn of(c: &'a Campaign) -> Self {
        HeaderValues { media: c.header_media.as_ref(), location: c.header_location.as_ref() }
    }
}

fn field_value<'a>(recipient: &'a Recipient, field: &str) -> Option<&'a str> {
    if field == PHONE_FIELD {
        return Some(&recipient.phone_number);
    }
    recipient.fields.get(field).map(String::as_str).filter(|v| !v.is_empty())
}

/// The header parameter of a media or location header: the recipient's own link when the
/// mapping names one (`header.media`), else the campaign's `header_media` or `header_location`.
fn header_parameter(
    format: HeaderFormat,
    mapping: &BTreeMap<String, String>,
    values: HeaderValues<'_>,
    recipient: &Recipient,
) -> Result<Option<Value>, Unsendable> {
    if format == HeaderFormat::Location {
        let location = values.location.ok_or(Unsendable::MissingHeader("header_location", format))?;
        return Ok(Some(location_parameter(location)));
    }
    let Some(kind) = MediaType::of(format) else { return Ok(None) };
    let link = match mapping.get(MEDIA_KEY) {
        Some(field) => Some(field_value(recipient, field).ok_or_else(|| Unsendable::MissingField(field.clone()))?),
        None => None,
    };
    media_parameter(kind, values.media, link).map(Some).ok_or(Unsendable::MissingHeader("header_media", format))
}

/// The message body for one recipient: the template with its placeholders filled from the
/// recipient's fields through the campaign's `variable_mapping`, and a media or location
/// header's parameter from the campaign's header values.
pub fn message_body(
    template: &Template,
    mapping: &BTreeMap<String, String>,
    values: HeaderValues<'_>,
    recipient: &Recipient,
    callback: &str,
) -> Result<Value, Unsendable> {
    let mut header = Vec::new();
    if let Some(format) = template.header_format()
        && let Some(param) = header_parameter(format, mapping, values, recipient)?
    {
        header.push(param);
    }
    let mut body = Vec::new();
    let mut buttons: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    for p in &template.parameters {
        let field = mapping.get(&p.key).ok_or_else(|| Unsendable::MissingField(p.key.clone()))?;
        let text = field_value(recipient, field).ok_or_else(|| Unsendable::MissingField(field.clone()))?;
        let mut param = json!({ "type": "text", "text": text });
        if template.parameter_format == ParameterFormat::Named && p.component != Slot::Button {
            param["parameter_name"] = json!(p.name);
        }
        match p.component {
            Slot::Header => header.push(param),
            Slot::Button => buttons.entry(p.index.unwrap_or_default()).or_default().push(param),
            Slot::Body => body.push(param),
        }
    }
    let mut components = Vec::new();
    if !header.is_empty() {
        components.push(json!({ "type": "header", "parameters": header }));
    }
    if !body.is_empty() {
        components.push(json!({ "type": "body", "parameters": body }));
    }
    for (index, parameters) in buttons {
        components
            .push(json!({ "type": "button", "sub_type": "url", "index": index.to_string(), "parameters": parameters }));
    }
    Ok(json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient.phone_number,
        "type": "template",
        "template": { "name": template.name, "language": { "code": template.language }, "components": components },
        "biz_opaque_callback_data": callback,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::NewTemplate;

    fn template(format: &str, components: Value) -> Template {
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": "0b6f4c6e-0000-4000-8000-000000000001", "name": "offer", "language": "en_US", "category": "MARKETING",
            "status": "APPROVED", "parameter_format": format, "components": components
        }))
        .unwrap();
        t.validate("t".into(), &"now".into()).unwrap()
    }

    fn recipient(fields: &[(&str, &str)]) -> Recipient {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Recipient::pending(&"c".into(), 16, "+14155550123".into(), fields, &"t".into())
    }

    fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn positional_header_body_and_url_button() {
        let t = template(
            "positional",
            json!([{"type":"HEADER","format":"TEXT","text":"Hi {{1}}"},
                   {"type":"BODY","text":"{{1}}, code {{2}}"},
                   {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"Stop"},
                        {"type":"URL","text":"Go","url":"https://x.example/{{1}}"}]}]),
        );
        let m = mapping(&[("header.1", "name"), ("1", "name"), ("2", "code"), ("button.1", "code")]);
        let b = message_body(&t, &m, HeaderValues::default(), &recipient(&[("name", "Ann"), ("code", "X1")]), "c/r")
            .unwrap();
        assert_eq!(b["to"], "+14155550123");
        assert_eq!(b["template"]["language"]["code"], "en_US");
        let c = &b["template"]["components"];
        assert_eq!(c[0], json!({"type":"header","parameters":[{"type":"text","text":"Ann"}]}));
        assert_eq!(c[1]["parameters"][1], json!({"type":"text","text":"X1"}));
        assert_eq!(
            c[2],
            json!({"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"X1"}]})
        );
        assert_eq!(b["biz_opaque_callback_data"], "c/r");
    }

    #[test]
    fn named_parameters_carry_their_names_and_phone_is_a_field() {
        let t = template("named", json!([{"type":"BODY","text":"Hi {{first_name}} ({{number}})"}]));
        let m = mapping(&[("first_name", "name"), ("number", "phone_number")]);
        let b = message_body(&t, &m, HeaderValues::default(), &recipient(&[("name", "Ann")]), "x").unwrap();
        let p = &b["template"]["components"][0]["parameters"];
        assert_eq!(p[0], json!({"type":"text","text":"Ann","parameter_name":"first_name"}));
        assert_eq!(p[1]["text"], "+14155550123");
        let missing = message_body(&t, &m, HeaderValues::default(), &recipient(&[]), "x").unwrap_err();
        assert_eq!(missing, Unsendable::MissingField("name".into()));
    }

    #[test]
    fn media_headers_carry_the_campaigns_medium_or_the_recipients_link() {
        let t = template("positional", json!([{"type":"HEADER","format":"IMAGE"}, {"type":"BODY","text":"Hi {{1}}"}]));
        let media: HeaderMedia =
            serde_json::from_value(json!({"type": "image", "link": "https://cdn.example/a.png"})).unwrap();
        let values = HeaderValues { media: Some(&media), location: None };
        let m = mapping(&[("1", "name")]);
        let b = message_body(&t, &m, values, &recipient(&[("name", "Ann")]), "x").unwrap();
        let c = &b["template"]["components"];
        assert_eq!(
            c[0],
            json!({"type":"header","parameters":[{"type":"image","image":{"link":"https://cdn.example/a.png"}}]})
        );
        assert_eq!(c[1], json!({"type":"body","parameters":[{"type":"text","text":"Ann"}]}));
        // Without a medium the message cannot be made.
        let e = message_body(&t, &m, HeaderValues::default(), &recipient(&[("name", "Ann")]), "x").unwrap_err();
        assert_eq!(e.to_string(), "the campaign has no header_media, which the template's IMAGE header needs");

        // A document by id with its filename.
        let t = template("positional", json!([{"type":"HEADER","format":"DOCUMENT"}, {"type":"BODY","text":"Hi"}]));
        let doc: HeaderMedia =
            serde_json::from_value(json!({"type": "document", "id": "4490", "filename": "menu.pdf"})).unwrap();
        let values = HeaderValues { media: Some(&doc), location: None };
        let b = message_body(&t, &mapping(&[]), values, &recipient(&[]), "x").unwrap();
        assert_eq!(
            b["template"]["components"],
            json!([{"type":"header","parameters":[{"type":"document","document":{"id":"4490","filename":"menu.pdf"}}]}])
        );

        // A link of each recipient's own, through variable_mapping's header.media.
        let t =
            template("named", json!([{"type":"HEADER","format":"VIDEO"}, {"type":"BODY","text":"Hi {{first_name}}"}]));
        let m = mapping(&[("header.media", "clip"), ("first_name", "name")]);
        let r = recipient(&[("name", "Ann"), ("clip", "https://cdn.example/ann.mp4")]);
        let b = message_body(&t, &m, HeaderValues::default(), &r, "x").unwrap();
        let c = &b["template"]["components"];
        assert_eq!(c[0]["parameters"][0], json!({"type":"video","video":{"link":"https://cdn.example/ann.mp4"}}));
        assert_eq!(c[1]["parameters"][0]["parameter_name"], "first_name");
        let e = message_body(&t, &m, HeaderValues::default(), &recipient(&[("name", "Ann")]), "x").unwrap_err();
        assert_eq!(e, Unsendable::MissingField("clip".into()));
    }

    #[test]
    fn location_headers_carry_the_campaigns_place() {
        let t = template("positional", json!([{"type":"HEADER","format":"LOCATION"}, {"type":"BODY","text":"Hi"}]));
        let place = HeaderLocation {
            latitude: 37.483307,
            longitude: 122.148981,
            name: Some("Pablo Morales".into()),
            address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
        };
        let values = HeaderValues { media: None, location: Some(&place) };
        let b = message_body(&t, &mapping(&[]), values, &recipient(&[]), "x").unwrap();
        assert_eq!(
            b["template"]["components"][0],
            json!({"type":"header","parameters":[{"type":"location","location":{
                "latitude":37.483307,"longitude":122.148981,"name":"Pablo Morales",
                "address":"1 Hacker Way, Menlo Park, CA 94025"}}]})
        );
        let e = message_body(&t, &mapping(&[]), HeaderValues::default(), &recipient(&[]), "x").unwrap_err();
        assert!(matches!(e, Unsendable::MissingHeader("header_location", HeaderFormat::Location)));
    }

    #[test]
    fn errors_are_classified_by_code() {
        assert_eq!(classify(130429), ErrorClass::Throughput);
        assert_eq!(classify(131056), ErrorClass::PairRate);
        for c in [4, 80007, 131000, 1, 2, 131057] {
            assert_eq!(classify(c), ErrorClass::Transient, "{c}");
            assert!(retryable(Some(c)), "{c}");
        }
        assert!(retryable(Some(130429)) && retryable(Some(131056)) && retryable(None));
        for c in [131026, 131047, 131049, 131050, 130472, 131008, 132000, 131021] {
            assert_eq!(retryable(Some(c)), c == MARKETING_LIMIT_CODE, "{c}");
            assert_eq!(classify(c), ErrorClass::Permanent, "{c}");
        }
        for c in [132001, 132007, 132015, 132016, 131048] {
            assert_eq!(classify(c), ErrorClass::Campaign, "{c}");
            assert!(!retryable(Some(c)), "{c}");
        }
        for c in [190, 368, 131031] {
            assert_eq!(classify(c), ErrorClass::Account, "{c}");
        }
    }

    #[test]
    fn the_rate_is_measured_over_the_last_minute() {
        let mut samples = Vec::new();
        assert_eq!(measure_rate(&mut samples, 0, 0), None);
        assert_eq!(measure_rate(&mut samples, 1000, 80), None, "too short a span");
        assert_eq!(measure_rate(&mut samples, 2000, 160), Some(80.0));
        // At 10 msg/s from second 2 on, for two minutes: the first minute's fast start is gone.
        for s in 3..=122 {
            measure_rate(&mut samples, s * 1000, 160 + 10 * (s as u64 - 2));
        }
        assert_eq!(measure_rate(&mut samples, 123_000, 160 + 10 * 121), Some(10.0));
        assert!(samples.len() <= 62, "{}", samples.len());
    }

    /// The most of `times` (microseconds) in any second.
    fn busiest_second(times: &[i64]) -> usize {
        let mut times = times.to_vec();
        times.sort_unstable();
        (0..times.len())
            .map(|i| times[i..].iter().take_while(|t| **t < times[i] + 1_000_000).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn sends_anywhere_in_their_margin_keep_every_second_at_rate_plus_one() {
        assert_eq!(
            (send_margin(5_000), send_margin(100_000), send_margin(1_000)),
            ((1_000, 4_000), (1_000, 50_000), (250, 4_000))
        );
        for rate in [10, 30, 49, 50, 51, 80, 200, 400, 500, 1000] {
            let interval = interval_micros(rate);
            let (early, late) = send_margin(interval);
            // The worst case: every other message sent as late as it may be and 9 ms on its way,
            // the others sent as early and there at once.
            let late = late + 9_000 - 1;
            let times: Vec<i64> =
                (0..3 * rate as i64).map(|i| i * interval as i64 + if i % 2 == 0 { late } else { -early }).collect();
            let most = busiest_second(&times);
            assert!(most <= rate as usize + 1, "{rate}/s: {most} in a second");
        }
    }

    #[test]
    fn arrivals_drifting_by_the_jitter_allowed_never_make_a_second_of_rate_plus_two() {
        for rate in [10, 30, 49, 50, 80, 200, 400, 1000] {
            let interval = interval_micros(rate) as i64;
            let (early, _) = send_margin(interval as u64);
            // Every message at its slot but two, rate + 1 slots apart: the first arrives late,
            // the second early, by the whole allowance between them.
            for first in [0, rate as usize] {
                let mut times: Vec<i64> = (0..3 * rate as i64).map(|i| i * interval).collect();
                times[first] += ARRIVAL_JITTER_US as i64 - early - 1;
                times[first + rate as usize + 1] -= early;
                let most = busiest_second(&times);
                assert!(most <= rate as usize + 1, "{rate}/s: {most} in a second");
            }
        }
    }

    #[test]
    fn slots_whose_margin_began_before_now_have_passed() {
        // 200 msg/s: slots 5 ms apart, a send may go from 1 ms before its slot.
        assert_eq!(passed_slots(1_000_000, 50, 5_000, 990_000), 0);
        assert_eq!(passed_slots(1_000_000, 50, 5_000, 999_000), 0);
        assert_eq!(passed_slots(1_000_000, 50, 5_000, 999_001), 1);
        assert_eq!(passed_slots(1_000_000, 50, 5_000, 1_012_000), 3);
        assert_eq!(passed_slots(1_000_000, 50, 5_000, 2_000_000), 50);
    }

    #[test]
    fn pace_and_backoff() {
        assert_eq!((job_size(1), job_size(10), job_size(80), job_size(1000)), (1, 5, 40, 50));
        assert_eq!((dispatch_window(10), dispatch_window(80), dispatch_window(1)), (60, 480, 7));
        assert_eq!((interval_micros(10), interval_micros(30), interval_micros(49)), (100_000, 33_333, 20_408));
        assert_eq!((interval_micros(80), interval_micros(200), interval_micros(1000)), (12_593, 5_075, 1_019));
        assert_eq!((counted_late(10), counted_late(80), counted_late(200)), (30, 240, 550));
        // Whole jobs of the window's room; at most two seconds of pace, so that steps 1.2 s
        // apart keep up with 1,000 msg/s.
        assert_eq!((step_room(400, 180, 80), step_room(400, 400, 80), step_room(400, 500, 80)), (200, 0, 0));
        assert_eq!(step_room(dispatch_window(1000), 0, 1000), 2000);
        assert!(step_room(dispatch_window(1000), 0, 1000) as f64 / 1.2 > 1000.0);
        assert_eq!(step_room(dispatch_window(80), 0, 80), 480);
        // 480 in flight at 80/s: 240 of them are surely still to send (more if the pace has
        // reserved more ahead), three seconds of pace; the first job queued behind them waits
        // two and a half seconds (rounded down: two; its slots are a second ahead then), the
        // next one (40 more) three, the one after three and a half (three).
        assert_eq!((still_to_send(480, 0, 80), still_to_send(480, 4_000_000, 80)), (240, 320));
        assert_eq!(still_to_send(100, 500_000, 80), 40, "nothing left in flight but the pace's reservations");
        let due = |i| job_due(240, i, 40, 80).as_secs();
        assert_eq!((due(0), due(1), due(2), due(4)), (2, 3, 3, 4));
        assert_eq!(job_due(0, 0, 5, 10), Duration::ZERO);
        assert_eq!((pair_rate_delay(1), pair_rate_delay(2)), (Duration::from_secs(4), Duration::from_secs(16)));
        assert_eq!((retry_delay(1, 0.0), retry_delay(3, 0.5)), (Duration::from_secs(1), Duration::from_millis(4500)));
    }
}
