//! The fake's configuration: [`FakeConfig`] (the answers' latency, the timeout number's wait and
//! how status webhooks are timed, batched, signed and retried), its defaults, how it is read from
//! the environment or patched through `POST /_fake/config`, what it must satisfy, and each
//! send's latency drawn from it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::random_below;
use super::webhooks::{MAX_DELAY_MS, MAX_STATUSES_PER_POST};

/// How long the [`Fault::Timeout`](super::Fault::Timeout) number waits by default before
/// answering.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The app secret of the local stack when `WHATSAPP_APP_SECRET` is not set: the fake signs its
/// webhooks with it, and the service checks them with the same default.
pub const DEV_APP_SECRET: &str = "local-app-secret";

/// Timing and webhooks of the fake. Fields left out of a JSON config take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeConfig {
    /// Added to every send's answer.
    pub latency_ms: u64,
    /// Each send's latency is drawn anew, uniformly from `latency_ms - latency_jitter_ms` (at
    /// least 0) to `latency_ms + latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// The [`Fault::Timeout`](super::Fault::Timeout) number's wait (on top of the latency).
    pub timeout_ms: u64,
    /// Where status webhooks are posted, like `http://127.0.0.1:3000/webhooks/whatsapp`; none
    /// are posted when `None`.
    pub webhook_url: Option<String>,
    /// The key of the `X-Hub-Signature-256` HMAC; webhooks go unsigned when `None`.
    pub app_secret: Option<String>,
    /// When `sent` is posted, counted from the send's answer.
    pub sent_delay_ms: u64,
    /// When `delivered` is posted, counted from the send's answer.
    pub delivered_delay_ms: u64,
    /// When `read` is posted, counted from the send's answer; `None`: the message is never read.
    pub read_delay_ms: Option<u64>,
    /// Post every status twice (the copy one batch window later).
    pub duplicate: bool,
    /// Post the statuses of each message in an order other than sent, delivered, read.
    pub shuffle: bool,
    /// Statuses falling due within this window of the first due one share a POST.
    pub batch_window_ms: u64,
    /// The most statuses in one POST, 1 to [`MAX_STATUSES_PER_POST`]; more make several POSTs.
    /// With 1, every status is a POST of its own, as Meta mostly posts them.
    pub statuses_per_post: usize,
    /// The wait before the first retry of a failed POST; it doubles for each further one.
    pub retry_backoff_ms: u64,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            latency_ms: 0,
            latency_jitter_ms: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            webhook_url: None,
            app_secret: None,
            sent_delay_ms: 100,
            delivered_delay_ms: 300,
            read_delay_ms: Some(600),
            duplicate: false,
            shuffle: false,
            batch_window_ms: 50,
            statuses_per_post: MAX_STATUSES_PER_POST,
            retry_backoff_ms: 200,
        }
    }
}

impl FakeConfig {
    /// The defaults, changed by the environment: `FAKE_LATENCY_MS`, `FAKE_LATENCY_JITTER_MS`,
    /// `FAKE_WEBHOOK_URL`, `WHATSAPP_APP_SECRET` ([`DEV_APP_SECRET`] when unset, unsigned when
    /// empty), `FAKE_WEBHOOK_SENT_DELAY_MS`, `FAKE_WEBHOOK_DELIVERED_DELAY_MS`,
    /// `FAKE_WEBHOOK_READ_DELAY_MS` (`never` for never read), `FAKE_WEBHOOK_DUPLICATE`,
    /// `FAKE_WEBHOOK_SHUFFLE` (`true` or `false`) and `FAKE_WEBHOOK_STATUSES_PER_POST` (1 to
    /// [`MAX_STATUSES_PER_POST`]). Milliseconds are at most [`MAX_DELAY_MS`].
    pub fn from_env() -> Result<FakeConfig, String> {
        FakeConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// [`FakeConfig::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<FakeConfig, String> {
        const READ_DELAY: &str = "FAKE_WEBHOOK_READ_DELAY_MS";
        let vars = Vars(var);
        let defaults = FakeConfig::default();
        let config = FakeConfig {
            webhook_url: vars.value("FAKE_WEBHOOK_URL"),
            app_secret: vars.app_secret(),
            latency_ms: vars.millis("FAKE_LATENCY_MS")?.unwrap_or(defaults.latency_ms),
            latency_jitter_ms: vars.millis("FAKE_LATENCY_JITTER_MS")?.unwrap_or(defaults.latency_jitter_ms),
            sent_delay_ms: vars.millis("FAKE_WEBHOOK_SENT_DELAY_MS")?.unwrap_or(defaults.sent_delay_ms),
            delivered_delay_ms: vars.millis("FAKE_WEBHOOK_DELIVERED_DELAY_MS")?.unwrap_or(defaults.delivered_delay_ms),
            read_delay_ms: if vars.is_never(READ_DELAY) {
                None
            } else {
                vars.millis(READ_DELAY)?.or(defaults.read_delay_ms)
            },
            duplicate: vars.flag("FAKE_WEBHOOK_DUPLICATE")?.unwrap_or(defaults.duplicate),
            shuffle: vars.flag("FAKE_WEBHOOK_SHUFFLE")?.unwrap_or(defaults.shuffle),
            statuses_per_post: vars.statuses_per_post()?.unwrap_or(defaults.statuses_per_post),
            ..defaults
        };
        config.validate()?;
        Ok(config)
    }

    /// Whether the webhook URL, when given, is an `http` or `https` URL, the latency, its
    /// jitter, the webhook delays, window and back-off are at most [`MAX_DELAY_MS`], and
    /// `statuses_per_post` is 1 to [`MAX_STATUSES_PER_POST`].
    pub fn validate(&self) -> Result<(), String> {
        let delays = [
            ("latency_ms", Some(self.latency_ms)),
            ("latency_jitter_ms", Some(self.latency_jitter_ms)),
            ("sent_delay_ms", Some(self.sent_delay_ms)),
            ("delivered_delay_ms", Some(self.delivered_delay_ms)),
            ("read_delay_ms", self.read_delay_ms),
            ("batch_window_ms", Some(self.batch_window_ms)),
            ("retry_backoff_ms", Some(self.retry_backoff_ms)),
        ];
        if let Some((name, _)) = delays.iter().find(|(_, ms)| ms.is_some_and(|ms| ms > MAX_DELAY_MS)) {
            return Err(format!("{name} is more than {MAX_DELAY_MS} (a day)"));
        }
        if !(1..=MAX_STATUSES_PER_POST).contains(&self.statuses_per_post) {
            return Err(format!(
                "statuses_per_post must be 1 to {MAX_STATUSES_PER_POST}, not {}",
                self.statuses_per_post
            ));
        }
        let Some(url) = &self.webhook_url else { return Ok(()) };
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
            _ => Err(format!("webhook_url {url:?} is not an http(s) URL")),
        }
    }

    /// One send's latency: uniform from `latency_ms - latency_jitter_ms` (at least 0) to
    /// `latency_ms + latency_jitter_ms`, both capped at [`MAX_DELAY_MS`] so the sum cannot
    /// overflow whatever [`FakeState::set_config`](super::FakeState::set_config) was given.
    pub(super) fn draw_latency_ms(&self) -> u64 {
        let latency = self.latency_ms.min(MAX_DELAY_MS);
        let jitter = self.latency_jitter_ms.min(MAX_DELAY_MS);
        let low = latency.saturating_sub(jitter);
        let high = latency + jitter;
        low + random_below(high - low + 1)
    }

    /// This configuration with the fields of a JSON object replaced (`null` clears an optional
    /// field); unknown fields and wrong types are refused.
    pub(super) fn patched(&self, patch: Value) -> Result<FakeConfig, String> {
        let Value::Object(patch) = patch else { return Err("the config must be a JSON object".into()) };
        let mut merged = match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        merged.extend(patch);
        let config: FakeConfig = serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }
}

/// The environment as [`FakeConfig::from_vars`] reads it: `var` looks a variable up.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// The value without surrounding blanks; `None` when unset or blank.
    fn value(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// `WHATSAPP_APP_SECRET`: [`DEV_APP_SECRET`] when unset, `None` (unsigned) when empty.
    fn app_secret(&self) -> Option<String> {
        match (self.0)("WHATSAPP_APP_SECRET") {
            None => Some(DEV_APP_SECRET.to_owned()),
            Some(secret) => Some(secret).filter(|s| !s.is_empty()),
        }
    }

    /// A number of milliseconds, at most [`MAX_DELAY_MS`].
    fn millis(&self, name: &str) -> Result<Option<u64>, String> {
        let Some(v) = self.value(name) else { return Ok(None) };
        match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_DELAY_MS => Ok(Some(ms)),
            Ok(_) => Err(format!("{name} is more than {MAX_DELAY_MS} (a day): {v:?}")),
            Err(_) => Err(format!("{name} is not a number of milliseconds: {v:?}")),
        }
    }

    /// Whether the value is `never`, in any case.
    fn is_never(&self, name: &str) -> bool {
        self.value(name).is_some_and(|v| v.eq_ignore_ascii_case("never"))
    }

    /// `true`, `false` or their synonyms `1`, `yes`, `0`, `no`, in any case.
    fn flag(&self, name: &str) -> Result<Option<bool>, String> {
        self.value(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(format!("{name} is not true or false: {v:?}")),
            })
            .transpose()
    }

    /// `FAKE_WEBHOOK_STATUSES_PER_POST`, 1 to [`MAX_STATUSES_PER_POST`].
    fn statuses_per_post(&self) -> Result<Option<usize>, String> {
        const NAME: &str = "FAKE_WEBHOOK_STATUSES_PER_POST";
        let Some(v) = self.value(NAME) else { return Ok(None) };
        let per_post = v.parse().ok().filter(|n| (1..=MAX_STATUSES_PER_POST).contains(n));
        per_post.map(Some).ok_or_else(|| format!("{NAME} is not 1 to {MAX_STATUSES_PER_POST}: {v:?}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn config_comes_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let config = FakeConfig::from_vars(vars(&[])).unwrap_or_default();
        assert_eq!(config, FakeConfig { app_secret: Some(DEV_APP_SECRET.into()), ..FakeConfig::default() });

        let config = FakeConfig::from_vars(vars(&[
            ("FAKE_WEBHOOK_URL", "http://127.0.0.1:3000/webhooks/whatsapp"),
            ("WHATSAPP_APP_SECRET", "s3cret"),
            ("FAKE_WEBHOOK_SENT_DELAY_MS", "5"),
            ("FAKE_WEBHOOK_DELIVERED_DELAY_MS", " 10 "),
            ("FAKE_WEBHOOK_READ_DELAY_MS", "never"),
            ("FAKE_WEBHOOK_DUPLICATE", "true"),
            ("FAKE_WEBHOOK_SHUFFLE", "1"),
        ]));
        let expected = FakeConfig {
            webhook_url: Some("http://127.0.0.1:3000/webhooks/whatsapp".into()),
            app_secret: Some("s3cret".into()),
            sent_delay_ms: 5,
            delivered_delay_ms: 10,
            read_delay_ms: None,
            duplicate: true,
            shuffle: true,
            ..FakeConfig::default()
        };
        assert_eq!(config, Ok(expected));

        // An empty secret means unsigned webhooks.
        let config = FakeConfig::from_vars(vars(&[("WHATSAPP_APP_SECRET", "")]));
        assert_eq!(config.map(|c| c.app_secret), Ok(None));
        for bad in [
            &[("FAKE_WEBHOOK_READ_DELAY_MS", "soon")][..],
            &[("FAKE_WEBHOOK_SHUFFLE", "maybe")],
            &[("FAKE_WEBHOOK_URL", "localhost:3000")],
        ] {
            let error = FakeConfig::from_vars(vars(bad)).err().unwrap_or_default();
            assert!(error.contains(bad[0].0) || error.contains("webhook_url"), "{error}");
        }
    }

    #[test]
    fn a_config_patch_changes_only_the_fields_given() {
        let config = FakeConfig::default();
        let patched = config.patched(json!({"latency_ms": 5, "webhook_url": "http://127.0.0.1:1/hook"}));
        let expected =
            FakeConfig { latency_ms: 5, webhook_url: Some("http://127.0.0.1:1/hook".into()), ..FakeConfig::default() };
        assert_eq!(patched, Ok(expected.clone()));
        let cleared = expected.patched(json!({"webhook_url": null, "read_delay_ms": null}));
        assert_eq!(cleared, Ok(FakeConfig { latency_ms: 5, read_delay_ms: None, ..FakeConfig::default() }));
        assert!(config.patched(json!({"latency": 5})).is_err());
        assert!(config.patched(json!({"latency_ms": "5"})).is_err());
        assert!(config.patched(json!({"webhook_url": "ftp://host/x"})).is_err());
        assert!(config.patched(json!([1])).is_err());
        assert!(config.patched(json!({"read_delay_ms": MAX_DELAY_MS + 1})).is_err());
        assert!(config.patched(json!({"latency_jitter_ms": MAX_DELAY_MS + 1})).is_err());
        assert!(config.patched(json!({"statuses_per_post": 0})).is_err());
        assert!(config.patched(json!({"timeout_ms": u64::MAX})).is_ok(), "the timeout number's wait is not bounded");
    }

    #[test]
    fn latency_is_drawn_within_the_jitter_and_never_below_zero() {
        let draws = |latency_ms, latency_jitter_ms| {
            let config = FakeConfig { latency_ms, latency_jitter_ms, ..FakeConfig::default() };
            (0..2000).map(|_| config.draw_latency_ms()).collect::<Vec<_>>()
        };
        assert!(draws(70, 0).iter().all(|&ms| ms == 70));
        let spread = draws(100, 10);
        assert!(spread.iter().all(|ms| (90..=110).contains(ms)), "{spread:?}");
        // 21 values drawn 2000 times: every one comes up, the ends included.
        for ms in 90..=110 {
            assert!(spread.contains(&ms), "{ms} never drawn");
        }
        let clamped = draws(5, 20);
        assert!(clamped.iter().all(|ms| (0..=25).contains(ms)));
        assert!(clamped.contains(&0) && clamped.contains(&25));
        let huge = FakeConfig { latency_ms: u64::MAX, latency_jitter_ms: u64::MAX, ..FakeConfig::default() };
        assert!(huge.draw_latency_ms() <= 2 * MAX_DELAY_MS, "capped rather than overflowing");
    }
}
