//! Lifecycle events and metrics: what the sessions are doing, for an
//! operator.
//!
//! ```text
//! cargo run -p sessionkit-examples --example metrics
//! ```
//!
//! Installs a Prometheus recorder (`metrics-exporter-prometheus`, no HTTP
//! listener: the text is rendered and printed; a real service serves it on
//! `/metrics`), subscribes to the manager's events, runs a short workload
//! on a `MemoryStore` and on a `CachedStore` in front of one, prints some
//! events and the Prometheus text, and exits with status 1 if
//! `sessionkit_store_calls_total` or `sessionkit_events_total` is missing.
//! Needs the facade feature `metrics`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sessionkit::memory::{CachedStore, MemoryStore};
use sessionkit::{Error, EventKind, SessionManager};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: u32,
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("metrics: FAILED: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Failure> {
    // Once per process, before the first session call.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    let plain = SessionManager::<Cart>::stateful(MemoryStore::new()).build()?;
    let cache = Arc::new(CachedStore::new(MemoryStore::new())?);
    let cached = SessionManager::<Cart>::stateful_shared(cache.clone()).build()?;

    // A bounded queue per subscriber: when it is full, events are dropped
    // for it (and counted), never waited for.
    let mut events = plain.subscribe(256);

    for sessions in [&plain, &cached] {
        workload(sessions).await?;
    }

    println!("events of the plain manager (the first two logins, then all but logins):");
    let (mut shown, mut rejected) = (0, 0);
    while let Some(event) = events.try_recv() {
        // What an alerting subscriber would watch: bursts of bad tickets.
        if matches!(event.kind, EventKind::TicketRejected { .. }) {
            rejected += 1;
        }
        if shown < 2 || !matches!(event.kind, EventKind::Created) {
            // `session` is the redacted prefix of the ID, never the ID.
            println!(
                "  {:?} subject={:?} session={:?}",
                event.kind, event.subject, event.session
            );
        }
        shown += 1;
    }
    println!(
        "  ({shown} events in all, {} dropped)",
        plain.stats().events_dropped
    );
    if rejected != 1 {
        return Err(format!("expected one TicketRejected event, saw {rejected}").into());
    }
    let s = cache.stats();
    println!(
        "cache: {} hits, {} misses, {} coalesced, {} removals",
        s.hits, s.misses, s.coalesced, s.removals
    );

    let text = prometheus.render();
    println!("\nPrometheus text (sessionkit lines):");
    // (Latency quantile lines left out here; `_sum` and `_count` shown.)
    for line in text
        .lines()
        .filter(|l| l.contains("sessionkit_") && !l.contains("quantile="))
    {
        println!("{line}");
    }

    let mut missing = Vec::new();
    for expected in [
        r#"sessionkit_store_calls_total{backend="memory""#,
        r#"sessionkit_events_total{event="created"}"#,
        r#"sessionkit_events_total{event="conflict"}"#,
        r#"sessionkit_events_total{event="ticket_rejected"}"#,
        r#"sessionkit_events_total{event="logged_out_everywhere"}"#,
        "sessionkit_store_call_seconds_count{backend=\"memory\",op=\"load\"}",
    ] {
        if !text.contains(expected) {
            missing.push(expected);
        }
    }
    if !missing.is_empty() {
        return Err(format!("missing from the Prometheus text: {missing:?}").into());
    }
    println!("\nok: store calls and events are exported");
    Ok(())
}

/// Logins, updates, a lost compare-and-swap, a rotation, a rejected
/// ticket, a logout and a "log out everywhere".
async fn workload(sessions: &SessionManager<Cart>) -> Result<(), Failure> {
    let mut tickets = Vec::new();
    for user in 0..20 {
        let s = sessions
            .create(Some(&format!("user-{}", user % 5)), Cart::default())
            .await?;
        tickets.push(s.ticket().as_str().to_owned());
    }
    for round in 0..5 {
        for ticket in &tickets {
            sessions.update(ticket, |c| c.items += 1).await?;
            if round % 2 == 0 {
                sessions.load(ticket).await?;
            }
        }
    }

    let mut stale = sessions.load(&tickets[0]).await?.ok_or("live session")?;
    sessions.update(&tickets[0], |c| c.items += 1).await?;
    stale.data_mut().items = 0;
    if !matches!(sessions.save(&mut stale).await, Err(Error::Conflict)) {
        return Err("a stale save was not refused".into());
    }

    let mut session = sessions.load(&tickets[1]).await?.ok_or("live session")?;
    sessions.rotate(&mut session).await?;

    if !matches!(sessions.load("not a ticket").await, Err(Error::InvalidId)) {
        return Err("a malformed ticket was not rejected".into());
    }
    sessions.destroy(&tickets[2]).await?;
    sessions.destroy_subject("user-4").await?;
    Ok(())
}
