//! The WebSocket gateway with a real client (tokio-tungstenite): commands, errors, bad frames,
//! event subscriptions filtered by principal, and a client that never reads.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(f: &Fixture, header: Option<(&'static str, String)>) -> Result<Socket, WsError> {
    let mut request = format!("{}/ws", f.base.replace("http://", "ws://")).into_client_request().unwrap();
    if let Some((name, value)) = header {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next text frame as JSON (within 5 s).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s");
        match frame.expect("the connection is open").expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn commands_answer_with_result_or_error_frames() {
    let f = Fixture::start().await;
    let mut ws = connect(&f, None).await.unwrap();
    send(
        &mut ws,
        json!({"event": "user.registerNewUser", "data": {"name": "Ann", "email": "ann@example.com"}, "id": 1}),
    )
    .await;
    let reply = next(&mut ws).await;
    assert_eq!(reply["event"], "user.registerNewUser.result");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["data"]["email"], "ann@example.com");

    send(
        &mut ws,
        json!({"event": "user/1/registerNewUser", "data": {"name": "Ann", "email": "ann@example.com"}, "id": "b"}),
    )
    .await;
    let conflict = next(&mut ws).await;
    assert_eq!(conflict["event"], "user/1/registerNewUser.error");
    assert_eq!(
        (conflict["id"].as_str(), conflict["data"]["status"].as_u64()),
        (Some("b"), Some(409))
    );
    assert_eq!(
        conflict["data"]["data"],
        json!({"field": "email"}),
        "the handler's error data reaches the client"
    );

    send(
        &mut ws,
        json!({"event": "user.registerNewUser", "data": {"name": "", "email": "x"}, "id": 3}),
    )
    .await;
    let invalid = next(&mut ws).await;
    assert_eq!(invalid["data"]["status"], 400);
    assert!(invalid["data"]["violations"].as_array().unwrap().len() >= 2, "{invalid}");

    send(&mut ws, json!({"event": "user.noSuchCommand", "data": {}, "id": 4})).await;
    assert_eq!(next(&mut ws).await["data"]["status"], 404);
    send(&mut ws, json!({"event": "user.echoIdentity", "id": 5})).await;
    assert_eq!(
        next(&mut ws).await["data"]["status"],
        404,
        "commands without an HTTP route are not exposed"
    );
    send(&mut ws, json!({"event": "user.whoami", "id": 6})).await;
    let refused = next(&mut ws).await;
    assert_eq!(
        (refused["event"].as_str(), refused["data"]["status"].as_u64()),
        (Some("user.whoami.error"), Some(401))
    );
    f.stop().await;
}

#[tokio::test]
async fn an_accepted_answer_is_an_accepted_frame() {
    let f = Fixture::start().await;
    let mut ws = connect(&f, None).await.unwrap();
    send(&mut ws, json!({"event": "user.later", "data": {}, "id": 7})).await;
    let reply = next(&mut ws).await;
    assert_eq!(reply["event"], "user.later.accepted");
    assert_eq!(
        (reply["id"].as_u64(), reply["data"]["location"].as_str()),
        (Some(7), Some("/api/v1/users/u9"))
    );
    f.stop().await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays() {
    let f = Fixture::start().await;
    let mut ws = connect(&f, None).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let error = next(&mut ws).await;
    assert_eq!(
        (error["event"].as_str(), error["data"]["status"].as_u64()),
        (Some("error"), Some(400))
    );
    assert!(error["data"]["detail"].as_str().unwrap().contains("binary"));
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next(&mut ws).await["event"], "error");
    ws.send(Message::Text("[1, 2]".into())).await.unwrap();
    assert_eq!(next(&mut ws).await["event"], "error");
    send(&mut ws, json!({"event": "subscribe", "data": {"nope": 1}, "id": 9})).await;
    assert_eq!(next(&mut ws).await["event"], "subscribe.error");
    send(
        &mut ws,
        json!({"event": "user.registerNewUser", "data": {"name": "Bo", "email": "bo@example.com"}, "id": 10}),
    )
    .await;
    assert_eq!(next(&mut ws).await["event"], "user.registerNewUser.result", "still answering");
    f.stop().await;
}

#[tokio::test]
async fn credentials_on_the_upgrade_and_events_only_for_their_principal() {
    let f = Fixture::start().await;
    assert!(
        connect(&f, Some(("authorization", "Bearer forged".into()))).await.is_err(),
        "bad credentials refuse the upgrade"
    );
    let mut key_owner = connect(&f, Some(("x-api-key", API_KEY.to_owned()))).await.unwrap();
    let mut alice = connect(&f, Some(("authorization", format!("Bearer {}", valid_token()))))
        .await
        .unwrap();
    for ws in [&mut key_owner, &mut alice] {
        send(ws, json!({"event": "subscribe", "data": {"events": ["identitySeen"]}, "id": 1})).await;
        let reply = next(ws).await;
        assert_eq!(reply["data"], json!({"events": ["identitySeen"]}));
    }
    // whoami emits `identitySeen` as its caller: key-owner first, then alice.
    send(&mut key_owner, json!({"event": "user.whoami", "id": 2})).await;
    let mut frames = [next(&mut key_owner).await, next(&mut key_owner).await];
    frames.sort_by_key(|f| f["event"].as_str().unwrap().to_owned());
    assert_eq!(frames[0]["event"], "identitySeen");
    assert_eq!(frames[0]["data"]["principal"], "key-owner");
    assert_eq!(frames[1]["event"], "user.whoami.result");
    assert_eq!(frames[1]["data"]["tenant"], "acme");

    send(&mut alice, json!({"event": "user.whoami", "id": 3})).await;
    let mut frames = [next(&mut alice).await, next(&mut alice).await];
    frames.sort_by_key(|f| f["event"].as_str().unwrap().to_owned());
    assert_eq!(
        frames[0]["data"]["principal"], "alice",
        "alice never saw key-owner's event: {frames:?}"
    );

    send(
        &mut key_owner,
        json!({"event": "unsubscribe", "data": {"events": ["identitySeen"]}, "id": 4}),
    )
    .await;
    assert_eq!(next(&mut key_owner).await["data"], json!({"events": []}));
    f.stop().await;
}

/// A client that subscribes and never reads: its buffer fills, the gateway closes it with 1008
/// instead of holding every event for it.
#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_1008() {
    let f = Fixture::start_with(|gateway| gateway.websocket_buffer(16)).await;
    let mut ws = connect(&f, None).await.unwrap();
    send(&mut ws, json!({"event": "subscribe", "data": {"events": ["bulk"]}})).await;
    assert_eq!(next(&mut ws).await["event"], "subscribe.result");
    let client = f.app.client();
    let filler = "x".repeat(8 * 1024);
    let sent = 5_000;
    for seq in 0..sent {
        client.emit("bulk", json!({"seq": seq, "filler": filler})).await.unwrap();
        if seq % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Now read what the gateway kept for us: some events, then its close frame.
    let mut received = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("the gateway closes the connection")
        {
            Some(Ok(Message::Text(_))) => received += 1,
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection error instead of a close frame: {e}"),
            None => panic!("closed without a close frame"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("too slow"), "{}", close.reason);
    assert!(received < sent, "received {received} of {sent}: the gateway buffered without bound");
    eprintln!("slow client: {received} of {sent} events delivered before the close");
    f.stop().await;
}

/// Subscribes `ws` to `events` and returns the reply frame.
async fn subscribe(ws: &mut Socket, events: &[&str]) -> Value {
    send(ws, json!({"event": "subscribe", "data": {"events": events}})).await;
    next(ws).await
}

/// Events reach a connection only when a service declared them; protected ones only with
/// credentials; dead letters never unless declared; and a connection holds a bounded number.
#[tokio::test]
async fn only_declared_events_can_be_subscribed_to() {
    let f = Fixture::start_with(|gateway| gateway.websocket_subscriptions(2)).await;
    let mut anonymous = connect(&f, None).await.unwrap();
    for (event, status) in [("identitySeen", 401), ("purest.deadLetter", 404), ("neverDeclared", 404)] {
        let reply = subscribe(&mut anonymous, &[event]).await;
        assert_eq!(
            (reply["event"].as_str(), reply["data"]["status"].as_u64()),
            (Some("subscribe.error"), Some(status)),
            "{event}: {reply}"
        );
    }
    let refused = subscribe(&mut anonymous, &["alpha", "beta", "gamma"]).await;
    assert_eq!(refused["data"]["status"], 400, "more than the cap: {refused}");
    assert!(refused["data"]["detail"].as_str().unwrap().contains("at most 2"), "{refused}");
    assert_eq!(
        subscribe(&mut anonymous, &["alpha", "beta"]).await["data"],
        json!({"events": ["alpha", "beta"]})
    );

    let mut alice = connect(&f, Some(("authorization", format!("Bearer {}", valid_token()))))
        .await
        .unwrap();
    assert_eq!(
        subscribe(&mut alice, &["identitySeen"]).await["data"],
        json!({"events": ["identitySeen"]})
    );

    // A dead letter emitted while the anonymous client listens never reaches it.
    f.app
        .client()
        .emit("purest.deadLetter", json!({"secret": "the original message"}))
        .await
        .unwrap();
    f.app.client().emit("alpha", json!({"n": 1})).await.unwrap();
    let pushed = next(&mut anonymous).await;
    assert_eq!(pushed["event"], "alpha", "the next frame is the declared event: {pushed}");
    f.stop().await;
}

/// Every event name reaches exactly its own subscribers, though the gateway listens to all of
/// them under one address: a client of `beta` never sees `alpha` frames, and misses none of its own.
#[tokio::test]
async fn each_event_name_reaches_its_own_subscribers_only() {
    const EVENTS: u64 = 30;
    let f = Fixture::start().await;
    let mut alpha = connect(&f, None).await.unwrap();
    let mut beta = connect(&f, None).await.unwrap();
    assert_eq!(subscribe(&mut alpha, &["alpha"]).await["event"], "subscribe.result");
    assert_eq!(subscribe(&mut beta, &["beta"]).await["event"], "subscribe.result");
    let client = f.app.client();
    for n in 0..EVENTS {
        client.emit("alpha", json!({"n": n})).await.unwrap();
        client.emit("beta", json!({"n": n})).await.unwrap();
    }
    for (ws, name) in [(&mut alpha, "alpha"), (&mut beta, "beta")] {
        for n in 0..EVENTS {
            let frame = next(ws).await;
            assert_eq!(
                (frame["event"].as_str(), frame["data"]["n"].as_u64()),
                (Some(name), Some(n)),
                "{frame}"
            );
        }
    }
    f.stop().await;
}

/// The gateway's bridge subscription for an event name lives while a connection listens to it,
/// and ends with the last one (unsubscribed or disconnected): no subscription per name is left.
#[tokio::test]
async fn the_bridge_subscription_ends_with_its_last_listener() {
    const HUB: &str = "purest-http/1/websocket";
    let f = Fixture::start().await;
    let listening = || f.memory.subscription_stats().contains_key(HUB);
    let mut first = connect(&f, None).await.unwrap();
    let mut second = connect(&f, None).await.unwrap();
    subscribe(&mut first, &["alpha", "beta"]).await;
    subscribe(&mut second, &["alpha"]).await;
    assert!(listening());

    send(&mut first, json!({"event": "unsubscribe", "data": {"events": ["alpha", "beta"]}})).await;
    assert_eq!(next(&mut first).await["data"], json!({"events": []}));
    f.app.client().emit("alpha", json!({"n": 7})).await.unwrap();
    assert_eq!(next(&mut second).await["data"]["n"], 7, "the other listener of alpha still gets it");

    second.close(None).await.unwrap();
    wait_until("the gateway's last subscription is closed", || !listening()).await;
    f.stop().await;
}

/// A browser's `WebSocket` cannot set headers: it offers the token as the subprotocol
/// `purest.bearer.<token>` next to `purest`, which the gateway selects.
#[tokio::test]
async fn browsers_authenticate_with_a_bearer_subprotocol() {
    let f = Fixture::start().await;
    let offering = |protocols: String| {
        let mut request = format!("{}/ws", f.base.replace("http://", "ws://")).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (mut ws, response) = offering(format!("purest, purest.bearer.{}", valid_token())).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "purest", "the token is never echoed");
    send(&mut ws, json!({"event": "user.whoami", "id": 1})).await;
    let mut frames = [next(&mut ws).await];
    assert_eq!(frames[0]["event"], "user.whoami.result", "{frames:?}");
    assert_eq!(frames[0]["data"]["principal"], "alice");
    frames[0] = subscribe(&mut ws, &["identitySeen"]).await;
    assert_eq!(frames[0]["event"], "subscribe.result", "a protected event with credentials");

    for (protocols, status) in [
        (format!("purest.bearer.{}", valid_token()), 400),
        ("purest, purest.bearer.forged".to_owned(), 401),
    ] {
        match offering(protocols.clone()).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), status, "{protocols}"),
            other => panic!("{protocols}: expected {status}, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    f.stop().await;
}

/// A frame larger than the gateway's body limit ends the connection instead of being read (the
/// WebSocket library's own default would take 64 MiB).
#[tokio::test]
async fn frames_over_the_body_limit_are_refused() {
    let f = Fixture::start_with(|gateway| gateway.body_limit(4 * 1024)).await;
    let mut ws = connect(&f, None).await.unwrap();
    let name = "x".repeat(8 * 1024);
    send(
        &mut ws,
        json!({"event": "user.registerNewUser", "data": {"name": name, "email": "big@example.com"}, "id": 1}),
    )
    .await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Err(text.to_string()),
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| f.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Ok(None),
            }
        }
    })
    .await
    .expect("the gateway ends the connection");
    match end {
        Ok(code) => assert!(code.is_none_or(|code| code == CloseCode::Size), "closed with {code:?}"),
        Err(reply) => panic!("an oversized frame was read and answered: {reply}"),
    }
    f.stop().await;
}

/// Polls `done` every 10 ms for up to 5 s.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s: {what}");
}
