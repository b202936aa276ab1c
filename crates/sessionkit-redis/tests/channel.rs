//! The Redis pub/sub invalidation channel, and the configuration checks
//! that it and the store make before connecting.

mod common;

use std::time::Duration;

use common::{RedisServer, have_redis_binaries, random_prefix, redis_url};
use sessionkit_core::{
    ChannelEvent, Error, Invalidation, InvalidationChannel, InvalidationMessage, SessionId,
};
use sessionkit_redis::{RedisConfig, RedisInvalidationChannel, RedisStore, redis};
use tokio::sync::mpsc::Receiver;

async fn next(rx: &mut Receiver<ChannelEvent>, within: Duration) -> ChannelEvent {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("an event within the bound")
        .expect("the channel is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_other_instances_and_garbage_is_skipped() {
    let url = redis_url();
    let config = RedisConfig::new().prefix(random_prefix());
    let a = match RedisInvalidationChannel::connect(&url, config.clone()).await {
        Ok(c) => c,
        Err(err) => {
            return sessionkit_testkit::skip::<()>(&format!("redis at {url}"), err).unwrap_or(());
        }
    };
    let b = RedisInvalidationChannel::connect(&url, config)
        .await
        .unwrap();
    assert_eq!(a.channel_name(), b.channel_name());
    let mut rx = b.subscribe().await.unwrap();

    let by_id = InvalidationMessage {
        origin: 1,
        target: Invalidation::Id(SessionId::generate()),
    };
    let by_subject = InvalidationMessage {
        origin: 1,
        target: Invalidation::Subject("alice {*}".into()),
    };
    a.publish(&by_id).await.unwrap();
    // Garbage on the channel is logged and skipped.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for junk in [&b""[..], b"short", b"12345678xjunk", b"12345678inot-an-id"] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(a.channel_name())
            .arg(junk)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    a.publish(&by_subject).await.unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(by_id)
    );
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(by_subject)
    );

    // Dropping the receiver ends the subscription task.
    drop(rx);
    let channel = a.channel_name().to_owned();
    common::eventually("the subscription to end", Duration::from_secs(5), || {
        let mut raw = raw.clone();
        let channel = channel.clone();
        async move {
            let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut raw)
                .await
                .unwrap();
            n.first().map(|(_, n)| *n) == Some(0)
        }
    })
    .await;
}

/// Health is the truth: `Disconnected` as soon as the subscription is lost
/// (the server killed, or paused so that a ping goes unanswered), nothing
/// while it is down, and `Reset` once subscribed again (and only then:
/// a message published right after the `Reset` arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_disconnects_then_resubscribes_and_resets() {
    if !have_redis_binaries() {
        return;
    }
    let mut server = RedisServer::start("pubsub", &[]);
    let config = RedisConfig::new()
        .prefix(random_prefix())
        .command_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .ping_interval(Duration::from_millis(200));
    let channel = RedisInvalidationChannel::connect(&server.url(), config)
        .await
        .unwrap();
    let mut rx = channel.subscribe().await.unwrap();
    let msg = |n| InvalidationMessage {
        origin: n,
        target: Invalidation::Id(SessionId::generate()),
    };

    let m1 = msg(1);
    channel.publish(&m1).await.unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(m1)
    );

    // Killed: the subscription is gone, and the subscriber is told at once…
    server.kill9();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Disconnected
    );
    // …and is not told anything else while the server is down (the channel
    // keeps trying to reconnect meanwhile).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "no event while the server is down"
    );
    // Restarted: resubscribed, then a reset (what was published meanwhile
    // is lost). The subscription is live when the reset arrives: a message
    // published right after it is received, with no retry needed.
    server.restart();
    assert_eq!(
        next(&mut rx, Duration::from_secs(10)).await,
        ChannelEvent::Reset
    );
    let m2 = msg(2);
    channel
        .publish(&m2)
        .await
        .expect("the first publish after the restart is sent again on a new connection");
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(m2)
    );

    // Paused: the health-check ping goes unanswered, so a hung server is
    // noticed too.
    server.pause();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Disconnected
    );
    server.resume();
    assert_eq!(
        next(&mut rx, Duration::from_secs(10)).await,
        ChannelEvent::Reset
    );
    let m3 = msg(3);
    common::eventually(
        "publishing works again",
        Duration::from_secs(10),
        || async { channel.publish(&m3).await.is_ok() },
    )
    .await;
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(m3)
    );
}

/// Timeouts shorter than a millisecond (a zero ping interval used to panic
/// the subscription task) are refused by every constructor before it
/// connects, with a message naming the setting.
#[tokio::test]
async fn out_of_range_settings_are_refused_before_connecting() {
    // Nothing listens there: the settings are checked first.
    let url = "redis://127.0.0.1:1";
    let c = || RedisConfig::new().prefix(random_prefix());
    let cases = [
        (
            c().command_timeout(Duration::ZERO),
            "RedisConfig: command_timeout must be at least 1ms (got 0ns)",
        ),
        (
            c().connect_timeout(Duration::from_micros(999)),
            "RedisConfig: connect_timeout must be at least 1ms (got 999µs)",
        ),
        (
            c().ping_interval(Duration::ZERO),
            "RedisConfig: ping_interval must be at least 1ms (got 0ns)",
        ),
    ];
    for (config, expected) in cases {
        match RedisStore::standalone(url, config.clone()).await {
            Err(Error::Config(message)) => assert_eq!(message, expected),
            other => panic!("store, {expected}: {other:?}"),
        }
        match RedisInvalidationChannel::connect(url, config).await {
            Err(Error::Config(message)) => assert_eq!(message, expected),
            other => panic!("channel, {expected}: {other:?}"),
        }
    }
}

/// The smallest values in range work, and the store reports what it was
/// built with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_settings_are_accepted() {
    let url = redis_url();
    let config = RedisConfig::new()
        .prefix(random_prefix())
        .ping_interval(Duration::from_millis(1));
    let channel = match RedisInvalidationChannel::connect(&url, config.clone()).await {
        Ok(c) => c,
        Err(err) => {
            return sessionkit_testkit::skip::<()>(&format!("redis at {url}"), err).unwrap_or(());
        }
    };
    let mut rx = channel.subscribe().await.unwrap();
    // Pinged every millisecond, the subscription stays up and delivers.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = InvalidationMessage {
        origin: 7,
        target: Invalidation::Id(SessionId::generate()),
    };
    channel.publish(&m).await.unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        ChannelEvent::Message(m)
    );

    let store = RedisStore::standalone(
        &url,
        config
            .clone()
            .command_timeout(Duration::from_millis(1500))
            .connect_timeout(Duration::from_millis(1)),
    )
    .await;
    // A 1 ms connect timeout is accepted; whether loopback answers within
    // it depends on the machine, so only a configuration error would fail.
    if let Err(err) = &store {
        assert!(!matches!(err, Error::Config(_)), "{err:?}");
    }
    let store = RedisStore::standalone(&url, config.command_timeout(Duration::from_millis(1)))
        .await
        .map(|s| (s.prefix().to_owned(), s.command_timeout()));
    match store {
        Ok((prefix, timeout)) => {
            assert_eq!(
                prefix,
                channel.channel_name().strip_suffix(":invalidate").unwrap()
            );
            assert_eq!(timeout, Duration::from_millis(1));
        }
        Err(err) => assert!(!matches!(err, Error::Config(_)), "{err:?}"),
    }
}
