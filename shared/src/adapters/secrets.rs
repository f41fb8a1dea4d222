//! Where secrets live (the value type itself is [`crate::domain::secret::Secret`]).
//!
//! - [`WebhookSecrets`]: Meta's app secret (it signs every notification) and the verify token
//!   (Meta presents it when the webhook is registered). In AWS they live in a Secrets Manager
//!   secret read once per cold start; locally they come from the environment.
//! - [`AccountTokens`]: each account's WhatsApp access token, one Secrets Manager secret per
//!   account named `<ACCOUNT_SECRET_PREFIX><account id>`, written by the account routes and
//!   read only by the sender.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde::Deserialize;

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
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let out = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| format!("cannot read the webhook secret: {}", DisplayErrorContext(&e)))?;
        let text = out.secret_string().ok_or("the webhook secret has no string value")?;
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

fn secrets_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> SecretsError {
    SecretsError(DisplayErrorContext(&e).to_string())
}

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException")
}

/// The accounts' WhatsApp access tokens in Secrets Manager: one secret per account, its value
/// the token itself. Functions may touch only secrets under the prefix (see `template.yaml`).
#[derive(Clone, Debug)]
pub struct AccountTokens {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
}

impl AccountTokens {
    pub fn new(client: aws_sdk_secretsmanager::Client, prefix: impl Into<String>) -> Self {
        AccountTokens { client, prefix: prefix.into() }
    }

    /// The name of the secret holding an account's token.
    pub fn secret_name(&self, account_id: &str) -> String {
        format!("{}{account_id}", self.prefix)
    }

    /// Creates the secret of a new account.
    pub async fn create(&self, account_id: &str, token: &Secret) -> Result<(), SecretsError> {
        self.client
            .create_secret()
            .name(self.secret_name(account_id))
            .description("WhatsApp Cloud API access token of one campaign account")
            .secret_string(token.expose())
            .send()
            .await
            .map_err(secrets_error)?;
        Ok(())
    }

    /// Replaces an account's token (a new version of its secret; the secret is created when the
    /// account has none yet).
    pub async fn put(&self, account_id: &str, token: &Secret) -> Result<(), SecretsError> {
        let put = self
            .client
            .put_secret_value()
            .secret_id(self.secret_name(account_id))
            .secret_string(token.expose())
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => self.create(account_id, token).await,
            Err(e) => Err(secrets_error(e)),
        }
    }

    /// The account's token; `None` when the account has no secret.
    pub async fn get(&self, account_id: &str) -> Result<Option<Secret>, SecretsError> {
        match self.client.get_secret_value().secret_id(self.secret_name(account_id)).send().await {
            Ok(out) => Ok(out.secret_string.map(Secret::from)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(secrets_error(e)),
        }
    }

    /// Deletes the account's secret at once (no recovery window: a deleted account's token must
    /// not linger). A secret that is already gone is fine.
    pub async fn delete(&self, account_id: &str) -> Result<(), SecretsError> {
        let deleted = self
            .client
            .delete_secret()
            .secret_id(self.secret_name(account_id))
            .force_delete_without_recovery(true)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(secrets_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
