//! `weft report`: every setting of a grid over one corpus, the Pareto
//! front, a recommendation, and the outputs (terminal table, JSON, CSV;
//! the chart and page are in [`crate::svg`] and [`crate::html`]).
//!
//! **Pareto front.** A setting is on the front when no other setting is at
//! least as good on all three of ratio (wire bytes per payload byte),
//! memory per connection and CPU time per message (mean, send and receive
//! together) and strictly better on one.
//!
//! **Recommendation.** Among settings within the constraints
//! (`--max-memory-per-conn`, `--max-cpu-us-per-msg`; none by default), the
//! one with the lowest ratio; ties go to less memory, then less CPU. Times
//! are measured, so on a busy machine a CPU constraint near a setting's
//! figure can pick differently from run to run; byte counts and memory are
//! deterministic. Times are elapsed time on the replay thread, its CPU
//! time on an idle machine; the report also reads the thread's CPU clock
//! over the whole run and warns when other load took a large share of the
//! CPU ([`Report::cpu_share`]).

use crate::corpus::Corpus;
use crate::replay::{Measurement, ReplayError, ReplayOptions, measure};
use crate::settings::{ExtensionKind, Setting};
use serde_json::{Value, json};
use std::fmt::Write as _;
use weft_extensions::MemoryStrategy;

/// Constraints for the recommendation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Constraints {
    /// Most memory per connection, bytes.
    pub max_memory_per_conn: Option<u64>,
    /// Most CPU time per message, µs.
    pub max_cpu_us_per_msg: Option<f64>,
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The setting.
    pub setting: Setting,
    /// What it measured.
    pub m: Measurement,
}

impl Row {
    /// The negotiated window (`None` without compression).
    pub fn window_bits(&self) -> Option<u8> {
        (self.setting.kind != ExtensionKind::None).then_some(self.setting.window_bits)
    }

    fn within(&self, c: &Constraints) -> bool {
        c.max_memory_per_conn
            .is_none_or(|max| self.m.memory_per_conn_bytes() <= max)
            && c.max_cpu_us_per_msg
                .is_none_or(|max| self.m.cpu_us_per_msg() <= max)
    }
}

/// A finished report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Facts about the corpus, for the JSON `corpus` object.
    pub corpus: Value,
    /// The rows, in grid order.
    pub rows: Vec<Row>,
    /// Indices of the rows on the Pareto front.
    pub pareto: Vec<usize>,
    /// Index of the recommended row, if any fits the constraints.
    pub recommended: Option<usize>,
    /// The constraints used.
    pub constraints: Constraints,
    /// The memory strategy the rows were measured with.
    pub memory: MemoryStrategy,
    /// False when the counting allocator was not installed (memory figures
    /// are then 0).
    pub memory_counted: bool,
    /// The replay thread's CPU time over its elapsed time (below 1 when
    /// other load took the CPU: the times are then inflated); `None` where
    /// the thread's CPU clock cannot be read.
    pub cpu_share: Option<f64>,
}

/// CPU time of the calling thread, seconds (Linux/Unix
/// `CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to
    // a local; no other memory is touched.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Runs every setting over the corpus. `progress(done_messages)` is called
/// as the replay goes. The no-compression baseline is measured first (and
/// reported if the grid has it).
pub fn run(
    corpus: &Corpus,
    settings: &[Setting],
    options: &ReplayOptions,
    constraints: Constraints,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, ReplayError> {
    let entries = &corpus.entries;
    let wall_start = std::time::Instant::now();
    let cpu_start = thread_cpu_seconds();
    let off_at = settings.iter().position(|s| s.kind == ExtensionKind::None);
    let baseline = match off_at {
        Some(i) => measure(&settings[i], entries, options, None, progress)?,
        None => measure(&Setting::off(), entries, options, None, &mut |_| {})?,
    };
    let mut rows = Vec::with_capacity(settings.len());
    for (i, s) in settings.iter().enumerate() {
        let m = if Some(i) == off_at {
            let mut b = baseline.clone();
            b.compressor_bytes = 0;
            b.decompressor_bytes = 0;
            b
        } else {
            let mut best = measure(s, entries, options, Some(&baseline), progress)?;
            for _ in 1..options.repeat.max(1) {
                let m = measure(s, entries, options, Some(&baseline), progress)?;
                if m.compress_secs + m.decompress_secs < best.compress_secs + best.decompress_secs {
                    best = m;
                }
            }
            best
        };
        rows.push(Row {
            setting: s.clone(),
            m,
        });
    }
    let wall = wall_start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let pareto = pareto_front(&rows);
    let recommended = recommend(&rows, &constraints);
    let texts = entries.iter().filter(|e| e.text).count();
    let dirs = |d| entries.iter().filter(|e| e.dir == Some(d)).count();
    let corpus_info = json!({
        "path": corpus.path.display().to_string(),
        "format": corpus.format.name(),
        "messages": entries.len(),
        "payload_bytes": corpus.payload_bytes(),
        "text_messages": texts,
        "binary_messages": entries.len() - texts,
        "sent_messages": dirs(crate::corpus::Direction::Sent),
        "received_messages": dirs(crate::corpus::Direction::Received),
        "undirected_replayed_as": options.undirected.name(),
        "skipped": corpus.skipped.len(),
        "memory_strategy": strategy_name(options.memory),
        "connection_bytes_without_compression": baseline.sender_held + baseline.receiver_held,
        "ratio_is": "wire_bytes / payload_bytes: frame headers and mask keys included, lower is better",
        "memory_per_conn_is": "bytes the connection keeps between messages for compression, \
            sending end's compressor plus receiving end's decompressor, counted by a counting allocator",
        "p99_us_is": "99th percentile of send + receive time per message, microseconds",
        "replay_wall_seconds": round(wall, 3),
        "replay_cpu_seconds": cpu.map(|c| round(c, 3)),
    });
    Ok(Report {
        cpu_share: cpu.map(|c| if wall > 0.0 { (c / wall).min(1.0) } else { 1.0 }),
        corpus: corpus_info,
        rows,
        pareto,
        recommended,
        constraints,
        memory: options.memory,
        memory_counted: crate::alloc::is_installed(),
    })
}

/// `"hibernate"`, `"keep"` or `"hibernate-when-idle"`.
pub fn strategy_name(m: MemoryStrategy) -> &'static str {
    match m {
        MemoryStrategy::Keep => "keep",
        MemoryStrategy::HibernateWhenIdle => "hibernate-when-idle",
        MemoryStrategy::Hibernate => "hibernate",
    }
}

/// The three objectives, all to minimise.
fn objectives(r: &Row) -> [f64; 3] {
    [
        r.m.ratio(),
        r.m.memory_per_conn_bytes() as f64,
        r.m.cpu_us_per_msg(),
    ]
}

/// Indices of rows no other row dominates (see the module docs).
pub fn pareto_front(rows: &[Row]) -> Vec<usize> {
    let obj: Vec<[f64; 3]> = rows.iter().map(objectives).collect();
    (0..rows.len())
        .filter(|&i| {
            !(0..rows.len()).any(|j| {
                j != i
                    && obj[j].iter().zip(&obj[i]).all(|(a, b)| a <= b)
                    && obj[j].iter().zip(&obj[i]).any(|(a, b)| a < b)
            })
        })
        .collect()
}

/// The recommended row (see the module docs).
pub fn recommend(rows: &[Row], c: &Constraints) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.within(c))
        .min_by(|(_, a), (_, b)| {
            objectives(a)
                .partial_cmp(&objectives(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(i, _)| i)
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Report {
    /// The JSON document: `{"corpus", "settings", "pareto", "recommended"}`
    /// with the field names of issue 14.
    pub fn to_json(&self) -> Value {
        let settings: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let s = &r.setting;
                let comp = s.kind != ExtensionKind::None;
                json!({
                    "extension": s.kind.token(),
                    "params": r.m.params,
                    "level": comp.then_some(s.level),
                    "mem_level": comp.then_some(s.mem_level),
                    "context_takeover": comp.then_some(s.context_takeover),
                    "threshold": comp.then_some(s.threshold),
                    "payload_bytes": r.m.payload_bytes,
                    "wire_bytes": r.m.wire_bytes,
                    "ratio": round(r.m.ratio(), 6),
                    "compress_mib_s": round(r.m.compress_mib_s(), 2),
                    "decompress_mib_s": round(r.m.decompress_mib_s(), 2),
                    "p99_us": round(r.m.p99_us, 3),
                    "memory_per_conn_bytes": r.m.memory_per_conn_bytes(),
                })
            })
            .collect();
        json!({
            "corpus": self.corpus,
            "settings": settings,
            "pareto": self.pareto,
            "recommended": self.recommended,
        })
    }

    /// CSV with a header row: the JSON fields plus the row's name, window,
    /// p50, CPU per message, the compressor and decompressor figures, the
    /// shared pool and the Pareto/recommended marks.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "name,extension,params,window_bits,level,mem_level,context_takeover,threshold,\
             payload_bytes,wire_bytes,ratio,compress_mib_s,decompress_mib_s,p50_us,p99_us,\
             cpu_us_per_msg,compressor_bytes,decompressor_bytes,memory_per_conn_bytes,\
             shared_pool_bytes,pareto,recommended\n",
        );
        for (i, r) in self.rows.iter().enumerate() {
            let s = &r.setting;
            let comp = s.kind != ExtensionKind::None;
            let opt = |v: String| if comp { v } else { String::new() };
            let fields = [
                csv_field(&s.name),
                csv_field(s.kind.token()),
                csv_field(&r.m.params),
                opt(s.window_bits.to_string()),
                opt(s.level.to_string()),
                opt(s.mem_level.to_string()),
                opt(s.context_takeover.to_string()),
                opt(s.threshold.to_string()),
                r.m.payload_bytes.to_string(),
                r.m.wire_bytes.to_string(),
                format!("{:.6}", r.m.ratio()),
                format!("{:.2}", r.m.compress_mib_s()),
                format!("{:.2}", r.m.decompress_mib_s()),
                format!("{:.3}", r.m.p50_us),
                format!("{:.3}", r.m.p99_us),
                format!("{:.3}", r.m.cpu_us_per_msg()),
                r.m.compressor_bytes.to_string(),
                r.m.decompressor_bytes.to_string(),
                r.m.memory_per_conn_bytes().to_string(),
                r.m.pool_bytes.to_string(),
                self.pareto.contains(&i).to_string(),
                (self.recommended == Some(i)).to_string(),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// The terminal table, the recommendation and its builder code.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let c = &self.corpus;
        let _ = writeln!(
            out,
            "corpus {} ({}): {} messages, {} payload bytes; memory strategy {}",
            c["path"].as_str().unwrap_or(""),
            c["format"].as_str().unwrap_or(""),
            c["messages"],
            c["payload_bytes"],
            strategy_name(self.memory),
        );
        let _ = writeln!(
            out,
            "ratio = wire bytes (frame headers included) / payload bytes; * = Pareto front \
             (ratio, memory, CPU); > = recommended"
        );
        if let Some(share) = self.cpu_share
            && share < 0.8
        {
            let _ = writeln!(
                out,
                "warning: the replay thread had {:.0}% of a CPU (other load on this machine): \
                 times and MiB/s are inflated accordingly; byte counts and memory are not",
                share * 100.0
            );
        }
        if !self.memory_counted {
            let _ = writeln!(
                out,
                "warning: the counting allocator is not installed: memory figures are 0"
            );
        }
        let _ = writeln!(out);
        let header = [
            "",
            "setting",
            "ratio",
            "wire B",
            "comp MiB/s",
            "decomp MiB/s",
            "p50 µs",
            "p99 µs",
            "µs/msg",
            "compressor",
            "decompressor",
            "mem/conn",
        ];
        let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for (i, r) in self.rows.iter().enumerate() {
            let mark = match (self.recommended == Some(i), self.pareto.contains(&i)) {
                (true, true) => ">*",
                (true, false) => "> ",
                (false, true) => " *",
                _ => "  ",
            };
            lines.push(vec![
                mark.into(),
                r.setting.name.clone(),
                format!("{:.4}", r.m.ratio()),
                r.m.wire_bytes.to_string(),
                format!("{:.1}", r.m.compress_mib_s()),
                format!("{:.1}", r.m.decompress_mib_s()),
                format!("{:.1}", r.m.p50_us),
                format!("{:.1}", r.m.p99_us),
                format!("{:.2}", r.m.cpu_us_per_msg()),
                bytes_h(r.m.compressor_bytes),
                bytes_h(r.m.decompressor_bytes),
                bytes_h(r.m.memory_per_conn_bytes()),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|k| {
                lines
                    .iter()
                    .map(|l| l[k].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let mut s = String::new();
            for (k, cell) in l.iter().enumerate() {
                let pad = widths[k] - cell.chars().count();
                if k <= 1 {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                }
                s.push_str("  ");
            }
            let _ = writeln!(out, "{}", s.trim_end());
        }
        let _ = writeln!(out);
        if self
            .rows
            .iter()
            .any(|r| r.setting.kind != ExtensionKind::None && r.setting.level < 9)
        {
            let _ = writeln!(
                out,
                "Levels are weft's (zlib-rs) levels: a peer compressing with zlib at the same \
                 level sends other byte counts (measured: weft up to 14 % more at level 1, \
                 -4 % to +4 % at levels 2 to 8, the same at 9); see cli/README.md.\n"
            );
        }
        out.push_str(&self.recommendation_text());
        out
    }

    /// The recommendation, with the builder code to paste.
    pub fn recommendation_text(&self) -> String {
        let mut out = String::new();
        let mut limits = Vec::new();
        if let Some(m) = self.constraints.max_memory_per_conn {
            limits.push(format!("memory per connection <= {}", bytes_h(m)));
        }
        if let Some(c) = self.constraints.max_cpu_us_per_msg {
            limits.push(format!("CPU per message <= {c} µs"));
        }
        let within = if limits.is_empty() {
            "no constraints".to_string()
        } else {
            limits.join(", ")
        };
        match self.recommended {
            None => {
                let _ = writeln!(out, "No setting fits the constraints ({within}).");
            }
            Some(i) => {
                let r = &self.rows[i];
                let _ = writeln!(
                    out,
                    "Recommended ({within}): {} — ratio {:.4}, {} per connection, {:.2} µs per \
                     message{}",
                    r.setting.name,
                    r.m.ratio(),
                    bytes_h(r.m.memory_per_conn_bytes()),
                    r.m.cpu_us_per_msg(),
                    if r.m.params.is_empty() {
                        String::new()
                    } else {
                        format!("; negotiates `{}`", r.m.params)
                    }
                );
                let _ = writeln!(out, "\n{}", r.setting.builder_snippet(self.memory));
            }
        }
        out
    }
}

/// Bytes for people: B, KiB or MiB.
pub fn bytes_h(b: u64) -> String {
    if b < 1024 {
        format!("{b} B")
    } else if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }
}

/// Parses a size such as `65536`, `64KiB`, `64k`, `1.5MiB`, `2MB` (K, M, G
/// are powers of 1024 with or without `i`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 65536, 64KiB, 2MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        u => {
            return Err(format!(
                "unknown size unit {u:?} in {s:?} (use B, KiB, MiB, GiB)"
            ));
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v.round() as u64)
}

/// Quotes a CSV field when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, ratio_wire: u64, mem: u64, cpu_s: f64) -> Row {
        Row {
            setting: Setting {
                name: name.into(),
                ..Setting::per_message(15, 6, 8, true, 0)
            },
            m: Measurement {
                messages: 1_000_000,
                payload_bytes: 1000,
                wire_bytes: ratio_wire,
                compress_secs: cpu_s,
                compressor_bytes: mem,
                ..Measurement::default()
            },
        }
    }

    #[test]
    fn pareto_and_recommendation() {
        let rows = vec![
            row("a", 300, 100, 1.0),  // front
            row("b", 400, 100, 1.0),  // dominated by a
            row("c", 500, 10, 1.0),   // front (least memory)
            row("d", 300, 100, 0.5),  // front, dominates a
            row("e", 200, 1000, 9.0), // front (best ratio)
        ];
        assert_eq!(pareto_front(&rows), [2, 3, 4]);
        assert_eq!(recommend(&rows, &Constraints::default()), Some(4));
        let c = Constraints {
            max_memory_per_conn: Some(100),
            max_cpu_us_per_msg: None,
        };
        assert_eq!(recommend(&rows, &c), Some(3), "ratio tie goes to less CPU");
        let c = Constraints {
            max_memory_per_conn: Some(99),
            ..c
        };
        assert_eq!(recommend(&rows, &c), Some(2));
        let c = Constraints {
            max_memory_per_conn: Some(9),
            ..c
        };
        assert_eq!(recommend(&rows, &c), None);
        // CPU: 1 s over 1e6 messages is 1 µs per message; at the limit fits.
        let c = Constraints {
            max_memory_per_conn: None,
            max_cpu_us_per_msg: Some(1.0),
        };
        assert_eq!(recommend(&rows, &c), Some(3));
        let c = Constraints {
            max_cpu_us_per_msg: Some(0.49),
            ..c
        };
        assert_eq!(recommend(&rows, &c), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_size(" 2 MB "), Ok(2 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
