//! Opening one MQTT connection: the client options every connection of the bridge shares, one
//! attempt bounded in time, and the retry of the first connection. Each connection is a fresh
//! rumqttc client and event loop: after a loss the bridge builds a new one rather than letting
//! rumqttc replay what was in flight (it already answered those callers).

use std::time::Duration;

use purest_core::Error;
use rumqttc::v5::mqttbytes::v5::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};

use crate::config::MqttConfig;

/// Longest pause between reconnection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What kind of session a connection opens.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The client id: random for connections without a session to keep, stable for durable ones.
    pub client_id: String,
    /// Keep the session (and what is queued for it) while disconnected.
    pub durable: bool,
    /// Deliveries the broker sends before this connection acknowledges any (receive maximum).
    pub in_flight: u16,
    /// Acknowledge deliveries by hand (after handling) rather than as they arrive.
    pub manual_acks: bool,
}

/// The client options for `session`.
pub(crate) fn options(config: &MqttConfig, session: &Session) -> Result<MqttOptions, Error> {
    let mut options = MqttOptions::new(session.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_start(!session.durable)
        .set_session_expiry_interval(
            session
                .durable
                .then(|| u32::try_from(config.session_expiry.as_secs()).unwrap_or(u32::MAX)),
        )
        .set_receive_maximum(Some(session.in_flight.max(1)))
        // Without it rumqttc refuses anything over 10 KiB by dropping the connection, and the
        // broker sends the message again: a loop. With it the broker never sends more.
        .set_max_packet_size(Some(config.max_packet_size))
        .set_manual_acks(session.manual_acks)
        .set_connection_timeout(config.connect_timeout.as_secs().clamp(1, 10));
    // Without it a lone publish waits for the last one's TCP ack: some 40 ms a round trip.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = config.tls_config().map_err(|e| Error::msg(e.to_string()))? {
        options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
    }
    Ok(options)
}

/// Why a connection attempt failed, and whether trying again can help.
pub(crate) struct Refused {
    pub reason: String,
    /// The broker refused who we are (credentials, client id): no retry will help.
    pub for_good: bool,
}

/// One connection attempt: a client and its event loop once the broker's ConnAck is in, or why
/// not. Requests queued on the client before its first poll (subscriptions) go out after the
/// ConnAck.
pub(crate) async fn open(options: &MqttOptions, capacity: usize, within: Duration) -> Result<(AsyncClient, EventLoop, ConnAck), Refused> {
    let (client, mut events) = AsyncClient::new(options.clone(), capacity);
    match tokio::time::timeout(within, events.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(connack)))) => Ok((client, events, connack)),
        Ok(Ok(other)) => Err(Refused {
            reason: format!("the broker answered {other:?} instead of a ConnAck"),
            for_good: false,
        }),
        Ok(Err(e)) => Err(refusal(e)),
        Err(_) => Err(Refused {
            reason: format!("no ConnAck within {within:?}"),
            for_good: false,
        }),
    }
}

fn refusal(error: ConnectionError) -> Refused {
    let for_good = matches!(
        &error,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::ClientIdentifierNotValid
                | ConnectReturnCode::Banned
                | ConnectReturnCode::BadAuthenticationMethod
                | ConnectReturnCode::UnsupportedProtocolVersion
        )
    );
    Refused {
        reason: error.to_string(),
        for_good,
    }
}

/// The first connection: attempts with backoff until one succeeds or the configured connect
/// timeout has passed; a refusal of who we are stops at once, saying what to check.
pub(crate) async fn open_first(
    config: &MqttConfig,
    options: &MqttOptions,
    capacity: usize,
) -> Result<(AsyncClient, EventLoop, ConnAck), Error> {
    let within = config.connect_timeout;
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let refused = match open(options, capacity, left.max(Duration::from_millis(1))).await {
            Ok(opened) => return Ok(opened),
            Err(refused) => refused,
        };
        if refused.for_good {
            return Err(Error::msg(format!(
                "the MQTT broker at {} refused the connection: {}; check the user and password (PUREST_MQTT_USER, PUREST_MQTT_PASSWORD) and the client id prefix (PUREST_MQTT_CLIENT_ID_PREFIX)",
                config.shown(),
                refused.reason
            )));
        }
        if tokio::time::Instant::now() + backoff >= deadline {
            return Err(Error::msg(format!(
                "cannot connect to the MQTT broker at {} within {within:?} ({}); is mosquitto (or another MQTT 5 broker) running there? (set by PUREST_BRIDGE; PUREST_MQTT_CONNECT_TIMEOUT_MS waits longer)",
                config.shown(),
                refused.reason
            )));
        }
        tracing::warn!(broker = %config.shown(), error = %refused.reason, "cannot reach the MQTT broker; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
