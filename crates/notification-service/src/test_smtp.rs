//! A small SMTP server for tests, on a real socket: enough of the protocol
//! for lettre, with a choice of answers to `RCPT TO`.

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
}

/// An SMTP server good enough for lettre. Sends the received DATA on
/// `mail` once the message is accepted. With `close_after_message`, it
/// hangs up (without a word) after each accepted message, as a server
/// closing idle connections would.
pub async fn fake_smtp(rcpt: Rcpt) -> (u16, mpsc::UnboundedReceiver<String>) {
    fake_smtp_with(rcpt, false).await
}

/// [`fake_smtp`], optionally hanging up after every message.
pub async fn fake_smtp_with(
    rcpt: Rcpt,
    close_after_message: bool,
) -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, rcpt, close_after_message, tx.clone()));
        }
    });
    (port, rx)
}

async fn serve(
    socket: tokio::net::TcpStream,
    rcpt: Rcpt,
    close_after_message: bool,
    tx: mpsc::UnboundedSender<String>,
) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 fake ESMTP\r\n").await.expect("greet");
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(buf) = data.as_mut() {
            if line == "." {
                tx.send(data.take().unwrap_or_default()).ok();
                write.write_all(b"250 queued\r\n").await.expect("w");
                if close_after_message {
                    return;
                }
            } else {
                buf.push_str(&line);
                buf.push('\n');
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &str = match verb.as_str() {
            "EHLO" | "HELO" => "250 fake\r\n",
            "MAIL" => "250 ok\r\n",
            "RCPT" => match rcpt {
                Rcpt::Accept => "250 ok\r\n",
                Rcpt::Reply(r) => r,
                Rcpt::ReplyFor(who, r) if line.contains(who) => r,
                Rcpt::ReplyFor(..) => "250 ok\r\n",
                Rcpt::Hang => {
                    std::future::pending::<()>().await;
                    ""
                }
            },
            "DATA" => {
                data = Some(String::new());
                "354 go ahead\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await.ok();
                break;
            }
            _ => "250 ok\r\n",
        };
        write.write_all(reply.as_bytes()).await.expect("reply");
    }
}
