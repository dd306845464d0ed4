//! `broker_check`: end-to-end check of weft-broker across nodes.
//!
//! ```text
//! cargo run --release -p weft-broker --example broker_check -- \
//!     --urls ws://127.0.0.1:9101/,ws://127.0.0.1:9102/ --messages 3000
//! ```
//!
//! Produces `--messages` messages to a fresh queue on the first URL, each
//! with its own message id, and consumes them with `ack: client` on the
//! second (the first when only one is given). Both sides survive a node
//! dying under them: the consumer reconnects to the next URL in the list
//! (round robin) and subscribes again; the producer reconnects and sends
//! the message whose RECEIPT it did not see again with the same id (the
//! broker drops the duplicate). When every message has been acknowledged
//! by the broker and either all have arrived or `--settle-secs` passed
//! without a new one, it prints one JSON line
//!
//! ```text
//! {"ok":true,"sent":3000,"received_unique":3000,"lost":0,"duplicates":2,"reconnects":1,...}
//! ```
//!
//! and exits 1 if anything acknowledged was lost (2 on a usage error or
//! when the broker could not be reached at all). Duplicates are allowed:
//! delivery is at-least-once.

use clap::Parser;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use weft_broker::frame::{Headers, MessageId, SendFrame};
use weft_broker::{Client, Destination, SubscribeOptions};

/// Checks that no acknowledged message is lost across broker nodes.
#[derive(Debug, Parser)]
#[command(name = "broker_check")]
struct Args {
    /// Broker URLs, comma separated: produce on the first, consume on the
    /// second (or the first), fail over round robin.
    #[arg(long, value_delimiter = ',', required = true)]
    urls: Vec<String>,
    /// Messages to send.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Most messages per second the producer sends (0: as fast as it can),
    /// so a run lasts long enough to kill a node in the middle.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Credit window of the consumer.
    #[arg(long, default_value_t = 64)]
    credit: u32,
    /// Deliveries the consumer keeps unacknowledged (acking the oldest as
    /// each new one arrives, the rest when deliveries pause), so a node
    /// killed under it has deliveries in flight that must be redelivered.
    #[arg(long, default_value_t = 16)]
    hold: usize,
    /// After the last RECEIPT, how long to wait without a new delivery
    /// before declaring the missing messages lost.
    #[arg(long, default_value_t = 15)]
    settle_secs: u64,
    /// How long to keep trying to reach a broker before giving up on it.
    #[arg(long, default_value_t = 30)]
    connect_secs: u64,
    /// The queue to use [default: a fresh `/queue/broker-check.RUN`]. Name
    /// one to check a broker link: link it from the first node to the
    /// second (`--link-destinations`).
    #[arg(long)]
    queue: Option<String>,
}

async fn connect(urls: &[String], start: usize, patience: Duration) -> Option<(Client, usize)> {
    let deadline = Instant::now() + patience;
    let mut i = start;
    loop {
        let url = &urls[i % urls.len()];
        match Client::connect(url).await {
            Ok(c) => return Some((c, i % urls.len())),
            Err(e) => {
                if Instant::now() >= deadline {
                    eprintln!("broker_check: cannot reach {url}: {e}");
                    return None;
                }
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Seen {
    unique: HashSet<u64>,
    total: u64,
    redelivered: u64,
    last: Instant,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.urls.is_empty() {
        eprintln!("broker_check: --urls needs at least one URL");
        return std::process::ExitCode::from(2);
    }
    let patience = Duration::from_secs(args.connect_secs);
    let run = format!("{:08x}", rand::random::<u32>());
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| format!("/queue/broker-check.{run}"));
    let destination = match Destination::new(&queue) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("broker_check: --queue {queue:?}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let urls = Arc::new(args.urls.clone());
    let consume_at = if urls.len() > 1 { 1 } else { 0 };
    let reconnects = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Seen {
        unique: HashSet::new(),
        total: 0,
        redelivered: 0,
        last: Instant::now(),
    }));
    let done = Arc::new(AtomicBool::new(false));

    // The consumer subscribes before the first SEND and stays subscribed,
    // reconnecting round robin whenever its connection ends.
    let Some((first, at)) = connect(&urls, consume_at, patience).await else {
        return std::process::ExitCode::from(2);
    };
    let options = SubscribeOptions::client_ack(args.credit);
    let mut sub = match first.subscribe(&queue, options.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("broker_check: subscribe: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let hold = args.hold.min(args.credit.saturating_sub(1) as usize);
    let consumer = {
        let (urls, seen, done, reconnects, queue) = (
            urls.clone(),
            seen.clone(),
            done.clone(),
            reconnects.clone(),
            queue.clone(),
        );
        tokio::spawn(async move {
            let mut at = at;
            let mut held = std::collections::VecDeque::new();
            loop {
                match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    Err(_) => {
                        for d in held.drain(..) {
                            let _ = sub.ack(&d);
                        }
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    Ok(Some(d)) => {
                        let n = d
                            .message_id
                            .as_str()
                            .rsplit('-')
                            .next()
                            .and_then(|n| n.parse::<u64>().ok());
                        {
                            let mut s = seen.lock().await;
                            s.total += 1;
                            s.redelivered += u64::from(d.redelivered);
                            s.last = Instant::now();
                            if let Some(n) = n {
                                s.unique.insert(n);
                            }
                        }
                        held.push_back(d);
                        while held.len() > hold {
                            let d = held.pop_front().expect("not empty");
                            let _ = sub.ack(&d);
                        }
                    }
                    Ok(None) => {
                        // Deliveries of the lost connection cannot be acked.
                        held.clear();
                        // The node went away: the next one, subscribe again.
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        loop {
                            if done.load(Ordering::Relaxed) {
                                return;
                            }
                            let Some((c, i)) = connect(&urls, at + 1, patience).await else {
                                return;
                            };
                            at = i;
                            match c.subscribe(&queue, options.clone()).await {
                                Ok(s) => {
                                    sub = s;
                                    break;
                                }
                                Err(e) => eprintln!("broker_check: subscribe again: {e}"),
                            }
                        }
                    }
                }
            }
        })
    };

    // The producer: each message until its RECEIPT, reconnecting and
    // resending with the same id when the connection fails.
    let started = Instant::now();
    let body = bytes::Bytes::from(vec![b'x'; args.size]);
    let Some((mut producer, mut pat)) = connect(&urls, 0, patience).await else {
        return std::process::ExitCode::from(2);
    };
    let mut acked: Vec<u64> = Vec::with_capacity(args.messages as usize);
    let mut refused = 0u64;
    for i in 0..args.messages {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let frame = SendFrame {
            destination: destination.clone(),
            message_id: MessageId::new(&format!("{run}-{i}")).expect("valid id"),
            headers: Headers::new(),
            body: body.clone(),
        };
        let mut tries = 0;
        loop {
            match producer.send_frame(frame.clone()).await {
                Ok(()) => {
                    acked.push(i);
                    break;
                }
                Err(weft_broker::Error::Broker(e)) if tries < 50 => {
                    // 300 (full) or 501 (Redis away): back off and retry.
                    tries += 1;
                    eprintln!("broker_check: SEND {i} refused: {} {}", e.code, e.message);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(weft_broker::Error::Broker(_)) => {
                    refused += 1;
                    break;
                }
                Err(_) => {
                    reconnects.fetch_add(1, Ordering::Relaxed);
                    let Some((c, j)) = connect(&urls, pat + 1, patience).await else {
                        break;
                    };
                    producer = c;
                    pat = j;
                }
            }
        }
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let sent = acked.len() as u64;

    // Wait for the rest, as long as deliveries keep coming.
    let settle = Duration::from_secs(args.settle_secs);
    loop {
        {
            let s = seen.lock().await;
            if s.unique.len() as u64 >= sent || s.last.elapsed() >= settle {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(2), consumer).await;
    let s = seen.lock().await;
    let received_unique = s.unique.len() as u64;
    // Lost: acknowledged by the broker, never delivered.
    let lost = acked.iter().filter(|i| !s.unique.contains(i)).count() as u64;
    let duplicates = s.total - received_unique;
    let ok = lost == 0 && sent == args.messages;
    println!(
        "{}",
        serde_json::json!({
            "ok": ok,
            "sent": sent,
            "received_unique": received_unique,
            "lost": lost,
            "duplicates": duplicates,
            "redelivered": s.redelivered,
            "refused": refused,
            "reconnects": reconnects.load(Ordering::Relaxed),
            "produce_secs": (produce_secs * 1000.0).round() / 1000.0,
            "total_secs": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "queue": queue,
        })
    );
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
