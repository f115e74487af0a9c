//! The one HTTP client of both APIs: blocking ureq over rustls, the credentials from a [`Secret`] put
//! into the `Authorization` header only, the APIs' errors read into [`ApiError`], and rate limits and
//! locked resources waited out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use installer::Secret;
use serde::Deserialize;

use crate::HetznerError;

/// How a request proves who sends it.
pub enum Credentials {
    /// Hetzner Cloud: an API token of the project.
    Token(Secret),
    /// Robot: the web service user and its password.
    Basic {
        /// The web service user (not secret; shown in errors).
        user: String,
        /// Its password.
        password: Secret,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => write!(f, "Token([secret])"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, [secret])"),
        }
    }
}

/// A request's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// JSON (the Cloud API).
    Json(serde_json::Value),
    /// `application/x-www-form-urlencoded` (Robot).
    Form(Vec<(String, String)>),
}

/// One request as sent: what tests compare with the API's description.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The path and query below the endpoint (`/servers?name=web1`).
    pub path: String,
    /// The body, if any.
    pub body: Option<Body>,
}

/// An error the API answered with, in its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The API's error code (`invalid_input`, `uniqueness_error`, `unauthorized`, ...).
    pub code: String,
    /// The API's message.
    pub message: String,
    /// The fields the API named as invalid, with what it said of each.
    pub fields: Vec<(String, Vec<String>)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = match self.code.as_str() {
            "unauthorized" => "the token was not accepted (is it this project's, with read and write rights?)",
            "forbidden" => "the token may only read (make one with read and write rights)",
            "rate_limit_exceeded" => "too many requests, and waiting did not help",
            "locked" => "the resource stayed locked by another action",
            "uniqueness_error" => "the name is taken",
            "resource_limit_exceeded" => "the project's limit for this resource is reached",
            "resource_unavailable" => "the type is sold out at that location",
            _ => "",
        };
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if !plain.is_empty() {
            write!(f, " ({plain})")?;
        }
        for (field, messages) in &self.fields {
            write!(f, "; {field}: {}", messages.join(", "))?;
        }
        Ok(())
    }
}

/// The error body both APIs send: `{"error": {"code", "message", "details"}}` (Robot: `status`,
/// `code`, `message`, and `invalid` for the fields).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: serde_json::Value,
    message: String,
    #[serde(default)]
    details: Option<Details>,
    #[serde(default)]
    invalid: Vec<String>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    fields: Vec<FieldError>,
}

#[derive(Deserialize)]
struct FieldError {
    name: String,
    #[serde(default)]
    messages: Vec<String>,
}

/// How long to wait for an answer, and how often to try again on 429 and `locked`.
const TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPTS: u32 = 8;
/// The longest wait between attempts, whatever the API's headers say.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// A client for one endpoint with one set of credentials.
pub struct Client {
    endpoint: String,
    credentials: Credentials,
    agent: ureq::Agent,
    sleep: Box<dyn Fn(Duration) + Send + Sync>,
    sent: std::sync::Mutex<Vec<Sent>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `endpoint` (`https://api.hetzner.cloud/v1`). Plain `http://` is refused except on
    /// 127.0.0.1 (a stand-in for tests): the credentials never cross a network in clear.
    pub fn new(endpoint: &str, credentials: Credentials) -> Result<Client, HetznerError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let local = endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://[::1]:");
        if !endpoint.starts_with("https://") && !local {
            return Err(HetznerError::Input(format!("{endpoint}: the API is reached over https:// only")));
        }
        if let Credentials::Token(token) = &credentials {
            let printable = token.expose().iter().all(|b| b.is_ascii_graphic());
            if token.is_empty() || !printable {
                return Err(HetznerError::Input("the API token is empty or holds spaces or control characters".into()));
            }
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("nix-dabei/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            endpoint,
            credentials,
            agent,
            sleep: Box::new(std::thread::sleep),
            sent: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Waits with `sleep` instead of the clock (tests).
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Client {
        self.sleep = Box::new(sleep);
        self
    }

    /// Every request sent so far, in order (retries included).
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn authorization(&self) -> String {
        match &self.credentials {
            Credentials::Token(token) => format!("Bearer {}", String::from_utf8_lossy(token.expose())),
            Credentials::Basic { user, password } => {
                let pair = [user.as_bytes(), b":", password.expose()].concat();
                format!("Basic {}", base64_encode(&pair))
            }
        }
    }

    /// Sends one request and returns the answer's JSON; a 429 or a `locked` answer is tried again after
    /// the wait the API's headers ask for (`Retry-After`, `RateLimit-Reset`), up to [`ATTEMPTS`] times.
    pub fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Body>,
    ) -> Result<serde_json::Value, HetznerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Ok(mut sent) = self.sent.lock() {
                sent.push(Sent { method, path: path.to_string(), body: body.clone() });
            }
            let (status, headers, text) = self.once(method, path, body.as_ref())?;
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(serde_json::Value::Null);
                }
                return serde_json::from_str(&text)
                    .map_err(|e| HetznerError::Shape { what: format!("{method} {path}"), problem: e.to_string() });
            }
            let error = api_error(status, &text);
            // Cloud: 429 `rate_limit_exceeded`, 423 `locked`; Robot: 403 `RATE_LIMIT_EXCEEDED`.
            let again = status == 429
                || ["locked", "rate_limit_exceeded", "RATE_LIMIT_EXCEEDED"].contains(&error.code.as_str());
            if !again || attempt >= ATTEMPTS {
                return Err(HetznerError::Api { request: format!("{method} {path}"), error });
            }
            (self.sleep)(wait_before_retry(&headers, attempt));
        }
    }

    fn once(&self, method: &str, path: &str, body: Option<&Body>) -> Result<(u16, Headers, String), HetznerError> {
        let url = format!("{}{path}", self.endpoint);
        let authorization = self.authorization();
        let transport = |e: ureq::Error| HetznerError::Transport { url: url.clone(), problem: e.to_string() };
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &authorization).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", &authorization).call(),
            (_, Some(Body::Json(value))) => self
                .agent
                .post(&url)
                .header("Authorization", &authorization)
                .content_type("application/json")
                .send(value.to_string().as_bytes()),
            (_, Some(Body::Form(pairs))) => self
                .agent
                .post(&url)
                .header("Authorization", &authorization)
                .send_form(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            (_, None) => self.agent.post(&url).header("Authorization", &authorization).send_empty(),
        }
        .map_err(transport)?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let headers = Headers { retry_after: header("retry-after"), reset: header("ratelimit-reset") };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(transport)?;
        Ok((status, headers, text))
    }
}

/// The headers that say when to try again.
struct Headers {
    retry_after: Option<String>,
    reset: Option<String>,
}

/// The API's `Retry-After` (seconds), else its `RateLimit-Reset` (a Unix time), else a doubling wait from
/// 1 s; never longer than [`LONGEST_WAIT`].
fn wait_before_retry(headers: &Headers, attempt: u32) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let asked =
        headers.retry_after.as_deref().and_then(|s| s.trim().parse::<u64>().ok()).or_else(|| {
            headers.reset.as_deref().and_then(|s| s.trim().parse::<u64>().ok()).map(|t| t.saturating_sub(now))
        });
    let backoff = Duration::from_secs(1 << attempt.min(5));
    asked.map_or(backoff, Duration::from_secs).min(LONGEST_WAIT)
}

fn api_error(status: u16, text: &str) -> ApiError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => {
            let mut fields: Vec<(String, Vec<String>)> = body
                .error
                .details
                .map(|d| d.fields.into_iter().map(|f| (f.name, f.messages)).collect())
                .unwrap_or_default();
            fields.extend(body.error.invalid.into_iter().map(|name| (name, vec!["invalid".to_string()])));
            let code = match body.error.code {
                serde_json::Value::String(code) => code,
                other => other.to_string(),
            };
            ApiError { status, code, message: body.error.message, fields }
        }
        Err(_) => ApiError {
            status,
            code: "no_error_body".into(),
            message: text.chars().take(200).collect::<String>().trim().to_string(),
            fields: Vec::new(),
        },
    }
}

/// Standard base64 with padding (for the Basic header).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |g, (i, b)| g | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `value` as one query parameter value (RFC 3986 unreserved characters kept).
pub fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(base64_encode(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn the_apis_error_is_read_with_its_fields() {
        let text = r#"{"error":{"code":"invalid_input","message":"invalid input in field 'name'",
            "details":{"fields":[{"name":"name","messages":["must be a valid hostname"]}]}}}"#;
        let error = api_error(422, text);
        assert_eq!(error.code, "invalid_input");
        assert_eq!(error.fields, vec![("name".to_string(), vec!["must be a valid hostname".to_string()])]);
        assert!(error.to_string().contains("name: must be a valid hostname"), "{error}");
        assert_eq!(api_error(502, "<html>bad gateway</html>").code, "no_error_body");
    }

    #[test]
    fn waits_follow_the_headers_and_are_capped() {
        let headers = Headers { retry_after: Some("3".into()), reset: None };
        assert_eq!(wait_before_retry(&headers, 1), Duration::from_secs(3));
        let headers = Headers { retry_after: None, reset: Some("99999999999".into()) };
        assert_eq!(wait_before_retry(&headers, 1), LONGEST_WAIT);
        let headers = Headers { retry_after: None, reset: None };
        assert_eq!(wait_before_retry(&headers, 2), Duration::from_secs(4));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let token = || Credentials::Token(Secret::new(b"t0ken".to_vec()));
        assert!(Client::new("http://api.hetzner.cloud/v1", token()).is_err());
        assert!(Client::new("http://127.0.0.1:8080/v1", token()).is_ok());
        assert!(Client::new("https://api.hetzner.cloud/v1", Credentials::Token(Secret::new(b"a b".to_vec()))).is_err());
    }
}
