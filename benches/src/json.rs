//! JSON-like chat records, the compressible payload of the compression
//! benches (`benches/compressed_echo.rs`, `echo_rounds --deflate`).

use serde::Serialize;
use test_support::{Rng, SeededRng};

const WORDS: &str = "the a is to and of in that it for on with as this we you be at have not \
    deploy server latency build merge review branch test fix bug release config cache socket \
    message queue worker thread memory window compress stream frame client handshake timeout \
    retry error metric dashboard alert ticket sprint meeting lunch coffee tomorrow today \
    yesterday done looks good thanks please check again later maybe sure really quick slow fast \
    green red flaky pipeline rollback staging production ship it now after before because \
    still just think know need want see run make update comment patch issue ok";
const USERS: &str = "alice bob carol dave erin frank grace heidi ivan judy mallory trent";
const CHANNELS: &str = "general dev ops random releases support";

/// One record of [`json_message`].
#[derive(Serialize)]
struct ChatRecord<'a> {
    id: u64,
    user: String,
    channel: &'a str,
    ts: u64,
    text: String,
    reactions: Reactions,
    edited: bool,
}

#[derive(Serialize)]
struct Reactions {
    #[serde(rename = "+1")]
    plus_one: u32,
    eyes: u32,
}

/// A JSON-like array of chat records, cut to exactly `size` ASCII bytes.
pub fn json_message(rng: &mut SeededRng, size: usize, first_id: &mut u64) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let users: Vec<&str> = USERS.split_whitespace().collect();
    let channels: Vec<&str> = CHANNELS.split_whitespace().collect();
    let mut s = String::with_capacity(size + 512);
    s.push('[');
    while s.len() < size {
        *first_id += 1 + rng.random_range(0..3u64);
        let user = users[rng.random_range(0..users.len())];
        let n_words = 4 + rng.random_range(0..20);
        let mut text = String::new();
        for i in 0..n_words {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(words[rng.random_range(0..words.len())]);
        }
        let record = ChatRecord {
            id: *first_id,
            user: format!("{user}{}", rng.random_range(0..100u32)),
            channel: channels[rng.random_range(0..channels.len())],
            ts: 1_700_000_000_000u64 + *first_id * 1_337 + rng.random_range(0..1000u64),
            text,
            reactions: Reactions {
                plus_one: rng.random_range(0..5u32),
                eyes: rng.random_range(0..3u32),
            },
            edited: rng.random_range(0..4u32) == 0,
        };
        s.push_str(&serde_json::to_string(&record).expect("a chat record serializes"));
        s.push(',');
    }
    s.truncate(size);
    s
}

/// One JSON-like message of exactly `size` ASCII bytes, the same for a
/// given size (seeded).
pub fn json_payload(size: usize) -> String {
    let mut rng = test_support::rng(0x5eed_0000_0000_0002 ^ size as u64);
    let mut id = 0;
    json_message(&mut rng, size, &mut id)
}
