use super::*;
use crate::config::Settings;
use std::path::Path;

fn pool(yaml_pool: &str, addrs: &[&str]) -> Arc<Pool> {
    let yaml = format!("synapse:\n  pools:\n    main: {{servers: []}}\n{yaml_pool}");
    let settings = Settings::parse(Path::new("t.yaml"), &yaml).expect("valid");
    let ps = settings.pools.last().expect("pool");
    let pool = Arc::new(Pool::new(
        ps,
        format!("synapse-{}", ps.kind),
        ps.maxconn,
        Arc::new(Metrics::new()),
    ));
    let ups: Vec<Arc<Upstream>> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Arc::new(Upstream::new(
                a.parse().expect("addr"),
                format!("s{i}"),
                true,
            ))
        })
        .collect();
    pool.set_upstreams(&ups);
    pool
}

const THREE: [&str; 3] = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"];

#[tokio::test]
async fn round_robin_spreads_over_every_server() {
    let p = pool("    push-rules: {servers: []}\n", &THREE);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let slot = p.acquire(b"", None).await.0.expect("slot");
        seen.push(slot.member.upstream.addr);
    }
    for a in THREE {
        let want: SocketAddr = a.parse().expect("addr");
        assert_eq!(seen.iter().filter(|s| **s == want).count(), 2);
    }
}

#[tokio::test]
async fn same_key_same_server_and_only_a_lost_servers_keys_move() {
    let p = pool("    federation-reader: {servers: []}\n", &THREE);
    let keys: Vec<String> = (0..300)
        .map(|i| format!("/_matrix/federation/v1/state_ids/{i}"))
        .collect();
    let mut before = Vec::new();
    for k in &keys {
        let a = p
            .acquire(k.as_bytes(), None)
            .await
            .0
            .expect("slot")
            .member
            .upstream
            .addr;
        let again = p
            .acquire(k.as_bytes(), None)
            .await
            .0
            .expect("slot")
            .member
            .upstream
            .addr;
        assert_eq!(a, again);
        before.push(a);
    }
    let spread: std::collections::HashSet<_> = before.iter().collect();
    assert_eq!(spread.len(), 3, "keys spread over all servers");

    let lost = p.members()[1].upstream.clone();
    lost.set_up(false);
    for (k, old) in keys.iter().zip(&before) {
        let now = p
            .acquire(k.as_bytes(), None)
            .await
            .0
            .expect("slot")
            .member
            .upstream
            .addr;
        if *old != lost.addr {
            assert_eq!(now, *old, "key {k} moved though its server stayed");
        } else {
            assert_ne!(now, lost.addr);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn full_servers_queue_then_time_out() {
    let p = pool(
        "    push-rules: {servers: [], maxconn: 1, queue_timeout: 2s}\n",
        &["127.0.0.1:1"],
    );
    let (held, waited) = p.acquire(b"", None).await;
    let held = held.expect("first slot");
    assert_eq!(
        waited,
        Duration::ZERO,
        "a free place is taken without queueing"
    );
    let (refused, waited) = p.acquire(b"", None).await;
    assert_eq!(refused.err(), Some(Unavailable::QueueTimeout));
    assert_eq!(
        waited,
        Duration::from_secs(2),
        "the queue time is the pool's timeout"
    );

    // A waiter gets the place as soon as it frees.
    let waiter = tokio::spawn({
        let p = p.clone();
        async move { p.acquire(b"", None).await.0.map(|s| s.member.upstream.addr) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.waiting(), 1);
    drop(held);
    assert!(waiter.await.expect("join").is_ok());
}

#[tokio::test]
async fn no_live_server_is_refused_at_once() {
    let p = pool("    push-rules: {servers: []}\n", &THREE);
    for m in p.members() {
        m.upstream.set_up(false);
    }
    assert_eq!(
        p.acquire(b"", None).await.0.err(),
        Some(Unavailable::NoLiveServer)
    );
    assert_eq!(p.metrics.refused_no_server.get(), 1);
}

#[tokio::test]
async fn avoided_server_is_skipped_while_another_is_live() {
    let p = pool("    push-rules: {servers: []}\n", &THREE[..2]);
    let avoid: SocketAddr = THREE[0].parse().expect("addr");
    for _ in 0..4 {
        let s = p.acquire(b"", Some(avoid)).await.0.expect("slot");
        assert_ne!(s.member.upstream.addr, avoid);
    }
}
