//! Where secrets live (the value type itself is [`crate::domain::secret::Secret`]).
//!
//! - [`WebhookSecrets`]: Meta's app secret (it signs every notification) and the verify token
//!   (Meta presents it when the webhook is registered). In AWS they live in a Secrets Manager
//!   secret read once per cold start; locally they come from the environment.
//! - [`AccountTokens`]: each account's WhatsApp access token, one Secrets Manager secret per
//!   account named `<ACCOUNT_SECRET_PREFIX><account id>`, written by the account routes and
//!   read only by the sender.
//!
//! Secrets Manager's four calls (create, put, get, delete) are its JSON API signed by hand
//! ([`super::sigv4`]), rather than through the SDK's client, which carried a model of every
//! operation of the service into the function binary.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::adapters::sigv4::{self, Call, Service, Signer};

use crate::config::Config;
use crate::domain::secret::Secret;

#[derive(Clone, Debug, Deserialize)]
pub struct WebhookSecrets {
    pub app_secret: Secret,
    pub verify_token: Secret,
}

impl WebhookSecrets {
    fn checked(self) -> Result<Self, String> {
        if self.app_secret.expose().trim().is_empty() || self.verify_token.expose().trim().is_empty() {
            return Err("the webhook secret needs a non-empty app_secret and verify_token".into());
        }
        Ok(self)
    }
}

/// Reads the secrets: from the secret `WEBHOOK_SECRET_ARN` names, else from
/// `WHATSAPP_APP_SECRET` and `WHATSAPP_VERIFY_TOKEN`. The error says what is missing, never a value.
pub async fn load(sdk: &crate::adapters::aws::SdkConfig, config: &Config) -> Result<WebhookSecrets, String> {
    if let Some(arn) = &config.webhook_secret_arn {
        let out = SecretsManager::new(sdk)
            .call("GetSecretValue", json!({ "SecretId": arn }))
            .await
            .map_err(|e| format!("cannot read the webhook secret: {e}"))?;
        let text = out["SecretString"].as_str().ok_or("the webhook secret has no string value")?;
        let secrets: WebhookSecrets = serde_json::from_str(text)
            .map_err(|_| "the webhook secret must be JSON with app_secret and verify_token".to_string())?;
        return secrets.checked();
    }
    match (&config.whatsapp_app_secret, &config.whatsapp_verify_token) {
        (Some(app_secret), Some(verify_token)) => {
            WebhookSecrets { app_secret: app_secret.clone(), verify_token: verify_token.clone() }.checked()
        }
        _ => Err("set WEBHOOK_SECRET_ARN, or WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN".into()),
    }
}

/// A Secrets Manager call failed. The text comes from the service (code and message), never
/// from the secret's value.
#[derive(Debug, thiserror::Error)]
#[error("Secrets Manager: {0}")]
pub struct SecretsError(String);

/// Secrets Manager's JSON API at the region's endpoint (or `AWS_ENDPOINT_URL_SECRETS_MANAGER`
/// / `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug)]
struct SecretsManager {
    signer: Signer,
    url: String,
}

/// A call that failed: the service's error (its type, `ResourceNotFoundException`, and
/// message), or why no answer came.
#[derive(Debug)]
enum CallError {
    Service { code: String, message: String },
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Service { code, message } => write!(f, "{code}: {message}"),
            CallError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<CallError> for SecretsError {
    fn from(e: CallError) -> Self {
        SecretsError(e.to_string())
    }
}

impl CallError {
    fn is_not_found(&self) -> bool {
        matches!(self, CallError::Service { code, .. } if code == "ResourceNotFoundException")
    }
}

impl SecretsManager {
    fn new(sdk: &crate::adapters::aws::SdkConfig) -> Self {
        let signer = Signer::new(sdk);
        let url = match crate::adapters::aws::endpoint(sdk, "Secrets Manager") {
            Some(endpoint) => format!("{}/", endpoint.trim_end_matches('/')),
            None => format!("https://secretsmanager.{}.amazonaws.com/", signer.region()),
        };
        SecretsManager { signer, url }
    }

    /// Calls `action` with `input`; answers the service's JSON. A throttled call is made again
    /// (up to three times in all, 200 ms then 400 ms apart), as the SDK's retries would.
    async fn call(&self, action: &'static str, input: Value) -> Result<Value, CallError> {
        let mut attempt = 1;
        loop {
            match self.call_once(action, &input).await {
                Err(CallError::Service { code, .. }) if attempt < 3 && THROTTLED.contains(&code.as_str()) => {
                    tracing::warn!(action, attempt, "Secrets Manager throttled the call; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << (attempt - 1))).await;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn call_once(&self, action: &'static str, input: &Value) -> Result<Value, CallError> {
        let target = format!("secretsmanager.{action}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let call = Call {
            operation: action,
            method: http::Method::POST,
            url: &self.url,
            headers: &headers,
            body: input.to_string().into(),
        };
        let answer = self.signer.send(Service::Other("secretsmanager"), &call).await.map_err(CallError::Failed)?;
        let status = answer.status();
        let text = sigv4::text(answer).await.map_err(|e| CallError::Failed(format!("{action}: {e}")))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        error_of(status, &body, &text, action)
    }
}

/// The error codes that mean "too many requests, try again".
const THROTTLED: [&str; 4] = ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"];

/// The error a failed answer carries: the service's type and message, or its status and text.
fn error_of(status: http::StatusCode, body: &Value, text: &str, action: &str) -> Result<Value, CallError> {
    match body["__type"].as_str() {
        // `__type` may carry a namespace (`…#ResourceNotFoundException`) or a suffix after `:`.
        Some(kind) => {
            let code = kind.rsplit('#').next().unwrap_or(kind).split(':').next().unwrap_or(kind).to_string();
            let message = body["message"].as_str().or(body["Message"].as_str()).unwrap_or("").to_string();
            Err(CallError::Service { code, message })
        }
        None => {
            Err(CallError::Failed(format!("{action}: HTTP {status}: {}", text.chars().take(200).collect::<String>())))
        }
    }
}

/// The accounts' WhatsApp access tokens in Secrets Manager: one secret per account, its value
/// the token itself. Functions may touch only secrets under the prefix (see `template.yaml`).
#[derive(Clone, Debug)]
pub struct AccountTokens {
    secrets: SecretsManager,
    prefix: String,
}

impl AccountTokens {
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, prefix: impl Into<String>) -> Self {
        AccountTokens { secrets: SecretsManager::new(sdk), prefix: prefix.into() }
    }

    /// The name of the secret holding an account's token.
    pub fn secret_name(&self, account_id: &str) -> String {
        format!("{}{account_id}", self.prefix)
    }

    /// Creates the secret of a new account.
    pub async fn create(&self, account_id: &str, token: &Secret) -> Result<(), SecretsError> {
        let input = json!({
            "Name": self.secret_name(account_id),
            "Description": "WhatsApp Cloud API access token of one campaign account",
            "SecretString": token.expose(),
            // As the SDK does: a retried request is the same request.
            "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
        });
        self.secrets.call("CreateSecret", input).await?;
        Ok(())
    }

    /// Replaces an account's token (a new version of its secret; the secret is created when the
    /// account has none yet).
    pub async fn put(&self, account_id: &str, token: &Secret) -> Result<(), SecretsError> {
        let input = json!({
            "SecretId": self.secret_name(account_id),
            "SecretString": token.expose(),
            "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
        });
        match self.secrets.call("PutSecretValue", input).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => self.create(account_id, token).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The account's token; `None` when the account has no secret.
    pub async fn get(&self, account_id: &str) -> Result<Option<Secret>, SecretsError> {
        match self.secrets.call("GetSecretValue", json!({ "SecretId": self.secret_name(account_id) })).await {
            Ok(out) => Ok(out["SecretString"].as_str().map(Secret::from)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the account's secret at once (no recovery window: a deleted account's token must
    /// not linger). A secret that is already gone is fine.
    pub async fn delete(&self, account_id: &str) -> Result<(), SecretsError> {
        let input = json!({ "SecretId": self.secret_name(account_id), "ForceDeleteWithoutRecovery": true });
        match self.secrets.call("DeleteSecret", input).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_read_by_their_type() {
        let bad = http::StatusCode::BAD_REQUEST;
        let body =
            json!({"__type": "com.amazonaws.secretsmanager#ResourceNotFoundException", "message": "no such secret"});
        let e = error_of(bad, &body, "", "GetSecretValue").unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert_eq!(e.to_string(), "ResourceNotFoundException: no such secret");
        let body = json!({"__type": "ThrottlingException", "Message": "Rate exceeded"});
        let e = error_of(bad, &body, "", "GetSecretValue").unwrap_err();
        assert!(matches!(&e, CallError::Service { code, .. } if THROTTLED.contains(&code.as_str())), "{e}");
        let e = error_of(http::StatusCode::BAD_GATEWAY, &Value::Null, "<html>", "PutSecretValue").unwrap_err();
        assert_eq!(e.to_string(), "PutSecretValue: HTTP 502 Bad Gateway: <html>");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::from("EAAG-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
        let w = WebhookSecrets { app_secret: "app-secret-value".into(), verify_token: "verify-value".into() };
        let shown = format!("{w:?}");
        assert!(!shown.contains("app-secret-value") && !shown.contains("verify-value"), "{shown}");
        let parsed: WebhookSecrets = serde_json::from_str(r#"{"app_secret":"a","verify_token":"v"}"#).unwrap();
        assert_eq!((parsed.app_secret.expose(), parsed.verify_token.expose()), ("a", "v"));
    }
}
