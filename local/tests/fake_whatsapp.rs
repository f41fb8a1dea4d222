//! The fake WhatsApp Cloud API, served in-process on an ephemeral port and called over real HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use http::{HeaderMap, StatusCode};
use local::fake_whatsapp::{
    self, DISPLAY_PHONE_NUMBER, FAULT_NUMBERS, FakeAnswer, FakeConfig, FakeState, Fault, HeaderFormat, Injection,
    MAX_DELAY_MS, MAX_STATUSES_PER_POST, TemplateSpec, WABA_ID, WEBHOOK_ATTEMPTS,
};
use serde_json::{Value, json};
use shared::adapters::signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "EAAG-test-token";
const PNID: &str = "106540352242922";
const SEND: &str = "/v21.0/106540352242922/messages";

struct Fake {
    addr: SocketAddr,
    state: FakeState,
}

async fn start() -> Fake {
    let state = FakeState::new();
    let addr = fake_whatsapp::spawn(state.clone()).await.unwrap();
    Fake { addr, state }
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<i64> {
        self.body["error"]["code"].as_i64()
    }

    fn details(&self) -> &str {
        self.body["error"]["error_data"]["details"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 exchange with `connection: close`.
async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();

    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let body = if payload.is_empty() { Value::Null } else { serde_json::from_slice(&payload).unwrap() };
    Answer { status, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

async fn send(fake: &Fake, body: &Value) -> Answer {
    call(fake.addr, "POST", SEND, Some(TOKEN), Some(&body.to_string())).await
}

async fn control(fake: &Fake, method: &str, path: &str, body: Option<Value>) -> Answer {
    call(fake.addr, method, path, None, body.map(|b| b.to_string()).as_deref()).await
}

fn template_send(to: &str, name: &str, components: Value) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}, "components": components},
    })
}

fn positional(to: &str) -> Value {
    template_send(
        to,
        "holiday_offer",
        json!([{"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "NY20"}]}]),
    )
}

fn remove(object: &mut Value, key: &str) {
    object.as_object_mut().unwrap().remove(key).unwrap();
}

fn assert_accepted(answer: &Answer, to: &str) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["messaging_product"], "whatsapp");
    assert_eq!(answer.body["contacts"][0]["input"], to);
    assert_eq!(answer.body["contacts"][0]["wa_id"], to.trim_start_matches('+'));
    assert_eq!(answer.body["messages"][0]["message_status"], "accepted");
    let wamid = answer.body["messages"][0]["id"].as_str().unwrap().to_owned();
    let hex = wamid.strip_prefix("wamid.").unwrap();
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    wamid
}

fn assert_error(answer: &Answer, status: u16, code: i64) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.code(), Some(code), "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["type"], "OAuthException");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(error["error_data"]["messaging_product"], "whatsapp");
    assert!(error["fbtrace_id"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn a_valid_positional_send_is_accepted_and_recorded() {
    let fake = start().await;
    let mut body = positional("+16505551234");
    body["biz_opaque_callback_data"] = json!("campaign-1/recipient-7");
    let answer = send(&fake, &body).await;
    let wamid = assert_accepted(&answer, "+16505551234");

    let requests = fake.state.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.version, "v21.0");
    assert_eq!(r.phone_number_id, PNID);
    assert_eq!(r.to.as_deref(), Some("+16505551234"));
    assert_eq!(r.token.as_deref(), Some(TOKEN));
    assert_eq!(r.body, body);
    assert_eq!(r.status, 200);
    assert_eq!(r.error_code, None);
    assert_eq!(r.wamid.as_deref(), Some(wamid.as_str()));
    assert!(r.at_ms > 1_600_000_000_000);

    // Without the `+` the number is accepted too; `accepted_to` normalises both.
    let answer = send(&fake, &positional("16505550000")).await;
    let second = assert_accepted(&answer, "16505550000");
    assert_ne!(second, wamid);
    assert_eq!(fake.state.accepted_to(), ["+16505551234", "+16505550000"]);
}

#[tokio::test]
async fn named_parameters_are_accepted_and_required_by_a_named_template() {
    let fake = start().await;
    let named = |with_names: bool| {
        let param = |name: &str, text: &str| {
            if with_names {
                json!({"type": "text", "parameter_name": name, "text": text})
            } else {
                json!({"type": "text", "text": text})
            }
        };
        template_send(
            "+16505551234",
            "order_update",
            json!([
                {"type": "header", "parameters": [param("store", "Acme")]},
                {"type": "body", "parameters": [param("first_name", "Ada"), param("order_id", "A-17")]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-17"}]},
            ]),
        )
    };
    // Unregistered: both shapes are well-formed.
    assert_accepted(&send(&fake, &named(true)).await, "+16505551234");
    assert_accepted(&send(&fake, &named(false)).await, "+16505551234");

    fake.state.register_template(TemplateSpec {
        name: "order_update".into(),
        language: "en_US".into(),
        header_params: 1,
        body_params: 2,
        buttons: vec![0],
        named: true,
        header_format: None,
    });
    assert_accepted(&send(&fake, &named(true)).await, "+16505551234");
    let answer = send(&fake, &named(false)).await;
    assert_error(&answer, 400, 131008);
    assert!(answer.details().contains("parameter_name"), "{}", answer.details());

    // An empty parameter_name is not a name.
    let mut empty = named(true);
    empty["template"]["components"][1]["parameters"][0]["parameter_name"] = json!("");
    assert_error(&send(&fake, &empty).await, 400, 131008);
    assert_eq!(fake.state.accepted_to().len(), 3);
}

#[tokio::test]
async fn a_wrong_token_for_a_registered_account_is_190() {
    let fake = start().await;
    let registered = control(
        &fake,
        "POST",
        "/_fake/accounts",
        Some(json!({"phone_number_id": PNID, "access_token": "the-right-one"})),
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.body);

    let body = positional("+16505551234").to_string();
    let answer = call(fake.addr, "POST", SEND, Some("another-token"), Some(&body)).await;
    assert_error(&answer, 401, 190);
    let answer = call(fake.addr, "POST", SEND, None, Some(&body)).await;
    assert_error(&answer, 401, 190);
    let answer = call(fake.addr, "POST", SEND, Some("the-right-one"), Some(&body)).await;
    assert_accepted(&answer, "+16505551234");

    let requests = fake.state.requests();
    let seen: Vec<_> = requests.iter().map(|r| (r.token.as_deref(), r.status, r.error_code)).collect();
    assert_eq!(
        seen,
        [(Some("another-token"), 401, Some(190)), (None, 401, Some(190)), (Some("the-right-one"), 200, None)]
    );
}

#[tokio::test]
async fn an_unregistered_account_accepts_any_bearer_token_but_needs_one() {
    let fake = start().await;
    fake.state.register_account("999999999", "only-for-999");
    let body = positional("+16505551234").to_string();
    let answer = call(fake.addr, "POST", SEND, Some("whatever"), Some(&body)).await;
    assert_accepted(&answer, "+16505551234");
    let answer = call(fake.addr, "POST", "/v19.0/555000111/messages", Some("anything-else"), Some(&body)).await;
    assert_accepted(&answer, "+16505551234");
    let answer = call(fake.addr, "POST", SEND, None, Some(&body)).await;
    assert_error(&answer, 401, 190);
    let answer = call(fake.addr, "POST", "/v21.0/999999999/messages", Some("whatever"), Some(&body)).await;
    assert_error(&answer, 401, 190);
}

#[tokio::test]
async fn malformed_bodies_are_rejected_with_the_right_code() {
    let fake = start().await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = positional("+16505551234");
        edit(&mut body);
        body.to_string()
    };
    let cases: Vec<(&str, String, i64, &str)> = vec![
        ("not JSON", "{\"messaging_product\": ".into(), 100, "not JSON"),
        ("an array", "[1, 2]".into(), 100, "object"),
        ("wrong product", with(&|b| b["messaging_product"] = json!("sms")), 100, "messaging_product"),
        ("no product", with(&|b| remove(b, "messaging_product")), 131008, "messaging_product"),
        ("wrong type", with(&|b| b["type"] = json!("text")), 100, "type"),
        ("bad to", with(&|b| b["to"] = json!("+1 650 555 1234")), 100, "to"),
        ("short to", with(&|b| b["to"] = json!("+12345")), 100, "to"),
        ("to as a number", with(&|b| b["to"] = json!(16505551234u64)), 100, "to"),
        ("no to", with(&|b| remove(b, "to")), 131008, "to"),
        ("recipient type", with(&|b| b["recipient_type"] = json!("group")), 100, "recipient_type"),
        ("callback data", with(&|b| b["biz_opaque_callback_data"] = json!(7)), 100, "biz_opaque_callback_data"),
        ("no template name", with(&|b| remove(&mut b["template"], "name")), 131008, "template.name"),
        ("no language", with(&|b| b["template"]["language"] = json!({})), 131008, "template.language.code"),
        ("components object", with(&|b| b["template"]["components"] = json!({})), 100, "components"),
        (
            "unknown component",
            with(&|b| b["template"]["components"][0]["type"] = json!("footer")),
            100,
            "components[0].type",
        ),
        (
            "parameters not an array",
            with(&|b| b["template"]["components"][0]["parameters"] = json!("Ada")),
            100,
            "components[0].parameters",
        ),
        (
            "text parameter without text",
            with(&|b| b["template"]["components"][0]["parameters"][1] = json!({"type": "text"})),
            131008,
            "components[0].parameters[1].text",
        ),
        (
            "unknown parameter type",
            with(&|b| b["template"]["components"][0]["parameters"][0] = json!({"type": "sticker"})),
            100,
            "parameters[0].type",
        ),
        (
            "image without link or id",
            with(&|b| {
                b["template"]["components"] =
                    json!([{"type": "header", "parameters": [{"type": "image", "image": {}}]}])
            }),
            131008,
            "image",
        ),
        (
            "button without sub_type",
            with(&|b| {
                b["template"]["components"] =
                    json!([{"type": "button", "index": "0", "parameters": [{"type": "text", "text": "x"}]}])
            }),
            131008,
            "sub_type",
        ),
        (
            "button without index",
            with(&|b| {
                b["template"]["components"] =
                    json!([{"type": "button", "sub_type": "url", "parameters": [{"type": "text", "text": "x"}]}])
            }),
            131008,
            "index",
        ),
    ];
    for (case, body, code, names) in &cases {
        let answer = call(fake.addr, "POST", SEND, Some(TOKEN), Some(body)).await;
        assert_eq!(answer.status, 400, "{case}: {}", answer.body);
        assert_eq!(answer.code(), Some(*code), "{case}: {}", answer.body);
        assert!(answer.details().contains(names), "{case}: {:?} should name {names}", answer.details());
    }
    let requests = fake.state.requests();
    assert_eq!(requests.len(), cases.len());
    assert!(requests.iter().all(|r| r.status == 400 && r.wamid.is_none()));
    assert_eq!(requests[0].body, Value::Null, "a body that is not JSON is recorded as null");
    assert!(fake.state.accepted_to().is_empty());
}

#[tokio::test]
async fn a_registered_template_needs_its_parameter_counts() {
    let fake = start().await;
    let registered = control(
        &fake,
        "POST",
        "/_fake/templates",
        Some(json!({"name": "holiday_offer", "language": "en_US", "body_params": 2, "buttons": [1]})),
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let url_button =
        json!({"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "x"}]});
    let body_params = |n: usize| {
        let params: Vec<Value> = (0..n).map(|i| json!({"type": "text", "text": format!("p{i}")})).collect();
        json!({"type": "body", "parameters": params})
    };

    let ok = template_send("+16505551234", "holiday_offer", json!([body_params(2), url_button]));
    assert_accepted(&send(&fake, &ok).await, "+16505551234");

    for (case, components) in [
        ("one body parameter", json!([body_params(1), url_button])),
        ("three body parameters", json!([body_params(3), url_button])),
        ("no url button", json!([body_params(2)])),
        (
            "a header parameter",
            json!([{"type": "header", "parameters": [{"type": "text", "text": "h"}]}, body_params(2), url_button]),
        ),
    ] {
        let answer = send(&fake, &template_send("+16505551234", "holiday_offer", components)).await;
        assert_error(&answer, 400, 132000);
        assert!(answer.details().contains("holiday_offer"), "{case}: {}", answer.details());
    }

    // Another language of the same name is not registered: only well-formedness is checked.
    let mut other_language = template_send("+16505551234", "holiday_offer", json!([body_params(1)]));
    other_language["template"]["language"]["code"] = json!("fr");
    assert_accepted(&send(&fake, &other_language).await, "+16505551234");
}

#[tokio::test]
async fn a_media_or_location_header_needs_a_parameter_of_its_type() {
    let fake = start().await;
    let registered = control(
        &fake,
        "POST",
        "/_fake/templates",
        Some(json!({"name": "new_menu", "language": "en_US", "body_params": 1, "header_format": "IMAGE"})),
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert_eq!(registered.body["template"]["header_format"], "IMAGE", "{}", registered.body);
    fake.state.register_template(TemplateSpec::new("our_shop", "en_US", 0).with_header(HeaderFormat::Location));
    let body = json!({"type": "body", "parameters": [{"type": "text", "text": "Ada"}]});
    let header = |param: Value| json!({"type": "header", "parameters": [param]});
    let image = json!({"type": "image", "image": {"link": "https://cdn.example/menu.png"}});

    let ok = template_send("+16505551234", "new_menu", json!([header(image.clone()), body]));
    assert_accepted(&send(&fake, &ok).await, "+16505551234");
    let place = json!({"type": "location", "location": {"latitude": 52.52, "longitude": 13.4, "name": "Shop"}});
    assert_accepted(
        &send(&fake, &template_send("+16505551234", "our_shop", json!([header(place)]))).await,
        "+16505551234",
    );

    let video = json!({"type": "video", "video": {"id": "123"}});
    let text = json!({"type": "text", "text": "Hi"});
    for (case, name, components) in [
        ("no header", "new_menu", json!([body])),
        ("a video for an image", "new_menu", json!([header(video), body])),
        ("a text header", "new_menu", json!([header(text), body])),
        ("two images", "new_menu", json!([{"type": "header", "parameters": [image, image]}, body])),
        ("no location", "our_shop", json!([])),
    ] {
        let answer = send(&fake, &template_send("+16505551234", name, components)).await;
        assert_error(&answer, 400, 132012);
        assert!(
            answer.details().contains(name) && answer.details().contains("header expects one"),
            "{case}: {}",
            answer.details()
        );
    }
    // A location without its coordinates is a missing parameter.
    let no_latitude = json!({"type": "location", "location": {"longitude": 13.4}});
    let answer = send(&fake, &template_send("+16505551234", "our_shop", json!([header(no_latitude)]))).await;
    assert_error(&answer, 400, 131008);
    assert_eq!(fake.state.accepted_to().len(), 2);
}

#[tokio::test]
async fn every_fault_number_but_the_timeout_answers_its_code_and_status() {
    let fake = start().await;
    let expected: &[(&str, u16, i64)] = &[
        ("+14155559001", 400, 130429),
        ("+14155559002", 400, 131026),
        ("+14155559003", 400, 131056),
        ("+14155559004", 404, 132001),
        ("+14155559005", 401, 190),
        ("+14155559006", 500, 131000),
        ("+14155559008", 400, 131050),
        ("+14155559009", 400, 131048),
        ("+14155559010", 403, 368),
    ];
    let errors: Vec<_> = FAULT_NUMBERS
        .iter()
        .filter_map(|(number, fault)| match fault {
            Fault::Error(code) => Some((*number, i64::from(*code))),
            Fault::Timeout | Fault::FailedStatus { .. } => None,
        })
        .collect();
    assert_eq!(errors, expected.iter().map(|(n, _, c)| (*n, *c)).collect::<Vec<_>>());

    for (number, status, code) in expected {
        let answer = send(&fake, &positional(number)).await;
        assert_error(&answer, *status, *code);
        // Without the `+` the number matches too.
        let answer = send(&fake, &positional(number.trim_start_matches('+'))).await;
        assert_error(&answer, *status, *code);
    }
    let answer = send(&fake, &positional("+14155559001")).await;
    assert_eq!(answer.body["error"]["message"], "(#130429) Rate limit hit");
    assert_eq!(answer.body["error"]["error_subcode"], 2494055);

    let requests = fake.state.requests();
    assert_eq!(requests.len(), expected.len() * 2 + 1);
    assert!(requests.iter().all(|r| r.wamid.is_none() && r.error_code.is_some()));
    assert!(fake.state.accepted_to().is_empty());
}

#[tokio::test]
async fn the_timeout_number_answers_only_after_timeout_ms() {
    let fake = start().await;
    let timeout_number = FAULT_NUMBERS.iter().find(|(_, f)| *f == Fault::Timeout).unwrap().0;
    assert_eq!(fake.state.config().timeout_ms, 30_000);
    let configured = control(&fake, "POST", "/_fake/config", Some(json!({"timeout_ms": 300}))).await;
    assert_eq!(configured.body["config"]["timeout_ms"], 300);
    assert_eq!(configured.body["config"]["latency_ms"], 0);

    // A caller that gives up sooner sees a timeout.
    let impatient = tokio::time::timeout(Duration::from_millis(100), send(&fake, &positional(timeout_number))).await;
    assert!(impatient.is_err());

    let started = Instant::now();
    let answer = send(&fake, &positional(timeout_number)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "answered after {waited:?}");
    assert_accepted(&answer, timeout_number);

    // Both were recorded on arrival, the abandoned one included.
    let requests = fake.state.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.status == 200 && r.wamid.is_some()));
}

#[tokio::test]
async fn base_latency_delays_every_send() {
    let fake = start().await;
    fake.state.set_config(FakeConfig { latency_ms: 150, ..fake.state.config() });
    let started = Instant::now();
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let started = Instant::now();
    assert_error(&send(&fake, &positional("+14155559002")).await, 400, 131026);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_control_fault_with_a_count_applies_exactly_count_times() {
    let fake = start().await;
    let injected =
        control(&fake, "POST", "/_fake/faults", Some(json!({"to": "+16505551234", "code": 130429, "count": 2}))).await;
    assert_eq!(injected.status, 200, "{}", injected.body);

    // Another number is not affected.
    assert_accepted(&send(&fake, &positional("+16505550000")).await, "+16505550000");
    assert_error(&send(&fake, &positional("+16505551234")).await, 400, 130429);
    let listed = control(&fake, "GET", "/_fake/faults", None).await;
    assert_eq!(listed.body["faults"][0]["count"], 1);
    // A malformed send does not use up the fault.
    let mut malformed = positional("+16505551234");
    malformed["type"] = json!("text");
    assert_error(&send(&fake, &malformed).await, 400, 100);
    assert_error(&send(&fake, &positional("16505551234")).await, 400, 130429);
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    let listed = control(&fake, "GET", "/_fake/faults", None).await;
    assert_eq!(listed.body["faults"], json!([]));
    assert_eq!(fake.state.accepted_to(), ["+16505550000", "+16505551234", "+16505551234"]);
}

#[tokio::test]
async fn control_faults_without_to_or_count_apply_to_every_send_until_cleared() {
    let fake = start().await;
    // Injected faults come before the fault numbers; unknown codes answer 400.
    control(&fake, "POST", "/_fake/faults", Some(json!({"code": 2}))).await;
    assert_error(&send(&fake, &positional("+16505551234")).await, 503, 2);
    assert_error(&send(&fake, &positional("+14155559001")).await, 503, 2);
    let cleared = control(&fake, "DELETE", "/_fake/faults", None).await;
    assert_eq!(cleared.body["cleared"], 1);
    assert_error(&send(&fake, &positional("+14155559001")).await, 400, 130429);

    control(&fake, "POST", "/_fake/faults", Some(json!({"code": 424242, "count": 1}))).await;
    let answer = send(&fake, &positional("+16505551234")).await;
    assert_error(&answer, 400, 424242);
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");

    // Invalid fault rules are refused.
    for bad in [json!({"to": "nope", "code": 2}), json!({"code": 2, "count": 0}), json!({"code": 0}), json!({"cod": 2})]
    {
        let answer = control(&fake, "POST", "/_fake/faults", Some(bad.clone())).await;
        assert_error(&answer, 400, 100);
    }
    assert!(fake.state.faults().is_empty());
}

#[tokio::test]
async fn rust_fault_api_with_delays() {
    let fake = start().await;
    // Code 0 only delays, then the send is handled as usual.
    fake.state.inject(Injection::delay(200).to("+16505551234").times(1));
    let started = Instant::now();
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    assert!(started.elapsed() >= Duration::from_millis(200));

    fake.state.inject(Injection::error(131056).to("16505551234").delayed(150).times(1));
    let started = Instant::now();
    assert_error(&send(&fake, &positional("+16505551234")).await, 400, 131056);
    assert!(started.elapsed() >= Duration::from_millis(150));

    fake.state.inject(Injection::error(368));
    assert_error(&send(&fake, &positional("+16505551234")).await, 403, 368);
    assert_eq!(fake.state.faults(), [Injection::error(368)]);
    assert_eq!(fake.state.clear_faults(), 1);
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
}

#[tokio::test]
async fn recorded_requests_are_listed_in_arrival_order_and_cleared() {
    let fake = start().await;
    let numbers = ["+16505550001", "+14155559002", "+16505550003"];
    for number in numbers {
        send(&fake, &positional(number)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    call(fake.addr, "POST", SEND, Some(TOKEN), Some("not json")).await;

    let listed = control(&fake, "GET", "/_fake/requests", None).await;
    assert_eq!(listed.status, 200);
    let requests = listed.body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 4);
    let tos: Vec<_> = requests.iter().map(|r| r["to"].clone()).collect();
    assert_eq!(tos, [json!(numbers[0]), json!(numbers[1]), json!(numbers[2]), Value::Null]);
    let at: Vec<u64> = requests.iter().map(|r| r["at_ms"].as_u64().unwrap()).collect();
    assert!(at[0] < at[1] && at[1] < at[2] && at[2] <= at[3], "{at:?}");
    let seq: Vec<u64> = requests.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seq, [1, 2, 3, 4]);
    assert_eq!(requests[1]["status"], 400);
    assert_eq!(requests[1]["error_code"], 131026);
    assert_eq!(requests[1]["wamid"], Value::Null);
    assert_eq!(requests[0]["status"], 200);
    assert!(requests[0]["wamid"].as_str().unwrap().starts_with("wamid."));
    assert_eq!(requests[0]["token"], TOKEN);
    assert_eq!(requests[0]["phone_number_id"], PNID);
    assert_eq!(requests[0]["body"]["template"]["name"], "holiday_offer");
    assert_eq!(requests[3]["body"], Value::Null);
    assert_eq!(requests[3]["error_code"], 100);

    let cleared = control(&fake, "DELETE", "/_fake/requests", None).await;
    assert_eq!(cleared.body["cleared"], 4);
    let listed = control(&fake, "GET", "/_fake/requests", None).await;
    assert_eq!(listed.body["requests"], json!([]));
    assert!(fake.state.requests().is_empty());

    send(&fake, &positional("+16505550009")).await;
    assert_eq!(fake.state.accepted_to(), ["+16505550009"]);
    assert_eq!(fake.state.clear(), 1);
    assert!(fake.state.accepted_to().is_empty());
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_the_error_envelope() {
    let fake = start().await;
    let answer = control(&fake, "GET", "/v21.0/106540352242922/nothing", None).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["error"]["type"], "OAuthException");
    assert!(answer.body["error"]["code"].is_i64());

    let answer = call(fake.addr, "GET", SEND, Some(TOKEN), None).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.body["error"]["code"], 100);
    let answer = control(&fake, "PUT", "/_fake/requests", Some(json!({}))).await;
    assert_eq!(answer.status, 405);

    // A malformed version is refused (and recorded as a send).
    let body = positional("+16505551234").to_string();
    let answer = call(fake.addr, "POST", "/latest/106540352242922/messages", Some(TOKEN), Some(&body)).await;
    assert_error(&answer, 400, 100);
    assert_eq!(fake.state.requests().len(), 1);
}

#[tokio::test]
async fn reset_forgets_accounts_templates_faults_config_and_requests() {
    let fake = start().await;
    fake.state.register_account(PNID, "secret");
    fake.state.register_template(TemplateSpec::new("holiday_offer", "en_US", 5));
    fake.state.inject(Injection::error(2));
    fake.state.set_config(FakeConfig { latency_ms: 10, timeout_ms: 10, ..FakeConfig::default() });
    assert_error(&send(&fake, &positional("+16505551234")).await, 401, 190);

    let answer = control(&fake, "POST", "/_fake/reset", None).await;
    assert_eq!(answer.status, 200);
    assert!(fake.state.requests().is_empty());
    assert_eq!(fake.state.config(), FakeConfig::default());
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
}

// ---- status webhooks ----

const SECRET: &str = "test-app-secret";

/// One POST the receiver took.
#[derive(Clone)]
struct Received {
    at: Instant,
    raw: Bytes,
    signature: Option<String>,
    content_type: Option<String>,
    json: Value,
}

impl Received {
    fn signed(&self) -> bool {
        self.signature.as_deref().is_some_and(|sig| signature::verify(SECRET.as_bytes(), &self.raw, sig))
    }

    /// Every status object of the payload, in payload order.
    fn statuses(&self) -> Vec<Value> {
        let mut statuses = vec![];
        for entry in self.json["entry"].as_array().unwrap() {
            for change in entry["changes"].as_array().unwrap() {
                statuses.extend(change["value"]["statuses"].as_array().cloned().unwrap_or_default());
            }
        }
        statuses
    }
}

/// A webhook receiver on an ephemeral port: records every POST with its raw body and headers,
/// and answers 500 to the first `failures` of them, 200 after, each `delay_ms` after it came.
/// It counts the POSTs it holds at once.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    failures: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            failures: Arc::new(AtomicUsize::new(failures)),
            delay_ms: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        };
        let app = axum::Router::new().fallback(Receiver::take).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    async fn take(State(receiver): State<Receiver>, headers: HeaderMap, raw: Bytes) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        receiver.seen.lock().unwrap().push(Received {
            at: Instant::now(),
            signature: header("x-hub-signature-256"),
            content_type: header("content-type"),
            json: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            raw,
        });
        let fail = receiver.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let holding = receiver.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        receiver.most_in_flight.fetch_max(holding, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(receiver.delay_ms.load(Ordering::SeqCst))).await;
        receiver.in_flight.fetch_sub(1, Ordering::SeqCst);
        if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
    }

    fn url(&self) -> String {
        format!("http://{}/webhooks/whatsapp", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// The `status` of every status received for `wamid`, in arrival order.
    fn statuses_of(&self, wamid: &str) -> Vec<String> {
        self.received()
            .iter()
            .flat_map(Received::statuses)
            .filter(|s| s["id"] == wamid)
            .map(|s| s["status"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Webhooks to `receiver`, signed with [`SECRET`], with test-sized delays.
fn webhooks_to(receiver: &Receiver) -> FakeConfig {
    FakeConfig {
        webhook_url: Some(receiver.url()),
        app_secret: Some(SECRET.into()),
        sent_delay_ms: 20,
        delivered_delay_ms: 60,
        read_delay_ms: Some(100),
        batch_window_ms: 10,
        retry_backoff_ms: 20,
        ..FakeConfig::default()
    }
}

async fn settle(fake: &Fake) {
    assert!(fake.state.wait_for_webhooks_idle(Duration::from_secs(10)).await, "webhooks still pending");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn an_accepted_send_posts_signed_sent_delivered_and_read_in_order() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(FakeConfig {
        sent_delay_ms: 40,
        delivered_delay_ms: 120,
        read_delay_ms: Some(200),
        batch_window_ms: 20,
        ..webhooks_to(&receiver)
    });
    let before = unix_now();
    let mut body = positional("+16505551234");
    body["biz_opaque_callback_data"] = json!("campaign-1/recipient-7");
    let answered = Instant::now();
    let wamid = assert_accepted(&send(&fake, &body).await, "+16505551234");
    assert!(receiver.received().is_empty(), "the answer comes before any webhook");
    assert!(!fake.state.webhooks_idle());
    settle(&fake).await;
    let after = unix_now();

    let received = receiver.received();
    assert_eq!(received.len(), 3, "one POST per status: they fall due 80 ms apart");
    let mut last_timestamp = 0;
    for (post, (name, delay_ms)) in received.iter().zip([("sent", 40), ("delivered", 120), ("read", 200)]) {
        assert!(post.signed(), "{name}: the signature must match the raw bytes");
        assert_eq!(post.content_type.as_deref(), Some("application/json"));
        assert!(post.at.duration_since(answered) >= Duration::from_millis(delay_ms), "{name} came early");
        let payload = &post.json;
        assert_eq!(payload["object"], "whatsapp_business_account");
        assert_eq!(payload["entry"].as_array().unwrap().len(), 1);
        assert_eq!(payload["entry"][0]["id"], WABA_ID);
        let change = &payload["entry"][0]["changes"][0];
        assert_eq!(change["field"], "messages");
        assert_eq!(change["value"]["messaging_product"], "whatsapp");
        assert_eq!(
            change["value"]["metadata"],
            json!({"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PNID})
        );
        let statuses = change["value"]["statuses"].as_array().unwrap();
        assert_eq!(statuses.len(), 1);
        let status = &statuses[0];
        assert_eq!(status["id"], wamid.as_str());
        assert_eq!(status["status"], name);
        assert_eq!(status["recipient_id"], "16505551234");
        assert_eq!(status["biz_opaque_callback_data"], "campaign-1/recipient-7");
        let timestamp: u64 = status["timestamp"].as_str().expect("a string").parse().unwrap();
        assert!((before..=after).contains(&timestamp) && timestamp >= last_timestamp, "{timestamp}");
        last_timestamp = timestamp;
        let billed = name != "read";
        assert_eq!(status["pricing"]["billable"].as_bool(), billed.then_some(true), "{name}");
        assert_eq!(status["conversation"]["origin"]["type"].as_str(), billed.then_some("marketing"), "{name}");
        assert_eq!(status["conversation"]["expiration_timestamp"].is_string(), name == "sent");
        assert!(status.get("errors").is_none());
    }
    let conversation = |i: usize| received[i].statuses()[0]["conversation"]["id"].clone();
    assert_eq!(conversation(0), conversation(1), "sent and delivered share the conversation");

    // The fake recorded each POST, in Rust and over HTTP.
    let posts = fake.state.webhooks();
    let pairs: Vec<_> = posts.iter().flat_map(|p| p.statuses.clone()).collect();
    let expected: Vec<_> = ["sent", "delivered", "read"].map(|s| (wamid.clone(), s.to_owned())).into();
    assert_eq!(pairs, expected);
    assert!(posts.iter().all(|p| p.attempt == 1 && p.status == Some(200) && p.error.is_none()));
    assert_eq!(posts.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(posts[0].payload, received[0].json);
    assert_eq!(posts[0].url, receiver.url());
    let listed = control(&fake, "GET", "/_fake/webhooks", None).await;
    assert_eq!(listed.body["webhooks"].as_array().unwrap().len(), 3);
    assert_eq!(listed.body["webhooks"][2]["statuses"], json!([[wamid, "read"]]));
    assert_eq!(listed.body["webhooks"][2]["status"], 200);
}

#[tokio::test]
async fn without_a_webhook_url_nothing_is_posted_and_without_a_secret_nothing_is_signed() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    assert_eq!(fake.state.config().webhook_url, None);
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    assert!(fake.state.webhooks_idle(), "nothing is queued without a URL");

    fake.state.set_config(FakeConfig { app_secret: None, ..webhooks_to(&receiver) });
    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    let received = receiver.received();
    assert_eq!(receiver.statuses_of(&wamid), ["sent", "delivered", "read"]);
    assert!(received.iter().all(|r| r.signature.is_none()));
    assert_eq!(fake.state.webhooks().len(), received.len());
}

#[tokio::test]
async fn webhook_config_is_set_through_the_control_api_and_a_null_read_delay_means_never_read() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    let patch = json!({
        "webhook_url": receiver.url(), "app_secret": SECRET, "sent_delay_ms": 10, "delivered_delay_ms": 30,
        "read_delay_ms": null, "batch_window_ms": 5,
    });
    let configured = control(&fake, "POST", "/_fake/config", Some(patch)).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    let config = &configured.body["config"];
    assert_eq!(config["webhook_url"], receiver.url());
    assert_eq!(config["read_delay_ms"], Value::Null);
    assert_eq!(config["duplicate"], false);
    assert_eq!(config["timeout_ms"], 30_000, "fields not given keep their values");
    assert_eq!(control(&fake, "GET", "/_fake/config", None).await.body["config"], *config);
    let expected = FakeConfig {
        sent_delay_ms: 10,
        delivered_delay_ms: 30,
        read_delay_ms: None,
        batch_window_ms: 5,
        retry_backoff_ms: 200,
        ..webhooks_to(&receiver)
    };
    assert_eq!(fake.state.config(), expected);

    for bad in [json!({"webhook_url": "not a url"}), json!({"read_delay": 5}), json!({"shuffle": "yes"})] {
        assert_error(&control(&fake, "POST", "/_fake/config", Some(bad)).await, 400, 100);
    }
    assert_eq!(fake.state.config(), expected, "a refused patch changes nothing");

    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    assert_eq!(receiver.statuses_of(&wamid), ["sent", "delivered"]);
    assert!(receiver.received().iter().all(Received::signed));
}

#[tokio::test]
async fn shuffle_posts_the_statuses_of_a_message_out_of_order() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(FakeConfig { shuffle: true, ..webhooks_to(&receiver) });
    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;

    let arrived = receiver.statuses_of(&wamid);
    assert_ne!(arrived, ["sent", "delivered", "read"]);
    let mut sorted = arrived.clone();
    sorted.sort();
    assert_eq!(sorted, ["delivered", "read", "sent"], "each status once: {arrived:?}");
    // Each at its own delay: three posts, or fewer when a busy machine woke the poster late
    // and it took statuses that were due together.
    let posts = receiver.received().len();
    assert!((1..=3).contains(&posts), "{posts} posts");
}

#[tokio::test]
async fn duplicate_posts_every_status_twice() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(FakeConfig { duplicate: true, ..webhooks_to(&receiver) });
    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;

    let statuses: Vec<Value> = receiver.received().iter().flat_map(Received::statuses).collect();
    assert_eq!(statuses.len(), 6);
    for name in ["sent", "delivered", "read"] {
        let copies: Vec<&Value> = statuses.iter().filter(|s| s["status"] == name).collect();
        assert_eq!(copies.len(), 2, "{name}");
        assert_eq!(copies[0], copies[1], "{name}: the copy is the same status");
        assert_eq!(copies[0]["id"], wamid.as_str());
    }
    assert!(receiver.received().iter().all(Received::signed));
}

#[tokio::test]
async fn async_failures_are_accepted_then_reported_as_failed_statuses() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(webhooks_to(&receiver));
    let undeliverable = assert_accepted(&send(&fake, &positional("+14155559011")).await, "+14155559011");
    let opted_out = assert_accepted(&send(&fake, &positional("14155559012")).await, "14155559012");

    let rule = json!({"to": "+16505551234", "code": 131049, "count": 1, "webhook": true});
    let injected = control(&fake, "POST", "/_fake/faults", Some(rule)).await;
    assert_eq!(injected.status, 200, "{}", injected.body);
    assert_eq!(injected.body["fault"]["webhook"], true);
    let capped = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    let normal = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    fake.state.inject(Injection::error(131026).to("+16505550000").by_webhook());
    let injected_in_rust = assert_accepted(&send(&fake, &positional("+16505550000")).await, "+16505550000");
    settle(&fake).await;

    assert_eq!(receiver.statuses_of(&undeliverable), ["sent", "failed"]);
    assert_eq!(receiver.statuses_of(&opted_out), ["failed"]);
    assert_eq!(receiver.statuses_of(&capped), ["failed"]);
    assert_eq!(receiver.statuses_of(&injected_in_rust), ["failed"]);
    assert_eq!(receiver.statuses_of(&normal), ["sent", "delivered", "read"], "the rule was used up");

    let failed: HashMap<String, Value> = receiver
        .received()
        .iter()
        .flat_map(Received::statuses)
        .filter(|s| s["status"] == "failed")
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s))
        .collect();
    for (wamid, code, recipient) in [
        (&undeliverable, 131026, "14155559011"),
        (&opted_out, 131050, "14155559012"),
        (&capped, 131049, "16505551234"),
        (&injected_in_rust, 131026, "16505550000"),
    ] {
        let status = &failed[wamid.as_str()];
        assert_eq!(status["recipient_id"], recipient);
        let errors = status["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["code"], code);
        assert!(errors[0]["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(errors[0]["message"].is_string());
        assert!(errors[0]["error_data"]["details"].is_string());
        assert!(status.get("pricing").is_none());
    }
    assert_eq!(failed[undeliverable.as_str()]["errors"][0]["title"], "Message undeliverable");
    assert!(failed[opted_out.as_str()]["errors"][0]["title"].as_str().unwrap().contains("marketing messages"));

    // A webhook rule needs a code to report.
    let bad = control(&fake, "POST", "/_fake/faults", Some(json!({"code": 0, "delay_ms": 5, "webhook": true}))).await;
    assert_error(&bad, 400, 100);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_back_off_then_given_up() {
    let fake = start().await;
    let receiver = Receiver::start(2).await;
    // sent and delivered fall due together: one POST of two statuses.
    fake.state.set_config(FakeConfig {
        sent_delay_ms: 10,
        delivered_delay_ms: 10,
        read_delay_ms: None,
        retry_backoff_ms: 30,
        ..webhooks_to(&receiver)
    });
    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;

    let received = receiver.received();
    assert_eq!(received.len(), 3, "500, 500, then 200");
    assert!(received.iter().all(|r| r.raw == received[0].raw && r.signed()), "the same signed bytes each time");
    assert!(received[1].at - received[0].at >= Duration::from_millis(30));
    assert!(received[2].at - received[1].at >= Duration::from_millis(60), "the wait doubles");
    let posts = fake.state.webhooks();
    let attempts: Vec<_> = posts.iter().map(|p| (p.attempt, p.status)).collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    let pairs = [(wamid.clone(), "sent".to_owned()), (wamid.clone(), "delivered".to_owned())];
    assert!(posts.iter().all(|p| p.statuses == pairs));

    // Nobody listening: every attempt fails to connect, and it stops after WEBHOOK_ATTEMPTS.
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap().local_addr().unwrap();
    fake.state.clear_webhooks();
    fake.state.set_config(FakeConfig {
        webhook_url: Some(format!("http://{closed}/webhooks")),
        retry_backoff_ms: 5,
        ..fake.state.config()
    });
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    let posts = fake.state.webhooks();
    assert_eq!(posts.iter().map(|p| p.attempt).collect::<Vec<_>>(), (1..=WEBHOOK_ATTEMPTS).collect::<Vec<_>>());
    assert!(posts.iter().all(|p| p.status.is_none() && p.error.is_some() && !p.succeeded()));
}

#[tokio::test]
async fn a_posted_payload_is_escaped_like_meta_and_signed_over_those_bytes() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "contacts": [{"profile": {"name": "Zoë 😀"}, "wa_id": "16505551234"}],
        }}]}],
    });
    // Without a URL there is nowhere to post.
    assert_error(&control(&fake, "POST", "/_fake/webhooks", Some(payload.clone())).await, 400, 100);

    fake.state.set_config(webhooks_to(&receiver));
    let answer = control(&fake, "POST", "/_fake/webhooks", Some(payload.clone())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["webhook"]["status"], 200, "the receiver's answer");
    assert_eq!(answer.body["webhook"]["attempt"], 1);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let raw = std::str::from_utf8(&received[0].raw).unwrap();
    assert!(raw.is_ascii(), "{raw}");
    assert!(raw.contains(r#""name":"Zo\u00eb \ud83d\ude00""#), "{raw}");
    assert!(received[0].signed());
    assert_eq!(received[0].json, payload, "the same JSON once unescaped");
    // A receiver that re-serialises before checking gets another signature.
    let reserialised = payload.to_string();
    assert!(!signature::verify(SECRET.as_bytes(), reserialised.as_bytes(), received[0].signature.as_deref().unwrap()));

    // A receiver's failure is answered too (one attempt, no retry).
    receiver.failures.store(1, Ordering::SeqCst);
    let answer = control(&fake, "POST", "/_fake/webhooks", Some(json!({"hello": "wörld"}))).await;
    assert_eq!(answer.body["webhook"]["status"], 500);
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(fake.state.webhooks().len(), 2);
}

#[tokio::test]
async fn an_opt_out_posts_a_user_preferences_webhook() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(webhooks_to(&receiver));
    let before = unix_now();
    let answer =
        control(&fake, "POST", "/_fake/opt-out", Some(json!({"to": "+16505551234", "phone_number_id": PNID}))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["webhook"]["status"], 200);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].signed());
    let raw = std::str::from_utf8(&received[0].raw).unwrap();
    assert!(raw.contains(r#""name":"Zo\u00eb""#), "the default profile name is escaped: {raw}");
    let payload = &received[0].json;
    assert_eq!(payload["object"], "whatsapp_business_account");
    assert_eq!(payload["entry"][0]["id"], WABA_ID);
    let change = &payload["entry"][0]["changes"][0];
    assert_eq!(change["field"], "user_preferences");
    assert_eq!(change["value"]["messaging_product"], "whatsapp");
    assert_eq!(change["value"]["metadata"]["phone_number_id"], PNID);
    assert_eq!(change["value"]["contacts"], json!([{"wa_id": "16505551234", "profile": {"name": "Zoë"}}]));
    let preference = &change["value"]["user_preferences"][0];
    assert_eq!(preference["wa_id"], "16505551234");
    assert_eq!(preference["detail"], "User requested to stop marketing messages");
    assert_eq!(preference["category"], "marketing_messages");
    assert_eq!(preference["value"], "stop");
    let timestamp = preference["timestamp"].as_u64().expect("a number");
    assert!((before..=unix_now()).contains(&timestamp));

    let named = json!({"to": "16505550000", "phone_number_id": PNID, "name": "Ada"});
    control(&fake, "POST", "/_fake/opt-out", Some(named)).await;
    assert_eq!(receiver.received()[1].json["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"], "Ada");

    for bad in [json!({"to": "nope", "phone_number_id": PNID}), json!({"to": "+16505551234"})] {
        assert_error(&control(&fake, "POST", "/_fake/opt-out", Some(bad)).await, 400, 100);
    }
}

#[tokio::test]
async fn statuses_falling_due_together_share_a_post_with_a_change_per_number() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(FakeConfig {
        sent_delay_ms: 150,
        delivered_delay_ms: 150,
        read_delay_ms: None,
        batch_window_ms: 300,
        ..webhooks_to(&receiver)
    });
    let other_pnid = "206540352242922";
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let addr = fake.addr;
            let path = if i % 2 == 0 { SEND.to_owned() } else { format!("/v21.0/{other_pnid}/messages") };
            let body = positional(&format!("+165055510{i:02}")).to_string();
            tokio::spawn(async move { call(addr, "POST", &path, Some(TOKEN), Some(&body)).await })
        })
        .collect();
    for handle in sends {
        assert_eq!(handle.await.unwrap().status, 200);
    }
    settle(&fake).await;

    let pnid_of: HashMap<String, String> =
        fake.state.requests().into_iter().map(|r| (r.wamid.unwrap(), r.phone_number_id)).collect();
    let received = receiver.received();
    let statuses: Vec<Value> = received.iter().flat_map(Received::statuses).collect();
    assert_eq!(statuses.len(), 80, "sent and delivered for each of 40 messages");
    let mut pairs: Vec<_> = statuses.iter().map(|s| (s["id"].to_string(), s["status"].to_string())).collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 80, "none lost, none twice");
    assert!(received.len() <= 4, "{} POSTs for 80 statuses due within 300 ms", received.len());

    let largest = received.iter().max_by_key(|r| r.statuses().len()).unwrap();
    assert!(largest.statuses().len() >= 20);
    let changes = largest.json["entry"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "one change per phone number id");
    for change in changes {
        let pnid = change["value"]["metadata"]["phone_number_id"].as_str().unwrap();
        for status in change["value"]["statuses"].as_array().unwrap() {
            assert_eq!(pnid_of[status["id"].as_str().unwrap()], pnid);
        }
    }
    assert!(received.iter().all(Received::signed));
}

#[tokio::test]
async fn clear_and_reset_forget_webhooks_and_reset_drops_the_waiting_ones() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(webhooks_to(&receiver));
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    assert_eq!(fake.state.webhooks().len(), 3);
    let cleared = control(&fake, "DELETE", "/_fake/webhooks", None).await;
    assert_eq!(cleared.body["cleared"], 3);
    assert!(fake.state.webhooks().is_empty());

    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    assert_eq!(fake.state.clear(), 2, "clear forgets requests…");
    assert!(fake.state.webhooks().is_empty(), "…and webhooks");

    // A reset drops what is waiting: nothing more arrives.
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    let before = receiver.received().len();
    control(&fake, "POST", "/_fake/reset", None).await;
    assert!(fake.state.webhooks_idle());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), before);
    assert!(fake.state.webhooks().is_empty());
    assert_eq!(fake.state.config().webhook_url, None);
}

#[tokio::test]
async fn one_status_per_post_posts_hundreds_a_second_side_by_side_and_drops_none() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    // A receiver that holds every POST 50 ms: one after the other, 600 would take 30 s.
    receiver.delay_ms.store(50, Ordering::SeqCst);
    let configured = control(&fake, "POST", "/_fake/config", Some(json!({"statuses_per_post": 1}))).await;
    assert_eq!(configured.body["config"]["statuses_per_post"], 1, "{}", configured.body);
    fake.state.set_config(FakeConfig {
        sent_delay_ms: 20,
        delivered_delay_ms: 60,
        read_delay_ms: None,
        statuses_per_post: 1,
        ..webhooks_to(&receiver)
    });

    // 300 messages in one second, 30 every 100 ms: 600 status POSTs a second.
    let started = Instant::now();
    let mut sends = Vec::new();
    for wave in 0..10 {
        tokio::time::sleep_until((started + Duration::from_millis(wave * 100)).into()).await;
        for i in 0..30 {
            let addr = fake.addr;
            let body = positional(&format!("+1650555{:04}", wave * 30 + i)).to_string();
            sends.push(tokio::spawn(async move { call(addr, "POST", SEND, Some(TOKEN), Some(&body)).await }));
        }
    }
    let mut wamids = Vec::new();
    for handle in sends {
        let answer = handle.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        wamids.push(answer.body["messages"][0]["id"].as_str().unwrap().to_owned());
    }
    assert!(fake.state.wait_for_webhooks_idle(Duration::from_secs(20)).await, "webhooks still pending");
    let took = started.elapsed();

    let received = receiver.received();
    assert_eq!(received.len(), 600, "one POST per status");
    assert!(received.iter().all(|r| r.statuses().len() == 1 && r.signed()));
    let mut pairs: Vec<(String, String)> = received
        .iter()
        .flat_map(Received::statuses)
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
        .collect();
    pairs.sort();
    let mut expected: Vec<(String, String)> =
        wamids.iter().flat_map(|w| [(w.clone(), "sent".to_owned()), (w.clone(), "delivered".to_owned())]).collect();
    expected.sort();
    assert_eq!(pairs, expected, "every status once, none lost");

    let posts = fake.state.webhooks();
    assert_eq!(posts.len(), 600);
    assert!(posts.iter().all(|p| p.attempt == 1 && p.succeeded() && p.statuses.len() == 1));
    let most = receiver.most_in_flight.load(Ordering::SeqCst);
    assert!(most >= 10, "at most {most} POSTs at once: they are posted one after another");
    assert!(took < Duration::from_secs(6), "600 POSTs of 50 ms took {took:?}");
}

#[tokio::test]
async fn statuses_per_post_caps_a_batch_and_is_validated() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    // 10 messages whose sent and delivered all fall due in one window: 20 statuses, 7 a POST.
    fake.state.set_config(FakeConfig {
        sent_delay_ms: 100,
        delivered_delay_ms: 100,
        read_delay_ms: None,
        batch_window_ms: 200,
        statuses_per_post: 7,
        ..webhooks_to(&receiver)
    });
    for i in 0..10 {
        assert_eq!(send(&fake, &positional(&format!("+165055500{i:02}"))).await.status, 200);
    }
    settle(&fake).await;
    let mut sizes: Vec<usize> = receiver.received().iter().map(|r| r.statuses().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [6, 7, 7]);

    assert_eq!(FakeConfig::default().statuses_per_post, MAX_STATUSES_PER_POST);
    let before = fake.state.config();
    for bad in [json!({"statuses_per_post": 0}), json!({"statuses_per_post": 1001})] {
        let answer = control(&fake, "POST", "/_fake/config", Some(bad.clone())).await;
        assert_error(&answer, 400, 100);
        assert!(answer.details().contains("statuses_per_post"), "{bad}: {}", answer.details());
    }
    assert_error(&control(&fake, "POST", "/_fake/config", Some(json!({"statuses_per_post": -1}))).await, 400, 100);
    assert_eq!(fake.state.config(), before, "a refused patch changes nothing");
    let answer = control(&fake, "POST", "/_fake/config", Some(json!({"statuses_per_post": 1000}))).await;
    assert_eq!(answer.body["config"]["statuses_per_post"], 1000);
}

// ---- latency jitter ----

#[tokio::test]
async fn jittered_latency_is_drawn_per_send_and_concurrent_sends_wait_side_by_side() {
    let fake = start().await;
    let configured =
        control(&fake, "POST", "/_fake/config", Some(json!({"latency_ms": 200, "latency_jitter_ms": 150}))).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    assert_eq!(configured.body["config"]["latency_ms"], 200);
    assert_eq!(configured.body["config"]["latency_jitter_ms"], 150);
    assert_eq!((fake.state.config().latency_ms, fake.state.config().latency_jitter_ms), (200, 150));

    // 40 sends at once, each answered after 50 to 350 ms: one after another they would take
    // at least 2 s.
    let started = Instant::now();
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let addr = fake.addr;
            let body = positional(&format!("+165055510{i:02}")).to_string();
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer = call(addr, "POST", SEND, Some(TOKEN), Some(&body)).await;
                (answer.status, sent.elapsed())
            })
        })
        .collect();
    let mut waits = Vec::new();
    for handle in sends {
        let (status, waited) = handle.await.unwrap();
        assert_eq!(status, 200);
        waits.push(waited);
    }
    let took = started.elapsed();
    let shortest = waits.iter().min().copied().unwrap_or_default();
    let longest = waits.iter().max().copied().unwrap_or_default();
    assert!(shortest >= Duration::from_millis(50), "answered after {shortest:?}, below 200 - 150 ms");
    assert!(longest - shortest >= Duration::from_millis(100), "waits {shortest:?} to {longest:?}: not drawn per send");
    assert!(took < Duration::from_millis(1500), "40 sends took {took:?}: answered one after another");
    assert_eq!(fake.state.requests().len(), 40);
    assert!(fake.state.requests().iter().all(|r| r.accepted()));

    // Through the Rust API as well; a jitter above the latency bottoms out at 0.
    fake.state.set_config(FakeConfig { latency_ms: 20, latency_jitter_ms: 40, ..FakeConfig::default() });
    let started = Instant::now();
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn latency_and_statuses_per_post_come_from_the_environment() {
    let vars = |pairs: Vec<(&'static str, String)>| {
        move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    };
    let config = FakeConfig::from_vars(vars(vec![
        ("FAKE_LATENCY_MS", "200".into()),
        ("FAKE_LATENCY_JITTER_MS", " 100 ".into()),
        ("FAKE_WEBHOOK_STATUSES_PER_POST", "1".into()),
    ]))
    .unwrap();
    assert_eq!((config.latency_ms, config.latency_jitter_ms, config.statuses_per_post), (200, 100, 1));
    let config = FakeConfig::from_vars(vars(vec![])).unwrap();
    assert_eq!((config.latency_ms, config.latency_jitter_ms, config.statuses_per_post), (0, 0, MAX_STATUSES_PER_POST));
    let config = FakeConfig::from_vars(vars(vec![("FAKE_LATENCY_JITTER_MS", MAX_DELAY_MS.to_string())])).unwrap();
    assert_eq!(config.latency_jitter_ms, MAX_DELAY_MS, "a day is allowed");

    let over = (MAX_DELAY_MS + 1).to_string();
    for (name, value) in [
        ("FAKE_LATENCY_MS", "fast".to_owned()),
        ("FAKE_LATENCY_MS", over.clone()),
        ("FAKE_LATENCY_JITTER_MS", "-5".to_owned()),
        ("FAKE_LATENCY_JITTER_MS", over.clone()),
        ("FAKE_WEBHOOK_STATUSES_PER_POST", "0".to_owned()),
        ("FAKE_WEBHOOK_STATUSES_PER_POST", "1001".to_owned()),
        ("FAKE_WEBHOOK_STATUSES_PER_POST", "many".to_owned()),
    ] {
        let error = FakeConfig::from_vars(vars(vec![(name, value.clone())])).unwrap_err();
        assert!(error.contains(name), "{name}={value}: {error}");
    }

    // The control API caps them too.
    let fake = start().await;
    for bad in [json!({"latency_ms": MAX_DELAY_MS + 1}), json!({"latency_jitter_ms": MAX_DELAY_MS + 1})] {
        let answer = control(&fake, "POST", "/_fake/config", Some(bad.clone())).await;
        assert_error(&answer, 400, 100);
        assert!(answer.details().contains("latency"), "{bad}: {}", answer.details());
    }
    assert_eq!(fake.state.config(), FakeConfig::default());
}

// ---- ambiguous answers ----

/// What a real HTTP client gets for a send: status, content type and body, or its error.
async fn send_with_reqwest(fake: &Fake, to: &str) -> Result<(u16, Option<String>, Bytes), reqwest::Error> {
    let response = reqwest::Client::new()
        .post(format!("http://{}{SEND}", fake.addr))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(positional(to).to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((status, content_type, response.bytes().await?))
}

/// The one request recorded, not accepted, with this status.
fn assert_recorded_once_unaccepted(fake: &Fake, to: &str, status: u16) {
    let requests = fake.state.requests();
    assert_eq!(requests.len(), 1, "recorded once");
    let r = &requests[0];
    assert_eq!((r.to.as_deref(), r.status, r.error_code, r.wamid.as_deref()), (Some(to), status, None, None));
    assert!(!r.accepted());
    assert_eq!(r.body, positional(to), "the whole body was read");
    assert!(fake.state.accepted_to().is_empty());
}

#[tokio::test]
async fn a_no_wamid_answer_is_200_without_a_message_id() {
    let fake = start().await;
    fake.state.inject(Injection::answer(FakeAnswer::NoWamid).to("+16505551234").times(1));
    let (status, content_type, body) = send_with_reqwest(&fake, "+16505551234").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
               "messages": []})
    );
    assert!(body["messages"][0]["id"].is_null());
    assert_recorded_once_unaccepted(&fake, "+16505551234", 200);

    // times(1): the rule is used up, and the next send is accepted as usual.
    assert!(fake.state.faults().is_empty());
    let (status, _, body) = send_with_reqwest(&fake, "+16505551234").await.unwrap();
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["messages"][0]["id"].as_str().is_some_and(|id| id.starts_with("wamid.")));
}

#[tokio::test]
async fn a_gateway_502_answer_is_an_html_page() {
    let fake = start().await;
    // Through the control API: no code needed with an answer.
    let injected = control(&fake, "POST", "/_fake/faults", Some(json!({"answer": "gateway_502", "count": 1}))).await;
    assert_eq!(injected.status, 200, "{}", injected.body);
    assert_eq!(injected.body["fault"]["answer"], "gateway_502");
    assert_eq!(injected.body["fault"]["code"], 0);
    assert_eq!(fake.state.faults(), [Injection::answer(FakeAnswer::Gateway502).times(1)]);

    let (status, content_type, body) = send_with_reqwest(&fake, "+16505551234").await.unwrap();
    assert_eq!(status, 502);
    assert_eq!(content_type.as_deref(), Some("text/html"));
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "not JSON");
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains("<title>502 Bad Gateway</title>"), "{html}");
    assert_recorded_once_unaccepted(&fake, "+16505551234", 502);
}

#[tokio::test]
async fn a_gateway_504_answer_is_an_html_page_after_the_delay() {
    let fake = start().await;
    fake.state.inject(Injection::answer(FakeAnswer::Gateway504).to("16505551234").delayed(150).times(1));
    let started = Instant::now();
    let (status, content_type, body) = send_with_reqwest(&fake, "+16505551234").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, 504);
    assert_eq!(content_type.as_deref(), Some("text/html"));
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "not JSON");
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains("504 Gateway Time-out"), "{html}");
    assert_recorded_once_unaccepted(&fake, "+16505551234", 504);
}

#[tokio::test]
async fn a_reset_answer_breaks_the_connection_after_recording_the_request() {
    let fake = start().await;
    let injected =
        control(&fake, "POST", "/_fake/faults", Some(json!({"to": "+16505551234", "code": 0, "answer": "reset"})))
            .await;
    assert_eq!(injected.status, 200, "{}", injected.body);

    let outcome = send_with_reqwest(&fake, "+16505551234").await;
    assert!(outcome.is_err(), "a broken connection, not an answer: {outcome:?}");
    assert_recorded_once_unaccepted(&fake, "+16505551234", 0);

    // The rule stays (no count), other numbers are answered, and the fake keeps serving.
    assert!(send_with_reqwest(&fake, "+16505551234").await.is_err());
    let (status, _, _) = send_with_reqwest(&fake, "+16505550000").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(fake.state.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [0, 0, 200]);
}

#[tokio::test]
async fn ambiguous_answers_post_no_webhooks_and_malformed_rules_are_refused() {
    let fake = start().await;
    let receiver = Receiver::start(0).await;
    fake.state.set_config(webhooks_to(&receiver));
    for answer in [FakeAnswer::NoWamid, FakeAnswer::Gateway502, FakeAnswer::Gateway504, FakeAnswer::Reset] {
        fake.state.inject(Injection::answer(answer).times(1));
        let _ = send_with_reqwest(&fake, "+16505551234").await;
    }
    let wamid = assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
    settle(&fake).await;
    assert_eq!(fake.state.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [200, 502, 504, 0, 200]);
    assert_eq!(fake.state.requests().iter().filter(|r| r.accepted()).count(), 1);
    let posted: Vec<_> = fake.state.webhooks().iter().flat_map(|p| p.statuses.clone()).collect();
    let expected: Vec<_> = ["sent", "delivered", "read"].map(|s| (wamid.clone(), s.to_owned())).into();
    assert_eq!(posted, expected, "only the accepted send is followed by statuses");

    for (bad, names) in [
        (json!({"answer": "no_wamid", "code": 131000}), "code"),
        (json!({"answer": "reset", "webhook": true}), "webhook"),
        (json!({"answer": "teapot"}), "teapot"),
        (json!({"delay_ms": 100}), "code is required"),
        (json!({"to": "+16505551234", "count": 1}), "code is required"),
    ] {
        let answer = control(&fake, "POST", "/_fake/faults", Some(bad.clone())).await;
        assert_error(&answer, 400, 100);
        assert!(answer.details().contains(names), "{bad}: {:?} should name {names}", answer.details());
    }
    assert!(fake.state.faults().is_empty());

    let listed = control(&fake, "POST", "/_fake/faults", Some(json!({"answer": "gateway_504", "delay_ms": 10}))).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = control(&fake, "GET", "/_fake/faults", None).await;
    assert_eq!(listed.body["faults"][0]["answer"], "gateway_504");
    assert_eq!(listed.body["faults"][0]["delay_ms"], 10);
}
