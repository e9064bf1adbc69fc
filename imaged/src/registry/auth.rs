//! Registry authentication as Docker does it: try anonymously; on a 401 read the
//! `WWW-Authenticate` challenge; for `Bearer` get a token from the realm (with the basic
//! credentials from `config.json` when there are some) and retry, for `Basic` retry with
//! the credentials. What a registry asked for is remembered per host and tokens per
//! (host, scope) until they expire, so later requests authenticate up front: a streaming
//! upload body cannot be sent twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::credentials::{load_credentials, Credentials};
use super::error::{chain, from_response, read_capped, status_kind, Error, ErrorKind};
use super::{Endpoint, RegistryClient};

/// A token is used until this long before it expires, so it does not lapse in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The distribution token spec: a token without `expires_in` lasts 60 seconds, and
/// clients should assume no less.
const MIN_TOKEN_LIFETIME: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `WWW-Authenticate` values (RFC 7235): one or more challenges, each a scheme and
/// comma-separated `name=value` or `name="quoted value"` parameters.
pub(crate) fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        for (scheme, params) in split_challenges(value) {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            if scheme.eq_ignore_ascii_case("basic") {
                out.push(Challenge::Basic);
            } else if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = get("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    });
                }
            }
        }
    }
    out
}

type Params = Vec<(String, String)>;

fn split_challenges(value: &str) -> Vec<(String, Params)> {
    let s = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Params)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && !matches!(s[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        value[start..*i].to_string()
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        let word = token(&mut i);
        // A word followed by `=` is a parameter of the current challenge, any other word
        // starts a new challenge.
        let mut j = i;
        while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
                i += 1;
            }
            let val = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                i += 1;
                String::from_utf8_lossy(&v).into_owned()
            } else {
                token(&mut i)
            };
            out.last_mut()
                .expect("checked non-empty")
                .1
                .push((word, val));
        } else {
            out.push((word, Vec::new()));
        }
    }
    out
}

/// The access a request needs, as token scopes: `repository:berth/busybox:pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    pub(crate) fn pull(repository: &str) -> Scope {
        Scope(vec![format!("repository:{repository}:pull")])
    }

    pub(crate) fn push(repository: &str) -> Scope {
        Scope(vec![format!("repository:{repository}:pull,push")])
    }

    pub(crate) fn and_pull(mut self, repository: &str) -> Scope {
        self.0.push(format!("repository:{repository}:pull"));
        self
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }

    /// This scope and what a challenge asked for besides.
    fn with(&self, extra: Option<&str>) -> Vec<String> {
        let mut all = self.0.clone();
        for s in extra.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            if !all.iter().any(|a| a == s) {
                all.push(s.to_string());
            }
        }
        all
    }
}

#[derive(Clone, Debug)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    expires: Instant,
}

/// Per-client memory of how each host authenticates, and its tokens.
#[derive(Default)]
pub(crate) struct AuthCache {
    // A std mutex: it is never held across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    schemes: HashMap<String, Scheme>,
    tokens: HashMap<(String, String), Token>,
}

impl AuthCache {
    fn scheme(&self, host: &str) -> Option<Scheme> {
        self.state.lock().unwrap().schemes.get(host).cloned()
    }

    fn set_scheme(&self, host: &str, scheme: Scheme) {
        self.state
            .lock()
            .unwrap()
            .schemes
            .insert(host.to_string(), scheme);
    }

    fn token(&self, host: &str, scope: &Scope) -> Option<String> {
        let state = self.state.lock().unwrap();
        let t = state.tokens.get(&(host.to_string(), scope.key()))?;
        (Instant::now() + EXPIRY_MARGIN < t.expires).then(|| t.value.clone())
    }

    fn set_token(&self, host: &str, scope: &Scope, value: String, lifetime: Duration) {
        self.state.lock().unwrap().tokens.insert(
            (host.to_string(), scope.key()),
            Token {
                value,
                expires: Instant::now() + lifetime,
            },
        );
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl RegistryClient {
    /// Credentials for an endpoint's host from `config.json`.
    fn credentials(&self, ep: &Endpoint) -> Result<Option<Credentials>, ErrorKind> {
        load_credentials(&self.config.docker_config_dir, &ep.host).map_err(|e| e.kind)
    }

    /// The `Authorization` header to send up front, from what the host asked for before.
    async fn authorization(
        &self,
        ep: &Endpoint,
        scope: &Scope,
    ) -> Result<Option<String>, ErrorKind> {
        match self.auth.scheme(&ep.host) {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(self.credentials(ep)?.map(|c| c.basic_header())),
            Some(Scheme::Bearer { realm, service }) => {
                if let Some(t) = self.auth.token(&ep.host, scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let creds = self.credentials(ep)?;
                let scopes = scope.with(None);
                let (token, lifetime) = self
                    .fetch_token(&realm, service.as_deref(), &scopes, creds.as_ref(), ep)
                    .await?;
                self.auth
                    .set_token(&ep.host, scope, token.clone(), lifetime);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Sends the request `build` makes, authenticating as the registry asks: once up front
    /// from what is known, and once more after a 401. Any other answer is returned as is.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        build: &(dyn Fn() -> RequestBuilder + Send + Sync),
    ) -> Result<Response, ErrorKind> {
        let mut header = self.authorization(ep, scope).await?;
        let mut sent_creds: Option<Credentials> = None;
        for attempt in 0..2 {
            let mut req = build();
            if let Some(h) = &header {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(connection_error)?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if attempt == 1 {
                return Err(self.unauthorized(ep, resp, sent_creds.as_ref()).await);
            }
            let challenges = parse_challenges(
                resp.headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            // Bearer when offered: it is what registries prefer and scopes the access.
            let challenge = challenges
                .iter()
                .find(|c| matches!(c, Challenge::Bearer { .. }))
                .or_else(|| challenges.first())
                .cloned();
            let creds = self.credentials(ep)?;
            match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: extra,
                }) => {
                    self.auth.set_scheme(
                        &ep.host,
                        Scheme::Bearer {
                            realm: realm.clone(),
                            service: service.clone(),
                        },
                    );
                    let scopes = scope.with(extra.as_deref());
                    let (token, lifetime) = self
                        .fetch_token(&realm, service.as_deref(), &scopes, creds.as_ref(), ep)
                        .await?;
                    self.auth
                        .set_token(&ep.host, scope, token.clone(), lifetime);
                    header = Some(format!("Bearer {token}"));
                }
                Some(Challenge::Basic) => {
                    self.auth.set_scheme(&ep.host, Scheme::Basic);
                    let Some(c) = creds else {
                        return Err(self.unauthorized(ep, resp, None).await);
                    };
                    header = Some(c.basic_header());
                }
                None => return Err(self.unauthorized(ep, resp, creds.as_ref()).await),
            }
            sent_creds = self.credentials(ep)?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Sends a request that can be sent only once (its body streams from a reader), with
    /// the authorization known from the requests before it.
    pub(crate) async fn send_once(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        req: RequestBuilder,
    ) -> Result<Response, ErrorKind> {
        let header = self.authorization(ep, scope).await?;
        let req = match &header {
            Some(h) => req.header(AUTHORIZATION, h),
            None => req,
        };
        let resp = req.send().await.map_err(connection_error)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let creds = self.credentials(ep)?;
            return Err(self.unauthorized(ep, resp, creds.as_ref()).await);
        }
        Ok(resp)
    }

    async fn unauthorized(
        &self,
        ep: &Endpoint,
        resp: Response,
        creds: Option<&Credentials>,
    ) -> ErrorKind {
        let detail = match from_response(resp).await {
            ErrorKind::Unauthorized { detail } => detail,
            other => other.to_string(),
        };
        let file = self.config.docker_config_file();
        let whose = match creds {
            Some(c) => format!(
                "the credentials of user {:?} from {} were rejected",
                c.username,
                file.display()
            ),
            None => format!("no credentials for {} in {}", ep.host, file.display()),
        };
        ErrorKind::Unauthorized {
            detail: format!("{detail} ({whose})"),
        }
    }

    /// GETs a token from a bearer realm, as the distribution token spec describes.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
        ep: &Endpoint,
    ) -> Result<(String, Duration), ErrorKind> {
        let token_err = |detail: String| ErrorKind::Token {
            realm: realm.to_string(),
            detail,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| token_err(format!("the registry's realm is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Some(c) = creds {
                q.append_pair("account", &c.username);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut req = self.http.get(url);
        if let Some(c) = creds {
            req = req.header(AUTHORIZATION, c.basic_header());
        }
        let resp = req.send().await.map_err(connection_error)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = read_capped(resp, 64 * 1024).await;
            let said = match status_kind(status, &body) {
                ErrorKind::Unauthorized { detail } | ErrorKind::Denied { detail } => detail,
                other => other.to_string(),
            };
            let file = self.config.docker_config_file();
            let whose = match creds {
                Some(c) => format!(
                    "incorrect username or password for user {:?} (credentials from {})",
                    c.username,
                    file.display()
                ),
                None => format!(
                    "authentication required; no credentials for {} in {}",
                    ep.host,
                    file.display()
                ),
            };
            return Err(ErrorKind::Unauthorized {
                detail: format!("{whose}; token server {realm} said: {said}"),
            });
        }
        if !status.is_success() {
            return Err(token_err(from_response(resp).await.to_string()));
        }
        let body = read_capped(resp, 1 << 20).await;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| token_err(format!("invalid token response: {e}")))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| token_err("the response has neither token nor access_token".into()))?;
        let lifetime = parsed
            .expires_in
            .unwrap_or(MIN_TOKEN_LIFETIME)
            .max(MIN_TOKEN_LIFETIME);
        Ok((token, Duration::from_secs(lifetime)))
    }

    /// Checks `creds` against `registry` as `docker login` does: ping `/v2/`, and when it
    /// asks for authentication, authenticate with `creds` (getting a token for a bearer
    /// registry) and ping again. Nothing is stored.
    pub async fn check_login(&self, registry: &str, creds: &Credentials) -> Result<(), Error> {
        let fail = |kind| Error::new("login", registry, kind);
        let ep = self.origin(registry);
        let url = format!("{}/v2/", ep.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(connection_error(e)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(fail(from_response(resp).await));
        }
        let challenges = parse_challenges(
            resp.headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let header =
            match challenges
                .iter()
                .find(|c| matches!(c, Challenge::Bearer { .. }))
                .or_else(|| challenges.first())
            {
                Some(Challenge::Bearer { realm, service, .. }) => {
                    let (token, _) = self
                        .fetch_token(realm, service.as_deref(), &[], Some(creds), &ep)
                        .await
                        .map_err(fail)?;
                    format!("Bearer {token}")
                }
                Some(Challenge::Basic) => creds.basic_header(),
                None => return Err(fail(ErrorKind::Unauthorized {
                    detail:
                        "the registry asks for an authentication scheme other than Basic or Bearer"
                            .into(),
                })),
            };
        let resp = self
            .http
            .get(&url)
            .header(AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| fail(connection_error(e)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(fail(ErrorKind::Unauthorized {
                detail: format!(
                    "incorrect username or password for user {:?}",
                    creds.username
                ),
            }));
        }
        Err(fail(from_response(resp).await))
    }
}

/// A request that got no HTTP answer.
pub(crate) fn connection_error(e: reqwest::Error) -> ErrorKind {
    let url = e
        .url()
        .map_or_else(|| "the registry".to_string(), |u| u.to_string());
    // The URL goes in front once, not again inside reqwest's text.
    ErrorKind::Connection {
        url,
        detail: chain(&e.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        ]);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            }]
        );
        let c = parse_challenges([r#"Basic realm="Registry Realm""#]);
        assert_eq!(c, vec![Challenge::Basic]);
        // Two challenges in one value, an unquoted parameter and an escaped quote.
        let c = parse_challenges([
            r#"Basic realm="a \"b\"", Bearer realm=http://127.0.0.1:1/token , service="s""#,
        ]);
        assert_eq!(
            c,
            vec![
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "http://127.0.0.1:1/token".into(),
                    service: Some("s".into()),
                    scope: None,
                }
            ]
        );
        // A bearer challenge without a realm cannot be answered.
        assert!(parse_challenges(["Bearer service=x"]).is_empty());
        assert!(parse_challenges(["Negotiate"]).is_empty());
    }

    #[test]
    fn scopes_join_what_the_registry_asks_for() {
        let s = Scope::push("a/b").and_pull("c/d");
        assert_eq!(
            s.with(Some("repository:a/b:pull,push repository:e:pull")),
            vec![
                "repository:a/b:pull,push",
                "repository:c/d:pull",
                "repository:e:pull"
            ]
        );
    }
}
