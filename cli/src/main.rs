//! `weft`: compression-settings report on your own traffic, a recording
//! proxy, a client and a server. See the crate docs of `weft_cli` and
//! `cli/README.md`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use weft_cli::corpus::{self, Direction, Limits, ReadOptions};
use weft_cli::replay::ReplayOptions;
use weft_cli::report::{self, Constraints, parse_size};
use weft_cli::settings;
use weft_extensions::MemoryStrategy;

#[global_allocator]
static ALLOC: weft_cli::alloc::CountingAlloc = weft_cli::alloc::CountingAlloc;

/// The weft WebSocket tool.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Which compression settings to negotiate for a corpus of your own
    /// messages: ratio, CPU and memory per connection of each, measured
    /// through the real weft extensions.
    Report(ReportArgs),
    /// A recording proxy: clients connect here, messages are forwarded to
    /// the upstream server both ways and written to a JSON Lines corpus.
    Capture(weft_cli::capture::CaptureArgs),
    /// Connect to a WebSocket server: stdin lines become messages, received
    /// messages go to stdout.
    Connect(weft_cli::client::ConnectArgs),
    /// A WebSocket server: echo or broadcast.
    Serve(weft_cli::serve::ServeArgs),
}

/// Direction filter of `--dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DirArg {
    /// Client to server.
    Sent,
    /// Server to client.
    Received,
}

/// `--memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemoryArg {
    /// weft's default: contexts go back to a shared pool after every
    /// message; a connection keeps only its windows.
    Hibernate,
    /// Keep contexts allocated (fastest with many busy connections,
    /// largest).
    Keep,
    /// Keep contexts while busy; hibernate once idle (measured idle).
    HibernateWhenIdle,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The corpus: a JSON Lines file ({"text": ...} or {"base64": ...} per
    /// line, optional "dir" and "t"), a text file with --lines, or a
    /// directory (one message per file).
    #[arg(long, value_name = "PATH")]
    corpus: PathBuf,
    /// The corpus is plain text, one message per line.
    #[arg(long)]
    lines: bool,
    /// Replay only messages of this direction (JSON Lines "dir"; messages
    /// without one count as --undirected).
    #[arg(long, value_enum)]
    dir: Option<DirArg>,
    /// Skip bad lines or files (reported) instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// Largest message accepted; a larger one is an error (or skipped with
    /// --skip-bad) and is never read into memory whole.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    max_message: u64,
    /// Most payload bytes in the whole corpus.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    max_corpus: u64,
    /// Run the full grid (every window 8-15 and level 1-9, both takeovers,
    /// memLevel 4/8/9, thresholds, per-frame variants: 484 settings)
    /// instead of the default 36 (permessage-deflate at windows 9, 11-15
    /// and levels 1, 6, 9 with context takeover, windows 9, 12, 15 and
    /// levels 1, 6 without, memLevel 4 and 9, thresholds 128 and 1024,
    /// per-frame deflate, and the rows for Chromium's offer, Python
    /// websockets' and Node ws' defaults).
    #[arg(long)]
    full: bool,
    /// Only settings at these zlib levels (e.g. 7,8,9); the no-compression
    /// row is always kept.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    levels: Vec<u8>,
    /// Only settings with these window bits (e.g. 12,15).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    windows: Vec<u8>,
    /// Recommend only settings using at most this much memory per
    /// connection (e.g. 64KiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory_per_conn: Option<u64>,
    /// Recommend only settings using at most this much CPU per message
    /// (mean of send + receive, µs).
    #[arg(long, value_name = "US")]
    max_cpu_us_per_msg: Option<f64>,
    /// Memory strategy of every setting.
    #[arg(long, value_enum, default_value = "hibernate")]
    memory: MemoryArg,
    /// Direction to replay messages that have none (lines, directories,
    /// JSON Lines without "dir").
    #[arg(long, value_enum, default_value = "received")]
    undirected: DirArg,
    /// Replay each setting this many times and report the fastest (for
    /// steadier times on a busy machine; bytes and memory do not change).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeat: u16,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the chart (ratio against memory per connection) as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write a self-contained HTML page (table and chart).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn dir(d: DirArg) -> Direction {
    match d {
        DirArg::Sent => Direction::Sent,
        DirArg::Received => Direction::Received,
    }
}

fn run_report(args: ReportArgs) -> Result<(), String> {
    let max_message = usize::try_from(args.max_message).map_err(|_| "--max-message too large")?;
    let options = ReadOptions {
        lines: args.lines,
        skip_bad: args.skip_bad,
        limits: Limits {
            max_message,
            max_total: args.max_corpus,
            ..Limits::default()
        },
    };
    let mut corpus = corpus::read(&args.corpus, &options).map_err(|e| e.to_string())?;
    for s in &corpus.skipped {
        eprintln!("skipped: {s}");
    }
    if !corpus.skipped.is_empty() {
        eprintln!(
            "skipped {} bad lines or files (--skip-bad)",
            corpus.skipped.len()
        );
    }
    if let Some(d) = args.dir {
        let dropped = corpus.retain_dir(dir(d), dir(args.undirected));
        if dropped > 0 {
            eprintln!("--dir {}: left out {dropped} other messages", dir(d).name());
        }
    }
    if corpus.entries.is_empty() {
        return Err(format!(
            "{}: the corpus holds no messages{}",
            args.corpus.display(),
            if args.dir.is_some() {
                " in that direction"
            } else {
                ""
            }
        ));
    }
    let memory = match args.memory {
        MemoryArg::Hibernate => MemoryStrategy::Hibernate,
        MemoryArg::Keep => MemoryStrategy::Keep,
        MemoryArg::HibernateWhenIdle => MemoryStrategy::HibernateWhenIdle,
    };
    let replay = ReplayOptions {
        memory,
        undirected: dir(args.undirected),
        repeat: usize::from(args.repeat),
        ..ReplayOptions::default()
    }
    .for_max_message(max_message);
    let mut grid = if args.full {
        settings::full_grid()
    } else {
        settings::default_grid()
    };
    grid.retain(|s| {
        s.kind == settings::ExtensionKind::None
            || ((args.levels.is_empty() || args.levels.contains(&s.level))
                && (args.windows.is_empty() || args.windows.contains(&s.window_bits)))
    });
    let constraints = Constraints {
        max_memory_per_conn: args.max_memory_per_conn,
        max_cpu_us_per_msg: args.max_cpu_us_per_msg,
    };
    // The baseline once, every other row `repeat` times.
    let total = (1 + (grid.len() as u64).saturating_sub(1) * u64::from(args.repeat))
        * corpus.entries.len() as u64;
    let bar = ProgressBar::new(total);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages replayed (ETA {eta})",
        )
        .map_err(|e| e.to_string())?,
    );
    let started = std::time::Instant::now();
    let result = report::run(&corpus, &grid, &replay, constraints, &mut |n| bar.inc(n));
    bar.finish_and_clear();
    let report = result.map_err(|e| e.to_string())?;
    print!("{}", report.to_table());
    eprintln!(
        "{} settings over {} messages in {:.1} s",
        grid.len(),
        corpus.entries.len(),
        started.elapsed().as_secs_f64()
    );
    let write = |path: &Option<PathBuf>, text: String| -> Result<(), String> {
        if let Some(p) = path {
            std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        Ok(())
    };
    if args.json.is_some() {
        let json = serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
        write(&args.json, json + "\n")?;
    }
    write(&args.csv, report.to_csv())?;
    if args.svg.is_some() {
        write(&args.svg, weft_cli::svg::chart(&report))?;
    }
    if args.html.is_some() {
        write(&args.html, weft_cli::html::page(&report))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(a) => run_report(a),
        Command::Capture(a) => weft_cli::capture::main(a),
        Command::Connect(a) => weft_cli::client::main(a),
        Command::Serve(a) => weft_cli::serve::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e}");
            ExitCode::FAILURE
        }
    }
}
