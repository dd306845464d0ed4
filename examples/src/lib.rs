//! Shared helpers for the weft examples: a tiny command-line reader.

/// Command-line arguments as `--name value` pairs and flags.
#[derive(Debug, Clone)]
pub struct Args {
    args: Vec<String>,
}

impl Args {
    /// Reads the process arguments.
    pub fn from_env() -> Self {
        Args {
            args: std::env::args().skip(1).collect(),
        }
    }

    /// The value after the first `--name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }

    /// Every value given after `--name` (repeatable options).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.args
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == name)
            .filter_map(|(i, _)| self.args.get(i + 1))
            .map(String::as_str)
            .collect()
    }

    /// The value after `--name` parsed, or `default`.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("invalid value for {name}: {v}");
                std::process::exit(2)
            }),
            None => default,
        }
    }

    /// The same arguments with every `from` option renamed `to` (and former
    /// `to` options dropped), to reuse a parser for another option name.
    pub fn renamed(&self, from: &str, to: &str) -> Args {
        let mut args = Vec::with_capacity(self.args.len());
        let mut iter = self.args.iter();
        while let Some(a) = iter.next() {
            if a == to {
                iter.next();
            } else if a == from {
                args.push(to.to_owned());
            } else {
                args.push(a.clone());
            }
        }
        Args { args }
    }

    /// True if `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
}

/// permessage-deflate settings from `--param name[=value]` (RFC 7692 names),
/// `--deflate-level N` and `--deflate-memory keep|idle|hibernate` (default
/// hibernate: contexts go back to a shared pool after every message). Exits on a bad value.
pub fn deflate_from_args(args: &Args) -> weft_extensions::PerMessageDeflate {
    use weft_extensions::{MemoryStrategy, PerMessageDeflate, WindowBits};
    // RFC defaults (32 KiB windows) unless a parameter says otherwise, so
    // the parameters given are exactly what is negotiated.
    let mut pmd = PerMessageDeflate::new()
        .server_max_window_bits(WindowBits::MAX)
        .client_max_window_bits(WindowBits::MAX)
        .rfc_fallback(false)
        .level(args.parsed("--deflate-level", 6));
    match args.value("--deflate-memory") {
        None => {}
        Some("keep") => pmd = pmd.memory(MemoryStrategy::Keep),
        Some("hibernate") => pmd = pmd.memory(MemoryStrategy::Hibernate),
        Some("idle") => pmd = pmd.memory(MemoryStrategy::HibernateWhenIdle),
        Some(other) => fail(&format!("unknown --deflate-memory {other}")),
    }
    for p in args.values("--param") {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
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

/// Per-frame deflate settings from `--param max_window_bits=N` and
/// `--param no_context_takeover` (requests made of the peer), for the token
/// `name` (`deflate-frame` or `x-webkit-deflate-frame`). Exits on a bad value.
pub fn perframe_from_args(args: &Args, name: &str) -> weft_extensions::PerFrameDeflate {
    use weft_extensions::{PerFrameDeflate, WindowBits};
    let mut pfd = if name == weft_extensions::X_WEBKIT_DEFLATE_FRAME {
        PerFrameDeflate::webkit()
    } else {
        PerFrameDeflate::new()
    };
    pfd = pfd.level(args.parsed("--deflate-level", 6));
    for p in args.values("--param") {
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
