//! Runs every case of an Autobahn fuzzing server as an echo client.
//!
//! ```text
//! cargo run --release --example autobahn_client -- --url ws://127.0.0.1:9001 --agent weft
//! ```
//!
//! Protocol of the fuzzing server: `GET /getCaseCount` answers with the
//! number of cases as a text message, `/runCase?case=N&agent=A` runs case N
//! (we echo everything), `/updateReports?agent=A` writes the reports.
//! permessage-deflate is offered on every connection (cases 12.* and 13.*).

use clap::Parser;
use std::time::Duration;
use weft_core::{ClientBuilder, Config, Message};

/// Runs every case of an Autobahn fuzzing server as an echo client, then
/// asks it to write its reports.
#[derive(Debug, Parser)]
#[command(name = "autobahn_client")]
struct Args {
    /// The fuzzing server.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// Agent name the cases and reports are filed under.
    #[arg(long, default_value = "weft")]
    agent: String,
}

fn client() -> ClientBuilder {
    // The fuzzing server cannot say which case wants which offer, so offer
    // what Autobahn's reference client offers: `client_no_context_takeover`
    // and `client_max_window_bits` in one offer, which every 13.* server
    // acceptance accepts.
    let deflate = weft_extensions::PerMessageDeflate::new()
        .server_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_max_window_bits(weft_extensions::WindowBits::MAX)
        .client_no_context_takeover(true);
    ClientBuilder::new().extension(deflate).config(
        Config::default()
            .max_message_size(64 << 20)
            .max_frame_size(64 << 20)
            .close_timeout(Duration::from_secs(3)),
    )
}

async fn case_count(base: &str) -> Result<u32, weft_core::Error> {
    let (mut ws, _) = client().connect(&format!("{base}/getCaseCount")).await?;
    let mut count = None;
    while let Some(msg) = ws.recv().await {
        if let Message::Text(t) = msg? {
            count = t.trim().parse().ok();
        }
    }
    count.ok_or(weft_core::Error::Closed)
}

async fn run_case(base: &str, case: u32, agent: &str) -> Result<(), weft_core::Error> {
    let (mut ws, _) = client()
        .connect(&format!("{base}/runCase?case={case}&agent={agent}"))
        .await?;
    while let Some(msg) = ws.recv().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.feed(m).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/').to_owned();
    let agent = args.agent;
    let count = match case_count(&base).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot get the case count from {base}: {e}");
            std::process::exit(1);
        }
    };
    println!("running {count} cases against {base} as {agent}");
    for case in 1..=count {
        // Failures are what the fuzzing server grades; keep going.
        let r = tokio::time::timeout(Duration::from_secs(60), run_case(&base, case, &agent)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("case {case}: {e}"),
            Err(_) => eprintln!("case {case}: timed out"),
        }
    }
    match client()
        .connect(&format!("{base}/updateReports?agent={agent}"))
        .await
    {
        Ok((mut ws, _)) => {
            let _ = ws.close(weft_core::CloseCode::NORMAL, "").await;
        }
        Err(e) => {
            eprintln!("cannot update reports: {e}");
            std::process::exit(1);
        }
    }
    println!("done");
}
