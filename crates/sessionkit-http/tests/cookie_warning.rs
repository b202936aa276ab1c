//! `secure(false)` drops the `__Host-` prefix of the default cookie name
//! and says so with one warning per process (its own test binary, so the
//! once-per-process latch starts fresh).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sessionkit_http::{CookieConfig, Transport};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Counts WARN events whose message mentions the `__Host-` prefix.
#[derive(Default)]
struct CountWarnings(Arc<AtomicUsize>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for CountWarnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if *event.metadata().level() == Level::WARN && m.0.contains("`__Host-` prefix") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn insecure_default_name_warns_once() {
    let count = Arc::new(AtomicUsize::new(0));
    let subscriber = CountWarnings(Arc::clone(&count));
    tracing::subscriber::with_default(subscriber, || {
        // Secure defaults and custom names: no warning.
        CookieConfig::new().validate().unwrap();
        CookieConfig::new()
            .with_name("sid")
            .with_secure(false)
            .validate()
            .unwrap();
        CookieConfig::new().set_cookie("t").unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 0);
        // with_secure(false) with the default name: warned when validated...
        let dev = CookieConfig::new().with_secure(false);
        assert_eq!(dev.name(), "id");
        Transport::Cookie(dev.clone()).validate().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // ...and only once, however often it is built or used.
        dev.validate().unwrap();
        dev.set_cookie("t").unwrap();
        CookieConfig::new().with_secure(false).validate().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    });
}
