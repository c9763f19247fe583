//! The notification service's SMTP client against lettre's transport, the
//! reason it is kept (`src/handlers/mail/smtp.rs`): e-mails sent one after
//! another over one kept-open connection to a real SMTP server, directly
//! and through a relay on this machine that delays every write by
//! `BENCH_DELAY_MS` in each direction (default `0,1,5`: loopback, a relay
//! in the same rack, one across a region), standing in for a server on
//! another host. Prints milliseconds per e-mail and the process's CPU time
//! per e-mail.
//!
//! `SMTP_BENCH_ADDR` is the server (`scripts/bench-smtp` starts
//! `orderctl smtp-sink` and runs this); `BENCH_MAILS` (default 500) the
//! e-mails per line.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use notification_service::handlers::mail::smtp::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FROM: &str = "orders@orderflow.example";
const TO: &str = "ada@example.com";

fn main() {
    let server: SocketAddr = std::env::var("SMTP_BENCH_ADDR")
        .expect("SMTP_BENCH_ADDR (scripts/bench-smtp sets it)")
        .parse()
        .expect("SMTP_BENCH_ADDR is host:port");
    let mails: usize = std::env::var("BENCH_MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let delays: Vec<u64> = std::env::var("BENCH_DELAY_MS")
        .unwrap_or_else(|_| "0,1,5".into())
        .split(',')
        .map(|d| {
            d.trim()
                .parse()
                .expect("BENCH_DELAY_MS: milliseconds, comma-separated")
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let message = Message::builder()
            .from(FROM.parse().expect("from"))
            .to(TO.parse().expect("to"))
            .subject("Your order 0190f3b2-1c4d-7a8e-9f00-0123456789ab has shipped")
            .header(ContentType::TEXT_PLAIN)
            .body("Hello Ada,\n\nyour order has shipped: tracking number T-1234.\n".repeat(8))
            .expect("message");
        let formatted = message.formatted();
        println!(
            "smtp: {mails} e-mails of {} bytes per line, one connection, one after another",
            formatted.len()
        );
        for delay in delays {
            let addr = if delay == 0 {
                server
            } else {
                delaying_relay(server, Duration::from_millis(delay)).await
            };
            // Alternated, twice each, so drift on the host hits both.
            for round in 0..2 {
                let (ms, cpu) = measure(mails, || own(addr, mails, &formatted)).await;
                println!("  delay {delay} ms each way, round {round}: own client  {ms:6.2} ms/e-mail, CPU {cpu:5.1} µs/e-mail");
                let (ms, cpu) = measure(mails, || with_lettre(addr, mails, &message)).await;
                println!("  delay {delay} ms each way, round {round}: lettre      {ms:6.2} ms/e-mail, CPU {cpu:5.1} µs/e-mail");
            }
        }
    });
}

async fn measure<F, Fut>(mails: usize, run: F) -> (f64, f64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu = cpu_time();
    let started = Instant::now();
    run().await;
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    (
        elapsed.as_secs_f64() * 1e3 / mails as f64,
        cpu.as_secs_f64() * 1e6 / mails as f64,
    )
}

/// The service's client: `MAIL`, `RCPT`, `DATA` pipelined.
async fn own(addr: SocketAddr, mails: usize, message: &[u8]) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = Connection::open(stream, None).await.expect("greeting");
    for _ in 0..mails {
        conn.send(FROM, &[TO], message).await.expect("sent");
    }
}

/// lettre's transport with its connection pool (one connection reused).
async fn with_lettre(addr: SocketAddr, mails: usize, message: &Message) {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .build();
    for _ in 0..mails {
        transport.send(message.clone()).await.expect("sent");
    }
}

/// A TCP relay to `server` that holds every chunk for `delay` before
/// passing it on, in each direction: a round trip costs `2 × delay` more.
async fn delaying_relay(server: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(upstream) = TcpStream::connect(server).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            tokio::spawn(pass(cr, uw, delay));
            tokio::spawn(pass(ur, cw, delay));
        }
    });
    addr
}

async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime, fields 14 and 15 of the line (the 12th and 13th after the name).
    let clock_ticks = 100;
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks)
}
