//! The MQTT source: QoS 1 on a persistent session (`clean_session = false`, the
//! source's `durable` as client id), acknowledged by hand after the commit.
//!
//! MQTT has no log position: the broker keeps what the session has not acknowledged
//! and delivers it again after a reconnect. So a message committed but not yet
//! acknowledged when reckon died comes again; its events are then duplicates by id
//! (the stream's `id_field`, or the id made from topic and payload), which the store
//! drops. The network runs on a task of its own that hands publishes over a channel
//! and never waits on reckon (it must keep sending acknowledgements and pings). What
//! the channel holds is bounded by MQTT's own flow control: the broker sends at most
//! its in-flight limit of unacknowledged QoS 1 messages (mosquitto's
//! `max_inflight_messages`, 20 by default), and reckon acknowledges only after the
//! commit, so a full writer stops the broker from sending more.

use super::{Broker, Message, Positions};
use reckon_runtime::SourceConfig;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub(crate) struct Mqtt {
    host: String,
    port: u16,
    /// The username and password of the url, if any.
    credentials: Option<(String, String)>,
    client_id: String,
    topic: String,
    batch: usize,
    client: Option<AsyncClient>,
    rx: Option<mpsc::UnboundedReceiver<Result<Publish, String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The last batch's publishes, acknowledged once it is durable.
    pending: Vec<Publish>,
    /// No positions, so no lanes: `""`.
    lane: Arc<str>,
}

impl Mqtt {
    pub(crate) fn new(cfg: &SourceConfig) -> Result<Mqtt, String> {
        let shown = crate::connector::redact(&cfg.url);
        let rest = cfg.url.trim_start_matches("mqtt://").trim_end_matches('/');
        // `mqtt://user:password@host:port`: the broker's username and password.
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((user, host)) => {
                let (u, p) = user.split_once(':').unwrap_or((user, ""));
                (Some((u.to_string(), p.to_string())), host)
            }
            None => (None, rest),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("url `{shown}`: `{p}` is not a port"))?,
            ),
            None => (rest.to_string(), 1883),
        };
        if host.is_empty() {
            return Err(format!("url `{shown}` names no host"));
        }
        Ok(Mqtt {
            host,
            port,
            credentials,
            client_id: cfg.durable_name(),
            topic: cfg.subject.clone(),
            batch: cfg.batch,
            client: None,
            rx: None,
            task: None,
            pending: Vec::new(),
            lane: Arc::from(""),
        })
    }

    fn close(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.client = None;
        self.rx = None;
        self.pending.clear();
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.close();
    }
}

impl Broker for Mqtt {
    async fn connect(&mut self, _positions: &Positions) -> Result<(), String> {
        self.close();
        let mut opts = MqttOptions::new(&self.client_id, &self.host, self.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        if let Some((u, p)) = &self.credentials {
            opts.set_credentials(u, p);
        }
        opts.set_inflight(self.batch.clamp(1, u16::MAX as usize) as u16);
        // Room for a whole batch of acknowledgements.
        let (client, mut eventloop) = AsyncClient::new(opts, self.batch + 16);
        let (tx, rx) = mpsc::unbounded_channel();
        // The first answer tells whether the connection stands.
        let first = loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(format!("connecting to {}:{}: {e}", self.host, self.port)),
            }
        };
        first?;
        // Subscribed every time, also to a session the broker kept: the topic in the
        // configuration may have changed (subscribing again to the same filter keeps
        // what the session holds).
        client
            .subscribe(&self.topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| format!("subscribing to `{}`: {e}", self.topic))?;
        // Connected means subscribed: nothing published after this is missed. What a
        // kept session delivers meanwhile goes first.
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    // A refused subscription would look like a quiet topic; one granted
                    // at QoS 0 would lose what a crash interrupts.
                    match ack.return_codes.first() {
                        Some(SubscribeReasonCode::Success(QoS::AtMostOnce)) => {
                            tracing::warn!(
                                "MQTT: the broker granted `{}` at QoS 0 only: a message reckon was given but had not committed when it stopped is lost",
                                self.topic
                            );
                        }
                        Some(SubscribeReasonCode::Success(_)) => {}
                        _ => {
                            return Err(format!(
                                "the broker refused the subscription to `{}` (check its ACL and the topic filter)",
                                self.topic
                            ));
                        }
                    }
                    break;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Ok(p));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("subscribing to `{}`: {e}", self.topic)),
            }
        }
        self.task = Some(tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        }));
        self.client = Some(client);
        self.rx = Some(rx);
        Ok(())
    }

    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, String> {
        let Some(rx) = self.rx.as_mut() else {
            return Err("not connected".into());
        };
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < max {
            let next = match out.is_empty() {
                // Nothing yet: wait for the first message up to `wait`.
                true => tokio::time::timeout_at(deadline, rx.recv()).await,
                // Take what is there; a batch does not wait once it has something
                // and nothing more is queued.
                false => match rx.try_recv() {
                    Ok(m) => Ok(Some(m)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
                },
            };
            match next {
                Err(_) => break,
                Ok(None) => return Err("the connection closed".into()),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(p))) => {
                    out.push(Message {
                        subject: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        lane: Arc::clone(&self.lane),
                        position: None,
                        partition: None,
                    });
                    self.pending.push(p);
                }
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, _positions: &Positions) -> Result<(), String> {
        let Some(client) = &self.client else {
            self.pending.clear();
            return Ok(());
        };
        for p in self.pending.drain(..) {
            client.ack(&p).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        // MQTT does not say how much the broker holds for a session.
        None
    }
}
