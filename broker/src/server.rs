//! The broker server: accepts WebSocket connections that negotiate
//! `mbws.weft` or `mblws.weft` and runs one task per connection over the
//! memory backend.

use crate::frame::{
    self, AckMode, ErrorCode, ErrorFrame, Form, Frame, Limits, MessageFrame, Profile, Receipt,
    References,
};
use crate::memory::{ConnId, Delivery, MemoryBroker, MemoryConfig, Refusal, SendOutcome};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use weft_core::{CloseCode, Message, ServerBuilder, WebSocket};

/// The body of the HTTP 400 answer to a request that offers neither token.
pub const REFUSAL_BODY: &str = "weft-broker speaks the WebSocket subprotocols mbws.weft and \
     mblws.weft: offer one of them in Sec-WebSocket-Protocol\n";

/// How WebSocket messages beyond the body limit are sized: the largest
/// header the protocol allows (32 fields of 64 + 1024 bytes) fits in it.
const HEADER_ALLOWANCE: usize = 64 << 10;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The memory backend's limits.
    pub memory: MemoryConfig,
    /// Largest body accepted in a SEND (default 1 MiB). WebSocket messages
    /// over this plus 64 KiB are refused by the WebSocket layer with 1009.
    pub max_body: usize,
    /// How long a graceful shutdown waits for connections to finish their
    /// closing handshakes (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            memory: MemoryConfig::default(),
            max_body: frame::DEFAULT_MAX_BODY,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// True if a request offers a subprotocol the broker speaks.
fn offers_our_protocol(request: &http::Request<()>) -> bool {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| Profile::from_token(p.trim()).is_some())
}

fn refusal_response() -> http::Response<String> {
    http::Response::builder()
        .status(http::StatusCode::BAD_REQUEST)
        .header(http::header::CONNECTION, "close")
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(REFUSAL_BODY.to_owned())
        .expect("static response parts are valid")
}

/// The weft server settings the broker uses: both tokens, the refusal hook,
/// and message limits derived from `config`.
pub fn websocket_builder(config: &ServerConfig) -> ServerBuilder {
    let max = config.max_body.saturating_add(HEADER_ALLOWANCE);
    ServerBuilder::new()
        .protocols(&[frame::PROTOCOL, frame::PROTOCOL_LIGHT])
        .on_request(|req| {
            if offers_our_protocol(req) {
                None
            } else {
                Some(refusal_response())
            }
        })
        .config(
            weft_core::Config::default()
                .max_message_size(max)
                .max_frame_size(max),
        )
}

/// A bound broker server. See the [crate docs](crate) for an example.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    broker: MemoryBroker,
    ws: ServerBuilder,
    config: ServerConfig,
}

impl Server {
    /// Binds `addr` with a fresh memory backend.
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            broker: MemoryBroker::new(config.memory.clone()),
            ws: websocket_builder(&config),
            config,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The backend, shared with the connections.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// connection with 1001 (going away) and waits up to
    /// [`ServerConfig::shutdown_grace`] for them to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(a) => a,
                        // Out of file descriptors and the like: back off
                        // briefly rather than spin or stop serving.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let ws = self.ws.clone();
                    let broker = self.broker.clone();
                    let limits = Limits { max_body: self.config.max_body };
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        if let Ok(ws) = ws.accept(stream).await {
                            serve_connection(ws, broker, limits, stop).await;
                        }
                    });
                }
                // Reap finished connections so the set stays small.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        Ok(())
    }
}

/// Runs one accepted connection to its end: reads frames and answers them,
/// writes deliveries as the backend assigns them. On return the backend has
/// forgotten the connection (its unacknowledged deliveries are redelivered).
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    broker: MemoryBroker,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let Some(profile) = ws.protocol().and_then(Profile::from_token) else {
        // Only reachable through a ServerBuilder without the broker's hook.
        let _ = ws
            .close(CloseCode::PROTOCOL_ERROR, "no mbws.weft subprotocol")
            .await;
        return;
    };
    let (wake_tx, mut wake) = mpsc::channel(1);
    let id = broker.lock().connect(wake_tx);
    let mut conn = Connection {
        id,
        profile,
        broker: &broker,
        limits,
        form: Form::Binary,
    };
    let result: Result<(), weft_core::Error> = async {
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        ws.close(CloseCode::GOING_AWAY, "broker shutting down").await?;
                        return Ok(());
                    }
                }
                _ = wake.recv() => conn.write_deliveries(&mut ws).await?,
                msg = ws.recv() => match msg {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(msg)) if msg.is_data() => {
                        if let Some(reply) = conn.handle(&msg) {
                            ws.feed(reply).await?;
                        }
                        // Frames often free credit for this connection
                        // (ACK, CREDIT, SUBSCRIBE): write what it allowed
                        // after the reply.
                        conn.write_deliveries(&mut ws).await?;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    .await;
    let _ = result;
    broker.lock().disconnect(id);
}

struct Connection<'a> {
    id: ConnId,
    profile: Profile,
    broker: &'a MemoryBroker,
    limits: Limits,
    /// The form of the frame being handled (replies use it too).
    form: Form,
}

impl Connection<'_> {
    /// Queues the connection's pending deliveries (the next `recv` flushes).
    async fn write_deliveries<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocket<S>,
    ) -> Result<(), weft_core::Error> {
        let out = self.broker.lock().take_outbox(self.id);
        for d in out {
            ws.feed(self.encode_delivery(d)).await?;
        }
        Ok(())
    }

    fn encode_delivery(&self, d: Delivery) -> Message {
        let form = d.form;
        let frame = Frame::Message(MessageFrame {
            subscription: d.subscription,
            delivery_id: d.delivery_id,
            destination: d.message.destination.clone(),
            message_id: d.message.message_id.clone(),
            redelivered: d.redelivered,
            headers: d.message.headers.clone(),
            body: d.message.body.clone(),
        });
        // The body was accepted under the same limit, so only the text
        // form can fail (a body that is not UTF-8): send it as binary.
        let no_limit = Limits {
            max_body: usize::MAX,
        };
        frame::encode(&frame, form, &no_limit)
            .or_else(|_| frame::encode(&frame, Form::Binary, &no_limit))
            .expect("the binary form encodes every frame")
    }

    /// Handles one frame; returns the reply to send, if any.
    fn handle(&mut self, msg: &Message) -> Option<Message> {
        let form = match msg {
            Message::Text(_) => Form::Text,
            _ => Form::Binary,
        };
        self.form = form;
        let reply = match frame::decode_from_client(msg, &self.limits) {
            Err(e) => Some(error(e.code(), &e.to_string(), frame::references(msg))),
            Ok(f) => self.dispatch(f),
        }?;
        Some(frame::encode(&reply, form, &self.limits).expect("replies have no body"))
    }

    fn dispatch(&mut self, f: Frame) -> Option<Frame> {
        let light = self.profile == Profile::Light;
        let mut core = self.broker.lock();
        match f {
            Frame::Send(s) => {
                let refs = References {
                    message_id: Some(s.message_id.clone()),
                    ..References::default()
                };
                let receipt = Frame::Receipt(Receipt::Message(s.message_id.clone()));
                match core.send(self.id, s) {
                    Ok(SendOutcome::Stored | SendOutcome::Duplicate) if light => None,
                    Ok(_) => Some(receipt),
                    Err(r) => Some(refused(r, refs)),
                }
            }
            Frame::Subscribe(s) => {
                let refs = References {
                    subscription: Some(s.subscription.clone()),
                    ..References::default()
                };
                if light && s.ack == AckMode::Client {
                    return Some(not_in_profile("ack: client", refs));
                }
                let receipt = Frame::Receipt(Receipt::Subscription(s.subscription.clone()));
                // Deliveries travel in the form of their SUBSCRIBE.
                match core.subscribe(self.id, s, self.form) {
                    Ok(()) => Some(receipt),
                    Err(r) => Some(refused(r, refs)),
                }
            }
            Frame::Unsubscribe { subscription } => {
                let refs = References {
                    subscription: Some(subscription.clone()),
                    ..References::default()
                };
                match core.unsubscribe(self.id, &subscription) {
                    Ok(()) => Some(Frame::Receipt(Receipt::Subscription(subscription))),
                    Err(r) => Some(refused(r, refs)),
                }
            }
            Frame::Ack { delivery_id } | Frame::Nack { delivery_id } => {
                let refs = References {
                    delivery_id: Some(delivery_id),
                    ..References::default()
                };
                if light {
                    return Some(not_in_profile("ACK and NACK", refs));
                }
                let r = if matches!(f, Frame::Ack { .. }) {
                    core.ack(self.id, delivery_id)
                } else {
                    core.nack(self.id, delivery_id)
                };
                r.err().map(|r| refused(r, refs))
            }
            Frame::Credit {
                subscription,
                credit,
            } => {
                let refs = References {
                    subscription: Some(subscription.clone()),
                    ..References::default()
                };
                core.credit(self.id, &subscription, credit)
                    .err()
                    .map(|r| refused(r, refs))
            }
            // `decode_from_client` refuses the broker's own operations.
            Frame::Receipt(_) | Frame::Message(_) | Frame::Error(_) => Some(error(
                ErrorCode::UNKNOWN_OPERATION,
                "not a client operation",
                References::default(),
            )),
        }
    }
}

fn error(code: ErrorCode, message: &str, refs: References) -> Frame {
    Frame::Error(ErrorFrame::new(code, message, refs))
}

fn refused(r: Refusal, refs: References) -> Frame {
    error(r.code, &r.message, refs)
}

fn not_in_profile(what: &str, refs: References) -> Frame {
    error(
        ErrorCode::NOT_IN_PROFILE,
        &format!("{what}: not available in the light profile (mblws.weft)"),
        refs,
    )
}
