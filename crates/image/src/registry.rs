//! A client of the Registry HTTP API v2 (the OCI distribution spec), on reqwest: manifests
//! and blobs, with the `WWW-Authenticate` challenge flow (anonymous or credentialed bearer
//! tokens, as Docker Hub and GHCR use, and basic auth), mirrors, and plain HTTP for loopback
//! registries and those the config marks insecure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::manifest::{ACCEPT as MANIFEST_ACCEPT, MAX_DOCUMENT};
use crate::reference::{DOCKER_HUB, Reference};

/// Username and password for a registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

/// How the node reaches registries (`[images]` in the node config).
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registry host → the host that serves it instead (`docker.io` → `mirror.lan:5000`).
    pub mirrors: HashMap<String, String>,
    /// Hosts reached over plain HTTP (besides loopback addresses, which always are).
    pub insecure: Vec<String>,
    /// Credentials per registry host.
    pub credentials: HashMap<String, Credentials>,
}

/// The registry client; cheap to share.
pub struct RegistryClient {
    http: reqwest::Client,
    config: RegistryConfig,
    /// Bearer tokens by (host, repository), with when they expire.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

/// A document fetched from a registry.
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl RegistryClient {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Result<Self, ImageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("ai2in/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RegistryClient {
            http,
            config,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The host that serves `registry`, and whether it is spoken to over plain HTTP.
    fn endpoint(&self, registry: &str) -> (String, bool) {
        let host = match self.config.mirrors.get(registry) {
            Some(mirror) => mirror.clone(),
            None if registry == DOCKER_HUB => "registry-1.docker.io".to_string(),
            None => registry.to_string(),
        };
        let plain = is_loopback(&host) || self.config.insecure.contains(&host);
        (host, plain)
    }

    fn url(&self, r: &Reference, path: &str) -> String {
        let (host, plain) = self.endpoint(&r.registry);
        let scheme = if plain { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}/{path}", r.repository)
    }

    /// Fetches manifest `reference` (a tag or digest) of `r`'s repository.
    pub(crate) async fn manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<Fetched, ImageError> {
        let url = self.url(r, &format!("manifests/{reference}"));
        let response = self.get(r, &url, Some(MANIFEST_ACCEPT)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ImageError::NotFound(format!(
                "image {r} not found: registry {} has no manifest {reference}",
                r.registry
            )));
        }
        let response = self.check(r, response, "the manifest")?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.read_small(r, response).await?;
        Ok(Fetched { body, content_type })
    }

    /// Fetches a small blob (a config) in full.
    pub(crate) async fn small_blob(
        &self,
        r: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let response = self.blob(r, digest).await?;
        self.read_small(r, response).await
    }

    /// Starts fetching blob `digest`; the body streams.
    pub(crate) async fn blob(&self, r: &Reference, digest: &str) -> Result<Response, ImageError> {
        let url = self.url(r, &format!("blobs/{digest}"));
        let response = self.get(r, &url, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(self.garbage(
                r,
                format!("it has no blob {digest} that its manifest names"),
            ));
        }
        self.check(r, response, "a blob")
    }

    async fn read_small(
        &self,
        r: &Reference,
        mut response: Response,
    ) -> Result<Vec<u8>, ImageError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(r, &e))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(self.garbage(r, "it sent a document over 4 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn check(&self, r: &Reference, response: Response, what: &str) -> Result<Response, ImageError> {
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ImageError::NotFound(format!(
                "image {r} not found, or registry {} refuses access to it; if it is private, add \
                 credentials for it under [images.credentials] in the node config",
                r.registry
            ))),
            s => Err(self.garbage(r, format!("it answered {s} for {what}"))),
        }
    }

    /// GET with the auth dance: on a 401, answer the challenge once and retry.
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, ImageError> {
        let key = (self.endpoint(&r.registry).0, r.repository.clone());
        let cached = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens
                .get(&key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(t, _)| t.clone())
        };
        let send = |auth: Option<String>| {
            let mut req = self.http.get(url);
            if let Some(accept) = accept {
                req = req.header(ACCEPT, accept);
            }
            if let Some(auth) = auth {
                req = req.header(AUTHORIZATION, auth);
            }
            req.send()
        };
        let response = send(cached.map(|t| format!("Bearer {t}")))
            .await
            .map_err(|e| self.unreachable(r, &e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let auth = self.answer(r, &challenge, &key).await?;
        match auth {
            Some(auth) => send(Some(auth)).await.map_err(|e| self.unreachable(r, &e)),
            None => Ok(response),
        }
    }

    /// The `Authorization` value that answers `challenge`, or `None` when there is nothing
    /// to answer with.
    async fn answer(
        &self,
        r: &Reference,
        challenge: &str,
        key: &(String, String),
    ) -> Result<Option<String>, ImageError> {
        let credentials = self.config.credentials.get(&r.registry);
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(credentials.map(basic));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let params = parse_params(params);
        let Some(realm) = params.get("realm") else {
            return Err(self.garbage(r, "its bearer challenge names no realm".into()));
        };
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
        let mut query = vec![("scope", scope)];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = credentials {
            req = req.header(AUTHORIZATION, basic(c));
        }
        let response = req.send().await.map_err(|e| self.unreachable(r, &e))?;
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(ImageError::NotFound(format!(
                "registry {} refused a token for {r}: its credentials under \
                 [images.credentials] are missing or wrong",
                r.registry
            )));
        }
        if !response.status().is_success() {
            return Err(self.garbage(
                r,
                format!("its token service answered {}", response.status()),
            ));
        }
        let body = self.read_small(r, response).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            self.garbage(
                r,
                "its token service answered something else than JSON".into(),
            )
        })?;
        let Some(token) = answer.token.or(answer.access_token) else {
            return Err(self.garbage(r, "its token service gave no token".into()));
        };
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(self.garbage(r, "its token is not a valid header value".into()));
        }
        // Tokens live 60 s unless told otherwise; renew a little early.
        let life = Duration::from_secs(answer.expires_in.unwrap_or(60).clamp(10, 3600) - 5);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (token.clone(), Instant::now() + life));
        Ok(Some(format!("Bearer {token}")))
    }

    fn unreachable(&self, r: &Reference, e: &reqwest::Error) -> ImageError {
        let (host, _) = self.endpoint(&r.registry);
        // The innermost cause says it best ("Connection refused", "dns error: …").
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            why = inner.to_string();
            source = inner.source();
        }
        ImageError::Registry {
            registry: r.registry.clone(),
            why: format!("cannot be reached at {host}: {why}"),
        }
    }

    pub(crate) fn garbage(&self, r: &Reference, why: String) -> ImageError {
        ImageError::Registry {
            registry: r.registry.clone(),
            why,
        }
    }
}

fn basic(c: &Credentials) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A registry host on a loopback address (`127.0.0.1:5000`, `[::1]:5000`, `localhost`).
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `realm="…",service="…",scope="…"` → a map (quoted values may hold commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = next.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let p = parse_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/python:pull,push");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        let c = RegistryClient::new(RegistryConfig {
            insecure: vec!["reg.lan:5000".into()],
            mirrors: [("docker.io".to_string(), "127.0.0.1:5001".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.endpoint("127.0.0.1:5000"),
            ("127.0.0.1:5000".into(), true)
        );
        assert_eq!(
            c.endpoint("localhost:5000"),
            ("localhost:5000".into(), true)
        );
        assert_eq!(c.endpoint("[::1]:5000"), ("[::1]:5000".into(), true));
        assert_eq!(c.endpoint("reg.lan:5000"), ("reg.lan:5000".into(), true));
        assert_eq!(c.endpoint("ghcr.io"), ("ghcr.io".into(), false));
        assert_eq!(c.endpoint("docker.io"), ("127.0.0.1:5001".into(), true));
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        assert_eq!(basic(&c), "Basic dXNlcjpwYXNz");
    }
}
