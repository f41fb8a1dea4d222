//! Templates whose header is a medium (IMAGE, VIDEO, DOCUMENT) or a LOCATION: the campaign's
//! `header_media` / `header_location` checked on create, update and start, and the header
//! parameter the fake WhatsApp API receives (and requires, with 132012, for a registered
//! template).

use std::time::Duration;

use local::fake_whatsapp::{HeaderFormat, TemplateSpec};
use serde_json::{Value, json};
use shared::adapters::store::keys;

use crate::stack::{TestStack, phones};

/// An approved template with this header and the body `Hi {{1}}`.
async fn template(t: &TestStack, account: &str, name: &str, header: Value) -> String {
    let body = json!({"account_id": account, "name": name, "language": "en_US", "category": "MARKETING",
                      "status": "APPROVED", "components": [header, {"type": "BODY", "text": "Hi {{1}}"}]});
    t.post("/api/templates", body).await.assert_ok(201)["id"].as_str().unwrap().to_string()
}

fn campaign_body(account: &str, template: &str, extra: Value) -> Value {
    let mut body = json!({"name": "Menu", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name"}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

async fn create(t: &TestStack, account: &str, template: &str, extra: Value) -> String {
    let c = t.post("/api/campaigns", campaign_body(account, template, extra)).await;
    c.assert_ok(201)["id"].as_str().unwrap().to_string()
}

/// Imports these numbers with a `name` and any further columns (`extra(i)` gives row i's).
async fn import(t: &TestStack, campaign: &str, numbers: &[String], columns: &str, extra: impl Fn(usize) -> String) {
    let mut csv = format!("phone_number,name{columns}\n");
    for (i, p) in numbers.iter().enumerate() {
        csv.push_str(&format!("{p},Name {i}{}\n", extra(i)));
    }
    let imported = t.post_csv(&format!("/api/campaigns/{campaign}/recipients/import"), csv).await;
    assert_eq!(imported.assert_ok(200)["imported"].as_u64(), Some(numbers.len() as u64), "{}", imported.body);
}

/// Starts the campaign and waits until every recipient was sent.
async fn send_all(t: &TestStack, campaign: &str, count: u64) -> Value {
    t.post(&format!("/api/campaigns/{campaign}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(campaign, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((done["sent_count"].as_u64(), done["failed_count"].as_u64()), (Some(count), Some(0)), "{done}");
    done
}

/// The header component of the message the fake accepted for `to`.
fn header_sent(t: &TestStack, to: &str) -> Value {
    let r = t.fake.requests().into_iter().find(|r| r.to.as_deref() == Some(to) && r.status == 200);
    let body = r.unwrap_or_else(|| panic!("no accepted send to {to}")).body;
    let components = body["template"]["components"].as_array().cloned().unwrap_or_default();
    components.into_iter().find(|c| c["type"] == "header").unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_image_header_campaign_sends_its_link_and_the_fake_takes_it() {
    let t = TestStack::sending(2).await;
    let account = t.account("TIER_100K").await;
    t.fake.register_template(TemplateSpec::new("new_menu", "en_US", 1).with_header(HeaderFormat::Image));
    let template = template(&t, &account, "new_menu", json!({"type": "HEADER", "format": "IMAGE"})).await;
    let media = json!({"type": "image", "link": "https://cdn.example.com/menu.png"});
    let c = create(&t, &account, &template, json!({"header_media": media})).await;
    let shown = t.get(&format!("/api/campaigns/{c}")).await;
    assert_eq!(shown.assert_ok(200)["header_media"], media);
    assert!(shown.data()["header_location"].is_null(), "{}", shown.body);
    let numbers = phones(700, 3);
    import(&t, &c, &numbers, "", |_| String::new()).await;
    send_all(&t, &c, 3).await;
    for to in &numbers {
        assert_eq!(
            header_sent(&t, to),
            json!({"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/menu.png"}}]})
        );
    }
    assert!(t.fake.requests().iter().all(|r| r.status == 200), "the fake refused none");
}

#[tokio::test]
async fn header_media_is_required_exactly_for_a_media_header_and_must_match_it() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let image = template(&t, &account, "new_menu", json!({"type": "HEADER", "format": "IMAGE"})).await;
    let text = template(&t, &account, "plain", json!({"type": "HEADER", "format": "TEXT", "text": "Hello"})).await;
    let post = |extra: Value, template: &str| t.post("/api/campaigns", campaign_body(&account, template, extra));

    post(json!({}), &image).await.assert_error(422, "header_media is required: template new_menu has an IMAGE header");
    let video = json!({"header_media": {"type": "video", "link": "https://cdn.example.com/a.mp4"}});
    post(video, &image).await.assert_error(422, "header_media.type must be image");
    let plain_http = json!({"header_media": {"type": "image", "link": "http://cdn.example.com/a.png"}});
    post(plain_http, &image).await.assert_error(422, "header_media.link must be an https URL");
    let both = json!({"header_media": {"type": "image", "link": "https://cdn.example.com/a.png", "id": "1"}});
    post(both, &image).await.assert_error(422, "header_media takes either a link or an id");
    let filename = json!({"header_media": {"type": "image", "id": "1", "filename": "a.png"}});
    post(filename, &image).await.assert_error(422, "header_media.filename is only for documents");
    post(json!({"header_media": {"type": "gif", "id": "1"}}), &image).await.assert_error(422, "header_media.type");
    let by_id = json!({"header_media": {"type": "image", "id": "1234567890"}});
    post(by_id.clone(), &text).await.assert_error(422, "header_media is not allowed: template plain has no IMAGE");
    let place =
        json!({"header_media": {"type": "image", "id": "1"}, "header_location": {"latitude": 1, "longitude": 2}});
    post(place, &image).await.assert_error(422, "header_location is not allowed");
    let mapped = json!({"variable_mapping": {"1": "name", "header.media": "photo"}});
    post(mapped, &text).await.assert_error(422, "not placeholders of template plain: header.media");

    // Update: the header values follow the template, and null removes them.
    let c = post(by_id, &image).await.assert_ok(201)["id"].as_str().unwrap().to_string();
    let path = format!("/api/campaigns/{c}");
    t.put(&path, json!({"template_id": text})).await.assert_error(422, "header_media is not allowed");
    t.put(&path, json!({"header_media": null})).await.assert_error(422, "header_media is required");
    let moved = t.put(&path, json!({"template_id": text, "header_media": null})).await;
    assert!(moved.assert_ok(200)["header_media"].is_null(), "{}", moved.body);
    let back =
        json!({"template_id": image, "header_media": {"type": "image", "link": "https://cdn.example.com/b.png"}});
    let updated = t.put(&path, back).await;
    assert_eq!(updated.assert_ok(200)["header_media"]["link"], "https://cdn.example.com/b.png");

    // Start checks again what the stored campaign holds (here changed behind the API's back).
    import(&t, &c, &phones(720, 1), "", |_| String::new()).await;
    t.remove(keys::campaign_pk(&c), keys::CAMPAIGN_SK, &["header_media"]).await;
    t.post(&format!("{path}/start"), json!({})).await.assert_error(422, "header_media is required");
}

#[tokio::test]
async fn a_per_recipient_link_comes_from_the_field_variable_mapping_names() {
    let t = TestStack::sending(2).await;
    let account = t.account("TIER_100K").await;
    t.fake.register_template(TemplateSpec::new("your_invoice", "en_US", 1).with_header(HeaderFormat::Document));
    let template = template(&t, &account, "your_invoice", json!({"type": "HEADER", "format": "DOCUMENT"})).await;
    let extra = json!({"variable_mapping": {"1": "name", "header.media": "invoice_url"},
                       "header_media": {"type": "document", "filename": "invoice.pdf"}});
    let c = create(&t, &account, &template, extra).await;
    // The field is required at import like any mapped one.
    let missing =
        t.post_csv(&format!("/api/campaigns/{c}/recipients/import"), "phone_number,name\n+14155550700,Ann\n").await;
    assert_eq!(missing.assert_ok(200)["imported"].as_u64(), Some(0), "{}", missing.body);
    let numbers = phones(740, 3);
    import(&t, &c, &numbers, ",invoice_url", |i| format!(",https://files.example.com/inv/{i}.pdf")).await;
    send_all(&t, &c, 3).await;
    for (i, to) in numbers.iter().enumerate() {
        let document = json!({"link": format!("https://files.example.com/inv/{i}.pdf"), "filename": "invoice.pdf"});
        assert_eq!(
            header_sent(&t, to),
            json!({"type": "header", "parameters": [{"type": "document", "document": document}]})
        );
    }
}

#[tokio::test]
async fn a_location_header_campaign_sends_its_place() {
    let t = TestStack::sending(2).await;
    let account = t.account("TIER_100K").await;
    t.fake.register_template(TemplateSpec::new("our_shop", "en_US", 1).with_header(HeaderFormat::Location));
    let template = template(&t, &account, "our_shop", json!({"type": "HEADER", "format": "LOCATION"})).await;
    let post = |extra: Value| t.post("/api/campaigns", campaign_body(&account, &template, extra));
    post(json!({})).await.assert_error(422, "header_location is required: template our_shop has a LOCATION header");
    let far = json!({"header_location": {"latitude": 90.5, "longitude": 0}});
    post(far).await.assert_error(422, "header_location.latitude must be between -90 and 90");
    let place = json!({"latitude": 52.520008, "longitude": 13.404954, "name": "Acme Berlin",
                       "address": "Alexanderplatz 1, 10178 Berlin"});
    let c = post(json!({"header_location": place})).await.assert_ok(201)["id"].as_str().unwrap().to_string();
    let numbers = phones(760, 2);
    import(&t, &c, &numbers, "", |_| String::new()).await;
    let done = send_all(&t, &c, 2).await;
    assert_eq!(done["header_location"], place);
    for to in &numbers {
        assert_eq!(
            header_sent(&t, to),
            json!({"type": "header", "parameters": [{"type": "location", "location": place}]})
        );
    }
}

#[tokio::test]
async fn the_fake_refuses_a_media_template_sent_without_its_header() {
    // What Meta answers a campaign that gives no medium: 132012, a permanent failure.
    let t = TestStack::sending(2).await;
    let account = t.account("TIER_100K").await;
    t.fake.register_template(TemplateSpec::new("offer", "en_US", 2).with_header(HeaderFormat::Video));
    let (c, _) = {
        let template = t.template(&account, "offer", "APPROVED").await;
        let body = json!({"name": "Sale", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name", "2": "discount_code"}});
        let c = t.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string();
        (c, template)
    };
    t.add_recipients(&c, &phones(780, 1)).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(done["failed_count"].as_u64(), Some(1), "{done}");
    let r = &t.recipients(&c).await[0];
    assert_eq!(r["error_code"].as_i64(), Some(132012), "{r}");
}
