//! The client library: [`Client`] connects, sends with await-ack, and
//! subscribes; a [`Subscription`] is a `Stream` of deliveries.
//!
//! One driver task per connection owns the WebSocket. Callers encode their
//! frames themselves and hand them to the driver over a channel, with a
//! oneshot for the answer when there is one (RECEIPT or ERROR); the driver
//! writes them in batches and routes what the broker sends: RECEIPTs and
//! ERRORs to the waiting callers, MESSAGEs to their subscription's channel.
//! That channel is bounded by the subscription's credit, not by the
//! channel: the broker never sends more than the credit allows.

use crate::error::Error;
use crate::frame::{
    self, AckMode, Destination, ErrorCode, ErrorFrame, Form, Frame, Headers, Limits, MessageFrame,
    MessageId, Profile, Receipt, SendFrame, SubscribeFrame, SubscriptionId,
};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};
use weft_core::MaybeTlsStream;
use weft_core::{ClientBuilder, CloseCode, Message, WebSocket};

/// A delivery: the MESSAGE frame as received. Acknowledge it (`ack:
/// client` subscriptions) with [`Client::ack`] or [`Subscription::ack`].
pub type Delivery = MessageFrame;

/// How a [`Client`] talks to the broker.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Full (`mbws.weft`, the default) or light (`mblws.weft`).
    pub profile: Profile,
    /// The form of the frames this client sends (default binary). The
    /// broker answers in the same form; deliveries whose body is not UTF-8
    /// always come in binary.
    pub form: Form,
    /// Largest body this client sends or accepts (default 1 MiB; the
    /// broker has its own limit).
    pub max_body: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            profile: Profile::Full,
            form: Form::Binary,
            max_body: frame::DEFAULT_MAX_BODY,
        }
    }
}

/// Settings of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// How deliveries are settled (default `auto`).
    pub ack: AckMode,
    /// The credit window (default 64). With `ack: auto` the client grants
    /// the broker more credit as the application takes deliveries out of
    /// the stream, half a window at a time, so at most `credit` deliveries
    /// are ever buffered. With `ack: client` each ACK or NACK returns one.
    /// 0 pauses the subscription until [`Subscription::add_credit`].
    pub credit: u32,
    /// The subscription id; by default the client numbers them.
    pub id: Option<SubscriptionId>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            ack: AckMode::Auto,
            credit: 64,
            id: None,
        }
    }
}

impl SubscribeOptions {
    /// `ack: client` with a prefetch window of `credit` deliveries.
    pub fn client_ack(credit: u32) -> Self {
        SubscribeOptions {
            ack: AckMode::Client,
            credit,
            id: None,
        }
    }

    /// `ack: auto` with a window of `credit` deliveries.
    pub fn auto_ack(credit: u32) -> Self {
        SubscribeOptions {
            ack: AckMode::Auto,
            credit,
            id: None,
        }
    }
}

type Reply = oneshot::Sender<Result<(), Error>>;

enum Command {
    /// A SEND; `done` waits for its RECEIPT (full profile) or for the write.
    Send {
        msg: Message,
        id: MessageId,
        done: Reply,
        receipt: bool,
    },
    Subscribe {
        msg: Message,
        id: SubscriptionId,
        deliveries: mpsc::UnboundedSender<Delivery>,
        done: Reply,
    },
    Unsubscribe {
        msg: Message,
        id: SubscriptionId,
        done: Option<Reply>,
    },
    /// ACK, NACK, CREDIT: nothing to wait for.
    Frame(Message),
    Close(oneshot::Sender<()>),
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    profile: Profile,
    form: Form,
    limits: Limits,
    id_prefix: u64,
    next_message: AtomicU64,
    next_subscription: AtomicU64,
    errors: tokio::sync::Mutex<mpsc::Receiver<ErrorFrame>>,
}

/// A connection to a weft-broker. Cheap to clone: clones share the
/// connection, which closes when the last clone and subscription are
/// dropped or on [`close`](Self::close).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.inner.profile)
            .field("form", &self.inner.form)
            .finish_non_exhaustive()
    }
}

/// Most unsolicited ERRORs kept for [`Client::next_error`]; more are dropped.
const ERROR_BACKLOG: usize = 64;

impl Client {
    /// Connects to `url` (`ws://host:port/`) with the full profile.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with `options`. Fails with [`Error::WebSocket`] if the
    /// handshake is refused (a server that speaks neither token answers
    /// 400) and with [`Error::NoProtocol`] if the server accepts without
    /// selecting the token.
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Client, Error> {
        let token = options.profile.token();
        let max = options.max_body.saturating_add(64 << 10);
        let (ws, _) = ClientBuilder::new()
            .protocol(token)
            .config(
                weft_core::Config::default()
                    .max_message_size(max)
                    .max_frame_size(max),
            )
            .connect(url)
            .await?;
        if ws.protocol() != Some(token) {
            let mut ws = ws;
            let _ = ws.close(CloseCode::PROTOCOL_ERROR, "no subprotocol").await;
            return Err(Error::NoProtocol(token));
        }
        let limits = Limits {
            max_body: options.max_body,
        };
        let (commands, rx) = mpsc::unbounded_channel();
        let (errors_tx, errors_rx) = mpsc::channel(ERROR_BACKLOG);
        let driver = Driver {
            ws,
            limits,
            sends: HashMap::new(),
            sub_ops: HashMap::new(),
            subs: HashMap::new(),
            errors: errors_tx,
        };
        tokio::spawn(driver.run(rx));
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                profile: options.profile,
                form: options.form,
                limits,
                id_prefix: rand::random(),
                next_message: AtomicU64::new(1),
                next_subscription: AtomicU64::new(1),
                errors: tokio::sync::Mutex::new(errors_rx),
            }),
        })
    }

    /// The negotiated profile.
    pub fn profile(&self) -> Profile {
        self.inner.profile
    }

    /// A fresh message id: this client's random 64-bit prefix and a counter,
    /// unique across clients with overwhelming probability.
    pub fn next_message_id(&self) -> MessageId {
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        MessageId::new(&format!("{:016x}-{n}", self.inner.id_prefix)).expect("valid id")
    }

    fn command(&self, c: Command) -> Result<(), Error> {
        self.inner.commands.send(c).map_err(|_| Error::Closed)
    }

    fn encode(&self, f: &Frame) -> Result<Message, Error> {
        Ok(
            frame::encode(f, self.inner.form, &self.inner.limits).or_else(|e| match e {
                frame::FrameError::TextBodyNotUtf8 => {
                    frame::encode(f, Form::Binary, &self.inner.limits)
                }
                e => Err(e),
            })?,
        )
    }

    /// Sends `body` to `destination` with a fresh message id and returns
    /// the id once the broker has stored the message (full profile) or once
    /// the frame is written (light profile).
    pub async fn send(
        &self,
        destination: &str,
        body: impl Into<Bytes>,
    ) -> Result<MessageId, Error> {
        self.send_with(destination, Headers::new(), body).await
    }

    /// Like [`send`](Self::send), with application headers.
    pub async fn send_with(
        &self,
        destination: &str,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> Result<MessageId, Error> {
        let f = SendFrame {
            destination: Destination::new(destination)?,
            message_id: self.next_message_id(),
            headers,
            body: body.into(),
        };
        let id = f.message_id.clone();
        self.send_frame(f).await?;
        Ok(id)
    }

    /// Sends a SEND frame as it is (with its own message id, for example to
    /// retry one whose RECEIPT was lost: the broker drops the duplicate and
    /// acknowledges it again).
    pub async fn send_frame(&self, f: SendFrame) -> Result<(), Error> {
        let id = f.message_id.clone();
        let msg = self.encode(&Frame::Send(f))?;
        let (done, rx) = oneshot::channel();
        self.command(Command::Send {
            msg,
            id,
            done,
            receipt: self.inner.profile == Profile::Full,
        })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Subscribes to `destination` and waits for the broker's RECEIPT.
    pub async fn subscribe(
        &self,
        destination: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, Error> {
        let id = match options.id {
            Some(id) => id,
            None => {
                let n = self.inner.next_subscription.fetch_add(1, Ordering::Relaxed);
                SubscriptionId::new(&format!("s{n}")).expect("valid id")
            }
        };
        let msg = self.encode(&Frame::Subscribe(SubscribeFrame {
            subscription: id.clone(),
            destination: Destination::new(destination)?,
            ack: options.ack,
            credit: options.credit,
        }))?;
        let (tx, deliveries) = mpsc::unbounded_channel();
        let (done, rx) = oneshot::channel();
        self.command(Command::Subscribe {
            msg,
            id: id.clone(),
            deliveries: tx,
            done,
        })?;
        rx.await.map_err(|_| Error::Closed)??;
        Ok(Subscription {
            id,
            deliveries,
            client: self.clone(),
            ack: options.ack,
            credit: options.credit,
            consumed: 0,
            open: true,
        })
    }

    fn settle(&self, f: Frame) -> Result<(), Error> {
        let msg = self.encode(&f)?;
        self.command(Command::Frame(msg))
    }

    /// Acknowledges a delivery of an `ack: client` subscription. The broker
    /// answers a bad delivery id with an ERROR, seen by
    /// [`next_error`](Self::next_error).
    pub fn ack(&self, d: &Delivery) -> Result<(), Error> {
        self.settle(Frame::Ack {
            delivery_id: d.delivery_id,
        })
    }

    /// Refuses a delivery: the broker redelivers it.
    pub fn nack(&self, d: &Delivery) -> Result<(), Error> {
        self.settle(Frame::Nack {
            delivery_id: d.delivery_id,
        })
    }

    /// Waits for the next ERROR the broker sent that answers no pending
    /// request (a bad ACK, NACK or CREDIT); `None` once the connection is
    /// closed and all have been read. At most 64 are kept.
    pub async fn next_error(&self) -> Option<ErrorFrame> {
        self.inner.errors.lock().await.recv().await
    }

    /// Closes the connection (closing handshake 1000) and waits for it.
    /// Other clones and subscriptions see the connection closed.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The deliveries of one subscription, as a `futures_core::Stream` (or with
/// [`next`](Self::next)). Dropping it unsubscribes without waiting.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriptionId,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    client: Client,
    ack: AckMode,
    credit: u32,
    consumed: u32,
    open: bool,
}

impl Subscription {
    /// The subscription id.
    pub fn id(&self) -> &SubscriptionId {
        &self.id
    }

    /// The next delivery; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.poll_delivery(cx)).await
    }

    /// Acknowledges a delivery (see [`Client::ack`]).
    pub fn ack(&self, d: &Delivery) -> Result<(), Error> {
        self.client.ack(d)
    }

    /// Refuses a delivery (see [`Client::nack`]).
    pub fn nack(&self, d: &Delivery) -> Result<(), Error> {
        self.client.nack(d)
    }

    /// Grants the broker `n` more deliveries (a CREDIT frame). Over the
    /// broker's window limit it answers with ERROR 203, seen by
    /// [`Client::next_error`].
    pub fn add_credit(&self, n: u32) -> Result<(), Error> {
        self.client.settle(Frame::Credit {
            subscription: self.id.clone(),
            credit: n,
        })
    }

    /// Unsubscribes and waits for the broker's RECEIPT. Unacknowledged
    /// deliveries of a queue subscription go back to the queue.
    pub async fn unsubscribe(mut self) -> Result<(), Error> {
        self.open = false;
        let msg = self.client.encode(&Frame::Unsubscribe {
            subscription: self.id.clone(),
        })?;
        let (done, rx) = oneshot::channel();
        self.client.command(Command::Unsubscribe {
            msg,
            id: self.id.clone(),
            done: Some(done),
        })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let item = std::task::ready!(self.deliveries.poll_recv(cx));
        if item.is_some() && self.ack == AckMode::Auto && self.credit > 0 {
            // Give back half a window at a time.
            self.consumed += 1;
            if self.consumed >= self.credit.div_ceil(2) {
                let n = std::mem::take(&mut self.consumed);
                let _ = self.add_credit(n);
            }
        }
        Poll::Ready(item)
    }
}

impl futures_core::Stream for Subscription {
    type Item = Delivery;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.get_mut().poll_delivery(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.open
            && let Ok(msg) = self.client.encode(&Frame::Unsubscribe {
                subscription: self.id.clone(),
            })
        {
            let _ = self.client.command(Command::Unsubscribe {
                msg,
                id: self.id.clone(),
                done: None,
            });
        }
    }
}

/// Owns the WebSocket; see the [module docs](self).
struct Driver {
    ws: WebSocket<MaybeTlsStream>,
    limits: Limits,
    /// SENDs waiting for their RECEIPT, by message id (in order, should a
    /// caller reuse an id).
    sends: HashMap<MessageId, VecDeque<Reply>>,
    /// SUBSCRIBEs and UNSUBSCRIBEs waiting for their RECEIPT.
    sub_ops: HashMap<SubscriptionId, VecDeque<Reply>>,
    subs: HashMap<SubscriptionId, mpsc::UnboundedSender<Delivery>>,
    errors: mpsc::Sender<ErrorFrame>,
}

/// Commands written before one flush.
const BATCH: usize = 64;

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else {
                        let _ = self.ws.close(CloseCode::NORMAL, "").await;
                        return;
                    };
                    let mut next = Some(cmd);
                    let mut n = 0;
                    while let Some(cmd) = next.take() {
                        match self.command(cmd).await {
                            Ok(true) => {}
                            Ok(false) | Err(_) => return,
                        }
                        n += 1;
                        if n < BATCH {
                            next = commands.try_recv().ok();
                        }
                    }
                    if self.ws.flush().await.is_err() {
                        return;
                    }
                }
                msg = self.ws.recv() => match msg {
                    None | Some(Err(_)) => return,
                    Some(Ok(m)) if m.is_data() => self.incoming(&m),
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Handles one command; `Ok(false)` ends the driver.
    async fn command(&mut self, cmd: Command) -> Result<bool, weft_core::Error> {
        match cmd {
            Command::Send {
                msg,
                id,
                done,
                receipt,
            } => {
                self.ws.feed(msg).await?;
                if receipt {
                    self.sends.entry(id).or_default().push_back(done);
                } else {
                    let _ = done.send(Ok(()));
                }
            }
            Command::Subscribe {
                msg,
                id,
                deliveries,
                done,
            } => {
                self.subs.insert(id.clone(), deliveries);
                self.sub_ops.entry(id).or_default().push_back(done);
                self.ws.feed(msg).await?;
            }
            Command::Unsubscribe { msg, id, done } => {
                self.subs.remove(&id);
                if let Some(done) = done {
                    self.sub_ops.entry(id).or_default().push_back(done);
                }
                self.ws.feed(msg).await?;
            }
            Command::Frame(msg) => self.ws.feed(msg).await?,
            Command::Close(done) => {
                let _ = self.ws.close(CloseCode::NORMAL, "").await;
                let _ = done.send(());
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn incoming(&mut self, m: &Message) {
        let f = match frame::decode(m, &self.limits) {
            Ok(f) => f,
            Err(e) => {
                let _ = self.errors.try_send(ErrorFrame::new(
                    ErrorCode::MALFORMED,
                    &format!("the broker sent a frame this client cannot decode: {e}"),
                    frame::references(m),
                ));
                return;
            }
        };
        match f {
            Frame::Receipt(Receipt::Message(id)) => {
                if let Some(done) = pop(&mut self.sends, &id) {
                    let _ = done.send(Ok(()));
                }
            }
            Frame::Receipt(Receipt::Subscription(id)) => {
                if let Some(done) = pop(&mut self.sub_ops, &id) {
                    let _ = done.send(Ok(()));
                }
            }
            Frame::Message(d) => {
                if let Some(tx) = self.subs.get(&d.subscription) {
                    let _ = tx.send(d);
                }
            }
            Frame::Error(e) => {
                if let Some(id) = &e.message_id
                    && let Some(done) = pop(&mut self.sends, id)
                {
                    let _ = done.send(Err(Error::Broker(e)));
                } else if let Some(id) = &e.subscription
                    && let Some(done) = pop(&mut self.sub_ops, id)
                {
                    // A refused SUBSCRIBE leaves nothing to route.
                    if e.code != ErrorCode::UNKNOWN_SUBSCRIPTION {
                        self.subs.remove(id);
                    }
                    let _ = done.send(Err(Error::Broker(e)));
                } else {
                    let _ = self.errors.try_send(e);
                }
            }
            // The broker does not send client operations.
            Frame::Send(_)
            | Frame::Subscribe(_)
            | Frame::Unsubscribe { .. }
            | Frame::Ack { .. }
            | Frame::Nack { .. }
            | Frame::Credit { .. } => {}
        }
    }
}

fn pop<K: std::hash::Hash + Eq>(map: &mut HashMap<K, VecDeque<Reply>>, k: &K) -> Option<Reply> {
    let q = map.get_mut(k)?;
    let r = q.pop_front();
    if q.is_empty() {
        map.remove(k);
    }
    r
}
