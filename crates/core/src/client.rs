//! The S3 client: the standard AWS configuration chain (environment,
//! profiles, SSO, the Lambda role), path-style addressing whenever an
//! endpoint is given so any S3-compatible server works, ten attempts with
//! exponential backoff and full jitter, and bounded timeouts.
//!
//! The retry mode is `standard` unless `AWS_RETRY_MODE=adaptive`. Adaptive
//! mode also rate-limits the client after each throttle, and measured here
//! it collapses: 60 moves under 20% injected SlowDown took 58 s adaptive
//! against well under a second standard, because its send rate falls to
//! half a request a second. S3 throttles a prefix, not a client, and backs
//! off by itself; the jittered backoff already spreads retries.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use std::time::Duration;

/// Attempts per request, first included. S3's 503 SlowDown comes in bursts
/// while a prefix scales up; ten attempts with exponential backoff ride them
/// out where the SDK's default of three gives up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Time allowed between bytes of a response. A large CopyObject keeps its
    /// connection alive with whitespace, so this bounds stalls, not copies.
    pub read_timeout: Duration,
    pub adaptive: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            adaptive: false,
        }
    }
}

impl ClientSettings {
    /// `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` (`standard` or `adaptive`)
    /// override the defaults, as in every AWS SDK.
    pub fn from_env() -> Self {
        let mut settings = Self::default();
        if let Some(n) = std::env::var("AWS_MAX_ATTEMPTS").ok().and_then(|v| v.parse::<u32>().ok()).filter(|n| *n > 0) {
            settings.max_attempts = n;
        }
        match std::env::var("AWS_RETRY_MODE").map(|v| v.to_ascii_lowercase()).as_deref() {
            Ok("standard" | "legacy") => settings.adaptive = false,
            Ok("adaptive") => settings.adaptive = true,
            _ => {}
        }
        settings
    }

    fn retry_config(&self) -> RetryConfig {
        let base = if self.adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() };
        base.with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder().connect_timeout(self.connect_timeout).read_timeout(self.read_timeout).build()
    }
}

/// Loads the shared AWS configuration from the environment and builds an S3
/// client from it.
pub async fn load_client(settings: &ClientSettings) -> Client {
    load_client_for(settings, None, None).await
}

/// As [`load_client`], with an explicit profile and endpoint (the CLI's
/// `--profile` and `--endpoint-url`). Without any configured region,
/// us-east-1 is assumed, which is what S3-compatible servers expect.
pub async fn load_client_for(settings: &ClientSettings, profile: Option<&str>, endpoint: Option<&str>) -> Client {
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let endpoint = endpoint_override(endpoint, |name| std::env::var(name).ok());
    if let Some(endpoint) = &endpoint {
        // Given explicitly, aws-config neither reads nor warns about an
        // empty AWS_ENDPOINT_URL.
        loader = loader.endpoint_url(endpoint);
    }
    client_from(&loader.load().await, endpoint)
}

/// The endpoint the configuration asks for, in this order: the explicit
/// one (a CLI flag), `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`. An empty
/// value counts as unset: the template declares `AWS_ENDPOINT_URL_S3` empty
/// so that `sam local invoke --env-vars` may set it (SAM overrides only
/// variables the template declares), and a deployed stack must then still
/// reach S3.
pub fn endpoint_override(explicit: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .into_iter()
        .chain(["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].into_iter().filter_map(&env))
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
}

/// Builds the S3 client from loaded configuration, with the endpoint
/// [`endpoint_override`] finds in the environment.
pub fn build_client(sdk_config: &aws_config::SdkConfig) -> Client {
    client_from(sdk_config, endpoint_override(None, |name| std::env::var(name).ok()))
}

/// The S3 client for `sdk_config` and the endpoint override. Path-style
/// addressing whenever an endpoint is given: local servers have no wildcard
/// DNS for virtual-hosted buckets.
fn client_from(sdk_config: &aws_config::SdkConfig, endpoint: Option<String>) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk_config);
    let endpoint = endpoint.or_else(|| sdk_config.endpoint_url().map(str::to_owned));
    let path_style = endpoint.is_some();
    // `Builder::from` takes AWS_ENDPOINT_URL_S3 as it is, an empty value
    // included (every request would then fail), and lets it win over an
    // explicit endpoint; the override decided above stands instead.
    if endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder.set_endpoint_url(endpoint);
    }
    Client::from_conf(builder.force_path_style(path_style).build())
}

/// A client for an explicit endpoint and static key pair, without reading
/// any ambient configuration: for tests, the demo and benchmarks against
/// local-s3.
pub fn client_for_endpoint(endpoint: &str, access_key: &str, secret_key: &str, settings: &ClientSettings) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "s3mm-static"))
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config())
        .build();
    Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::endpoint_override;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn the_explicit_endpoint_wins_then_the_s3_one_then_the_general_one() {
        let all = [("AWS_ENDPOINT_URL_S3", "http://s3:1"), ("AWS_ENDPOINT_URL", "http://any:2")];
        assert_eq!(endpoint_override(Some("http://flag:3"), env(&all)).as_deref(), Some("http://flag:3"));
        assert_eq!(endpoint_override(None, env(&all)).as_deref(), Some("http://s3:1"));
        assert_eq!(endpoint_override(None, env(&all[1..])).as_deref(), Some("http://any:2"));
        assert_eq!(endpoint_override(None, env(&[])), None);
    }

    #[test]
    fn an_empty_value_is_unset() {
        let deployed = [("AWS_ENDPOINT_URL_S3", "")];
        assert_eq!(endpoint_override(None, env(&deployed)), None);
        let local = [("AWS_ENDPOINT_URL_S3", " "), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")];
        assert_eq!(endpoint_override(Some(""), env(&local)).as_deref(), Some("http://127.0.0.1:9000"));
    }
}
