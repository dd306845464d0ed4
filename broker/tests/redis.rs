//! The Redis backend against a real `redis-server`, found through the
//! environment variable `WEFT_REDIS_URL` (`redis://127.0.0.1:PORT`, set by
//! `scripts/broker.sh`). Without it every test here prints why and returns.
//!
//! Each test uses its own random key prefix, so tests share one Redis
//! without seeing each other's streams. "Nodes" are several [`Server`]s
//! in this process on the same Redis and prefix; killing one is aborting
//! its task, which drops its connections without any cleanup, as kill -9
//! would.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use weft_broker::frame::{Headers, MessageId, SendFrame};
use weft_broker::{
    Backend, Client, Delivery, ErrorCode, RedisConfig, Server, ServerConfig, SubscribeOptions,
    Subscription,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step timed out")
}

/// The Redis URL, or `None` after printing that the test is skipped.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("WEFT_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!`, and this should be seen in a passing run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: WEFT_REDIS_URL is not set (scripts/broker.sh starts redis-server and sets it)"
            );
            None
        }
    }
}

fn config(idle_ms: u64) -> RedisConfig {
    RedisConfig {
        key_prefix: format!("weft-test-{:016x}", rand_u64()),
        redeliver_after: Duration::from_millis(idle_ms),
        poll: Duration::from_millis(20),
        ..RedisConfig::default()
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

struct Node {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// kill -9: the task and its connections vanish, nothing is cleaned up.
    fn kill(self) {
        self.task.abort();
    }
}

async fn node(url: &str, rc: &RedisConfig) -> Node {
    let backend = Backend::redis(url, rc.clone())
        .await
        .expect("Redis reachable");
    let server = Server::bind_with("127.0.0.1:0", ServerConfig::default(), backend)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    Node {
        addr,
        task: tokio::spawn(server.run()),
    }
}

async fn recv(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no delivery within 5 s")
        .expect("subscription open")
}

async fn quiet(sub: &mut Subscription, ms: u64) {
    if let Ok(d) = tokio::time::timeout(Duration::from_millis(ms), sub.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

fn body_str(d: &Delivery) -> &str {
    std::str::from_utf8(&d.body).unwrap()
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn xlen(url: &str, key: &str) -> i64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut redis_conn(url).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queue_is_shared_by_two_nodes_and_acks_empty_the_stream() {
    let Some(url) = redis_url("a_queue_is_shared_by_two_nodes_and_acks_empty_the_stream") else {
        return;
    };
    let rc = config(30_000);
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let ca = Client::connect(&a.url()).await.unwrap();
        let cb = Client::connect(&b.url()).await.unwrap();
        let mut sa = ca
            .subscribe("/queue/work", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let mut sb = cb
            .subscribe("/queue/work", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let p = Client::connect(&a.url()).await.unwrap();
        let n = 60;
        let mut sent = HashSet::new();
        for i in 0..n {
            sent.insert(p.send("/queue/work", format!("job {i}")).await.unwrap());
        }
        let mut got: HashMap<String, usize> = HashMap::new();
        let (mut na, mut nb) = (0, 0);
        while na + nb < n {
            tokio::select! {
                d = recv(&mut sa) => { sa.ack(&d).unwrap(); na += 1; *got.entry(d.message_id.to_string()).or_default() += 1; }
                d = recv(&mut sb) => { sb.ack(&d).unwrap(); nb += 1; *got.entry(d.message_id.to_string()).or_default() += 1; }
            }
        }
        assert_eq!(got.len(), n);
        assert!(got.values().all(|&c| c == 1), "a message arrived twice");
        assert!(sent.iter().all(|id| got.contains_key(id.as_str())));
        assert!(na > 0 && nb > 0, "both nodes' consumers took part: {na} / {nb}");
        quiet(&mut sa, 100).await;
        // Every ACK deleted its entry: the stream is empty.
        let key = format!("{}:q:/queue/work", rc.key_prefix);
        let mut left = xlen(&url, &key).await;
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = xlen(&url, &key).await;
        }
        assert_eq!(left, 0);
    })
    .await;
}

#[tokio::test]
async fn a_killed_nodes_deliveries_go_to_the_other_node_after_the_idle_time() {
    let Some(url) = redis_url("a_killed_nodes_deliveries_go_to_the_other_node_after_the_idle_time")
    else {
        return;
    };
    let idle = 600;
    let rc = RedisConfig {
        forget_consumers_after: Duration::from_millis(idle),
        ..config(idle)
    };
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let ca = Client::connect(&a.url()).await.unwrap();
        let mut sa = ca
            .subscribe("/queue/jobs", SubscribeOptions::client_ack(2))
            .await
            .unwrap();
        let p = Client::connect(&b.url()).await.unwrap();
        // Redis counts the idle time from the delivery, after this.
        let t0 = std::time::Instant::now();
        let ids = [
            p.send("/queue/jobs", "j0").await.unwrap(),
            p.send("/queue/jobs", "j1").await.unwrap(),
        ];
        let d0 = recv(&mut sa).await;
        let d1 = recv(&mut sa).await;
        assert_eq!((body_str(&d0), body_str(&d1)), ("j0", "j1"));
        a.kill();
        let cb = Client::connect(&b.url()).await.unwrap();
        let mut sb = cb
            .subscribe("/queue/jobs", SubscribeOptions::client_ack(4))
            .await
            .unwrap();
        // Not before the idle time...
        let until = (t0 + Duration::from_millis(idle * 2 / 3))
            .saturating_duration_since(std::time::Instant::now());
        quiet(&mut sb, until.as_millis() as u64).await;
        // ...but soon after it, marked, with the same ids.
        let r0 = recv(&mut sb).await;
        let r1 = recv(&mut sb).await;
        assert!(t0.elapsed() >= Duration::from_millis(idle));
        assert!(r0.redelivered && r1.redelivered);
        let mut got = vec![r0.message_id.clone(), r1.message_id.clone()];
        got.sort();
        let mut want = ids.to_vec();
        want.sort();
        assert_eq!(got, want);
        sb.ack(&r0).unwrap();
        sb.ack(&r1).unwrap();
        quiet(&mut sb, 2 * idle).await;
        // The dead node's consumer, empty now and idle past
        // forget_consumers_after, is deleted when a subscription opens.
        let key = format!("{}:q:/queue/jobs", rc.key_prefix);
        let consumers = || async {
            let v: redis::Value = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&key)
                .arg("weft")
                .query_async(&mut redis_conn(&url).await)
                .await
                .unwrap();
            let mut names = HashSet::new();
            if let redis::Value::Array(cs) = v {
                for c in cs {
                    if let redis::Value::Array(f) = c
                        && let Some(redis::Value::BulkString(n)) = f.get(1)
                    {
                        names.insert(String::from_utf8_lossy(n).into_owned());
                    }
                }
            }
            names
        };
        let before = consumers().await;
        assert_eq!(before.len(), 2, "a's and b's: {before:?}");
        let cc = Client::connect(&b.url()).await.unwrap();
        let _sc = cc
            .subscribe("/queue/jobs", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let mut sc = _sc;
        let after = consumers().await;
        // Both were empty and idle (Redis 7.0 does not count an empty
        // blocking read as activity): both are gone, a's included.
        assert_eq!(
            before.intersection(&after).count(),
            0,
            "{before:?} -> {after:?}"
        );
        // Deleting a live one lost nothing: its next read recreates it.
        p.send("/queue/jobs", "j2").await.unwrap();
        p.send("/queue/jobs", "j3").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            tokio::select! {
                d = recv(&mut sb) => { sb.ack(&d).unwrap(); got.push(body_str(&d).to_owned()); }
                d = recv(&mut sc) => { sc.ack(&d).unwrap(); got.push(body_str(&d).to_owned()); }
            }
        }
        got.sort();
        assert_eq!(got, ["j2", "j3"]);
    })
    .await;
    b.kill();
}

#[tokio::test]
async fn a_connected_consumer_that_never_acks_loses_its_deliveries_to_others() {
    let Some(url) =
        redis_url("a_connected_consumer_that_never_acks_loses_its_deliveries_to_others")
    else {
        return;
    };
    let idle = 500;
    let rc = config(idle);
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let lazy = Client::connect(&a.url()).await.unwrap();
        let mut sl = lazy
            .subscribe("/queue/q", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let p = Client::connect(&a.url()).await.unwrap();
        let id = p.send("/queue/q", "m").await.unwrap();
        let d = recv(&mut sl).await;
        assert_eq!(d.message_id, id);
        let worker = Client::connect(&b.url()).await.unwrap();
        let mut sw = worker
            .subscribe("/queue/q", SubscribeOptions::client_ack(4))
            .await
            .unwrap();
        let r = recv(&mut sw).await;
        assert_eq!((r.message_id.clone(), r.redelivered), (id, true));
        sw.ack(&r).unwrap();
        // The lazy consumer holds one window (credit 1): it gets nothing
        // more until it settles, and its late ACK is accepted.
        p.send("/queue/q", "next").await.unwrap();
        let n = recv(&mut sw).await;
        assert_eq!(body_str(&n), "next");
        sw.ack(&n).unwrap();
        quiet(&mut sl, 100).await;
        sl.ack(&d).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await;
    a.kill();
    b.kill();
}

#[tokio::test]
async fn nack_and_unsubscribe_redeliver_at_once() {
    let Some(url) = redis_url("nack_and_unsubscribe_redeliver_at_once") else {
        return;
    };
    let rc = config(30_000);
    let a = node(&url, &rc).await;
    within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/retry", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let id = c.send("/queue/retry", "try me").await.unwrap();
        let d1 = recv(&mut s).await;
        assert!(!d1.redelivered);
        s.nack(&d1).unwrap();
        let d2 = recv(&mut s).await;
        assert_eq!((d2.message_id.clone(), d2.redelivered), (id.clone(), true));
        assert_ne!(d2.delivery_id, d1.delivery_id);
        // Unsubscribing with it unacked gives it to the next consumer now,
        // not after the idle time of 30 s.
        s.unsubscribe().await.unwrap();
        let c2 = Client::connect(&a.url()).await.unwrap();
        let mut s2 = c2
            .subscribe("/queue/retry", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let d3 = recv(&mut s2).await;
        assert_eq!((d3.message_id.clone(), d3.redelivered), (id, true));
        s2.ack(&d3).unwrap();
        // A second ACK of the same delivery is refused.
        s2.ack(&d3).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), c2.next_error())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.code, ErrorCode::UNKNOWN_DELIVERY);
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn topics_fan_out_across_nodes_in_order() {
    let Some(url) = redis_url("topics_fan_out_across_nodes_in_order") else {
        return;
    };
    let rc = config(30_000);
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let mut subs = Vec::new();
        for n in [&a, &b, &b] {
            let c = Client::connect(&n.url()).await.unwrap();
            subs.push(
                c.subscribe("/topic/news", SubscribeOptions::auto_ack(4))
                    .await
                    .unwrap(),
            );
        }
        let p = Client::connect(&a.url()).await.unwrap();
        for i in 0..20 {
            p.send("/topic/news", format!("n{i}")).await.unwrap();
        }
        for s in &mut subs {
            for i in 0..20 {
                let d = recv(s).await;
                assert_eq!(body_str(&d), format!("n{i}"));
            }
            quiet(s, 50).await;
        }
    })
    .await;
    a.kill();
    b.kill();
}

#[tokio::test]
async fn duplicates_are_stored_once_and_the_queue_limit_refuses() {
    let Some(url) = redis_url("duplicates_are_stored_once_and_the_queue_limit_refuses") else {
        return;
    };
    let rc = RedisConfig {
        max_queue: 3,
        dedupe_window: 2,
        ..config(30_000)
    };
    let a = node(&url, &rc).await;
    within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let f = |id: &str| SendFrame {
            destination: weft_broker::Destination::new("/queue/full").unwrap(),
            message_id: MessageId::new(id).unwrap(),
            headers: Headers::new().with("x-n", id).unwrap(),
            body: bytes::Bytes::from(id.to_owned()),
        };
        c.send_frame(f("m1")).await.unwrap();
        c.send_frame(f("m1")).await.unwrap(); // acked again, not stored
        c.send_frame(f("m2")).await.unwrap();
        c.send_frame(f("m3")).await.unwrap(); // at the limit: stored
        let e = c.send_frame(f("m4")).await.unwrap_err(); // one past
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL));
        // The window holds the last 2 ids (m2, m3): m2 is still a
        // duplicate, acked even though the queue is full.
        c.send_frame(f("m2")).await.unwrap();
        let dedupe = format!("{}:dedupe:/queue/full", rc.key_prefix);
        let held: i64 = redis::cmd("SCARD")
            .arg(&dedupe)
            .query_async(&mut redis_conn(&url).await)
            .await
            .unwrap();
        assert_eq!(held, 2, "the window is bounded");
        let key = format!("{}:q:/queue/full", rc.key_prefix);
        assert_eq!(xlen(&url, &key).await, 3);
        let mut s = c
            .subscribe("/queue/full", SubscribeOptions::client_ack(10))
            .await
            .unwrap();
        for id in ["m1", "m2", "m3"] {
            let d = recv(&mut s).await;
            assert_eq!(d.message_id.as_str(), id);
            assert_eq!(d.headers.get("x-n"), Some(id));
            s.ack(&d).unwrap();
        }
        quiet(&mut s, 100).await;
        // Settled messages free the room.
        let mut ok = false;
        for _ in 0..50 {
            if c.send_frame(f("m4")).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the queue has room again after the ACKs");
        assert_eq!(recv(&mut s).await.message_id.as_str(), "m4");
        // m1 left the window: sent again, it is stored again.
        c.send_frame(f("m1")).await.unwrap();
        assert_eq!(recv(&mut s).await.message_id.as_str(), "m1");
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn the_credit_window_holds_back_a_slow_consumer() {
    let Some(url) = redis_url("the_credit_window_holds_back_a_slow_consumer") else {
        return;
    };
    let rc = config(30_000);
    let a = node(&url, &rc).await;
    within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let mut s = c
            .subscribe("/queue/slow", SubscribeOptions::client_ack(2))
            .await
            .unwrap();
        for i in 0..5 {
            c.send("/queue/slow", format!("m{i}")).await.unwrap();
        }
        let d0 = recv(&mut s).await;
        let _d1 = recv(&mut s).await;
        quiet(&mut s, 200).await;
        s.ack(&d0).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "m2");
        quiet(&mut s, 150).await;
        s.add_credit(2).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "m3");
        assert_eq!(body_str(&recv(&mut s).await), "m4");
        // Over the window limit: refused.
        s.add_credit(2000).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), c.next_error())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.code, ErrorCode::CREDIT_OVERFLOW);
    })
    .await;
    a.kill();
}

/// A private `redis-server`, killed when dropped (also when a test step
/// panics, so a failed run leaves no server behind).
struct PrivateRedis(std::process::Child);

impl PrivateRedis {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a private `redis-server` with an append-only file synced on every
/// write, so a restart keeps what was acknowledged.
fn private_redis(dir: &std::path::Path, port: u16) -> PrivateRedis {
    let child = std::process::Command::new(
        std::env::var("WEFT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned()),
    )
    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
    .args([
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])
    .arg("--dir")
    .arg(dir)
    .args(["--daemonize", "no"])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("redis-server runs");
    PrivateRedis(child)
}

async fn wait_for_redis(url: &str) {
    for _ in 0..100 {
        if let Ok(c) = redis::Client::open(url)
            && let Ok(mut c) = c.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start at {url}");
}

#[tokio::test]
async fn redis_going_away_gives_501_and_the_node_recovers() {
    if redis_url("redis_going_away_gives_501_and_the_node_recovers").is_none() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("weft-redis-{:x}", rand_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = private_redis(&dir, port);
    wait_for_redis(&url).await;
    let rc = config(30_000);
    let a = node(&url, &rc).await;
    let result = within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let before = c.send("/queue/durable", "before").await.unwrap();
        redis.stop();
        let e = c.send("/queue/durable", "while down").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UNAVAILABLE), "{e}");
        redis = private_redis(&dir, port);
        wait_for_redis(&url).await;
        // The node reconnects by itself; a retry succeeds.
        let mut after = None;
        for _ in 0..100 {
            match c.send("/queue/durable", "after").await {
                Ok(id) => {
                    after = Some(id);
                    break;
                }
                Err(e) => assert_eq!(e.code(), Some(ErrorCode::UNAVAILABLE)),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = after.expect("the node recovered");
        let mut s = c
            .subscribe("/queue/durable", SubscribeOptions::client_ack(4))
            .await
            .unwrap();
        let d1 = recv(&mut s).await;
        let d2 = recv(&mut s).await;
        assert_eq!((d1.message_id, d2.message_id), (before, after));
        quiet(&mut s, 100).await;
    })
    .await;
    a.kill();
    redis.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[tokio::test]
async fn the_light_profile_and_text_form_work_on_redis() {
    let Some(url) = redis_url("the_light_profile_and_text_form_work_on_redis") else {
        return;
    };
    // Two writes in flight at most: the fire-and-forget producer below is
    // held back by the connection, and nothing is lost or reordered.
    let rc = RedisConfig {
        max_in_flight: 2,
        ..config(30_000)
    };
    let a = node(&url, &rc).await;
    within(async {
        let light = weft_broker::ClientOptions {
            profile: weft_broker::Profile::Light,
            form: weft_broker::Form::Text,
            ..Default::default()
        };
        let c = Client::connect_with(&a.url(), light).await.unwrap();
        let mut s = c
            .subscribe("/queue/telemetry", SubscribeOptions::auto_ack(8))
            .await
            .unwrap();
        for i in 0..300 {
            c.send("/queue/telemetry", format!("{i}")).await.unwrap();
        }
        for i in 0..300 {
            assert_eq!(body_str(&recv(&mut s).await), i.to_string());
        }
        // ack: auto settles in Redis as it delivers: the stream empties.
        let key = format!("{}:q:/queue/telemetry", rc.key_prefix);
        let mut left = xlen(&url, &key).await;
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = xlen(&url, &key).await;
        }
        assert_eq!(left, 0);
        // No RECEIPT in this profile, but a refusal still comes back.
        let e = c
            .subscribe("/queue/x", SubscribeOptions::client_ack(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NOT_IN_PROFILE));
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn topic_acks_and_nacks_settle_on_the_node() {
    let Some(url) = redis_url("topic_acks_and_nacks_settle_on_the_node") else {
        return;
    };
    let rc = config(30_000);
    let a = node(&url, &rc).await;
    within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let mut s = c
            .subscribe("/topic/t", SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        c.send("/topic/t", "one").await.unwrap();
        c.send("/topic/t", "two").await.unwrap();
        let d1 = recv(&mut s).await;
        assert_eq!(body_str(&d1), "one");
        quiet(&mut s, 100).await; // credit 1
        s.nack(&d1).unwrap();
        let d2 = recv(&mut s).await;
        assert_eq!((body_str(&d2), d2.redelivered), ("one", true));
        s.ack(&d2).unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "two");
    })
    .await;
    a.kill();
}

/// At the session level: `ack: auto` deliveries the connection never took
/// from its outbox (it ended first) go back to the queue, unmarked by any
/// settlement, as in the memory backend; those it took are settled.
#[tokio::test]
async fn auto_deliveries_never_handed_to_the_connection_go_back() {
    let Some(url) = redis_url("auto_deliveries_never_handed_to_the_connection_go_back") else {
        return;
    };
    use weft_broker::frame::{AckMode, Form, SubscribeFrame, SubscriptionId};
    use weft_broker::redis::{Completion, RedisBroker};
    let rc = config(30_000);
    let broker = RedisBroker::connect(&url, rc.clone()).await.unwrap();
    within(async {
        let q = weft_broker::Destination::new("/queue/auto").unwrap();
        let (wake, mut woken) = tokio::sync::mpsc::channel(1);
        let mut a = broker.open(wake);
        a.subscribe(
            SubscribeFrame {
                subscription: SubscriptionId::new("s").unwrap(),
                destination: q.clone(),
                ack: AckMode::Auto,
                credit: 2,
            },
            Form::Binary,
        )
        .await
        .unwrap();
        for id in ["m1", "m2", "m3"] {
            a.send(SendFrame {
                destination: q.clone(),
                message_id: MessageId::new(id).unwrap(),
                headers: Headers::new(),
                body: bytes::Bytes::from_static(b"x"),
            })
            .await;
            match a.next_completion().await.unwrap() {
                Completion::Send(m, Ok(_)) => assert_eq!(m.as_str(), id),
                other => panic!("{other:?}"),
            }
        }
        // Two deliveries reach the outbox (credit 2); take one, leave one.
        let mut out = Vec::new();
        while out.len() < 2 {
            woken.recv().await.unwrap();
            out.extend(a.take_outbox());
        }
        assert_eq!(out.len(), 2);
        let _ = out; // m1 and m2, "written"
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.close().await;
        // m1 and m2 were handed over and settled; m3 was never delivered.
        let key = format!("{}:q:/queue/auto", rc.key_prefix);
        assert_eq!(xlen(&url, &key).await, 1);

        // Now one delivery stays in the outbox when the session ends.
        let (wake, mut woken) = tokio::sync::mpsc::channel(1);
        let mut b = broker.open(wake);
        b.subscribe(
            SubscribeFrame {
                subscription: SubscriptionId::new("s").unwrap(),
                destination: q.clone(),
                ack: AckMode::Auto,
                credit: 1,
            },
            Form::Binary,
        )
        .await
        .unwrap();
        woken.recv().await.unwrap();
        b.close().await; // never took m3 from its outbox
        assert_eq!(xlen(&url, &key).await, 1, "m3 is still stored");
        let (wake, mut woken) = tokio::sync::mpsc::channel(1);
        let mut c = broker.open(wake);
        c.subscribe(
            SubscribeFrame {
                subscription: SubscriptionId::new("s").unwrap(),
                destination: q.clone(),
                ack: AckMode::Auto,
                credit: 1,
            },
            Form::Binary,
        )
        .await
        .unwrap();
        woken.recv().await.unwrap();
        let out = c.take_outbox();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message.message_id.as_str(), "m3");
        c.close().await;
    })
    .await;
}

#[tokio::test]
async fn max_destinations_counts_every_node_and_refuses_one_past() {
    let Some(url) = redis_url("max_destinations_counts_every_node_and_refuses_one_past") else {
        return;
    };
    let rc = RedisConfig {
        max_destinations: 2,
        ..config(30_000)
    };
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let ca = Client::connect(&a.url()).await.unwrap();
        let cb = Client::connect(&b.url()).await.unwrap();
        ca.send("/queue/one", "1").await.unwrap();
        // The second destination, on the other node: at the limit.
        let mut s = cb
            .subscribe("/topic/two", SubscribeOptions::auto_ack(4))
            .await
            .unwrap();
        // One past, by SEND and by SUBSCRIBE, on either node.
        let e = ca.send("/queue/three", "3").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        let e = cb.send("/topic/three", "3").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        let e = ca
            .subscribe("/queue/four", SubscribeOptions::client_ack(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        let e = cb
            .subscribe("/topic/four", SubscribeOptions::client_ack(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        // The existing ones keep working.
        cb.send("/queue/one", "1b").await.unwrap();
        ca.send("/topic/two", "2").await.unwrap();
        assert_eq!(body_str(&recv(&mut s).await), "2");
        let mut q = ca
            .subscribe("/queue/one", SubscribeOptions::client_ack(4))
            .await
            .unwrap();
        assert_eq!(body_str(&recv(&mut q).await), "1");
        assert_eq!(body_str(&recv(&mut q).await), "1b");
        let n: i64 = redis::cmd("SCARD")
            .arg(format!("{}:destinations", rc.key_prefix))
            .query_async(&mut redis_conn(&url).await)
            .await
            .unwrap();
        assert_eq!(n, 2);
        // The refused ones were not created.
        assert_eq!(
            xlen(&url, &format!("{}:q:/queue/three", rc.key_prefix)).await,
            0
        );
    })
    .await;
    a.kill();
    b.kill();
}

/// The read positions of a topic's live subscriptions in Redis.
async fn topic_positions(url: &str, prefix: &str, topic: &str) -> Vec<String> {
    redis::cmd("HVALS")
        .arg(format!("{prefix}:tpos:{topic}"))
        .query_async(&mut redis_conn(url).await)
        .await
        .unwrap()
}

/// Waits until every live subscription of the topic has recorded a read
/// position past `0-0` (the start of an empty stream), i.e. past what it
/// has been delivered.
async fn wait_positions_moved(url: &str, prefix: &str, topic: &str, from: &[String]) {
    for _ in 0..250 {
        let now = topic_positions(url, prefix, topic).await;
        if !now.is_empty() && now.iter().all(|p| !from.contains(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the topic subscriptions did not record their positions");
}

#[tokio::test]
async fn topics_keep_what_a_live_subscriber_has_not_read_and_refuse_past_max_queue() {
    let Some(url) =
        redis_url("topics_keep_what_a_live_subscriber_has_not_read_and_refuse_past_max_queue")
    else {
        return;
    };
    let rc = RedisConfig {
        max_queue: 3,
        ..config(1500)
    };
    let (a, b) = (node(&url, &rc).await, node(&url, &rc).await);
    within(async {
        let topic = "/topic/slow";
        // A slow subscriber on B (window of one, not acking yet) and a fast
        // one on A.
        let cs = Client::connect(&b.url()).await.unwrap();
        let mut slow = cs
            .subscribe(topic, SubscribeOptions::client_ack(1))
            .await
            .unwrap();
        let cf = Client::connect(&a.url()).await.unwrap();
        let mut fast = cf
            .subscribe(topic, SubscribeOptions::auto_ack(64))
            .await
            .unwrap();
        let start = topic_positions(&url, &rc.key_prefix, topic).await;
        assert_eq!(start.len(), 2, "both subscriptions are registered");
        let p = Client::connect(&a.url()).await.unwrap();
        p.send(topic, "t0").await.unwrap();
        let d0 = recv(&mut slow).await;
        assert_eq!(body_str(&d0), "t0");
        assert_eq!(body_str(&recv(&mut fast).await), "t0");
        wait_positions_moved(&url, &rc.key_prefix, topic, &start).await;
        // The slow one has t0 and no credit: three more are kept for it
        // (max_queue), the fourth is refused, not trimmed away.
        for m in ["t1", "t2", "t3"] {
            p.send(topic, m).await.unwrap();
        }
        let e = p.send(topic, "t4").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        let key = format!("{}:t:{topic}", rc.key_prefix);
        assert_eq!(xlen(&url, &key).await, 3, "t0 trimmed, t1..t3 kept");
        // Once it reads on, there is room again.
        slow.ack(&d0).unwrap();
        let d1 = recv(&mut slow).await;
        assert_eq!(body_str(&d1), "t1");
        let mut stored = false;
        for _ in 0..100 {
            if p.send(topic, "t4").await.is_ok() {
                stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stored, "t4 is accepted once the slow subscriber moved on");
        slow.ack(&d1).unwrap();
        // Nothing was lost for either subscriber.
        for m in ["t2", "t3", "t4"] {
            let d = recv(&mut slow).await;
            assert_eq!(body_str(&d), m);
            slow.ack(&d).unwrap();
        }
        for m in ["t1", "t2", "t3", "t4"] {
            assert_eq!(body_str(&recv(&mut fast).await), m);
        }
        quiet(&mut fast, 50).await;
        // Fill the slow one's backlog again, then kill its node: it holds
        // the topic back until the timeout (redeliver_after), not forever.
        let mut held = 0;
        for i in 0..10 {
            match p.send(topic, format!("k{i}")).await {
                Ok(_) => held += 1,
                Err(e) => {
                    assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
                    break;
                }
            }
        }
        assert!(
            held <= 4,
            "the slow subscriber's backlog is bounded ({held})"
        );
        b.kill();
        let t0 = std::time::Instant::now();
        let e = p.send(topic, "after-kill").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{e}");
        let mut stored = false;
        for _ in 0..200 {
            if p.send(topic, "after-timeout").await.is_ok() {
                stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(stored, "a dead subscriber stops holding the topic back");
        assert!(
            t0.elapsed() >= Duration::from_millis(500),
            "not before about the timeout ({:?})",
            t0.elapsed()
        );
        assert_eq!(topic_positions(&url, &rc.key_prefix, topic).await.len(), 1);
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn a_topic_without_subscribers_keeps_nothing() {
    let Some(url) = redis_url("a_topic_without_subscribers_keeps_nothing") else {
        return;
    };
    let rc = RedisConfig {
        max_queue: 3,
        ..config(30_000)
    };
    let a = node(&url, &rc).await;
    within(async {
        let p = Client::connect(&a.url()).await.unwrap();
        for i in 0..10 {
            p.send("/topic/void", format!("v{i}")).await.unwrap();
        }
        let key = format!("{}:t:/topic/void", rc.key_prefix);
        assert_eq!(xlen(&url, &key).await, 0);
        // A subscriber gets what is sent after it subscribed, and an
        // unsubscribed one stops holding messages back.
        let c = Client::connect(&a.url()).await.unwrap();
        let mut s = c
            .subscribe("/topic/void", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        p.send("/topic/void", "after").await.unwrap();
        let d = recv(&mut s).await;
        assert_eq!(body_str(&d), "after");
        s.ack(&d).unwrap();
        quiet(&mut s, 50).await;
        s.unsubscribe().await.unwrap();
        assert!(
            topic_positions(&url, &rc.key_prefix, "/topic/void")
                .await
                .is_empty()
        );
        for i in 0..10 {
            p.send("/topic/void", format!("w{i}")).await.unwrap();
        }
        assert_eq!(xlen(&url, &key).await, 0);
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn concurrent_sends_batched_together_keep_order_dedupe_and_the_limit() {
    let Some(url) = redis_url("concurrent_sends_batched_together_keep_order_dedupe_and_the_limit")
    else {
        return;
    };
    let rc = RedisConfig {
        max_queue: 25,
        ..config(30_000)
    };
    let a = node(&url, &rc).await;
    within(async {
        let c = Client::connect(&a.url()).await.unwrap();
        let f = |dest: &str, id: &str| SendFrame {
            destination: weft_broker::Destination::new(dest).unwrap(),
            message_id: MessageId::new(id).unwrap(),
            headers: Headers::new(),
            body: bytes::Bytes::from(id.to_owned()),
        };
        // Every SEND in flight at once, so the node's writer takes many in
        // one batch: x0 x0 x1 x1 ... x9 x9 x10 ... x39 to /queue/x (each of
        // the first ten twice), y0..y9 to /queue/y in between. The test
        // runtime is single-threaded and runs spawned tasks in order, and
        // `send_frame` queues its frame before it first waits, so this is
        // the order on the wire.
        let mut sends = Vec::new();
        for i in 0..40 {
            let copies = if i < 10 { 2 } else { 1 };
            for _ in 0..copies {
                let c = c.clone();
                let fr = f("/queue/x", &format!("x{i}"));
                sends.push((
                    format!("x{i}"),
                    tokio::spawn(async move { c.send_frame(fr).await }),
                ));
            }
            if i % 4 == 0 {
                let c = c.clone();
                let fr = f("/queue/y", &format!("y{}", i / 4));
                sends.push((
                    format!("y{}", i / 4),
                    tokio::spawn(async move { c.send_frame(fr).await }),
                ));
            }
        }
        let mut refused = Vec::new();
        for (id, h) in sends {
            match h.await.unwrap() {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL), "{id}: {e}");
                    refused.push(id);
                }
            }
        }
        // 25 distinct ids fit (duplicates take no room): x25..x39 refused.
        let expect: Vec<String> = (25..40).map(|i| format!("x{i}")).collect();
        assert_eq!(refused, expect);
        let key = format!("{}:q:/queue/x", rc.key_prefix);
        assert_eq!(xlen(&url, &key).await, 25);
        let mut sx = c
            .subscribe("/queue/x", SubscribeOptions::client_ack(64))
            .await
            .unwrap();
        for i in 0..25 {
            let d = recv(&mut sx).await;
            assert_eq!(body_str(&d), format!("x{i}"), "stored once each, in order");
            sx.ack(&d).unwrap();
        }
        quiet(&mut sx, 100).await;
        let mut sy = c
            .subscribe("/queue/y", SubscribeOptions::client_ack(64))
            .await
            .unwrap();
        for i in 0..10 {
            let d = recv(&mut sy).await;
            assert_eq!(body_str(&d), format!("y{i}"));
            sy.ack(&d).unwrap();
        }
        quiet(&mut sy, 50).await;
    })
    .await;
    a.kill();
}

#[tokio::test]
async fn redis_nodes_refuse_links() {
    let Some(url) = redis_url("redis_nodes_refuse_links") else {
        return;
    };
    let backend = Backend::redis(&url, config(30_000)).await.unwrap();
    let link = weft_broker::LinkConfig::new(
        "ws://127.0.0.1:1/",
        vec![weft_broker::Destination::new("/queue/a").unwrap()],
    );
    let e = Server::bind_with(
        "127.0.0.1:0",
        ServerConfig {
            links: vec![link],
            ..ServerConfig::default()
        },
        backend,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("need no link"), "{e}");
}
