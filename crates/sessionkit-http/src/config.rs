//! How the ticket travels: cookie attributes, bearer headers, reading the
//! ticket from a request and the response headers that hand it out.

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
/// use sessionkit_http::{CookieConfig, SameSite};
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

    /// The `Set-Cookie` value that hands `ticket` to the client (`None`
    /// if the ticket cannot be a header value).
    pub fn set_cookie(&self, ticket: &str) -> Option<HeaderValue> {
        let mut b = self.builder(ticket.to_owned());
        if let Some(max_age) = self.max_age {
            let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            b = b.max_age(cookie::time::Duration::seconds(secs));
        }
        HeaderValue::from_str(&b.build().to_string()).ok()
    }

    /// The `Set-Cookie` value that makes the client drop the cookie
    /// (empty value, `Max-Age=0`, the same name, path and domain).
    pub fn removal_cookie(&self) -> Option<HeaderValue> {
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
///
/// ```
/// use sessionkit_http::Transport;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::COOKIE, "theme=dark; id=abc".parse().unwrap());
/// assert_eq!(Transport::default().tickets(&headers), ["abc"]);
/// ```
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
pub const MAX_TICKET_LEN: usize = 16 * 1024;
/// About what browsers keep per cookie (name, value and attributes).
const BROWSER_COOKIE_LIMIT: usize = 4000;
/// How many same-name cookies are tried (a sibling subdomain may have
/// planted extra ones).
pub const MAX_COOKIE_CANDIDATES: usize = 3;

impl Transport {
    /// The tickets a request presents, in the order to try them.
    ///
    /// Cookie transport: the non-empty values of the cookies with the
    /// configured name, at most [`MAX_COOKIE_CANDIDATES`], each at most
    /// [`MAX_TICKET_LEN`] bytes (a sibling subdomain may have planted extra
    /// ones, so several are tried). Bearer transport: the token of
    /// `Authorization: Bearer <token>`, at most [`MAX_TICKET_LEN`] bytes.
    /// Anything else (other names, other schemes, non-UTF-8) is ignored.
    pub fn tickets(&self, headers: &http::HeaderMap) -> Vec<String> {
        self.tickets_from(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes),
            headers
                .get(http::header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
    }

    /// [`tickets`](Self::tickets) from raw header values, for frameworks
    /// with their own header types: every `Cookie` header value in request
    /// order, and the `Authorization` value.
    pub fn tickets_from<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        authorization: Option<&[u8]>,
    ) -> Vec<String> {
        match self {
            Transport::Cookie(config) => {
                let mut found = Vec::new();
                for header in cookie_headers {
                    let Ok(text) = std::str::from_utf8(header) else {
                        continue;
                    };
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
            Transport::Bearer(_) => authorization
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(bearer_token)
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
        }
    }

    /// The header changes that hand `ticket` to the client: a `Set-Cookie`
    /// (cookie) or the bearer response header, plus `Cache-Control:
    /// no-store` unless the response sets its own.
    pub fn send(&self, ticket: &str) -> Vec<HeaderChange> {
        let mut out = Vec::new();
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
                    out.push(HeaderChange::append(http::header::SET_COOKIE, v));
                    out.push(no_store());
                }
            }
            Transport::Bearer(config) => {
                if let Ok(v) = HeaderValue::from_str(ticket) {
                    out.push(HeaderChange::insert(config.response_header.clone(), v));
                    out.push(no_store());
                }
            }
        }
        out
    }

    /// The header changes that make the client forget its ticket: a
    /// removal cookie, or the bearer response header sent empty.
    pub fn clear(&self) -> Vec<HeaderChange> {
        match self {
            Transport::Cookie(config) => config
                .removal_cookie()
                .map(|v| HeaderChange::append(http::header::SET_COOKIE, v))
                .into_iter()
                .collect(),
            Transport::Bearer(config) => vec![HeaderChange::insert(
                config.response_header.clone(),
                HeaderValue::from_static(""),
            )],
        }
    }
}

/// How a [`HeaderChange`] is applied to the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderMode {
    /// Added next to any values of the same name (`Set-Cookie`).
    Append,
    /// Replaces any values of the same name.
    Insert,
    /// Set only when the response has no value of that name yet (the
    /// handler's own `Cache-Control` wins).
    IfMissing,
}

/// One response header to set, in a framework-independent form (web
/// integrations copy `name` and `value` into their own header types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderChange {
    /// The header name (lower case).
    pub name: HeaderName,
    /// The header value.
    pub value: HeaderValue,
    /// How to apply it.
    pub mode: HeaderMode,
}

impl HeaderChange {
    fn append(name: HeaderName, value: HeaderValue) -> Self {
        HeaderChange {
            name,
            value,
            mode: HeaderMode::Append,
        }
    }

    fn insert(name: HeaderName, value: HeaderValue) -> Self {
        HeaderChange {
            name,
            value,
            mode: HeaderMode::Insert,
        }
    }

    /// Applies the change to an `http` header map.
    pub fn apply(self, headers: &mut http::HeaderMap) {
        match self.mode {
            HeaderMode::Append => {
                headers.append(self.name, self.value);
            }
            HeaderMode::Insert => {
                headers.insert(self.name, self.value);
            }
            HeaderMode::IfMissing => {
                if !headers.contains_key(&self.name) {
                    headers.insert(self.name, self.value);
                }
            }
        }
    }
}

/// A response that hands out a ticket must not be kept by shared caches.
fn no_store() -> HeaderChange {
    HeaderChange {
        name: http::header::CACHE_CONTROL,
        value: HeaderValue::from_static("no-store"),
        mode: HeaderMode::IfMissing,
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
        let long = format!("id={}", "a".repeat(MAX_TICKET_LEN + 1));
        let t = Transport::default().tickets_from([long.as_bytes(), b"id=ok"], None);
        assert_eq!(t, ["ok"]);
    }

    #[test]
    fn bearer_from_authorization_only() {
        let t = Transport::Bearer(BearerConfig::new());
        assert_eq!(t.tickets_from([&b"id=c"[..]], Some(b"Bearer tok")), ["tok"]);
        assert!(t.tickets_from([], Some(b"Basic tok")).is_empty());
        assert!(t.tickets_from([], Some(&[0xff, 0xfe][..])).is_empty());
    }

    #[test]
    fn send_and_clear_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("private"),
        );
        for c in Transport::default().send("t1") {
            c.apply(&mut h);
        }
        assert_eq!(h[http::header::CACHE_CONTROL], "private");
        assert!(
            h[http::header::SET_COOKIE]
                .to_str()
                .unwrap()
                .starts_with("id=t1")
        );
        let mut h = http::HeaderMap::new();
        let bearer = Transport::Bearer(BearerConfig::new());
        for c in bearer.send("t2") {
            c.apply(&mut h);
        }
        assert_eq!(h["x-session-token"], "t2");
        assert_eq!(h[http::header::CACHE_CONTROL], "no-store");
        for c in bearer.clear() {
            c.apply(&mut h);
        }
        assert_eq!(h["x-session-token"], "");
    }
}
