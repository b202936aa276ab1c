//! Stateful sessions in a Redis Cluster.
//!
//! ```text
//! REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 \
//!     cargo run -p sessionkit-examples --example redis_cluster
//! ```
//!
//! `REDIS_CLUSTER_NODES` is a comma-separated list of some of the cluster's
//! nodes (`host:port` or `redis://host:port`); the client discovers the rest.
//! Keys go under a prefix of their own and are deleted at the end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::redis::{RedisConfig, RedisStore};
use sessionkit::{SessionId, SessionManager};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Prefs {
    theme: String,
    visits: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES") else {
        eprintln!(
            "set REDIS_CLUSTER_NODES to a comma-separated list of cluster nodes, \
             e.g. REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
        );
        std::process::exit(2);
    };
    let nodes: Vec<String> = nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains("://") {
                n.to_owned()
            } else {
                format!("redis://{n}")
            }
        })
        .collect();
    let prefix = format!(
        "sessionkit-example:{}",
        &SessionId::generate().as_str()[..8]
    );
    let store = match RedisStore::cluster(
        &nodes,
        RedisConfig::new()
            .prefix(prefix.clone())
            .command_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(1)),
    )
    .await
    {
        Ok(store) => store,
        Err(err) => {
            eprintln!("cannot reach the Redis Cluster at {nodes:?}: {err}");
            std::process::exit(2);
        }
    };
    println!("connected to the cluster via {nodes:?}; keys under {prefix}:");

    let sessions = SessionManager::<Prefs>::stateful(store)
        .idle_timeout(Duration::from_secs(3600))
        .build()?;

    // Sessions hash by their ID, so they spread over every master; the
    // per-subject index lives in the slot of the subject's hash.
    let mut tickets = Vec::new();
    for _ in 0..5 {
        let s = sessions.create(Some("bob"), Prefs::default()).await?;
        tickets.push(s.ticket().as_str().to_owned());
    }
    for ticket in &tickets {
        sessions
            .update(ticket, |p| {
                p.visits += 1;
                p.theme = "dark".into();
            })
            .await?;
    }
    let listed = sessions.list_subject("bob").await?;
    println!(
        "bob has {} sessions across the cluster, each visited {:?} time(s)",
        listed.len(),
        listed.iter().map(|s| s.data().visits).collect::<Vec<_>>()
    );
    let removed = sessions.destroy_subject("bob").await?;
    println!("logged bob out everywhere: {removed} sessions removed");
    Ok(())
}
