//! Shared helpers for the weft examples: the compression options of
//! `echo_server` and `echo_check` (parsed with clap) and the extensions
//! built from them.

use clap::ValueEnum;

/// `--deflate-memory`: what a permessage-deflate context does between
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeflateMemory {
    /// Keep the zlib contexts for the connection's lifetime.
    Keep,
    /// Give the contexts up once the connection has been idle for a while.
    Idle,
    /// Give the contexts back to a shared pool after every message (the
    /// window is primed back as a dictionary).
    Hibernate,
}

/// Compression options shared by the examples.
#[derive(Debug, Clone, clap::Args)]
pub struct DeflateArgs {
    /// A permessage-deflate parameter (RFC 7692 name, e.g.
    /// server_max_window_bits=10 or client_no_context_takeover); repeatable.
    #[arg(long = "param", value_name = "NAME[=VALUE]")]
    pub params: Vec<String>,
    /// DEFLATE compression level, 0 to 9.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub deflate_level: u8,
    /// permessage-deflate memory strategy [default: the extension's own,
    /// hibernate].
    #[arg(long, value_name = "STRATEGY")]
    pub deflate_memory: Option<DeflateMemory>,
}

/// permessage-deflate settings from `args`: its `--param name[=value]`
/// (RFC 7692 names), `--deflate-level N` and `--deflate-memory
/// keep|idle|hibernate` (default hibernate: contexts go back to a shared
/// pool after every message). Exits on a bad parameter.
pub fn deflate_from_args(args: &DeflateArgs) -> weft_extensions::PerMessageDeflate {
    use weft_extensions::{MemoryStrategy, PerMessageDeflate, WindowBits};
    // RFC defaults (32 KiB windows) unless a parameter says otherwise, so
    // the parameters given are exactly what is negotiated.
    let mut pmd = PerMessageDeflate::new()
        .server_max_window_bits(WindowBits::MAX)
        .client_max_window_bits(WindowBits::MAX)
        .rfc_fallback(false)
        .level(args.deflate_level);
    match args.deflate_memory {
        None => {}
        Some(DeflateMemory::Keep) => pmd = pmd.memory(MemoryStrategy::Keep),
        Some(DeflateMemory::Hibernate) => pmd = pmd.memory(MemoryStrategy::Hibernate),
        Some(DeflateMemory::Idle) => pmd = pmd.memory(MemoryStrategy::HibernateWhenIdle),
    }
    for p in &args.params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p.as_str(), None),
        };
        let bits = || {
            value
                .and_then(WindowBits::parse)
                .unwrap_or_else(|| fail(&format!("bad value in --param {p}")))
        };
        pmd = match name {
            "server_no_context_takeover" => pmd.server_no_context_takeover(true),
            "client_no_context_takeover" => pmd.client_no_context_takeover(true),
            "server_max_window_bits" => pmd.server_max_window_bits(bits()),
            "client_max_window_bits" if value.is_none() => pmd,
            "client_max_window_bits" => pmd.client_max_window_bits(bits()),
            _ => fail(&format!("unknown permessage-deflate parameter {name}")),
        };
    }
    pmd
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

/// Per-frame deflate settings from `params` (`max_window_bits=N` and
/// `no_context_takeover`, requests made of the peer) and `level`, for the
/// token `name` (`deflate-frame` or `x-webkit-deflate-frame`). Exits on a
/// bad parameter.
pub fn perframe_from_args(
    params: &[String],
    level: u8,
    name: &str,
) -> weft_extensions::PerFrameDeflate {
    use weft_extensions::{PerFrameDeflate, WindowBits};
    let mut pfd = if name == weft_extensions::X_WEBKIT_DEFLATE_FRAME {
        PerFrameDeflate::webkit()
    } else {
        PerFrameDeflate::new()
    };
    pfd = pfd.level(level);
    for p in params {
        pfd = match p.split_once('=') {
            Some(("max_window_bits", v)) => pfd.request_max_window_bits(
                WindowBits::parse(v).unwrap_or_else(|| fail(&format!("bad value in --param {p}"))),
            ),
            None if p == "no_context_takeover" => pfd.request_no_context_takeover(true),
            _ => fail(&format!("unknown per-frame deflate parameter {p}")),
        };
    }
    pfd
}

/// Completes when SIGTERM (Unix) or ctrl-c arrives: the servers' signal to
/// shut down gracefully.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
