//! The `metrics` feature: store calls and events reach whatever exporter
//! the application installed (here the Prometheus one), labelled by
//! backend, operation and outcome.
#![cfg(feature = "metrics")]

use sessionkit_core::testing::VecStore;
use sessionkit_core::{Error, SessionManager};

#[tokio::test]
async fn store_calls_and_events_are_counted_and_timed() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let m = SessionManager::<u32>::stateful(VecStore::default())
        .build()
        .unwrap();
    let mut s = m.create(Some("ann"), 1).await.unwrap();
    let mut stale = m.load(s.ticket().as_str()).await.unwrap().unwrap();
    m.save(&mut s).await.unwrap();
    assert!(matches!(m.save(&mut stale).await, Err(Error::Conflict)));
    m.destroy(s.ticket().as_str()).await.unwrap();

    let text = handle.render();
    for line in [
        r#"sessionkit_store_calls_total{backend="custom",op="create",outcome="ok"} 1"#,
        r#"sessionkit_store_calls_total{backend="custom",op="save",outcome="ok"} 1"#,
        r#"sessionkit_store_calls_total{backend="custom",op="save",outcome="conflict"} 1"#,
        r#"sessionkit_store_calls_total{backend="custom",op="delete",outcome="ok"} 1"#,
        r#"sessionkit_events_total{event="created"} 1"#,
        r#"sessionkit_events_total{event="conflict"} 1"#,
        r#"sessionkit_events_total{event="destroyed"} 1"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.contains(r#"sessionkit_store_call_seconds_count{backend="custom",op="load"} 1"#)
            || text
                .contains(r#"sessionkit_store_call_seconds{backend="custom",op="load",quantile="#),
        "no latency for load in:\n{text}"
    );
}
