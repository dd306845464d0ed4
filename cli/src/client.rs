//! `weft connect`: a command-line WebSocket client in the manner of
//! websocat. Lines read from stdin become messages (text, or binary with
//! `--binary`); received messages are written to stdout, one per line
//! (binary ones as their raw bytes). At the end of stdin the client keeps
//! printing until no message has come for `--close-delay` seconds (0.5 by
//! default: replies still in flight are not lost), then closes the
//! connection (1000) and waits for the close handshake. `-1` sends the
//! first line, prints the first message received and exits. With
//! `--ping-interval` a Ping carrying a timestamp goes out periodically and
//! each Pong's round-trip time is printed on stderr. With
//! `--mux-channels K` the client negotiates weft-mux and opens K logical
//! channels to the URL's path; lines are sent round-robin and received
//! messages printed with a `[channel N] ` prefix.
//!
//! Also home of [`ExtensionArgs`] (`--extension NAME --param k=v`), shared
//! with `weft capture` and `weft serve`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use weft_core::ext::ExtensionFactory;
use weft_core::{ClientBuilder, CloseCode, Config, Message};
use weft_extensions::{MemoryStrategy, PerFrameDeflate, PerMessageDeflate, WindowBits};

/// `--extension NAME` and its `--param k=v` settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExtensionArgs {
    /// Extension to negotiate: permessage-deflate, deflate-frame,
    /// x-webkit-deflate-frame or none.
    #[arg(long, value_name = "NAME")]
    pub extension: Option<String>,
    /// A parameter of --extension, k=v (repeat). permessage-deflate:
    /// server_max_window_bits, client_max_window_bits (8-15),
    /// server_no_context_takeover, client_no_context_takeover (true/false,
    /// or no value for true), level, mem_level, threshold, memory
    /// (hibernate, keep, hibernate-when-idle). deflate-frame: window_bits,
    /// max_window_bits (requested of the peer), no_context_takeover,
    /// request_no_context_takeover, level, mem_level, threshold, memory.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
}

fn parse_bool(k: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") | Some("yes") => Ok(true),
        Some("false") | Some("0") | Some("no") => Ok(false),
        Some(v) => Err(format!("--param {k}={v}: expected true or false")),
    }
}

fn parse_num<T: std::str::FromStr>(k: &str, v: Option<&str>) -> Result<T, String> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("--param {k}: expected a number, got {v:?}"))
}

fn parse_window(k: &str, v: Option<&str>) -> Result<WindowBits, String> {
    let n: u8 = parse_num(k, v)?;
    WindowBits::new(n).ok_or_else(|| format!("--param {k}={n}: window bits are 8 to 15"))
}

fn parse_memory(k: &str, v: Option<&str>) -> Result<MemoryStrategy, String> {
    match v {
        Some("hibernate") => Ok(MemoryStrategy::Hibernate),
        Some("keep") => Ok(MemoryStrategy::Keep),
        Some("hibernate-when-idle") => Ok(MemoryStrategy::HibernateWhenIdle),
        v => Err(format!(
            "--param {k}: expected hibernate, keep or hibernate-when-idle, got {v:?}"
        )),
    }
}

/// Builds the factory `args` describe; `default` is the extension used
/// when `--extension` is not given (`None`: no extension).
pub fn build_extensions_or(
    args: &ExtensionArgs,
    default: Option<&str>,
) -> Result<Vec<Arc<dyn ExtensionFactory>>, String> {
    let name = match args.extension.as_deref().or(default) {
        None | Some("none") => {
            if !args.params.is_empty() {
                return Err("--param needs --extension".into());
            }
            return Ok(Vec::new());
        }
        Some(n) => n,
    };
    let params: Vec<(&str, Option<&str>)> = args
        .params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        })
        .collect();
    let factory: Arc<dyn weft_core::ext::ExtensionFactory> = match name {
        "permessage-deflate" => {
            let mut c = PerMessageDeflate::new();
            for &(k, v) in &params {
                match k {
                    "server_max_window_bits" => c.server_max_window_bits = parse_window(k, v)?,
                    "client_max_window_bits" => c.client_max_window_bits = parse_window(k, v)?,
                    "server_no_context_takeover" => {
                        c.server_no_context_takeover = parse_bool(k, v)?
                    }
                    "client_no_context_takeover" => {
                        c.client_no_context_takeover = parse_bool(k, v)?
                    }
                    "level" => c.level = parse_num::<u8>(k, v)?.min(9),
                    "mem_level" => c.mem_level = parse_num::<u8>(k, v)?.clamp(1, 9),
                    "threshold" => c.threshold = parse_num(k, v)?,
                    "memory" => c.memory = parse_memory(k, v)?,
                    _ => return Err(format!("--param {k}: not a permessage-deflate parameter")),
                }
            }
            Arc::new(c)
        }
        "deflate-frame" | "x-webkit-deflate-frame" => {
            let mut c = if name == "deflate-frame" {
                PerFrameDeflate::new()
            } else {
                PerFrameDeflate::webkit()
            };
            for &(k, v) in &params {
                match k {
                    "window_bits" => c.window_bits = parse_window(k, v)?,
                    "max_window_bits" => c.request_max_window_bits = Some(parse_window(k, v)?),
                    "no_context_takeover" => c.no_context_takeover = parse_bool(k, v)?,
                    "request_no_context_takeover" => {
                        c.request_no_context_takeover = parse_bool(k, v)?
                    }
                    "level" => c.level = parse_num::<u8>(k, v)?.min(9),
                    "mem_level" => c.mem_level = parse_num::<u8>(k, v)?.clamp(1, 9),
                    "threshold" => c.threshold = parse_num(k, v)?,
                    "memory" => c.memory = parse_memory(k, v)?,
                    _ => return Err(format!("--param {k}: not a deflate-frame parameter")),
                }
            }
            Arc::new(c)
        }
        other => {
            return Err(format!(
                "--extension {other}: expected permessage-deflate, deflate-frame, \
                 x-webkit-deflate-frame or none"
            ));
        }
    };
    Ok(vec![factory])
}

/// [`build_extensions_or`] with permessage-deflate as the default (capture
/// and serve).
pub fn build_extensions(args: &ExtensionArgs) -> Result<Vec<Arc<dyn ExtensionFactory>>, String> {
    build_extensions_or(args, Some("permessage-deflate"))
}

/// `weft connect` arguments.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws://HOST:PORT/PATH
    pub url: String,
    /// Subprotocol to offer (repeat for several).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// Extra request header, 'Name: value' (repeat).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Send stdin lines as binary messages instead of text.
    #[arg(long)]
    pub binary: bool,
    /// Send one message (the first stdin line), print one message, exit.
    #[arg(short = '1', long = "one-message")]
    pub one: bool,
    /// Send a Ping every this many seconds and print the round-trip time.
    #[arg(long, value_name = "SECS")]
    pub ping_interval: Option<f64>,
    /// Open K logical channels over one connection with weft-mux.
    #[arg(long, value_name = "K")]
    pub mux_channels: Option<usize>,
    /// At the end of stdin, keep printing received messages until none has
    /// come for this many seconds, then close.
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    pub close_delay: f64,
    /// Largest message accepted, bytes.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::report::parse_size)]
    pub max_message: u64,
    /// Extension to negotiate (default none).
    #[command(flatten)]
    pub ext: ExtensionArgs,
}

/// Runs `weft connect`.
pub fn main(args: ConnectArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        match args.mux_channels {
            Some(k) => run_mux(&args, k).await,
            None => run(&args).await,
        }
    })
}

fn message_from_line(line: String, binary: bool) -> Message {
    if binary {
        Message::binary(line.into_bytes())
    } else {
        Message::text(line)
    }
}

async fn print_message(
    out: &mut tokio::io::Stdout,
    prefix: &str,
    m: &Message,
) -> std::io::Result<()> {
    match m {
        Message::Text(t) => {
            out.write_all(prefix.as_bytes()).await?;
            out.write_all(t.as_bytes()).await?;
        }
        Message::Binary(b) => {
            out.write_all(prefix.as_bytes()).await?;
            out.write_all(b).await?;
        }
        _ => return Ok(()),
    }
    out.write_all(b"\n").await?;
    out.flush().await
}

fn ping_payload(start: Instant) -> Message {
    let nanos = start.elapsed().as_nanos() as u64;
    Message::Ping(nanos.to_be_bytes().to_vec().into())
}

fn pong_rtt(start: Instant, payload: &[u8]) -> Option<Duration> {
    let sent = u64::from_be_bytes(payload.try_into().ok()?);
    let now = start.elapsed().as_nanos() as u64;
    now.checked_sub(sent).map(Duration::from_nanos)
}

async fn run(args: &ConnectArgs) -> Result<(), String> {
    let max = usize::try_from(args.max_message).unwrap_or(usize::MAX);
    let mut b = ClientBuilder::new().config(
        Config::default()
            .max_message_size(max)
            .max_frame_size(max.max(1 << 20)),
    );
    for p in &args.protocols {
        b = b.protocol(p.clone());
    }
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("-H {h:?}: expected 'Name: value'"))?;
        b = b.header(n.trim().to_string(), v.trim().to_string());
    }
    for f in build_extensions_or(&args.ext, None)? {
        b = b.extension(f);
    }
    let (mut ws, _) = b
        .connect(args.url.as_str())
        .await
        .map_err(|e| format!("{}: {e}", args.url))?;
    let exts: Vec<String> = ws
        .extensions()
        .iter()
        .map(|h| weft_core::ext::format_extensions(std::slice::from_ref(h)))
        .collect();
    eprintln!(
        "weft connect: connected to {}{}{}",
        args.url,
        ws.protocol()
            .map(|p| format!(", protocol {p}"))
            .unwrap_or_default(),
        if exts.is_empty() {
            String::new()
        } else {
            format!(", extensions {}", exts.join(", "))
        }
    );
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let start = Instant::now();
    let period = args
        .ping_interval
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let mut ticker = period.map(tokio::time::interval);
    let mut stdin_open = true;
    let mut sent_one = false;
    let linger = Duration::from_secs_f64(args.close_delay.clamp(0.0, 3600.0));
    // Set at the end of stdin: close once nothing arrived for `linger`.
    let mut close_at: Option<tokio::time::Instant> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            _ = async { tokio::time::sleep_until(close_at.expect("guarded")).await }, if close_at.is_some() && !closing => {
                closing = true;
                ws.close(CloseCode::NORMAL, "").await.map_err(|e| e.to_string())?;
            }
            line = stdin.next_line(), if stdin_open && !(args.one && sent_one) => {
                match line.map_err(|e| format!("stdin: {e}"))? {
                    Some(l) => {
                        ws.send(message_from_line(l, args.binary)).await.map_err(|e| e.to_string())?;
                        sent_one = true;
                    }
                    None => {
                        stdin_open = false;
                        if !args.one {
                            close_at = Some(tokio::time::Instant::now() + linger);
                        }
                    }
                }
            }
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() && !closing => {
                ws.send(ping_payload(start)).await.map_err(|e| e.to_string())?;
            }
            m = ws.recv() => {
                match m {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(Message::Pong(p))) => {
                        if let Some(rtt) = pong_rtt(start, &p) {
                            eprintln!("ping rtt: {:.3} ms", rtt.as_secs_f64() * 1e3);
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        closing = true;
                        if let Some(f) = f && f.code != CloseCode::NORMAL {
                            eprintln!("weft connect: closed by the server: {} {}", f.code.as_u16(), f.reason);
                        }
                    }
                    Some(Ok(m)) if m.is_data() => {
                        print_message(&mut stdout, "", &m).await.map_err(|e| e.to_string())?;
                        if close_at.is_some() {
                            close_at = Some(tokio::time::Instant::now() + linger);
                        }
                        if args.one {
                            ws.close(CloseCode::NORMAL, "").await.map_err(|e| e.to_string())?;
                            // Drain to the end of the closing handshake.
                            while let Some(Ok(_)) = ws.recv().await {}
                            return Ok(());
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

async fn run_mux(args: &ConnectArgs, k: usize) -> Result<(), String> {
    if k == 0 {
        return Err("--mux-channels must be at least 1".into());
    }
    let client = weft_mux::MuxClient::connect(args.url.as_str(), weft_mux::MuxConfig::default())
        .await
        .map_err(|e| format!("{}: {e}", args.url))?;
    let path = args
        .url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
        .unwrap_or_else(|| "/".into());
    let ext = build_extensions_or(&args.ext, None)?;
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u32, Message)>(256);
    let mut inputs = Vec::with_capacity(k);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..k {
        let mut ch = client
            .open_channel_with_protocols(&path, &[], &args.protocols, ext.clone())
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        let id = ch.id().get() as u32;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
        inputs.push(tx);
        let out = out_tx.clone();
        tasks.spawn(async move {
            let mut closing = false;
            loop {
                tokio::select! {
                    m = rx.recv(), if !closing => match m {
                        Some(m) => if ch.send(m).await.is_err() { return; },
                        None => {
                            closing = true;
                            let _ = ch.close(CloseCode::NORMAL, "").await;
                        }
                    },
                    m = ch.recv() => match m {
                        Some(Ok(m)) if m.is_data() => if out.send((id, m)).await.is_err() { return; },
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
    }
    drop(out_tx);
    eprintln!("weft connect: {k} mux channels open to {}", args.url);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut next = 0usize;
    let mut stdin_open = true;
    let linger = Duration::from_secs_f64(args.close_delay.clamp(0.0, 3600.0));
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line.map_err(|e| format!("stdin: {e}"))? {
                Some(l) => {
                    let _ = inputs[next % k].send(message_from_line(l, args.binary)).await;
                    next += 1;
                    if args.one {
                        stdin_open = false;
                    }
                }
                None => {
                    stdin_open = false;
                    close_at = Some(tokio::time::Instant::now() + linger);
                }
            },
            _ = async { tokio::time::sleep_until(close_at.expect("guarded")).await }, if close_at.is_some() => break,
            m = out_rx.recv() => match m {
                Some((id, m)) => {
                    print_message(&mut stdout, &format!("[channel {id}] "), &m).await.map_err(|e| e.to_string())?;
                    if close_at.is_some() {
                        close_at = Some(tokio::time::Instant::now() + linger);
                    }
                    if args.one {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    inputs.clear();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    client.close();
    Ok(())
}
