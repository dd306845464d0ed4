//! The compression settings a report compares, and how each is negotiated.
//!
//! A [`Setting`] is one configuration of a weft extension on both ends.
//! [`default_grid`] is the documented subset a report runs by default;
//! [`full_grid`] (`--full`) runs every window (8 to 15) and level (1 to 9)
//! with and without context takeover, at three memLevels, plus thresholds
//! and per-frame variants. [`peer_rows`] are rows named for what common
//! peers negotiate with their defaults, so a user sees what they get today:
//!
//! - **Chromium's offer** `permessage-deflate; client_max_window_bits`,
//!   answered as is (32 KiB windows, context takeover both ways); Chromium
//!   compresses with zlib's default level and memLevel 8.
//! - **Python websockets' defaults** (`serve()`, since version 10): server
//!   and client windows 12 bits, memLevel 5, zlib's default level 6, context
//!   takeover.
//! - **Node ws' defaults** (`perMessageDeflate: true`): zlib defaults
//!   (15-bit windows, level 6, memLevel 8), context takeover, and a
//!   threshold of 1024 bytes below which messages go uncompressed.
//!
//! Local settings (level, memLevel, threshold, memory strategy) are the same
//! on both ends: the report measures a weft endpoint talking to a weft
//! endpoint with those settings.

use std::sync::Arc;
use weft_core::ext::ExtensionFactory;
use weft_extensions::{
    ContextPool, MemoryStrategy, PerFrameDeflate, PerMessageDeflate, WindowBits,
};

/// Which extension a setting uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionKind {
    /// No compression.
    None,
    /// permessage-deflate (RFC 7692).
    PerMessage,
    /// Per-frame deflate (`deflate-frame`).
    PerFrame,
}

impl ExtensionKind {
    /// The extension token, or `"none"`.
    pub fn token(self) -> &'static str {
        match self {
            ExtensionKind::None => "none",
            ExtensionKind::PerMessage => "permessage-deflate",
            ExtensionKind::PerFrame => weft_extensions::DEFLATE_FRAME,
        }
    }
}

/// One configuration to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// A short label for tables and charts.
    pub name: String,
    /// The extension.
    pub kind: ExtensionKind,
    /// The window both compressors use (server's configuration; clients
    /// follow what the server answers).
    pub window_bits: u8,
    /// What the client offers as `client_max_window_bits`/
    /// `server_max_window_bits` (15 = the RFC default, offered valueless);
    /// `None`: the same as [`window_bits`](Self::window_bits).
    pub client_offer_bits: Option<u8>,
    /// zlib level, 1 to 9.
    pub level: u8,
    /// zlib memLevel, 1 to 9.
    pub mem_level: u8,
    /// Context takeover both ways.
    pub context_takeover: bool,
    /// Messages (per-frame: frames) shorter than this go uncompressed.
    pub threshold: usize,
}

impl Setting {
    /// No compression.
    pub fn off() -> Setting {
        Setting {
            name: "no compression".into(),
            kind: ExtensionKind::None,
            window_bits: 0,
            client_offer_bits: None,
            level: 0,
            mem_level: 0,
            context_takeover: false,
            threshold: 0,
        }
    }

    /// permessage-deflate with these parameters on both ends.
    pub fn per_message(
        window: u8,
        level: u8,
        mem_level: u8,
        takeover: bool,
        threshold: usize,
    ) -> Setting {
        let mut name = format!("pmd w{window} l{level}");
        if mem_level != 8 {
            name.push_str(&format!(" m{mem_level}"));
        }
        if !takeover {
            name.push_str(" nct");
        }
        if threshold > 0 {
            name.push_str(&format!(" t{threshold}"));
        }
        Setting {
            name,
            kind: ExtensionKind::PerMessage,
            window_bits: window,
            client_offer_bits: None,
            level,
            mem_level,
            context_takeover: takeover,
            threshold,
        }
    }

    /// Per-frame deflate with these parameters on both ends.
    pub fn per_frame(window: u8, level: u8, takeover: bool) -> Setting {
        let mut name = format!("frame w{window} l{level}");
        if !takeover {
            name.push_str(" nct");
        }
        Setting {
            name,
            kind: ExtensionKind::PerFrame,
            window_bits: window,
            client_offer_bits: None,
            level,
            mem_level: 8,
            context_takeover: takeover,
            threshold: 1,
        }
    }

    fn named(mut self, name: &str) -> Setting {
        self.name = name.into();
        self
    }

    /// The client and server factories for this setting (`None` for no
    /// compression). Each end gets its own context pool, as two processes
    /// would have.
    pub fn factories(
        &self,
        memory: MemoryStrategy,
    ) -> Option<(Arc<dyn ExtensionFactory>, Arc<dyn ExtensionFactory>)> {
        let w = WindowBits::new(self.window_bits);
        match self.kind {
            ExtensionKind::None => None,
            ExtensionKind::PerMessage => {
                let w = w?;
                let server = self.pmd(w, w, memory);
                let offer = self
                    .client_offer_bits
                    .and_then(WindowBits::new)
                    .unwrap_or(w);
                let client = self.pmd(offer, offer, memory);
                Some((Arc::new(client), Arc::new(server)))
            }
            ExtensionKind::PerFrame => {
                let w = w?;
                let make = || PerFrameDeflate {
                    level: self.level,
                    mem_level: self.mem_level,
                    window_bits: w,
                    request_max_window_bits: (w < WindowBits::MAX).then_some(w),
                    request_no_context_takeover: !self.context_takeover,
                    no_context_takeover: !self.context_takeover,
                    threshold: self.threshold,
                    memory,
                    pool: Some(Arc::new(ContextPool::new(
                        weft_extensions::DEFAULT_POOL_CONTEXTS,
                    ))),
                    ..PerFrameDeflate::new()
                };
                Some((Arc::new(make()), Arc::new(make())))
            }
        }
    }

    fn pmd(
        &self,
        server_w: WindowBits,
        client_w: WindowBits,
        memory: MemoryStrategy,
    ) -> PerMessageDeflate {
        PerMessageDeflate {
            level: self.level,
            mem_level: self.mem_level,
            server_max_window_bits: server_w,
            client_max_window_bits: client_w,
            server_no_context_takeover: !self.context_takeover,
            client_no_context_takeover: !self.context_takeover,
            threshold: self.threshold,
            memory,
            pool: Some(Arc::new(ContextPool::new(
                weft_extensions::DEFAULT_POOL_CONTEXTS,
            ))),
            fallbacks: Vec::new(),
            rfc_fallback: false,
        }
    }

    /// Rust code configuring a weft server with this setting.
    pub fn builder_snippet(&self, memory: MemoryStrategy) -> String {
        let memory_line = match memory {
            MemoryStrategy::Hibernate => String::new(),
            MemoryStrategy::Keep => "    memory: MemoryStrategy::Keep,\n".into(),
            MemoryStrategy::HibernateWhenIdle => {
                "    memory: MemoryStrategy::HibernateWhenIdle,\n".into()
            }
        };
        let memory_use = if memory_line.is_empty() {
            ""
        } else {
            "MemoryStrategy, "
        };
        match self.kind {
            ExtensionKind::None => "// No compression: add no extension.\n\
                 let server = weft_core::ServerBuilder::new();\n"
                .to_string(),
            ExtensionKind::PerMessage => format!(
                "use weft_extensions::{{{memory_use}PerMessageDeflate, WindowBits}};\n\
                 \n\
                 let deflate = PerMessageDeflate {{\n\
                 \x20   level: {level},\n\
                 \x20   mem_level: {mem},\n\
                 \x20   server_max_window_bits: WindowBits::new({w}).expect(\"8 to 15\"),\n\
                 \x20   client_max_window_bits: WindowBits::new({w}).expect(\"8 to 15\"),\n\
                 \x20   server_no_context_takeover: {nct},\n\
                 \x20   client_no_context_takeover: {nct},\n\
                 \x20   threshold: {th},\n\
                 {memory_line}\
                 \x20   ..PerMessageDeflate::new()\n\
                 }};\n\
                 let server = weft_core::ServerBuilder::new().extension(deflate);\n",
                level = self.level,
                mem = self.mem_level,
                w = self.window_bits,
                nct = !self.context_takeover,
                th = self.threshold,
            ),
            ExtensionKind::PerFrame => format!(
                "use weft_extensions::{{{memory_use}PerFrameDeflate, WindowBits}};\n\
                 \n\
                 let deflate = PerFrameDeflate {{\n\
                 \x20   level: {level},\n\
                 \x20   mem_level: {mem},\n\
                 \x20   window_bits: WindowBits::new({w}).expect(\"8 to 15\"),\n\
                 \x20   request_max_window_bits: {req},\n\
                 \x20   request_no_context_takeover: {nct},\n\
                 \x20   no_context_takeover: {nct},\n\
                 \x20   threshold: {th},\n\
                 {memory_line}\
                 \x20   ..PerFrameDeflate::new()\n\
                 }};\n\
                 let server = weft_core::ServerBuilder::new().extension(deflate);\n",
                level = self.level,
                mem = self.mem_level,
                w = self.window_bits,
                req = if self.window_bits < 15 {
                    format!("WindowBits::new({})", self.window_bits)
                } else {
                    "None".into()
                },
                nct = !self.context_takeover,
                th = self.threshold,
            ),
        }
    }
}

/// Rows named for what common peers negotiate by default (see the module
/// docs for the sources).
pub fn peer_rows() -> Vec<Setting> {
    vec![
        Setting {
            client_offer_bits: Some(15),
            ..Setting::per_message(15, 6, 8, true, 0)
        }
        .named("chromium offer"),
        Setting {
            client_offer_bits: Some(15),
            ..Setting::per_message(12, 6, 5, true, 0)
        }
        .named("python websockets"),
        Setting {
            client_offer_bits: Some(15),
            ..Setting::per_message(15, 6, 8, true, 1024)
        }
        .named("node ws"),
    ]
}

/// The default grid (documented in `weft report --help`): no compression;
/// permessage-deflate with context takeover at windows 9, 11, 12, 13, 14, 15
/// and levels 1, 6, 9; without context takeover at windows 9, 12, 15 and
/// levels 1, 6; memLevel 4 and 9 at window 13, level 6; thresholds 128 and
/// 1024 at window 13, level 6; per-frame deflate at windows 12 and 15, level
/// 6, with and without takeover; and the [`peer_rows`].
pub fn default_grid() -> Vec<Setting> {
    let mut v = vec![Setting::off()];
    for w in [9, 11, 12, 13, 14, 15] {
        for l in [1, 6, 9] {
            v.push(Setting::per_message(w, l, 8, true, 0));
        }
    }
    for w in [9, 12, 15] {
        for l in [1, 6] {
            v.push(Setting::per_message(w, l, 8, false, 0));
        }
    }
    for m in [4, 9] {
        v.push(Setting::per_message(13, 6, m, true, 0));
    }
    for t in [128, 1024] {
        v.push(Setting::per_message(13, 6, 8, true, t));
    }
    for w in [12, 15] {
        for takeover in [true, false] {
            v.push(Setting::per_frame(w, 6, takeover));
        }
    }
    v.extend(peer_rows());
    v
}

/// The full grid (`--full`): no compression; permessage-deflate at every
/// window 8 to 15, level 1 to 9, with and without context takeover, at
/// memLevels 4, 8 and 9; thresholds 64, 256 and 1024 at windows 13 and 15,
/// level 6; per-frame deflate at windows 9 to 15, levels 1, 6, 9, with and
/// without takeover; and the [`peer_rows`].
pub fn full_grid() -> Vec<Setting> {
    let mut v = vec![Setting::off()];
    for m in [8, 4, 9] {
        for takeover in [true, false] {
            for w in 8..=15 {
                for l in 1..=9 {
                    v.push(Setting::per_message(w, l, m, takeover, 0));
                }
            }
        }
    }
    for w in [13, 15] {
        for t in [64, 256, 1024] {
            v.push(Setting::per_message(w, 6, 8, true, t));
        }
    }
    for w in 9..=15 {
        for l in [1, 6, 9] {
            for takeover in [true, false] {
                v.push(Setting::per_frame(w, l, takeover));
            }
        }
    }
    v.extend(peer_rows());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_have_unique_names() {
        for grid in [default_grid(), full_grid()] {
            let mut names: Vec<&str> = grid.iter().map(|s| s.name.as_str()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n);
        }
        assert_eq!(default_grid().len(), 36);
        assert_eq!(full_grid().len(), 1 + 3 * 2 * 8 * 9 + 6 + 7 * 3 * 2 + 3);
    }

    /// The snippet below is what `builder_snippet` prints for this setting;
    /// `snippet_compiles` holds the same text as code, so the printed code
    /// stays valid as the API changes.
    #[test]
    fn snippet_text_matches_compiled_code() {
        let s = Setting::per_message(12, 6, 5, true, 128);
        let want = "use weft_extensions::{PerMessageDeflate, WindowBits};

let deflate = PerMessageDeflate {
    level: 6,
    mem_level: 5,
    server_max_window_bits: WindowBits::new(12).expect(\"8 to 15\"),
    client_max_window_bits: WindowBits::new(12).expect(\"8 to 15\"),
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    threshold: 128,
    ..PerMessageDeflate::new()
};
let server = weft_core::ServerBuilder::new().extension(deflate);
";
        assert_eq!(s.builder_snippet(MemoryStrategy::Hibernate), want);
        let keep = s.builder_snippet(MemoryStrategy::Keep);
        assert!(keep.contains("use weft_extensions::{MemoryStrategy, PerMessageDeflate"));
        assert!(keep.contains("    memory: MemoryStrategy::Keep,\n    ..PerMessageDeflate::new()"));
        let f = Setting::per_frame(12, 6, false).builder_snippet(MemoryStrategy::Hibernate);
        assert!(
            f.contains("request_max_window_bits: WindowBits::new(12),"),
            "{f}"
        );
    }

    #[test]
    fn snippet_compiles() {
        use weft_extensions::{MemoryStrategy, PerFrameDeflate, PerMessageDeflate, WindowBits};
        let deflate = PerMessageDeflate {
            level: 6,
            mem_level: 5,
            server_max_window_bits: WindowBits::new(12).expect("8 to 15"),
            client_max_window_bits: WindowBits::new(12).expect("8 to 15"),
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: 128,
            memory: MemoryStrategy::Keep,
            ..PerMessageDeflate::new()
        };
        let _server = weft_core::ServerBuilder::new().extension(deflate);
        let frame = PerFrameDeflate {
            level: 6,
            mem_level: 8,
            window_bits: WindowBits::new(12).expect("8 to 15"),
            request_max_window_bits: WindowBits::new(12),
            request_no_context_takeover: true,
            no_context_takeover: true,
            threshold: 1,
            ..PerFrameDeflate::new()
        };
        let _server = weft_core::ServerBuilder::new().extension(frame);
    }
}
