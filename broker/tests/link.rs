//! Broker links over 127.0.0.1: node A forwards linked destinations to
//! node B over one multiplexed WebSocket (see broker/src/link.rs and
//! PROTOCOL.md, "Broker links"). Memory backend: Redis nodes share their
//! destinations through Redis and need no link.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_broker::frame::ErrorCode;
use weft_broker::{
    Backend, Client, Destination, LinkConfig, LinkStatus, MemoryConfig, Server, ServerConfig,
    SubscribeOptions,
};

/// Every test ends within this, whatever goes wrong.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

struct Node {
    addr: SocketAddr,
    backend: Backend,
    links: Vec<Arc<LinkStatus>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    async fn start(config: ServerConfig) -> Node {
        Node::start_at("127.0.0.1:0".parse().unwrap(), config).await
    }

    async fn start_at(addr: SocketAddr, config: ServerConfig) -> Node {
        let backend = Backend::memory(config.memory.clone());
        // The port of a node just killed may take a moment to be free.
        let mut tries = 0;
        let server = loop {
            match Server::bind_with(addr, config.clone(), backend.clone()).await {
                Ok(s) => break s,
                Err(e) if tries < 50 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = server.local_addr().unwrap();
        let links = server.link_status();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Node {
            addr,
            backend,
            links,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn queue_len(&self, d: &str) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.lock().queue_len(&Destination::new(d).unwrap()),
            Backend::Redis(_) => unreachable!(),
        }
    }

    /// Like kill -9 of a node's process: every task and socket dropped at
    /// once, no closing handshake, the memory backend's state gone.
    async fn kill(mut self) {
        self.task.abort();
        let _ = self.task.await;
        self.stop.take();
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn dests(list: &[&str]) -> Vec<Destination> {
    list.iter().map(|d| Destination::new(d).unwrap()).collect()
}

/// A link with test-sized back-off.
fn link(url: &str, list: &[&str]) -> LinkConfig {
    LinkConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..LinkConfig::new(url, dests(list))
    }
}

fn with_links(links: Vec<LinkConfig>) -> ServerConfig {
    ServerConfig {
        links,
        ..ServerConfig::default()
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A TCP proxy that counts the connections it accepts, can cut them, and
/// can freeze them (stop carrying bytes, sockets left open: a peer that
/// hangs or a network that drops everything).
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

/// Copies `from` to `to` while `frozen` is false.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 << 10];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, tasks, freeze) = (accepted.clone(), open.clone(), frozen.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let freeze = freeze.clone();
                let t = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = outbound.into_split();
                        // Both directions end together (a cut drops both).
                        tokio::select! {
                            _ = pump(ir, ow, freeze.clone()) => {}
                            _ = pump(or, iw, freeze) => {}
                        }
                    }
                });
                tasks.lock().unwrap().push(t);
            }
        });
        Proxy {
            addr,
            accepted,
            open,
            frozen,
        }
    }

    /// Drops every connection at once, whatever is in flight.
    fn cut(&self) {
        for t in self.open.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

#[tokio::test]
async fn linked_destinations_share_one_connection_and_keep_order() {
    within(async {
        let b = Node::start(ServerConfig::default()).await;
        let proxy = Proxy::start(b.addr).await;
        let a = Node::start(with_links(vec![link(
            &proxy.url(),
            &["/queue/a", "/queue/b", "/topic/t"],
        )]))
        .await;
        let status = a.links[0].clone();
        wait_for("the link", || status.connected()).await;

        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut qa = consumer
            .subscribe("/queue/a", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let mut qb = consumer
            .subscribe("/queue/b", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let mut tt = consumer
            .subscribe("/topic/t", SubscribeOptions::auto_ack(64))
            .await
            .unwrap();

        let producer = Client::connect(&a.url()).await.unwrap();
        let n = 40;
        let mut sent = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..n {
            for (k, d) in ["/queue/a", "/queue/b", "/topic/t"].iter().enumerate() {
                sent[k].push(producer.send(d, format!("{d} {i}")).await.unwrap());
            }
        }
        for (k, sub) in [&mut qa, &mut qb, &mut tt].into_iter().enumerate() {
            let mut got = Vec::new();
            while got.len() < n {
                let d = sub.next().await.expect("open");
                if k < 2 {
                    sub.ack(&d).unwrap();
                }
                // Marked as forwarded, by A.
                assert!(d.headers.get("weft-forwarded").is_some());
                got.push(d.message_id);
            }
            // One producer, one channel: B stores and delivers in order.
            assert_eq!(got, sent[k], "destination {k}");
        }
        assert_eq!(
            proxy.accepted.load(Ordering::SeqCst),
            1,
            "one TCP connection carries every linked destination"
        );
        wait_for("all receipts", || status.forwarded() == 3 * n as u64).await;
        assert_eq!(status.in_flight(), 0);
        assert_eq!((status.connects(), status.failures()), (1, 0));
        // Nothing is left on A.
        assert_eq!(a.queue_len("/queue/a") + a.queue_len("/queue/b"), 0);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// Receives until every id in `want` was seen; returns the duplicates.
async fn collect(
    sub: &mut weft_broker::Subscription,
    want: &HashSet<String>,
    seen: &mut HashSet<String>,
) -> usize {
    let mut dups = 0;
    while !want.is_subset(seen) {
        let d = sub.next().await.expect("open");
        sub.ack(&d).unwrap();
        if !seen.insert(d.message_id.as_str().to_owned()) {
            dups += 1;
        }
    }
    dups
}

#[tokio::test]
async fn link_survives_the_other_node_restarting() {
    within(async {
        let b = Node::start(ServerConfig::default()).await;
        let b_addr = b.addr;
        let a = Node::start(with_links(vec![link(&b.url(), &["/queue/r"])])).await;
        let status = a.links[0].clone();
        wait_for("the link", || status.connected()).await;
        let producer = Client::connect(&a.url()).await.unwrap();
        let mut want = HashSet::new();
        let mut seen = HashSet::new();

        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut sub = consumer
            .subscribe("/queue/r", SubscribeOptions::client_ack(16))
            .await
            .unwrap();
        for i in 0..100 {
            let id = producer.send("/queue/r", format!("before {i}")).await.unwrap();
            want.insert(id.as_str().to_owned());
        }
        let mut dups = collect(&mut sub, &want, &mut seen).await;
        drop(sub);
        drop(consumer);

        // B dies; A keeps accepting, storing and acknowledging SENDs.
        b.kill().await;
        wait_for("the link to notice", || !status.connected()).await;
        for i in 0..100 {
            let id = producer.send("/queue/r", format!("during {i}")).await.unwrap();
            want.insert(id.as_str().to_owned());
        }
        assert_eq!(a.queue_len("/queue/r"), 100, "kept on A while B is down");
        let failures = status.failures();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            status.failures() > failures,
            "the link keeps retrying: {:?}",
            status.last_error()
        );

        // B comes back on the same address, empty: the link reconnects.
        let b = Node::start_at(b_addr, ServerConfig::default()).await;
        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut sub = consumer
            .subscribe("/queue/r", SubscribeOptions::client_ack(16))
            .await
            .unwrap();
        dups += collect(&mut sub, &want, &mut seen).await;
        let lost = want.difference(&seen).count();
        println!(
            "{{\"sent\":{},\"received_unique\":{},\"lost\":{lost},\"duplicates\":{dups},\"connects\":{},\"failures\":{}}}",
            want.len(),
            seen.len(),
            status.connects(),
            status.failures()
        );
        assert_eq!(lost, 0);
        assert!(status.connects() >= 2);
        // Duplicates come only from the window in flight when B died.
        assert!(dups <= 64, "{dups} duplicates");
        wait_for("A drained", || a.queue_len("/queue/r") == 0).await;
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_cut_connection_loses_nothing_in_flight() {
    within(async {
        // B keeps its state; only the connection between A and B fails,
        // with SENDs and RECEIPTs in flight.
        let b = Node::start(ServerConfig::default()).await;
        let proxy = Proxy::start(b.addr).await;
        let a = Node::start(with_links(vec![link(&proxy.url(), &["/queue/c"])])).await;
        let status = a.links[0].clone();
        wait_for("the link", || status.connected()).await;
        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut sub = consumer
            .subscribe("/queue/c", SubscribeOptions::client_ack(16))
            .await
            .unwrap();
        let producer = Client::connect(&a.url()).await.unwrap();
        let n = 600;
        let proxy = Arc::new(proxy);
        let (cutter, link) = (proxy.clone(), status.clone());
        // The producer cuts the connection twice while the link is busy:
        // first the network stops carrying (so what the link sends next
        // certainly never reaches B), 20 more messages go to A, then the
        // connection is dropped.
        let sending = tokio::spawn(async move {
            let mut ids = HashSet::new();
            let mut in_flight_at_cuts = 0;
            for i in 0..n {
                if i == 200 || i == 400 {
                    // (Cut an established link, not one reconnecting.)
                    while !link.connected() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    cutter.frozen.store(true, Ordering::SeqCst);
                }
                let id = producer.send("/queue/c", format!("{i}")).await.unwrap();
                ids.insert(id.as_str().to_owned());
                if i == 220 || i == 420 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    in_flight_at_cuts += link.in_flight();
                    cutter.cut();
                    cutter.frozen.store(false, Ordering::SeqCst);
                }
            }
            (ids, in_flight_at_cuts)
        });
        let mut seen = HashSet::new();
        let mut dups = 0;
        while seen.len() < n {
            // A lost message never comes: give up after a quiet while.
            let Ok(d) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await else {
                break;
            };
            let d = d.expect("open");
            sub.ack(&d).unwrap();
            if !seen.insert(d.message_id.as_str().to_owned()) {
                dups += 1;
            }
        }
        let (want, in_flight_at_cuts) = sending.await.unwrap();
        let lost = want.difference(&seen).count();
        assert_eq!(lost, 0, "{lost} acknowledged messages lost");
        assert!(in_flight_at_cuts >= 20, "{in_flight_at_cuts} in flight");
        // The last cut may come after the link had forwarded everything.
        wait_for("a reconnection after each cut", || {
            status.connects() >= 3 && status.connected()
        })
        .await;
        assert!(status.failures() >= 2);
        assert_eq!(
            proxy.accepted.load(Ordering::SeqCst) as u64,
            status.connects()
        );
        // B's deduplication drops what was stored but not acknowledged
        // before a cut, so the consumer sees no duplicate.
        assert_eq!(dups, 0);
        println!(
            "cut test: {n} sent, {dups} duplicates, {} connects, {in_flight_at_cuts} in flight at the cuts",
            status.connects()
        );
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_peer_is_dropped_by_the_keepalive() {
    within(async {
        let b = Node::start(ServerConfig::default()).await;
        let proxy = Proxy::start(b.addr).await;
        let keepalive = Duration::from_millis(200);
        let a = Node::start(with_links(vec![LinkConfig {
            keepalive,
            ..link(&proxy.url(), &["/queue/k"])
        }]))
        .await;
        let status = a.links[0].clone();
        wait_for("the link", || status.connected()).await;
        // Idle but answering Pings: the link stays up.
        tokio::time::sleep(keepalive * 5).await;
        assert_eq!(
            (status.connects(), status.failures()),
            (1, 0),
            "{:?}",
            status.last_error()
        );
        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut sub = consumer
            .subscribe("/queue/k", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let producer = Client::connect(&a.url()).await.unwrap();
        let first = producer.send("/queue/k", "before").await.unwrap();
        let d = sub.next().await.unwrap();
        assert_eq!(d.message_id, first);
        sub.ack(&d).unwrap();

        // The network stops carrying anything; TCP notices nothing.
        proxy.frozen.store(true, Ordering::SeqCst);
        let frozen_at = tokio::time::Instant::now();
        let second = producer.send("/queue/k", "during").await.unwrap();
        wait_for("the keepalive to drop the link", || !status.connected()).await;
        let silent = frozen_at.elapsed();
        let e = status.last_error().unwrap();
        assert!(e.contains("nothing heard"), "{e}");
        // Ping after one keepalive of silence, drop after one more.
        assert!(silent >= keepalive, "dropped after {silent:?}");
        proxy.cut();
        proxy.frozen.store(false, Ordering::SeqCst);

        // A new connection carries what was in flight (a read the proxy
        // had started when it froze may have carried it already).
        let d = sub.next().await.unwrap();
        assert_eq!(d.message_id, second);
        sub.ack(&d).unwrap();
        wait_for("the reconnection", || status.connects() >= 2).await;
        let third = producer.send("/queue/k", "after").await.unwrap();
        let d = sub.next().await.unwrap();
        assert_eq!(d.message_id, third);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn mux_channels_are_ordinary_sessions_and_must_offer_the_token() {
    within(async {
        let b = Node::start(ServerConfig::default()).await;
        let mut request = weft_core::IntoClientRequest::into_client_request(b.url()).unwrap();
        request.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("mbws.weft"),
        );
        let mux = weft_mux::MuxClient::connect(request, weft_mux::MuxConfig::default())
            .await
            .unwrap();
        // No subprotocol offered: refused like a plain request.
        let e = mux.open_channel("/", &[], Vec::new()).await.unwrap_err();
        assert!(
            matches!(e, weft_mux::MuxError::Rejected(s) if s == http::StatusCode::BAD_REQUEST),
            "{e:?}"
        );
        // With it, a session like any other: SEND is stored and answered.
        let mut ch = mux
            .open_channel_with_protocols("/", &[], &["mbws.weft".to_owned()], Vec::new())
            .await
            .unwrap();
        assert_eq!(ch.protocol(), Some("mbws.weft"));
        ch.send(weft_core::Message::Text(
            "SEND\ndestination: /queue/m\nmessage-id: m-1\n\nhello".into(),
        ))
        .await
        .unwrap();
        let reply = ch.recv().await.unwrap().unwrap();
        match reply {
            weft_core::Message::Text(t) => assert_eq!(t.as_str(), "RECEIPT\nmessage-id: m-1\n\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.queue_len("/queue/m"), 1);
        mux.close();
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_is_held_back_by_credit_on_both_nodes() {
    within(async {
        let (b_max, a_max, window) = (10, 20, 4);
        let b = Node::start(ServerConfig {
            memory: MemoryConfig {
                max_queue: b_max,
                ..MemoryConfig::default()
            },
            ..ServerConfig::default()
        })
        .await;
        let a = Node::start(ServerConfig {
            memory: MemoryConfig {
                max_queue: a_max,
                ..MemoryConfig::default()
            },
            links: vec![LinkConfig {
                window,
                ..link(&b.url(), &["/queue/slow"])
            }],
            ..ServerConfig::default()
        })
        .await;
        let status = a.links[0].clone();
        wait_for("the link", || status.connected()).await;

        // Nobody consumes on B: A's producer is refused once both are full.
        let producer = Client::connect(&a.url()).await.unwrap();
        let mut ok = Vec::new();
        let mut i = 0;
        let refused = loop {
            assert!(i < 400, "A never refused");
            i += 1;
            match producer.send("/queue/slow", format!("{}", ok.len())).await {
                Ok(id) => ok.push(id),
                // A is full before the link filled B (a slow machine):
                // wait for the link and try again.
                Err(e) if b.queue_len("/queue/slow") < b_max => {
                    assert_eq!(e.code(), Some(ErrorCode::QUEUE_FULL));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(refused.code(), Some(ErrorCode::QUEUE_FULL));
        // B holds its max_queue, the link at most its window, A the rest:
        // every accepted message is in exactly one place.
        assert_eq!(b.queue_len("/queue/slow"), b_max);
        wait_for("the link to settle", || {
            a.queue_len("/queue/slow") + status.in_flight() as usize + b_max == ok.len()
        })
        .await;
        assert!(status.in_flight() <= u64::from(window));
        assert_eq!(a.queue_len("/queue/slow"), a_max);
        assert!(
            (b_max + a_max..=b_max + a_max + window as usize).contains(&ok.len()),
            "{} accepted",
            ok.len()
        );
        wait_for("B refusing and the link resending", || status.resent() > 0).await;

        // The consumer arrives: everything accepted reaches it.
        let consumer = Client::connect(&b.url()).await.unwrap();
        let mut sub = consumer
            .subscribe("/queue/slow", SubscribeOptions::client_ack(8))
            .await
            .unwrap();
        let want: HashSet<String> = ok.iter().map(|id| id.as_str().to_owned()).collect();
        let mut seen = HashSet::new();
        collect(&mut sub, &want, &mut seen).await;
        assert_eq!(want.difference(&seen).count(), 0);
        assert_eq!(status.dropped(), 0);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_node_without_mux_refuses_the_link_which_retries() {
    within(async {
        let b = Node::start(ServerConfig {
            mux: None,
            ..ServerConfig::default()
        })
        .await;
        let a = Node::start(with_links(vec![link(&b.url(), &["/queue/a"])])).await;
        let status = a.links[0].clone();
        wait_for("retries", || status.failures() >= 3).await;
        let e = status.last_error().unwrap();
        assert!(e.contains("does not accept multiplexed"), "{e}");
        assert!(e.contains("retrying in"), "{e}");
        assert_eq!(status.connects(), 0);
        assert!(!status.connected());
        // Plain clients are served as before.
        let c = Client::connect(&b.url()).await.unwrap();
        c.send("/queue/a", "plain").await.unwrap();
        // And messages stay on A.
        let p = Client::connect(&a.url()).await.unwrap();
        p.send("/queue/a", "kept").await.unwrap();
        assert_eq!(a.queue_len("/queue/a"), 1);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_mux_peer_without_the_subprotocol_is_refused() {
    within(async {
        // A mux server that is not a broker: it selects no subprotocol.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let builder = weft_mux::MuxServerBuilder::new(
            weft_core::ServerBuilder::new(),
            weft_mux::MuxConfig::default(),
            weft_core::handshake::server::ServerOptions::default(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let builder = builder.clone();
                tokio::spawn(async move {
                    if let Ok(weft_mux::Accepted::Mux(mut m)) = builder.accept(stream).await {
                        let mut open = Vec::new();
                        while let Some(ch) = m.next_channel().await {
                            if let Ok(ch) = ch.accept() {
                                open.push(ch);
                            }
                        }
                    }
                });
            }
        });
        let a = Node::start(with_links(vec![link(
            &format!("ws://{addr}/"),
            &["/queue/a"],
        )]))
        .await;
        let status = a.links[0].clone();
        wait_for("retries", || status.failures() >= 2).await;
        let e = status.last_error().unwrap();
        assert!(
            e.contains("did not select the subprotocol mbws.weft"),
            "{e}"
        );
        assert_eq!(status.connects(), 0);
        a.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_queue_linked_both_ways_is_refused() {
    within(async {
        // Bind both first, so each knows the other's address.
        let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
        drop((la, lb));
        let a = Node::start_at(
            aa,
            with_links(vec![link(&format!("ws://{ab}/"), &["/queue/x"])]),
        )
        .await;
        let b = Node::start_at(
            ab,
            with_links(vec![link(&format!("ws://{aa}/"), &["/queue/x"])]),
        )
        .await;
        for n in [&a, &b] {
            let status = n.links[0].clone();
            wait_for("a refusal", || {
                status
                    .last_error()
                    .is_some_and(|e| e.contains("one direction only"))
            })
            .await;
            assert_eq!(status.connects(), 0);
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_topic_linked_both_ways_does_not_loop() {
    within(async {
        let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
        drop((la, lb));
        let a = Node::start_at(
            aa,
            ServerConfig {
                node_id: "node-a".into(),
                ..with_links(vec![link(&format!("ws://{ab}/"), &["/topic/t"])])
            },
        )
        .await;
        let b = Node::start_at(
            ab,
            ServerConfig {
                node_id: "node-b".into(),
                ..with_links(vec![link(&format!("ws://{aa}/"), &["/topic/t"])])
            },
        )
        .await;
        let (sa, sb) = (a.links[0].clone(), b.links[0].clone());
        wait_for("both links", || sa.connected() && sb.connected()).await;
        let ca = Client::connect(&a.url()).await.unwrap();
        let cb = Client::connect(&b.url()).await.unwrap();
        let mut on_a = ca
            .subscribe("/topic/t", SubscribeOptions::auto_ack(64))
            .await
            .unwrap();
        let mut on_b = cb
            .subscribe("/topic/t", SubscribeOptions::auto_ack(64))
            .await
            .unwrap();
        for i in 0..10 {
            ca.send("/topic/t", format!("from a {i}")).await.unwrap();
            cb.send("/topic/t", format!("from b {i}")).await.unwrap();
        }
        for (sub, other) in [(&mut on_a, "node-b"), (&mut on_b, "node-a")] {
            let mut ids = HashSet::new();
            let mut forwarded = 0;
            while ids.len() < 20 {
                let d = sub.next().await.expect("open");
                assert!(ids.insert(d.message_id.clone()), "delivered twice");
                if let Some(n) = d.headers.get("weft-forwarded") {
                    assert_eq!(n, other);
                    forwarded += 1;
                }
            }
            assert_eq!(forwarded, 10);
            // Nothing comes back around.
            let more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
            assert!(more.is_err(), "a message looped: {more:?}");
        }
        for s in [&sa, &sb] {
            assert_eq!((s.forwarded(), s.skipped()), (10, 10));
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn link_settings_are_checked_at_bind() {
    let bad = |l: LinkConfig| with_links(vec![l]);
    for (config, why) in [
        (
            bad(LinkConfig::new("ws://127.0.0.1:1/", vec![])),
            "no destinations",
        ),
        (
            bad(LinkConfig {
                window: 0,
                ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
            }),
            "window 0",
        ),
        (
            bad(LinkConfig {
                window: MemoryConfig::default().max_credit + 1,
                ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
            }),
            "window 1025",
        ),
        (
            bad(LinkConfig {
                backoff_min: Duration::ZERO,
                ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
            }),
            "backoff_min must be above 0",
        ),
        (
            bad(LinkConfig {
                backoff_min: Duration::from_millis(101),
                backoff_max: Duration::from_millis(100),
                ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
            }),
            "at most backoff_max",
        ),
        (
            bad(LinkConfig {
                keepalive: Duration::ZERO,
                ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
            }),
            "keepalive must be above 0",
        ),
        (bad(LinkConfig::new("not a url", dests(&["/queue/a"]))), ""),
    ] {
        let e = Server::bind("127.0.0.1:0", config).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains(why), "{e}");
    }
    // At the limits it binds.
    let ok = ServerConfig {
        node_id: "n".repeat(64),
        ..with_links(vec![LinkConfig {
            window: MemoryConfig::default().max_credit,
            // Back-off bounds that meet, and the shortest keepalive.
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(100),
            keepalive: Duration::from_nanos(1),
            ..LinkConfig::new("ws://127.0.0.1:1/", dests(&["/queue/a"]))
        }])
    };
    Server::bind("127.0.0.1:0", ok).await.unwrap();
}
