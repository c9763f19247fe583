//! `orderctl smtp-sink`: a small SMTP server that accepts every message and
//! stores it in a Maildir (`DIR/new/`), for local runs and benchmarks where
//! no mail server is at hand.
//!
//! It speaks enough of RFC 5321 for real clients (EHLO/HELO, MAIL, RCPT,
//! DATA with dot-unstuffing, RSET, NOOP, VRFY, QUIT; PIPELINING, RFC
//! 2920, whose replies go out together), answers commands out
//! of order with 503 and unknown ones with 500, refuses lines longer than
//! 4 KiB and messages larger than `--max-message-bytes`. No TLS, no AUTH,
//! no relaying: every message lands in the Maildir, with `X-MailFrom` and
//! `X-RcptTo` headers naming its envelope. Files are written to `tmp/` and
//! renamed into `new/`, as the Maildir convention has it, so a reader never
//! sees half a message. `--accept-delay` makes it take as long as a real
//! mail server to accept each message, for benchmarks of the sender.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Longest command or text line accepted (RFC 5321 asks for 1000 octets).
const MAX_LINE: usize = 4096;

/// `orderctl smtp-sink` flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1025")]
    pub listen: SocketAddr,
    /// Maildir to store messages in (created if missing).
    #[arg(long)]
    pub maildir: PathBuf,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_bytes: u64,
    /// How long it takes to accept each message (the reply to its end of
    /// DATA), as a real mail server's queueing and checks take, e.g.
    /// `50ms`; unset, it answers at once.
    #[arg(long, env = "SMTP_SINK_ACCEPT_DELAY",
          value_parser = orderflow_service::config::parse_duration)]
    pub accept_delay: Option<std::time::Duration>,
}

/// Where messages go, and how to name them.
struct Maildir {
    root: PathBuf,
    host: String,
    seq: AtomicU64,
}

impl Maildir {
    fn create(root: &Path) -> anyhow::Result<Self> {
        for sub in ["tmp", "new", "cur"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            root: root.to_owned(),
            host: "orderctl".to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    /// Writes `message` to `tmp/` and moves it to `new/`. Small writes to
    /// the page cache (no fsync: this is a sink), done in place.
    fn deliver(&self, message: &[u8]) -> std::io::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed),
            self.host
        );
        let tmp = self.root.join("tmp").join(&name);
        std::fs::write(&tmp, message)?;
        std::fs::rename(&tmp, self.root.join("new").join(&name))
    }
}

/// Runs the sink until interrupted (Ctrl-C or SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let maildir = Arc::new(Maildir::create(&args.maildir)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "orderctl smtp-sink: listening on {}, messages in {}",
        listener.local_addr()?,
        args.maildir.join("new").display()
    );
    let accept_delay = args.accept_delay.unwrap_or_default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = serve(listener, maildir, args.max_message_bytes, accept_delay) => r?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    listener: TcpListener,
    maildir: Arc<Maildir>,
    max: u64,
    accept_delay: std::time::Duration,
) -> anyhow::Result<()> {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the
                // connections already open.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let maildir = maildir.clone();
        tokio::spawn(async move {
            if let Err(e) = session(socket, &maildir, max, accept_delay).await {
                tracing::debug!(%peer, error = %e, "SMTP session ended");
            }
        });
    }
}

/// One SMTP conversation.
async fn session(
    socket: TcpStream,
    maildir: &Maildir,
    max: u64,
    accept_delay: std::time::Duration,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let (read, write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut out = BufWriter::new(write);
    let mut line = Vec::with_capacity(256);
    let mut greeted = false;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    reply(&mut out, "220 orderctl smtp-sink ESMTP ready").await?;
    loop {
        line.clear();
        flush_if_idle(&reader, &mut out).await?;
        match read_line(&mut reader, &mut line).await? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                reply(&mut out, "500 5.5.2 line too long").await?;
                continue;
            }
            Line::Ok => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                greeted = true;
                from = None;
                rcpts.clear();
                let hello = format!(
                    "250-orderctl smtp-sink\r\n250-SIZE {max}\r\n250-PIPELINING\r\n250 8BITMIME"
                );
                reply(&mut out, &hello).await?;
            }
            "HELO" => {
                greeted = true;
                from = None;
                rcpts.clear();
                reply(&mut out, "250 orderctl smtp-sink").await?;
            }
            "MAIL" if !greeted => reply(&mut out, "503 5.5.1 say EHLO first").await?,
            "MAIL" if from.is_some() => reply(&mut out, "503 5.5.1 nested MAIL").await?,
            "MAIL" => match path_arg(arg, "FROM:") {
                Some(p) => {
                    from = Some(p);
                    reply(&mut out, "250 2.1.0 ok").await?;
                }
                None => reply(&mut out, "501 5.5.4 syntax: MAIL FROM:<address>").await?,
            },
            "RCPT" if from.is_none() => reply(&mut out, "503 5.5.1 need MAIL first").await?,
            "RCPT" => match path_arg(arg, "TO:") {
                Some(p) if !p.is_empty() => {
                    rcpts.push(p);
                    reply(&mut out, "250 2.1.5 ok").await?;
                }
                _ => reply(&mut out, "501 5.5.4 syntax: RCPT TO:<address>").await?,
            },
            "DATA" if rcpts.is_empty() => reply(&mut out, "503 5.5.1 need RCPT first").await?,
            "DATA" => {
                reply(&mut out, "354 end data with <CR><LF>.<CR><LF>").await?;
                let mut message = format!(
                    "X-MailFrom: {}\r\nX-RcptTo: {}\r\n",
                    from.as_deref().unwrap_or_default(),
                    rcpts.join(", ")
                )
                .into_bytes();
                let mut too_big = false;
                loop {
                    line.clear();
                    flush_if_idle(&reader, &mut out).await?;
                    match read_line(&mut reader, &mut line).await? {
                        Line::Eof => return Ok(()),
                        // Still part of the message: keep reading to its end.
                        Line::TooLong => too_big = true,
                        Line::Ok => {}
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = line.strip_prefix(b".").unwrap_or(&line);
                    if message.len() as u64 + body.len() as u64 > max {
                        too_big = true;
                    }
                    if !too_big {
                        message.extend_from_slice(body);
                    }
                }
                from = None;
                rcpts.clear();
                if too_big {
                    reply(&mut out, "552 5.3.4 message too big").await?;
                } else {
                    if !accept_delay.is_zero() {
                        // What came before this message's end is answered
                        // first, as a server does while it works on it.
                        out.flush().await?;
                        tokio::time::sleep(accept_delay).await;
                    }
                    match maildir.deliver(&message) {
                        Ok(()) => reply(&mut out, "250 2.0.0 queued").await?,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot store a message");
                            reply(&mut out, "451 4.3.0 cannot store the message").await?;
                        }
                    }
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                reply(&mut out, "250 2.0.0 ok").await?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 ok").await?,
            "VRFY" => reply(&mut out, "252 2.1.5 cannot verify, will accept").await?,
            "QUIT" => {
                reply(&mut out, "221 2.0.0 bye").await?;
                return out.flush().await;
            }
            _ => reply(&mut out, "500 5.5.2 command not recognised").await?,
        }
    }
}

enum Line {
    Ok,
    TooLong,
    Eof,
}

/// Reads one line (with its ending) into `buf`, at most [`MAX_LINE`]
/// bytes; the rest of a longer line is read and dropped.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else {
                Line::Ok
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        if buf.len() + n <= MAX_LINE {
            buf.extend_from_slice(chunk);
        } else {
            too_long = true;
        }
        reader.consume(n);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Ok });
        }
    }
}

/// The address of `MAIL FROM:<a>` / `RCPT TO:<a>` (parameters after it are
/// ignored); `None` when the argument does not start with `prefix`.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let path = match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>')?.0,
        None => rest.split_whitespace().next().unwrap_or(""),
    };
    Some(path.to_owned())
}

/// Queues a reply; [`flush_if_idle`] sends it.
async fn reply<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    text: &str,
) -> std::io::Result<()> {
    out.write_all(text.as_bytes()).await?;
    out.write_all(b"\r\n").await
}

/// Sends the queued replies unless more input is already buffered: a
/// pipelining client (RFC 2920) sends `MAIL`, `RCPT` and `DATA` together,
/// and gets their three replies in one write. Called before every read, so
/// nothing waits for input with a reply still unsent.
async fn flush_if_idle<R: tokio::io::AsyncRead, W: tokio::io::AsyncWrite + Unpin>(
    reader: &BufReader<R>,
    out: &mut BufWriter<W>,
) -> std::io::Result<()> {
    if reader.buffer().is_empty() {
        out.flush().await
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    async fn start(max: u64) -> (SocketAddr, PathBuf) {
        start_with(max, std::time::Duration::ZERO).await
    }

    async fn start_with(max: u64, accept_delay: std::time::Duration) -> (SocketAddr, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "orderctl-sink-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let maildir = Arc::new(Maildir::create(&dir).expect("maildir"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, maildir, max, accept_delay));
        (addr, dir)
    }

    /// A client that sends a line and returns the reply's last line.
    struct Client {
        read: BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> (Self, String) {
            let (read, write) = TcpStream::connect(addr)
                .await
                .expect("connect")
                .into_split();
            let mut c = Self {
                read: BufReader::new(read),
                write,
            };
            let greeting = c.reply().await;
            (c, greeting)
        }

        async fn reply(&mut self) -> String {
            loop {
                let mut line = String::new();
                self.read.read_line(&mut line).await.expect("read");
                // Multi-line replies continue with "250-".
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return line.trim_end().to_owned();
                }
            }
        }

        async fn send(&mut self, line: &str) -> String {
            self.write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .expect("write");
            self.reply().await
        }
    }

    fn messages(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir.join("new"))
            .expect("new/")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn accept_delay_is_optional_and_never_zero() {
        let parse = |argv: &[&str]| crate::parse_flags::<Args>("smtp-sink", argv);
        let a = parse(&["--maildir", "m"]).expect("defaults");
        assert_eq!(a.accept_delay, None);
        let a = parse(&["--maildir", "m", "--accept-delay", "50ms"]).expect("50ms");
        assert_eq!(a.accept_delay, Some(std::time::Duration::from_millis(50)));
        let e = parse(&["--maildir", "m", "--accept-delay", "0s"]).expect_err("zero");
        assert!(e.contains("greater than zero"), "{e}");
    }

    /// With `--accept-delay` each message is answered no sooner than that
    /// after its end (a lower bound, which a slow machine cannot break),
    /// and still stored.
    #[tokio::test]
    async fn accept_delay_holds_each_messages_reply() {
        let delay = std::time::Duration::from_millis(300);
        let (addr, dir) = start_with(1 << 20, delay).await;
        let (mut c, _) = Client::connect(addr).await;
        assert!(c.send("EHLO client").await.starts_with("250 "));
        assert!(c
            .send("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250 "));
        assert!(c.send("RCPT TO:<b@example.com>").await.starts_with("250 "));
        assert!(c.send("DATA").await.starts_with("354 "));
        let sent = std::time::Instant::now();
        let reply = c.send("Subject: s\r\n\r\nbody\r\n.").await;
        assert!(reply.starts_with("250 "), "{reply}");
        assert!(sent.elapsed() >= delay, "{:?}", sent.elapsed());
        assert_eq!(messages(&dir).len(), 1);
    }

    #[tokio::test]
    async fn stores_each_message_in_the_maildir() {
        let (addr, dir) = start(1 << 20).await;
        let (mut c, greeting) = Client::connect(addr).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(c.send("EHLO client").await.starts_with("250 "));
        for (i, to) in ["ann@example.com", "bob@example.com"].iter().enumerate() {
            assert!(c
                .send("MAIL FROM:<shop@example.com> BODY=8BITMIME")
                .await
                .starts_with("250 "));
            assert!(c.send(&format!("RCPT TO:<{to}>")).await.starts_with("250 "));
            assert!(c.send("DATA").await.starts_with("354 "));
            let body = format!("Subject: {i}\r\n\r\nline\r\n..dot-stuffed\r\n.");
            assert!(
                c.send(&body).await.starts_with("250 "),
                "message {i} accepted"
            );
        }
        assert!(c.send("QUIT").await.starts_with("221 "));
        let got = messages(&dir);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("X-RcptTo: ann@example.com"), "{}", got[0]);
        assert!(
            got[0].contains("X-MailFrom: shop@example.com"),
            "{}",
            got[0]
        );
        assert!(
            got[0].contains("\r\n.dot-stuffed\r\n"),
            "dot-unstuffed: {}",
            got[0]
        );
        assert!(got[1].contains("X-RcptTo: bob@example.com"), "{}", got[1]);
        assert!(std::fs::read_dir(dir.join("tmp"))
            .expect("tmp/")
            .next()
            .is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn pipelined_commands_get_their_replies_in_order() {
        let (addr, dir) = start(1 << 20).await;
        let (mut c, _) = Client::connect(addr).await;
        c.write.write_all(b"EHLO client\r\n").await.expect("write");
        let mut ehlo = Vec::new();
        loop {
            let mut line = String::new();
            c.read.read_line(&mut line).await.expect("read");
            let last = line.as_bytes().get(3) != Some(&b'-');
            ehlo.push(line);
            if last {
                break;
            }
        }
        assert!(
            ehlo.iter().any(|l| l.trim_end() == "250-PIPELINING"),
            "{ehlo:?}"
        );
        c.write
            .write_all(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<ann@example.com>\r\nRCPT TO:<>\r\nDATA\r\n")
            .await
            .expect("write");
        assert!(c.reply().await.starts_with("250 "));
        assert!(c.reply().await.starts_with("250 "));
        assert!(
            c.reply().await.starts_with("501 "),
            "empty recipient refused"
        );
        assert!(c.reply().await.starts_with("354 "));
        assert!(c
            .send("Subject: p\r\n\r\nhi\r\n.")
            .await
            .starts_with("250 "));
        let got = messages(&dir);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].contains("X-RcptTo: ann@example.com\r\n"),
            "{}",
            got[0]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn commands_out_of_order_or_malformed_are_refused() {
        let (addr, dir) = start(1 << 20).await;
        let (mut c, _) = Client::connect(addr).await;
        assert!(
            c.send("MAIL FROM:<a@b>").await.starts_with("503 "),
            "EHLO first"
        );
        assert!(c.send("HELO client").await.starts_with("250 "));
        assert!(
            c.send("RCPT TO:<a@b>").await.starts_with("503 "),
            "MAIL first"
        );
        assert!(c.send("DATA").await.starts_with("503 "), "RCPT first");
        assert!(c.send("MAIL <a@b>").await.starts_with("501 "));
        assert!(c.send("FROB").await.starts_with("500 "));
        assert!(c.send(&"X".repeat(MAX_LINE + 10)).await.starts_with("500 "));
        assert!(c.send("NOOP").await.starts_with("250 "), "still talking");
        assert!(messages(&dir).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_and_not_stored() {
        let (addr, dir) = start(64).await;
        let (mut c, _) = Client::connect(addr).await;
        c.send("EHLO client").await;
        c.send("MAIL FROM:<a@b>").await;
        c.send("RCPT TO:<c@d>").await;
        c.send("DATA").await;
        let body = format!("{}\r\n.", "y".repeat(200));
        assert!(c.send(&body).await.starts_with("552 "));
        assert!(c.send("RSET").await.starts_with("250 "), "session goes on");
        assert!(messages(&dir).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn envelope_paths_are_read_with_or_without_brackets() {
        assert_eq!(
            path_arg("FROM:<a@b> SIZE=10", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_arg("from: a@b", "FROM:").as_deref(), Some("a@b"));
        assert_eq!(path_arg("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("TO:<a@b", "TO:"), None);
        assert_eq!(path_arg("<a@b>", "FROM:"), None);
    }
}
