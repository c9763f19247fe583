//! A small SMTP server for tests, on a real socket: enough of the protocol
//! for the mailer, with a choice of answers to `RCPT TO` and of the
//! extensions it offers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the fake server answers `RCPT TO`.
#[derive(Clone, Copy)]
pub enum Rcpt {
    /// Every recipient is accepted.
    Accept,
    /// This reply for every recipient.
    Reply(&'static str),
    /// This reply for recipients containing the first string; the others
    /// are accepted.
    ReplyFor(&'static str, &'static str),
    /// No answer at all.
    Hang,
    /// No answer for recipients containing this string; the others are
    /// accepted.
    HangFor(&'static str),
}

/// The fake server's behaviour.
#[derive(Clone, Copy)]
pub struct Fake {
    /// How `RCPT TO` is answered.
    pub rcpt: Rcpt,
    /// Hang up (without a word) after each accepted message, as a server
    /// closing idle connections would.
    pub close_after_message: bool,
    /// Offer `PIPELINING` in the `EHLO` reply.
    pub pipelining: bool,
    /// Refuse `EHLO` (an old server that only knows `HELO`).
    pub helo_only: bool,
    /// Offer `AUTH` with these mechanisms (`"PLAIN LOGIN"`), and require
    /// user `u`, password `p` before `MAIL`.
    pub auth: Option<&'static str>,
}

impl Fake {
    /// A server answering `RCPT` with `rcpt`, offering `PIPELINING`.
    pub fn new(rcpt: Rcpt) -> Self {
        Fake {
            rcpt,
            close_after_message: false,
            pipelining: true,
            helo_only: false,
            auth: None,
        }
    }

    /// Starts it on a free port: the port, the DATA of every accepted
    /// message, and a count of the `MAIL` commands that arrived in the same
    /// read as the `DATA` after them (that is, pipelined).
    pub async fn start(self) -> (u16, mpsc::UnboundedReceiver<String>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        let pipelined = Arc::new(AtomicUsize::new(0));
        let counter = pipelined.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, self, tx.clone(), counter.clone()));
            }
        });
        (port, rx, pipelined)
    }
}

/// A server answering `RCPT` with `rcpt` and offering `PIPELINING`; sends
/// the received DATA on `mail` once the message is accepted.
pub async fn fake_smtp(rcpt: Rcpt) -> (u16, mpsc::UnboundedReceiver<String>) {
    let (port, mail, _) = Fake::new(rcpt).start().await;
    (port, mail)
}

async fn serve(
    socket: tokio::net::TcpStream,
    fake: Fake,
    tx: mpsc::UnboundedSender<String>,
    pipelined: Arc<AtomicUsize>,
) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 fake ESMTP\r\n").await.expect("greet");
    let mut data: Option<String> = None;
    let mut authenticated = fake.auth.is_none();
    let mut login_step = 0;
    let mut raw = String::new();
    loop {
        raw.clear();
        match reader.read_line(&mut raw).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = raw.trim_end_matches(['\r', '\n']);
        if let Some(buf) = data.as_mut() {
            if line == "." {
                tx.send(data.take().unwrap_or_default()).ok();
                write.write_all(b"250 queued\r\n").await.expect("w");
                if fake.close_after_message {
                    return;
                }
            } else {
                buf.push_str(line.strip_prefix('.').unwrap_or(line));
                buf.push('\n');
            }
            continue;
        }
        if login_step > 0 {
            let expected = if login_step == 1 { "dQ==" } else { "cA==" };
            let reply = match (login_step, line == expected) {
                (1, true) => "334 UGFzc3dvcmQ6\r\n",
                (_, true) => {
                    authenticated = true;
                    "235 2.7.0 ok\r\n"
                }
                (_, false) => "535 5.7.8 bad credentials\r\n",
            };
            login_step = if reply.starts_with("334") { 2 } else { 0 };
            write.write_all(reply.as_bytes()).await.expect("reply");
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let ehlo;
        let reply: &str = match verb.as_str() {
            "EHLO" if fake.helo_only => "502 5.5.2 EHLO not implemented\r\n",
            "EHLO" => {
                ehlo = format!(
                    "250-fake\r\n{}{}250 8BITMIME\r\n",
                    if fake.pipelining {
                        "250-PIPELINING\r\n"
                    } else {
                        ""
                    },
                    fake.auth
                        .map(|m| format!("250-AUTH {m}\r\n"))
                        .unwrap_or_default()
                );
                &ehlo
            }
            "HELO" => "250 fake\r\n",
            "AUTH" => match line.get(5..) {
                Some("PLAIN AHUAcA==") => {
                    authenticated = true;
                    "235 2.7.0 ok\r\n"
                }
                Some("LOGIN") => {
                    login_step = 1;
                    "334 VXNlcm5hbWU6\r\n"
                }
                _ => "535 5.7.8 bad credentials\r\n",
            },
            "MAIL" if !authenticated => "530 5.7.0 authentication required\r\n",
            "MAIL" => {
                let rest = reader.buffer();
                if rest.windows(6).any(|w| w.eq_ignore_ascii_case(b"DATA\r\n")) {
                    pipelined.fetch_add(1, Ordering::SeqCst);
                }
                "250 ok\r\n"
            }
            "RCPT" => match fake.rcpt {
                Rcpt::Accept => "250 ok\r\n",
                Rcpt::Reply(r) => r,
                Rcpt::ReplyFor(who, r) if line.contains(who) => r,
                Rcpt::ReplyFor(..) => "250 ok\r\n",
                Rcpt::Hang => {
                    std::future::pending::<()>().await;
                    ""
                }
                Rcpt::HangFor(who) if line.contains(who) => {
                    std::future::pending::<()>().await;
                    ""
                }
                Rcpt::HangFor(_) => "250 ok\r\n",
            },
            "DATA" => {
                data = Some(String::new());
                "354 go ahead\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await.ok();
                return;
            }
            _ => "250 ok\r\n",
        };
        write.write_all(reply.as_bytes()).await.expect("reply");
    }
}
