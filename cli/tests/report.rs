//! The report end to end: JSON schema, CSV, SVG/HTML as XML, determinism,
//! byte counts against a real weft connection on loopback, bounded reading.

use test_support::CountingStream;
use weft_cli::corpus::{self, Direction, Entry, ReadOptions};
use weft_cli::replay::{ReplayOptions, measure};
use weft_cli::report::{self, Constraints};
use weft_cli::settings::{self, Setting};
use weft_core::Message;

#[global_allocator]
static ALLOC: weft_cli::alloc::CountingAlloc = weft_cli::alloc::CountingAlloc;

/// A small mixed corpus: JSON-ish text both ways and some binary.
fn sample() -> corpus::Corpus {
    let mut lines = String::new();
    let mut seed = 7u64;
    for i in 0..300 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = (seed >> 33) % 40 + 1;
        let words: Vec<String> = (0..n)
            .map(|k| format!("w{}", (seed >> (k % 30)) % 50))
            .collect();
        let msg = format!(
            r#"{{"id":{i},"user":"u{}","text":"{}"}}"#,
            seed % 7,
            words.join(" ")
        );
        let dir = if i % 3 == 0 { "sent" } else { "received" };
        lines.push_str(&serde_json::json!({"text": msg, "dir": dir, "t": i}).to_string());
        lines.push('\n');
        if i % 50 == 0 {
            let bin: Vec<u8> = (0..(i * 7 % 300)).map(|k| (k * 31 % 251) as u8).collect();
            let e = Entry {
                text: false,
                payload: bin.into(),
                dir: Some(Direction::Received),
                t: None,
            };
            lines.push_str(&corpus::json_line(&e, None));
            lines.push('\n');
        }
    }
    // A large message, fragmented by nothing but above 64 KiB (8-byte
    // length header).
    let big = "abcdefghij".repeat(7000);
    lines.push_str(&serde_json::json!({"text": big, "dir": "received"}).to_string());
    lines.push('\n');
    corpus::parse_json_lines(lines.as_bytes(), &ReadOptions::default()).unwrap()
}

fn grid() -> Vec<Setting> {
    vec![
        Setting::off(),
        Setting::per_message(13, 6, 8, true, 0),
        Setting::per_message(9, 1, 8, false, 0),
        Setting::per_message(15, 9, 5, true, 200),
        Setting::per_frame(12, 6, true),
        settings::peer_rows()[1].clone(),
    ]
}

fn run(c: &corpus::Corpus) -> report::Report {
    report::run(
        c,
        &grid(),
        &ReplayOptions::default(),
        Constraints {
            max_memory_per_conn: Some(64 << 10),
            max_cpu_us_per_msg: None,
        },
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn json_has_exactly_the_issue_schema() {
    let r = run(&sample());
    let v = r.to_json();
    let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want_top = vec!["corpus", "settings", "pareto", "recommended"];
    want_top.sort();
    let mut got_top = top.clone();
    got_top.sort();
    assert_eq!(got_top, want_top);
    let mut want = vec![
        "extension",
        "params",
        "level",
        "mem_level",
        "context_takeover",
        "threshold",
        "payload_bytes",
        "wire_bytes",
        "ratio",
        "compress_mib_s",
        "decompress_mib_s",
        "p99_us",
        "memory_per_conn_bytes",
    ];
    want.sort();
    let settings = v["settings"].as_array().unwrap();
    assert_eq!(settings.len(), grid().len());
    for s in settings {
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, want);
        assert!(s["payload_bytes"].as_u64().unwrap() > 0);
        assert!(s["wire_bytes"].as_u64().unwrap() > 0);
        assert!(s["ratio"].as_f64().unwrap() > 0.0);
        assert!(s["p99_us"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(settings[0]["extension"], "none");
    assert!(settings[0]["level"].is_null());
    assert_eq!(settings[1]["extension"], "permessage-deflate");
    assert_eq!(
        settings[1]["params"],
        "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13"
    );
    assert_eq!(settings[1]["level"], 6);
    assert_eq!(settings[1]["context_takeover"], true);
    assert_eq!(settings[2]["context_takeover"], false);
    assert_eq!(settings[3]["mem_level"], 5);
    assert_eq!(settings[3]["threshold"], 200);
    assert_eq!(settings[4]["extension"], "deflate-frame");
    // Python websockets' server answers 12-bit windows to a valueless offer.
    assert_eq!(
        settings[5]["params"],
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    );
    for p in v["pareto"].as_array().unwrap() {
        assert!((p.as_u64().unwrap() as usize) < settings.len());
    }
    let rec = v["recommended"].as_u64().expect("a setting fits 64 KiB") as usize;
    assert!(settings[rec]["memory_per_conn_bytes"].as_u64().unwrap() <= 64 << 10);
    assert_eq!(v["corpus"]["messages"], sample().entries.len());
    // Compression helps this corpus, and takeover more than none.
    let wire = |i: usize| settings[i]["wire_bytes"].as_u64().unwrap();
    assert!(wire(1) < wire(2) && wire(2) < wire(0));
    // Memory: takeover keeps a window; without it the context goes back.
    let mem = |i: usize| settings[i]["memory_per_conn_bytes"].as_u64().unwrap();
    assert!(mem(1) > 8 << 10, "13-bit windows kept: {}", mem(1));
    assert!(mem(2) < mem(1));
    assert_eq!(mem(0), 0);
}

#[test]
fn byte_counts_are_deterministic_and_csv_matches() {
    let c = sample();
    let a = run(&c);
    let b = run(&c);
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.m.wire_bytes, y.m.wire_bytes, "{}", x.setting.name);
        assert_eq!(x.m.payload_bytes, y.m.payload_bytes);
        assert_eq!(
            x.m.compressor_bytes, y.m.compressor_bytes,
            "{}",
            x.setting.name
        );
        assert_eq!(
            x.m.decompressor_bytes, y.m.decompressor_bytes,
            "{}",
            x.setting.name
        );
    }
    let csv = a.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + grid().len());
    let header: Vec<&str> = lines[0].split(',').collect();
    let wire_col = header.iter().position(|h| *h == "wire_bytes").unwrap();
    // params hold no commas in this grid, so a plain split works.
    for (l, r) in lines[1..].iter().zip(&a.rows) {
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{l}");
        assert_eq!(cells[wire_col], r.m.wire_bytes.to_string());
    }
}

#[test]
fn svg_and_html_parse_as_xml() {
    let r = run(&sample());
    let svg = weft_cli::svg::chart(&r);
    let doc = roxmltree::Document::parse(&svg).expect("SVG is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let circles = root
        .descendants()
        .filter(|n| n.tag_name().name() == "circle")
        .count();
    // One per setting plus the ring around the recommended point.
    assert_eq!(circles, grid().len() + 1);
    let label = root
        .descendants()
        .find(|n| n.attribute("class") == Some("recommended-label"))
        .expect("recommended point labelled");
    let name = &r.rows[r.recommended.unwrap()].setting.name;
    assert!(label.text().unwrap().contains(name.as_str()));
    let pareto = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("pareto"))
        .count();
    assert_eq!(pareto, r.pareto.len());
    assert!(
        root.descendants()
            .any(|n| n.attribute("class") == Some("front"))
    );

    let html = weft_cli::html::page(&r);
    assert!(html.starts_with("<!DOCTYPE html>"));
    let inner = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap() + 6];
    roxmltree::Document::parse(inner).expect("inline SVG is XML");
    assert!(
        html.contains("weft_core::ServerBuilder::new()"),
        "builder code on the page"
    );
    assert!(!html.contains("<script"), "self-contained, no scripts");
}

#[test]
fn svg_escapes_hostile_names() {
    let mut c = sample();
    c.path = "<evil & \"corpus\">".into();
    let r = run(&c);
    let svg = weft_cli::svg::chart(&r);
    roxmltree::Document::parse(&svg).expect("still XML");
}

fn to_message(e: &Entry) -> Message {
    if e.text {
        Message::text(String::from_utf8(e.payload.to_vec()).unwrap())
    } else {
        Message::binary(e.payload.clone())
    }
}

/// Sends the corpus over a real weft connection on 127.0.0.1 ("sent"
/// messages from the client, "received" ones from the server) and returns
/// the data bytes each end wrote after the handshake.
async fn loopback_bytes(setting: &Setting, entries: &[Entry]) -> (u64, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let factories = setting.factories(weft_extensions::MemoryStrategy::Hibernate);
    let mut server_b = weft_core::ServerBuilder::new();
    let mut client_b = weft_core::ClientBuilder::new();
    if let Some((c, s)) = factories {
        server_b = server_b.extension(s);
        client_b = client_b.extension(c);
    }
    let received: Vec<Entry> = entries
        .iter()
        .filter(|e| e.dir == Some(Direction::Received))
        .cloned()
        .collect();
    let sent_count = entries
        .iter()
        .filter(|e| e.dir == Some(Direction::Sent))
        .count();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = CountingStream::new(tcp);
        let sw = stream.counts();
        let mut ws = server_b.accept(stream).await.unwrap();
        let after_handshake = sw.written();
        for e in &received {
            ws.send(to_message(e)).await.unwrap();
        }
        ws.flush().await.unwrap();
        let data = sw.written() - after_handshake;
        let mut got = 0;
        while got < sent_count {
            match ws.recv().await {
                Some(Ok(m)) if m.is_data() => got += 1,
                Some(Ok(_)) => {}
                other => panic!("server: {other:?}"),
            }
        }
        // Wait for the client's close, answered by the session.
        while let Some(Ok(_)) = ws.recv().await {}
        data
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = CountingStream::new(tcp);
    let client_written = stream.counts();
    let (mut ws, _) = client_b
        .connect_on(stream, format!("ws://{addr}/"))
        .await
        .unwrap();
    let after_handshake = client_written.written();
    let want_received = entries.len() - sent_count;
    // Interleave in corpus order where we can: send all "sent" messages,
    // then read everything the server sent.
    for e in entries.iter().filter(|e| e.dir == Some(Direction::Sent)) {
        ws.send(to_message(e)).await.unwrap();
    }
    ws.flush().await.unwrap();
    let client_data = client_written.written() - after_handshake;
    let mut got = 0;
    while got < want_received {
        match ws.recv().await {
            Some(Ok(m)) if m.is_data() => got += 1,
            Some(Ok(_)) => {}
            other => panic!("client: {other:?}"),
        }
    }
    ws.close(weft_core::CloseCode::NORMAL, "").await.unwrap();
    let server_data = server.await.unwrap();
    (client_data, server_data)
}

#[tokio::test]
async fn byte_counts_equal_a_real_connection_on_loopback() {
    let c = sample();
    // Each direction is its own compression stream, so replaying them in
    // corpus order gives the same bytes as sending one direction first.
    for setting in [
        Setting::per_message(13, 6, 8, true, 0),
        Setting::per_message(10, 9, 5, false, 64),
        Setting::per_frame(15, 6, true),
        Setting::off(),
    ] {
        let (sent, received) = loopback_bytes(&setting, &c.entries).await;
        let only = |d: Direction| -> Vec<Entry> {
            c.entries
                .iter()
                .filter(|e| e.dir == Some(d))
                .cloned()
                .collect()
        };
        let opts = ReplayOptions::default();
        let m_sent = measure(&setting, &only(Direction::Sent), &opts, None, &mut |_| {}).unwrap();
        let m_recv = measure(
            &setting,
            &only(Direction::Received),
            &opts,
            None,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            m_sent.wire_bytes, sent,
            "{}: client to server",
            setting.name
        );
        assert_eq!(
            m_recv.wire_bytes, received,
            "{}: server to client",
            setting.name
        );
        let whole = measure(&setting, &c.entries, &opts, None, &mut |_| {}).unwrap();
        assert_eq!(whole.wire_bytes, sent + received, "{}", setting.name);
    }
}

#[test]
fn a_100_mib_message_is_refused_with_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("weft-cli-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"{\"text\":\"").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n{\"text\":\"small\"}\n").unwrap();
    }
    let opts = ReadOptions {
        limits: corpus::Limits {
            max_message: 1 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    weft_cli::alloc::reset_peak();
    let start = weft_cli::alloc::live_bytes();
    let e = corpus::read(&path, &opts).unwrap_err();
    let peak = weft_cli::alloc::peak_bytes() - start;
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(peak < 16 << 20, "peak {peak} bytes while reading");
    let skip = ReadOptions {
        skip_bad: true,
        ..opts
    };
    weft_cli::alloc::reset_peak();
    let start = weft_cli::alloc::live_bytes();
    let c = corpus::read(&path, &skip).unwrap();
    let peak = weft_cli::alloc::peak_bytes() - start;
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.skipped.len(), 1);
    assert!(peak < 16 << 20, "peak {peak} bytes while skipping");
    // The directory format reads at most the limit of a file, too.
    let d2 = dir.join("msgs");
    std::fs::create_dir_all(&d2).unwrap();
    std::fs::write(d2.join("a"), vec![b'x'; (1 << 20) + 1]).unwrap();
    std::fs::write(d2.join("b"), b"fine").unwrap();
    std::fs::create_dir_all(d2.join("sub")).unwrap();
    let e = corpus::read(&d2, &opts).unwrap_err();
    assert!(e.to_string().contains("file"), "{e}");
    let c = corpus::read(&d2, &skip).unwrap();
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.ignored_entries, 1);
    std::fs::write(d2.join("a"), vec![b'x'; 1 << 20]).unwrap();
    let c = corpus::read(&d2, &opts).unwrap();
    assert_eq!(c.entries.len(), 2, "at the limit is accepted");
    assert!(c.entries[0].text);
    let _ = std::fs::remove_dir_all(&dir);
}
