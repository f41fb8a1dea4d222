//! The webhook's shared secrets: Meta's app secret (it signs every notification) and the
//! verify token (Meta presents it when the webhook is registered). In AWS they live in a
//! Secrets Manager secret read once per cold start; locally they come from the environment.

use serde::Deserialize;

use crate::config::Config;

#[derive(Clone, Deserialize)]
pub struct WebhookSecrets {
    pub app_secret: String,
    pub verify_token: String,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecrets { .. }")
    }
}

impl WebhookSecrets {
    fn checked(self) -> Result<Self, String> {
        if self.app_secret.trim().is_empty() || self.verify_token.trim().is_empty() {
            return Err("the webhook secret needs a non-empty app_secret and verify_token".into());
        }
        Ok(self)
    }
}

/// Reads the secrets: from the secret `WEBHOOK_SECRET_ARN` names, else from
/// `WHATSAPP_APP_SECRET` and `WHATSAPP_VERIFY_TOKEN`. The error says what is missing, never a value.
pub async fn load(sdk: &aws_config::SdkConfig, config: &Config) -> Result<WebhookSecrets, String> {
    if let Some(arn) = &config.webhook_secret_arn {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            format!("cannot read the webhook secret: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e))
        })?;
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
