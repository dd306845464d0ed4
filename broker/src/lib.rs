//! # weft-broker
//!
//! A message broker over WebSocket, built on weft: the `mbws.weft`
//! subprotocol (and its light, ack-less profile `mblws.weft`), its codec, an
//! embedded memory backend, a Redis Streams backend for many nodes, a
//! server (the `weft-broker` binary) and a client library. The protocol is ours, written in the spirit of the
//! MessageBroker WebSocket Subprotocol draft; `broker/PROTOCOL.md` is its
//! specification, and its byte examples are the codec's unit tests.
//!
//! ## Architecture
//!
//! ```text
//! Client (client.rs)                         Server (server.rs)
//!   send / subscribe / ack                     one task per connection:
//!     | encode (frame.rs)                        select { ws.recv(), outbox wakeup, shutdown }
//!     v                                            | decode_from_client (frame.rs)
//!   driver task ── WebSocket (weft-core) ────────> | Connection::dispatch ──> backend::Session
//!     ^  RECEIPT / ERROR -> waiting caller         |                            ├─ Memory: lock ─> memory::Core
//!     |  MESSAGE -> Subscription stream            | <── take_outbox ── wakeup ──┤
//!     |                                            | <── Completion (RECEIPT) ──┴─ Redis: one writer task per node
//!     └─────────────────── WebSocket <──────────── feed MESSAGE / RECEIPT / ERROR   (batched SEND script, XACK), reader task per
//!                                                                                    subscription (XREADGROUP,
//!                                                                                    XAUTOCLAIM)
//! ```
//!
//! - [`frame`]: sans-I/O codec for both wire forms (text: header lines, a
//!   blank line, the body; binary: length-prefixed fields, the body), with
//!   typed, validated fields and a [`frame::FrameError`] per violation,
//!   each with its ERROR code.
//! - [`memory`]: the backend, a plain state machine ([`memory::Core`])
//!   behind one mutex: queues (competing consumers, round robin among
//!   subscriptions with credit), topics (fan-out into one backlog per
//!   subscription), credit windows, `ack: auto` / `ack: client`,
//!   redelivery on NACK, UNSUBSCRIBE or disconnect, deduplication of SENDs
//!   by message id, and the per-destination limit (refuse, never drop).
//! - [`backend`]: [`Backend`], an enum over the two backends, and
//!   [`backend::Session`], what one connection needs from a backend (why an
//!   enum and not a trait object is explained there).
//! - [`redis`]: the Redis backend: a stream per destination, a consumer
//!   group per queue, XACK + XDEL on ACK, XAUTOCLAIM of deliveries idle
//!   past `redeliver_after` (a killed node's, or a consumer's that never
//!   acks), the writes of all of a node's connections batched by one writer
//!   task (one SEND script call, one XACK + XDEL per stream per batch).
//! - [`server`]: accepts connections with weft's `ServerBuilder`
//!   (subprotocol negotiation; a request offering neither token is refused
//!   with HTTP 400 by an `on_request` hook, because `protocols` alone would
//!   accept it without a subprotocol) and runs one task per connection.
//! - [`client`]: [`Client`], a cheap-to-clone handle to one driver task;
//!   [`Subscription`], a `futures_core::Stream` of deliveries.
//! - [`link`]: broker links. A node forwards linked destinations to
//!   another over one weft-mux connection, one logical `mbws.weft`
//!   channel per destination: a local `ack: client` subscription per
//!   destination (its credit is the link's window), each delivery sent on
//!   as a SEND and ACKed locally on the other node's RECEIPT, reconnection
//!   with back-off. The server accepts mux connections next to plain ones
//!   ([`weft_mux::MuxServerBuilder`]) and serves each logical channel as a
//!   session of its own; the connection task is generic over a plain
//!   WebSocket and a mux channel.
//!
//! ## Data path of one message
//!
//! producer `Client::send` → encode (one copy of the body into the
//! WebSocket message) → driver task → socket → broker connection task →
//! weft decodes the WebSocket message → `decode_from_client` splits the
//! body off as `Bytes` (no copy) → `Core::send` under the lock: dedupe
//! check, limit check, stored once as an `Arc` → dispatch picks a
//! subscription with credit, takes one credit, assigns the connection's
//! next delivery id, records the delivery as unacknowledged (`ack:
//! client`) and pushes it to that connection's outbox, waking its task →
//! that task encodes MESSAGE (one copy) and feeds it → weft flushes when
//! the task next waits for input → consumer driver routes the MESSAGE to
//! the subscription's channel → the application takes it from the
//! `Stream` and ACKs it → `Core::ack` settles it and returns the credit,
//! which lets the next message be dispatched. The RECEIPT goes back to
//! the producer right after the store.
//!
//! Memory per slow consumer is bounded by its credit window (at most
//! `max_credit` deliveries in its outbox and unacknowledged), and per
//! destination by `max_queue`; see PROTOCOL.md §5.
//!
//! ## Use
//!
//! Run the broker: `cargo run --release -p weft-broker -- --addr
//! 127.0.0.1:9100` (memory backend; `--help` lists the limits), or with
//! `--backend redis://127.0.0.1:6379` on Redis. Or embed it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_broker::{Client, Server, ServerConfig, SubscribeOptions};
//!
//! let server = Server::bind("127.0.0.1:9100", ServerConfig::default()).await?;
//! tokio::spawn(server.run_until(async { let _ = tokio::signal::ctrl_c().await; }));
//!
//! let consumer = Client::connect("ws://127.0.0.1:9100/").await?;
//! let mut orders = consumer
//!     .subscribe("/queue/orders", SubscribeOptions::client_ack(16))
//!     .await?;
//!
//! let producer = Client::connect("ws://127.0.0.1:9100/").await?;
//! let id = producer.send("/queue/orders", "one espresso").await?; // stored once this returns
//!
//! let delivery = orders.next().await.expect("connection open");
//! assert_eq!(delivery.message_id, id);
//! orders.ack(&delivery)?;
//! # Ok(()) }
//! ```
//!
//! Several nodes share destinations through Redis:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_broker::{Backend, RedisConfig, Server, ServerConfig};
//!
//! let backend = Backend::redis("redis://127.0.0.1:6379", RedisConfig::default()).await?;
//! let server = Server::bind_with("127.0.0.1:9101", ServerConfig::default(), backend).await?;
//! server.run().await?;
//! # Ok(()) }
//! ```
//!
//! Fire-and-forget telemetry uses the light profile:
//! `Client::connect_with(url, ClientOptions { profile: Profile::Light, ..Default::default() })`;
//! its `send` returns once the frame is written, and its subscriptions are
//! `ack: auto`.
//!
//! ## Guarantees
//!
//! `ack: client` is at-least-once (NACK, UNSUBSCRIBE, a lost connection or
//! a delivery unacknowledged for `redeliver_after` redelivers, marked
//! `redelivered`, with the same message id, so consumers can drop
//! duplicates); `ack: auto` is at-most-once. One producer's messages to one
//! destination keep their order (redeliveries excepted). A SEND retried
//! with the same message id is stored once. A slow consumer is held back
//! by its credit window: the broker holds at most `credit` deliveries for
//! it, whatever it does.
//!
//! - **memory** (default): nothing survives a restart of the broker
//!   process. Use it for one node, tests, and telemetry.
//! - **Redis** (`Backend::redis`, `--backend redis://HOST:PORT`): a SEND is
//!   acknowledged once it is in Redis, so killing any broker node (kill -9)
//!   loses nothing acknowledged while Redis keeps its data; its consumers'
//!   deliveries go to other nodes after `redeliver_after`. Use it to run
//!   several nodes behind a load balancer or to survive node restarts.
//!
//! PROTOCOL.md §5 lists the differences between the two. The server's
//! keepalive (Ping after an idle interval, drop after a timeout) is the
//! broker's own: weft-core answers Pings but does not send them.

pub mod backend;
pub mod client;
pub mod error;
pub mod frame;
pub mod link;
pub mod memory;
pub mod redis;
pub mod server;

pub use backend::Backend;
pub use client::{Client, ClientOptions, Delivery, SubscribeOptions, Subscription};
pub use error::Error;
pub use frame::{AckMode, Destination, ErrorCode, Form, Headers, MessageId, Profile};
pub use link::{LinkConfig, LinkStatus};
pub use memory::MemoryConfig;
pub use redis::RedisConfig;
pub use server::{Keepalive, Server, ServerConfig};
