//! How the ticket travels: cookie attributes or bearer headers.

use std::borrow::Cow;
use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderName;
use http::HeaderValue;

/// Attributes of the session cookie.
///
/// The defaults are the safe ones: name `id`, `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, no `Domain` (the cookie goes back only to the
/// host that set it), and no `Max-Age` (a browser-session cookie, dropped
/// when the browser closes; the server-side timeouts apply either way).
///
/// ```
/// use std::time::Duration;
/// use sessionkit_axum::{CookieConfig, SameSite};
///
/// let cookie = CookieConfig::new()
///     .name("__Host-sid")
///     .same_site(SameSite::Strict)
///     .max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(cookie.get_name(), "__Host-sid");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    name: Cow<'static, str>,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    path: Option<Cow<'static, str>>,
    domain: Option<Cow<'static, str>>,
    max_age: Option<Duration>,
    partitioned: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: Cow::Borrowed("id"),
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            path: Some(Cow::Borrowed("/")),
            domain: None,
            max_age: None,
            partitioned: false,
        }
    }
}

impl CookieConfig {
    /// The safe defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// The cookie name (default `id`). A name starting with `__Host-` makes
    /// browsers refuse the cookie unless it is `Secure`, has `Path=/` and no
    /// `Domain`, which also stops a sibling subdomain from planting it.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The `Secure` attribute (default on). Turn it off only for plain-HTTP
    /// development on a host other than `localhost`.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `HttpOnly` attribute (default on): scripts cannot read the ticket.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`); `None` omits the attribute.
    /// `SameSite::None` requires `Secure` in browsers.
    pub fn same_site(mut self, same_site: impl Into<Option<SameSite>>) -> Self {
        self.same_site = same_site.into();
        self
    }

    /// The `Path` attribute (default `/`); `None` omits it.
    pub fn path(mut self, path: Option<impl Into<Cow<'static, str>>>) -> Self {
        self.path = path.map(Into::into);
        self
    }

    /// The `Domain` attribute (default none: host-only). Setting it shares
    /// the cookie with every subdomain of that domain.
    pub fn domain(mut self, domain: Option<impl Into<Cow<'static, str>>>) -> Self {
        self.domain = domain.map(Into::into);
        self
    }

    /// Makes the cookie persistent with this `Max-Age` (default: none, a
    /// cookie that ends with the browser session). The session itself still
    /// ends at its idle or absolute timeout, whichever comes first.
    pub fn max_age(mut self, max_age: impl Into<Option<Duration>>) -> Self {
        self.max_age = max_age.into();
        self
    }

    /// The `Partitioned` attribute (CHIPS; default off).
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// The configured cookie name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    fn builder(&self, value: String) -> cookie::CookieBuilder<'static> {
        let mut b = Cookie::build((self.name.to_string(), value))
            .secure(self.secure)
            .http_only(self.http_only);
        if let Some(same_site) = self.same_site {
            b = b.same_site(same_site);
        }
        if let Some(path) = &self.path {
            b = b.path(path.to_string());
        }
        if let Some(domain) = &self.domain {
            b = b.domain(domain.to_string());
        }
        if self.partitioned {
            b = b.partitioned(true);
        }
        b
    }

    /// The `Set-Cookie` value that hands `ticket` to the client.
    pub(crate) fn set_cookie(&self, ticket: &str) -> Option<HeaderValue> {
        let mut b = self.builder(ticket.to_owned());
        if let Some(max_age) = self.max_age {
            let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            b = b.max_age(time::Duration::seconds(secs));
        }
        HeaderValue::from_str(&b.build().to_string()).ok()
    }

    /// The `Set-Cookie` value that makes the client drop the cookie.
    pub(crate) fn removal_cookie(&self) -> Option<HeaderValue> {
        let cookie = self.builder(String::new()).removal().build();
        HeaderValue::from_str(&cookie.to_string()).ok()
    }
}

/// Headers of the bearer transport.
///
/// The client sends `Authorization: Bearer <ticket>`. Whenever the ticket
/// changes (a new session, a rotation, a re-issued stateless token) the
/// response carries the new one in the response header (default
/// `x-session-token`); after `destroy()` that header is sent with an empty
/// value, meaning "discard your ticket".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerConfig {
    response_header: HeaderName,
}

impl Default for BearerConfig {
    fn default() -> Self {
        BearerConfig {
            response_header: HeaderName::from_static("x-session-token"),
        }
    }
}

impl BearerConfig {
    /// The defaults: the new ticket comes back in `x-session-token`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The response header that carries a new ticket.
    pub fn response_header(mut self, name: HeaderName) -> Self {
        self.response_header = name;
        self
    }

    /// The configured response header.
    pub fn get_response_header(&self) -> &HeaderName {
        &self.response_header
    }
}

/// Where the ticket travels between client and server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// In a cookie (browsers). The default, with [`CookieConfig::default`].
    Cookie(CookieConfig),
    /// In `Authorization: Bearer` (API clients, mobile apps).
    Bearer(BearerConfig),
}

impl Default for Transport {
    fn default() -> Self {
        Transport::Cookie(CookieConfig::default())
    }
}

/// Longest ticket read from a request; longer values are ignored unread.
pub(crate) const MAX_TICKET_LEN: usize = 16 * 1024;
/// About what browsers keep per cookie (name, value and attributes).
const BROWSER_COOKIE_LIMIT: usize = 4000;
/// How many same-name cookies are tried (a sibling subdomain may have
/// planted extra ones).
pub(crate) const MAX_COOKIE_CANDIDATES: usize = 3;

impl Transport {
    /// The tickets a request presents, in the order to try them.
    pub(crate) fn tickets(&self, headers: &http::HeaderMap) -> Vec<String> {
        match self {
            Transport::Cookie(config) => {
                let mut found = Vec::new();
                for header in headers.get_all(http::header::COOKIE) {
                    let Ok(text) = header.to_str() else { continue };
                    for cookie in Cookie::split_parse(text).flatten() {
                        if cookie.name() == config.name
                            && !cookie.value().is_empty()
                            && cookie.value().len() <= MAX_TICKET_LEN
                            && found.len() < MAX_COOKIE_CANDIDATES
                        {
                            found.push(cookie.value().to_owned());
                        }
                    }
                }
                found
            }
            Transport::Bearer(_) => headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
        }
    }

    /// Adds the header that hands `ticket` to the client.
    pub(crate) fn send(&self, headers: &mut http::HeaderMap, ticket: &str) {
        match self {
            Transport::Cookie(config) => {
                if ticket.len() > BROWSER_COOKIE_LIMIT {
                    tracing::warn!(
                        len = ticket.len(),
                        "the session ticket is longer than browsers keep in a cookie \
                         (about 4 KiB): keep stateless session data small"
                    );
                }
                if let Some(v) = config.set_cookie(ticket) {
                    headers.append(http::header::SET_COOKIE, v);
                    no_store(headers);
                }
            }
            Transport::Bearer(config) => {
                if let Ok(v) = HeaderValue::from_str(ticket) {
                    headers.insert(config.response_header.clone(), v);
                    no_store(headers);
                }
            }
        }
    }

    /// Adds the header that makes the client forget its ticket.
    pub(crate) fn clear(&self, headers: &mut http::HeaderMap) {
        match self {
            Transport::Cookie(config) => {
                if let Some(v) = config.removal_cookie() {
                    headers.append(http::header::SET_COOKIE, v);
                }
            }
            Transport::Bearer(config) => {
                headers.insert(config.response_header.clone(), HeaderValue::from_static(""));
            }
        }
    }
}

/// A response that hands out a ticket must not be kept by shared caches.
fn no_store(headers: &mut http::HeaderMap) {
    if !headers.contains_key(http::header::CACHE_CONTROL) {
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty() && token.len() <= MAX_TICKET_LEN).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cookie_attributes() {
        let v = CookieConfig::default().set_cookie("abc").unwrap();
        let s = v.to_str().unwrap();
        assert!(s.starts_with("id=abc"), "{s}");
        for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(s.contains(attr), "{attr} missing in {s}");
        }
        assert!(!s.contains("Domain"), "{s}");
        assert!(!s.contains("Max-Age"), "{s}");
    }

    #[test]
    fn removal_cookie_expires_now() {
        let v = CookieConfig::default().removal_cookie().unwrap();
        let s = v.to_str().unwrap();
        assert!(s.starts_with("id=;"), "{s}");
        assert!(s.contains("Max-Age=0"), "{s}");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn cookie_candidates() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; id=first; id=; id=second"),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("id=third; id=4th"),
        );
        let t = Transport::default().tickets(&h);
        assert_eq!(t, ["first", "second", "third"]);
    }
}
