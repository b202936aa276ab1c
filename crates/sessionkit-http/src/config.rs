//! How the ticket travels: cookie attributes, bearer headers, reading the
//! ticket from a request and the response headers that hand it out.

use std::borrow::Cow;
use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderName;
use http::HeaderValue;

/// Attributes of the session cookie.
///
/// The defaults are the safe ones: `Secure`, `HttpOnly`, `SameSite=Lax`,
/// `Path=/`, no `Domain` (the cookie goes back only to the host that set
/// it), no `Max-Age` (a browser-session cookie, dropped when the browser
/// closes; the server-side timeouts apply either way), and the name
/// `__Host-id`.
///
/// # The default name and cookie prefixes
///
/// Unless [`with_name`](Self::with_name) sets one, the name follows the other
/// attributes:
///
/// - `__Host-id` when the cookie is `Secure` with `Path=/` and no `Domain`
///   (the defaults). Browsers store a `__Host-` cookie only when it was set
///   with exactly those attributes by the host itself, so a sibling
///   subdomain (`evil.example.com` next to `app.example.com`) or a
///   plain-HTTP attacker cannot plant one. This matters because up to
///   [`MAX_COOKIE_CANDIDATES`] same-name cookies are tried and the first
///   valid one wins: with the prefix, every candidate comes from this host.
/// - `__Secure-id` when the cookie is `Secure` but has another `Path` or a
///   `Domain`: only a secure origin can set it, but any host of that domain
///   can (a sibling subdomain can plant one).
/// - `id` with [`with_secure(false)`](Self::with_secure) (plain-HTTP development):
///   no prefix is allowed without `Secure`, so it is dropped, and
///   [`validate`](Self::validate) (called when a web layer is configured)
///   logs a warning, once per process.
///
/// A name set with [`with_name`](Self::with_name) is used as given, but a name with
/// a prefix whose rules the attributes break is refused: [`validate`]
/// returns [`Error::Config`], and [`set_cookie`](Self::set_cookie) and
/// [`removal_cookie`](Self::removal_cookie) return `None` (browsers would
/// drop such a cookie anyway). `__Host-` needs `Secure`, `Path=/` and no
/// `Domain`; `__Secure-` needs `Secure`. Prefixes are matched without
/// regard to case, as browsers do.
///
/// [`validate`]: Self::validate
/// [`Error::Config`]: sessionkit_core::Error::Config
///
/// ```
/// use std::time::Duration;
/// use sessionkit_http::{CookieConfig, SameSite};
///
/// assert_eq!(CookieConfig::new().name(), "__Host-id");
/// assert_eq!(CookieConfig::new().with_secure(false).name(), "id");
///
/// let cookie = CookieConfig::new()
///     .with_name("__Host-sid")
///     .with_same_site(SameSite::Strict)
///     .with_max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(cookie.name(), "__Host-sid");
/// assert_eq!(cookie.same_site(), Some(SameSite::Strict));
/// assert!(cookie.secure() && cookie.http_only() && cookie.path() == Some("/"));
/// assert!(cookie.validate().is_ok());
///
/// // `__Host-` cookies cannot carry a Domain: refused.
/// let shared = cookie.with_domain(Some("example.com"));
/// assert!(shared.validate().is_err());
/// assert!(shared.set_cookie("ticket").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// `None`: the default name, which follows the attributes.
    name: Option<Cow<'static, str>>,
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
            name: None,
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

    /// The cookie name, used as given (default: `__Host-id`, `__Secure-id`
    /// or `id` depending on the attributes; see the type's documentation).
    /// A name starting with `__Host-` makes browsers refuse the cookie
    /// unless it is `Secure`, has `Path=/` and no `Domain`, which also stops
    /// a sibling subdomain from planting it; this configuration refuses such
    /// a name with other attributes too (see [`validate`](Self::validate)).
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The `Secure` attribute (default on). Turn it off only for plain-HTTP
    /// development on a host other than `localhost`: the default name then
    /// loses its `__Host-` prefix (with a warning), so other hosts of the
    /// site can plant a session cookie.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `HttpOnly` attribute (default on): scripts cannot read the ticket.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`); `None` omits the attribute.
    /// `SameSite::None` requires `Secure` in browsers.
    pub fn with_same_site(mut self, same_site: impl Into<Option<SameSite>>) -> Self {
        self.same_site = same_site.into();
        self
    }

    /// The `Path` attribute (default `/`); `None` omits it.
    pub fn with_path(mut self, path: Option<impl Into<Cow<'static, str>>>) -> Self {
        self.path = path.map(Into::into);
        self
    }

    /// The `Domain` attribute (default none: host-only). Setting it shares
    /// the cookie with every subdomain of that domain.
    pub fn with_domain(mut self, domain: Option<impl Into<Cow<'static, str>>>) -> Self {
        self.domain = domain.map(Into::into);
        self
    }

    /// Makes the cookie persistent with this `Max-Age` (default: none, a
    /// cookie that ends with the browser session). The session itself still
    /// ends at its idle or absolute timeout, whichever comes first.
    pub fn with_max_age(mut self, max_age: impl Into<Option<Duration>>) -> Self {
        self.max_age = max_age.into();
        self
    }

    /// The `Partitioned` attribute (CHIPS; default off).
    pub fn with_partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// The cookie name: the configured one, or the default that the
    /// attributes allow (`__Host-id`, `__Secure-id` or `id`).
    pub fn name(&self) -> &str {
        match &self.name {
            Some(name) => name,
            None if self.host_prefix_allowed() => "__Host-id",
            None if self.secure => "__Secure-id",
            None => "id",
        }
    }

    /// Whether the cookie is `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Whether the cookie is `HttpOnly`.
    pub fn http_only(&self) -> bool {
        self.http_only
    }

    /// The `SameSite` attribute, if sent.
    pub fn same_site(&self) -> Option<SameSite> {
        self.same_site
    }

    /// The `Path` attribute, if sent.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The `Domain` attribute, if sent.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The `Max-Age` attribute, if the cookie is persistent.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Whether the cookie is `Partitioned`.
    pub fn partitioned(&self) -> bool {
        self.partitioned
    }

    /// `Secure`, `Path=/` and no `Domain`: what a `__Host-` cookie needs.
    fn host_prefix_allowed(&self) -> bool {
        self.secure && self.path.as_deref() == Some("/") && self.domain.is_none()
    }

    /// The prefix rule the configured name breaks, if any.
    fn prefix_violation(&self) -> Option<&'static str> {
        let name = self.name.as_deref()?;
        let has = |prefix: &str| {
            name.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if has("__Host-") && !self.host_prefix_allowed() {
            Some("a `__Host-` cookie must be Secure, with Path=/ and no Domain")
        } else if has("__Secure-") && !self.secure {
            Some("a `__Secure-` cookie must be Secure")
        } else {
            None
        }
    }

    /// Checks the configuration; web layers call it when they are
    /// configured.
    ///
    /// Fails with [`Error::Config`](sessionkit_core::Error::Config) when
    /// the configured name carries a prefix whose rules the attributes
    /// break (`__Host-` without `Secure`, `Path=/` and no `Domain`;
    /// `__Secure-` without `Secure`): browsers would drop that cookie, so
    /// no session would ever come back. Logs a warning (once per process)
    /// when the default name has no prefix because the cookie is not
    /// `Secure`.
    pub fn validate(&self) -> sessionkit_core::Result<()> {
        if let Some(rule) = self.prefix_violation() {
            return Err(sessionkit_core::Error::Config(format!(
                "cookie name {:?}: {rule}",
                self.name()
            )));
        }
        self.warn_if_unprefixed();
        Ok(())
    }

    fn warn_if_unprefixed(&self) {
        if self.name.is_none() && !self.secure {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    name = self.name(),
                    "the session cookie is not Secure, so its default name has no \
                     `__Host-` prefix: any host of the site can plant a session cookie; \
                     use with_secure(false) only for local development"
                );
            });
        }
    }

    /// The builder for this configuration, `None` if the name breaks its
    /// prefix's rules (logged).
    fn builder(&self, value: String) -> Option<cookie::CookieBuilder<'static>> {
        if let Some(rule) = self.prefix_violation() {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::error!(name = self.name(), "session cookie refused: {rule}");
            });
            return None;
        }
        self.warn_if_unprefixed();
        let mut b = Cookie::build((self.name().to_owned(), value))
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
        Some(b)
    }

    /// The `Set-Cookie` value that hands `ticket` to the client (`None`
    /// if the ticket cannot be a header value, or if the configuration is
    /// refused by [`validate`](Self::validate)).
    pub fn set_cookie(&self, ticket: &str) -> Option<HeaderValue> {
        let mut b = self.builder(ticket.to_owned())?;
        if let Some(max_age) = self.max_age {
            let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            b = b.max_age(cookie::time::Duration::seconds(secs));
        }
        HeaderValue::from_str(&b.build().to_string()).ok()
    }

    /// The `Set-Cookie` value that makes the client drop the cookie
    /// (empty value, `Max-Age=0`, the same name, path and domain; `None` if
    /// the configuration is refused by [`validate`](Self::validate)).
    pub fn removal_cookie(&self) -> Option<HeaderValue> {
        let cookie = self.builder(String::new())?.removal().build();
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
///
/// ```
/// use http::HeaderName;
/// use sessionkit_http::BearerConfig;
///
/// let bearer = BearerConfig::new().with_response_header(HeaderName::from_static("x-ticket"));
/// assert_eq!(bearer.response_header(), "x-ticket");
/// ```
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
    pub fn with_response_header(mut self, name: HeaderName) -> Self {
        self.response_header = name;
        self
    }

    /// The configured response header.
    pub fn response_header(&self) -> &HeaderName {
        &self.response_header
    }
}

/// Where the ticket travels between client and server.
///
/// ```
/// use sessionkit_http::Transport;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::COOKIE, "theme=dark; __Host-id=abc".parse().unwrap());
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
    /// Checks the configuration (see [`CookieConfig::validate`]; the bearer
    /// transport is always valid). Web layers call it when configured.
    pub fn validate(&self) -> sessionkit_core::Result<()> {
        match self {
            Transport::Cookie(config) => config.validate(),
            Transport::Bearer(_) => Ok(()),
        }
    }

    /// The tickets a request presents, in the order to try them.
    ///
    /// Cookie transport: the non-empty values of the cookies with exactly
    /// the configured name ([`CookieConfig::name`], compared with
    /// case), at most [`MAX_COOKIE_CANDIDATES`], each at most
    /// [`MAX_TICKET_LEN`] bytes (a sibling subdomain may have planted extra
    /// ones under an unprefixed name, so several are tried; with the
    /// default `__Host-` name none can be planted). Nothing is read when
    /// the configuration is refused by [`CookieConfig::validate`]. Bearer transport: the token of
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
                if config.prefix_violation().is_some() {
                    return found;
                }
                let name = config.name();
                for header in cookie_headers {
                    let Ok(text) = std::str::from_utf8(header) else {
                        continue;
                    };
                    for cookie in Cookie::split_parse(text).flatten() {
                        if cookie.name() == name
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
        assert!(s.starts_with("__Host-id=abc;"), "{s}");
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
        assert!(s.starts_with("__Host-id=;"), "{s}");
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
            HeaderValue::from_static("a=1; __Host-id=first; __Host-id=; __Host-id=second"),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("__Host-id=third; __Host-id=4th"),
        );
        let t = Transport::default().tickets(&h);
        assert_eq!(t, ["first", "second", "third"]);
        let long = format!("__Host-id={}", "a".repeat(MAX_TICKET_LEN + 1));
        let t = Transport::default().tickets_from([long.as_bytes(), b"__Host-id=ok"], None);
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
                .starts_with("__Host-id=t1")
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

    /// A cookie planted from a sibling subdomain cannot carry the
    /// `__Host-` prefix, so it arrives under another name (`id`, or a
    /// case variant of the prefix on browsers that check it with case):
    /// the default configuration never reads it, before or after the
    /// real one.
    #[test]
    fn planted_unprefixed_cookies_are_ignored() {
        let t = Transport::default();
        let header = "id=planted; __host-id=planted2; __HOST-id=planted3; \
                      __Secure-id=planted4; __Host-id=real; id=planted5";
        assert_eq!(t.tickets_from([header.as_bytes()], None), ["real"]);
        assert!(
            t.tickets_from([&b"id=planted; __Secure-id=x"[..]], None)
                .is_empty()
        );
        // The old default name is read only when asked for.
        let legacy = Transport::Cookie(CookieConfig::new().with_name("id"));
        assert_eq!(
            legacy.tickets_from([header.as_bytes()], None),
            ["planted", "planted5"]
        );
    }

    #[test]
    fn default_name_follows_the_attributes() {
        let c = CookieConfig::new();
        assert_eq!(c.name(), "__Host-id");
        assert!(c.validate().is_ok());
        // Local development: no prefix is allowed without Secure.
        let dev = CookieConfig::new().with_secure(false);
        assert_eq!(dev.name(), "id");
        assert!(dev.validate().is_ok());
        let s = dev.set_cookie("abc").unwrap();
        let s = s.to_str().unwrap();
        assert!(s.starts_with("id=abc;"), "{s}");
        assert!(!s.contains("Secure"), "{s}");
        assert_eq!(
            Transport::Cookie(dev).tickets_from([&b"__Host-id=x; id=dev"[..]], None),
            ["dev"]
        );
        // Secure, but a Domain or another Path rule out `__Host-`.
        let shared = CookieConfig::new().with_domain(Some("example.com"));
        assert_eq!(shared.name(), "__Secure-id");
        let s = shared.set_cookie("abc").unwrap();
        let s = s.to_str().unwrap();
        assert!(s.starts_with("__Secure-id=abc;"), "{s}");
        assert!(
            s.contains("Domain=example.com") && s.contains("Secure"),
            "{s}"
        );
        assert_eq!(
            CookieConfig::new().with_path(Some("/app")).name(),
            "__Secure-id"
        );
        assert_eq!(
            CookieConfig::new().with_path(None::<&str>).name(),
            "__Secure-id"
        );
        // A custom name is used as given.
        let custom = CookieConfig::new().with_name("sid").with_secure(false);
        assert_eq!(custom.name(), "sid");
        assert!(custom.validate().is_ok());
        assert!(
            custom
                .set_cookie("v")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("sid=v;")
        );
    }

    #[test]
    fn invalid_prefix_combinations_are_refused() {
        let refused = [
            CookieConfig::new()
                .with_name("__Host-sid")
                .with_secure(false),
            CookieConfig::new()
                .with_name("__Host-sid")
                .with_path(Some("/app")),
            CookieConfig::new()
                .with_name("__Host-sid")
                .with_path(None::<&str>),
            CookieConfig::new()
                .with_name("__Host-sid")
                .with_domain(Some("example.com")),
            CookieConfig::new()
                .with_name("__host-sid")
                .with_secure(false),
            CookieConfig::new()
                .with_name("__Secure-sid")
                .with_secure(false),
            CookieConfig::new()
                .with_name("__SECURE-sid")
                .with_secure(false),
        ];
        for c in refused {
            let err = c.validate().expect_err("refused");
            assert!(matches!(err, sessionkit_core::Error::Config(_)), "{err:?}");
            assert!(Transport::Cookie(c.clone()).validate().is_err());
            assert!(c.set_cookie("t").is_none(), "{c:?}");
            assert!(c.removal_cookie().is_none(), "{c:?}");
            let header = format!("{}=t", c.name());
            assert!(
                Transport::Cookie(c)
                    .tickets_from([header.as_bytes()], None)
                    .is_empty()
            );
        }
        let allowed = [
            CookieConfig::new().with_name("__Host-sid"),
            CookieConfig::new()
                .with_name("__Secure-sid")
                .with_path(Some("/app")),
            CookieConfig::new()
                .with_name("__Secure-sid")
                .with_domain(Some("example.com")),
            CookieConfig::new().with_name("host-sid").with_secure(false),
        ];
        for c in allowed {
            assert!(c.validate().is_ok(), "{c:?}");
            assert!(c.set_cookie("t").is_some(), "{c:?}");
        }
        assert!(Transport::Bearer(BearerConfig::new()).validate().is_ok());
    }
}
