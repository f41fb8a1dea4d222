//! The WhatsApp Cloud API client, over the function's HTTPS client ([`super::https`]). Every call has a
//! timeout well below the sender's Lambda timeout.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::adapters::https::HttpsClient;
use crate::domain::secret::Secret;

/// What became of one send request.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Accepted: the message id (wamid) to match status webhooks with.
    Accepted { wamid: String },
    /// WhatsApp answered with an error (decide on `code`).
    Rejected { code: i64, message: String },
    /// The request never reached WhatsApp (no connection): safe to retry.
    Unreachable { message: String },
    /// The request was sent but no answer came: WhatsApp may have accepted it. Never retried.
    Unknown { message: String },
}

#[derive(Clone, Debug)]
pub struct WhatsAppClient {
    /// The HTTP client, or why none could be built.
    http: HttpsClient,
    base_url: String,
    version: String,
    timeout: Duration,
}

impl WhatsAppClient {
    /// A client whose every request, connection included, ends within `timeout`. HTTPS is
    /// verified against the system's root certificates; plain `http://` (a local stand-in)
    /// is allowed too.
    pub fn new(base_url: &str, version: &str, timeout: Duration) -> Self {
        let http = crate::adapters::https::client(Duration::from_secs(3).min(timeout), 64);
        let base_url = base_url.trim_end_matches('/').to_string();
        WhatsAppClient { http, base_url, version: version.to_string(), timeout }
    }

    /// How long a request may take at most.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn send(&self, phone_number_id: &str, token: &Secret, body: &Value) -> SendOutcome {
        let url = format!("{}/{}/{}/messages", self.base_url, self.version, phone_number_id);
        let request = http::Request::post(url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let request = match request {
            Ok(r) => r,
            Err(e) => return SendOutcome::Unreachable { message: format!("the request cannot be made: {e}") },
        };
        let http = match &self.http {
            Ok(http) => http,
            Err(why) => return SendOutcome::Unreachable { message: why.clone() },
        };
        let exchange = async {
            let answer = match http.request(request).await {
                Ok(a) => a,
                Err(e) if e.is_connect() => return SendOutcome::Unreachable { message: e.to_string() },
                Err(e) => return SendOutcome::Unknown { message: format!("no answer from WhatsApp: {e}") },
            };
            let status = answer.status().as_u16();
            match answer.into_body().collect().await {
                Ok(body) => parse_answer(status, &String::from_utf8_lossy(&body.to_bytes())),
                Err(e) => SendOutcome::Unknown { message: format!("the answer could not be read: {e}") },
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => SendOutcome::Unknown {
                message: format!("no answer from WhatsApp within {} ms", self.timeout.as_millis()),
            },
        }
    }
}

/// Reads Meta's answer: a wamid, or the error envelope's code and message. An answer that is
/// neither leaves the outcome unknown when WhatsApp may have taken the message (a 2xx without a
/// message id, or a 5xx page from a gateway in front of it, which may have passed the request
/// on before failing), so it is never sent again; any other status without an envelope is a
/// refusal before WhatsApp (code 131000, tried again).
pub fn parse_answer(status: u16, text: &str) -> SendOutcome {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(wamid) = v["messages"][0]["id"].as_str().filter(|_| (200..300).contains(&status)) {
        return SendOutcome::Accepted { wamid: wamid.to_string() };
    }
    if let Some(code) = v["error"]["code"].as_i64() {
        let message = v["error"]["message"].as_str().unwrap_or("WhatsApp error").to_string();
        let details = v["error"]["error_data"]["details"].as_str().filter(|d| !d.is_empty() && *d != message);
        let message = match details {
            Some(d) => format!("{message}: {d}"),
            None => message,
        };
        return SendOutcome::Rejected { code, message };
    }
    let snippet: String = text.chars().take(200).collect();
    if (200..300).contains(&status) {
        return SendOutcome::Unknown { message: format!("HTTP {status} without a message id: {snippet}") };
    }
    if status >= 500 {
        return SendOutcome::Unknown { message: format!("HTTP {status} without WhatsApp's error: {snippet}") };
    }
    SendOutcome::Rejected { code: 131000, message: format!("unexpected answer (HTTP {status}): {snippet}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_code() {
        let ok = r#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[{"id":"wamid.X","message_status":"accepted"}]}"#;
        assert_eq!(parse_answer(200, ok), SendOutcome::Accepted { wamid: "wamid.X".into() });
        let err = r#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"error_data":{"messaging_product":"whatsapp","details":"slow down"}}}"#;
        assert_eq!(
            parse_answer(429, err),
            SendOutcome::Rejected { code: 130429, message: "(#130429) Rate limit hit: slow down".into() }
        );
        // Meta's own 5xx carries its envelope: a definite refusal, tried again.
        let down = r#"{"error":{"message":"Something went wrong","code":131000}}"#;
        assert!(matches!(parse_answer(500, down), SendOutcome::Rejected { code: 131000, .. }));
        // A gateway's page, or a 200 without a message id: WhatsApp may have taken it.
        assert!(matches!(parse_answer(502, "<html>bad gateway</html>"), SendOutcome::Unknown { .. }));
        assert!(matches!(parse_answer(504, ""), SendOutcome::Unknown { .. }));
        let no_id = r#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[]}"#;
        assert!(matches!(parse_answer(200, no_id), SendOutcome::Unknown { .. }));
        assert!(matches!(parse_answer(403, "<html>forbidden</html>"), SendOutcome::Rejected { code: 131000, .. }));
    }
}
