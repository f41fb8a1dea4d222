//! The fake WhatsApp Cloud API, served in-process on an ephemeral port and called over real HTTP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use local::fake_whatsapp::{self, FAULT_NUMBERS, FakeConfig, FakeState, Fault, Injection, TemplateSpec};
use serde_json::{Value, json};
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
            Fault::Timeout => None,
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
    assert_eq!(configured.body["config"], json!({"latency_ms": 0, "timeout_ms": 300}));

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
    fake.state.set_config(FakeConfig { latency_ms: 10, timeout_ms: 10 });
    assert_error(&send(&fake, &positional("+16505551234")).await, 401, 190);

    let answer = control(&fake, "POST", "/_fake/reset", None).await;
    assert_eq!(answer.status, 200);
    assert!(fake.state.requests().is_empty());
    assert_eq!(fake.state.config(), FakeConfig::default());
    assert_accepted(&send(&fake, &positional("+16505551234")).await, "+16505551234");
}
