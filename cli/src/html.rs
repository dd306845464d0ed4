//! The report as one self-contained HTML page: the chart (inline SVG), the
//! table, the recommendation and its builder code. No scripts, styles or
//! images are loaded from anywhere.

use crate::report::{Report, bytes_h};
use crate::svg::{chart, escape};
use std::fmt::Write as _;

/// The page for `report`.
pub fn page(report: &Report) -> String {
    let mut s = String::new();
    let title = format!(
        "weft report: {}",
        report.corpus["path"].as_str().unwrap_or("corpus")
    );
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>",
        escape(&title)
    );
    s.push_str(
        "<style>body{font-family:sans-serif;margin:2em;}table{border-collapse:collapse;}\
         td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;}\
         td:nth-child(2),th:nth-child(2){text-align:left;}tr.pareto{background:#eef5fc;}\
         tr.recommended{background:#e3f6e3;font-weight:bold;}pre{background:#f6f6f6;padding:1em;}\
         </style>\n</head>\n<body>\n",
    );
    let _ = writeln!(s, "<h1>{}</h1>", escape(&title));
    let c = &report.corpus;
    let _ = writeln!(
        s,
        "<p>{} messages, {} payload bytes ({}); memory strategy {}. Ratio is wire bytes \
         (frame headers included) per payload byte: lower is better.</p>",
        c["messages"],
        c["payload_bytes"],
        escape(c["format"].as_str().unwrap_or("")),
        crate::report::strategy_name(report.memory),
    );
    // The SVG without its XML declaration, inline.
    let svg = chart(report);
    let svg = svg
        .split_once("?>\n")
        .map_or(svg.as_str(), |(_, rest)| rest);
    s.push_str(svg);
    s.push_str("<h2>Recommendation</h2>\n");
    let _ = writeln!(s, "<pre>{}</pre>", escape(&report.recommendation_text()));
    s.push_str("<h2>All settings</h2>\n<table>\n<tr><th></th><th>setting</th><th>params</th><th>ratio</th><th>wire bytes</th><th>compress MiB/s</th><th>decompress MiB/s</th><th>p50 µs</th><th>p99 µs</th><th>µs/msg</th><th>compressor</th><th>decompressor</th><th>memory/conn</th></tr>\n");
    for (i, r) in report.rows.iter().enumerate() {
        let pareto = report.pareto.contains(&i);
        let rec = report.recommended == Some(i);
        let class = if rec {
            " class=\"recommended\""
        } else if pareto {
            " class=\"pareto\""
        } else {
            ""
        };
        let mark = match (rec, pareto) {
            (true, true) => "&gt;*",
            (true, false) => "&gt;",
            (false, true) => "*",
            _ => "",
        };
        let _ = writeln!(
            s,
            "<tr{class}><td>{mark}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.setting.name),
            escape(&r.m.params),
            r.m.ratio(),
            r.m.wire_bytes,
            r.m.compress_mib_s(),
            r.m.decompress_mib_s(),
            r.m.p50_us,
            r.m.p99_us,
            r.m.cpu_us_per_msg(),
            bytes_h(r.m.compressor_bytes),
            bytes_h(r.m.decompressor_bytes),
            bytes_h(r.m.memory_per_conn_bytes()),
        );
    }
    s.push_str("</table>\n<p>* Pareto front (ratio, memory per connection, CPU per message); &gt; recommended.</p>\n</body>\n</html>\n");
    s
}
