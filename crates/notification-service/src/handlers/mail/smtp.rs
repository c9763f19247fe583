//! A small SMTP client (RFC 5321) for sending one message at a time over a
//! connection kept open between messages.
//!
//! It pipelines (RFC 2920) when the server offers `PIPELINING`: `MAIL`,
//! `RCPT` and `DATA` go out in one write and their replies are read
//! together, then the message and its final `.` in one more. That is two
//! round trips per message instead of four, which matters for a relay on
//! another host. Without `PIPELINING` every command waits for its reply.
//!
//! Plain TCP only (no STARTTLS, no SMTPS); `AUTH PLAIN` or `AUTH LOGIN`.
//!
//! Why not `lettre`'s transport, which the service used before: it waits
//! for the reply to every command and does not set `TCP_NODELAY`.
//! Measured with `scripts/bench-smtp` (2026-12-06, `docs/benchmarks.md`,
//! "The SMTP client against lettre, re-taken"), 500 e-mails one after
//! another on one connection: 0.07–0.10 ms per e-mail with this client
//! against 43.8 ms with lettre on loopback (Nagle's algorithm meeting the
//! server's delayed ACK), 25 against 104 ms through a relay adding 5 ms
//! each way, 20–40 against 120–140 µs of CPU per e-mail. At 500 orders/s
//! (2026-11-24, "SMTP pipelining") it was 4.2–4.3 against 4.8–5.4 ms.

use std::fmt;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Longest reply line taken from a server (RFC 5321 allows 512 octets).
const MAX_REPLY_LINE: u64 = 4096;

/// Most lines in one (multi-line) reply.
const MAX_REPLY_LINES: usize = 128;

/// Why an SMTP exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The connection failed: an I/O error, the server hung up, or it sent
    /// something that is not an SMTP reply. `answered` says whether the
    /// server replied to anything in this exchange before that.
    Connection {
        /// What went wrong.
        message: String,
        /// Whether the server had replied to anything.
        answered: bool,
    },
    /// The server refused a command with this reply.
    Reply {
        /// The command refused (`MAIL`, `RCPT`, `DATA`, ...).
        command: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// Refused on this side before asking the server: what is asked cannot
    /// be done with this server (no common `AUTH` mechanism, an address it
    /// cannot take).
    Client(String),
}

impl Error {
    /// The server's reply code, if it refused with one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connection { message, .. } => write!(f, "connection failed: {message}"),
            Error::Reply {
                command,
                code,
                text,
            } => write!(f, "{command} refused: {code} {text}"),
            Error::Client(message) => f.write_str(message),
        }
    }
}

/// One reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// Every text line as sent (`EHLO`'s extension list; a refusal's text).
    lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// What the server said it supports in its `EHLO` reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extensions {
    /// `PIPELINING`: the envelope may be sent without waiting.
    pub pipelining: bool,
    /// `SMTPUTF8`: non-ASCII addresses are allowed.
    pub smtputf8: bool,
    /// `AUTH` mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Extensions {
    /// Parses the lines of an `EHLO` reply (the first is the greeting).
    pub fn parse(lines: &[String]) -> Self {
        let mut ext = Extensions::default();
        for line in lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "AUTH" => ext.auth.extend(words.map(str::to_ascii_uppercase)),
                // Old servers still write `AUTH=LOGIN PLAIN`.
                k if k.starts_with("AUTH=") => {
                    ext.auth.push(k["AUTH=".len()..].to_owned());
                    ext.auth.extend(words.map(str::to_ascii_uppercase));
                }
                _ => {}
            }
        }
        ext
    }
}

/// An open, greeted (and, if asked, authenticated) SMTP connection.
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    ext: Extensions,
    /// Reused buffer for what is written.
    out: Vec<u8>,
    /// Whether the server replied to anything since the connection was
    /// opened or the current [`send`](Self::send) began
    /// ([`Error::Connection`]'s `answered`).
    answered: bool,
}

impl Connection {
    /// Greets the server on `stream` (`EHLO`, or `HELO` if it does not know
    /// `EHLO`) and authenticates with `credentials` if given.
    pub async fn open(stream: TcpStream, credentials: Option<(&str, &str)>) -> Result<Self, Error> {
        let hello = stream
            .local_addr()
            .map(address_literal)
            .unwrap_or_else(|_| "[127.0.0.1]".to_owned());
        let (read, writer) = stream.into_split();
        let mut conn = Connection {
            reader: BufReader::new(read),
            writer,
            ext: Extensions::default(),
            out: Vec::with_capacity(1024),
            answered: false,
        };
        let greeting = conn.read_reply().await?;
        expect(&greeting, "connection greeting", 220)?;
        let ehlo = conn.command(&format!("EHLO {hello}")).await?;
        if ehlo.is_positive() {
            conn.ext = Extensions::parse(&ehlo.lines);
        } else {
            let helo = conn.command(&format!("HELO {hello}")).await?;
            expect(&helo, "HELO", 250)?;
        }
        if let Some((user, password)) = credentials {
            conn.authenticate(user, password).await?;
        }
        Ok(conn)
    }

    /// What the server supports.
    #[cfg(test)]
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), Error> {
        let offers = |m: &str| self.ext.auth.iter().any(|a| a == m);
        let (plain, login) = (offers("PLAIN"), offers("LOGIN"));
        if plain {
            let token = BASE64.encode(format!("\0{user}\0{password}"));
            let reply = self.command(&format!("AUTH PLAIN {token}")).await?;
            return expect(&reply, "AUTH PLAIN", 235);
        }
        if login {
            let reply = self.command("AUTH LOGIN").await?;
            expect(&reply, "AUTH LOGIN", 334)?;
            let reply = self.command(&BASE64.encode(user)).await?;
            expect(&reply, "AUTH LOGIN", 334)?;
            let reply = self.command(&BASE64.encode(password)).await?;
            return expect(&reply, "AUTH LOGIN", 235);
        }
        Err(Error::Client(format!(
            "the SMTP server offers no AUTH mechanism this service supports (PLAIN, LOGIN); it offers {:?}",
            self.ext.auth
        )))
    }

    /// Whether the server still answers (`NOOP`).
    pub async fn is_alive(&mut self) -> bool {
        matches!(self.command("NOOP").await, Ok(r) if r.is_positive())
    }

    /// Sends `message` (the formatted message, lines ending in CRLF) from
    /// `from` to `to`; `Ok` once the server accepted it. After an error the
    /// connection must not be used again.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<(), Error> {
        let utf8 = !from.is_ascii() || to.iter().any(|t| !t.is_ascii());
        if utf8 && !self.ext.smtputf8 {
            return Err(Error::Client(
                "the SMTP server does not take non-ASCII addresses (no SMTPUTF8)".to_owned(),
            ));
        }
        let mail = format!("MAIL FROM:<{from}>{}", if utf8 { " SMTPUTF8" } else { "" });
        let rcpts: Vec<String> = to.iter().map(|t| format!("RCPT TO:<{t}>")).collect();
        self.answered = false;
        if self.ext.pipelining {
            self.out.clear();
            for line in std::iter::once(&mail).chain(&rcpts) {
                self.out.extend_from_slice(line.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b"DATA\r\n");
            self.flush().await?;
            // Every reply is read, in order; the first refusal is the error.
            let mut first_error = None;
            let mail_reply = self.read_reply().await?;
            if let Err(e) = expect(&mail_reply, "MAIL", 250) {
                first_error.get_or_insert(e);
            }
            for _ in &rcpts {
                let reply = self.read_reply().await?;
                if let Err(e) = expect_positive(&reply, "RCPT") {
                    first_error.get_or_insert(e);
                }
            }
            let data = self.read_reply().await?;
            if let Some(e) = first_error {
                // If the server took DATA anyway, the caller drops the
                // connection before any message text: nothing is delivered.
                return Err(e);
            }
            expect(&data, "DATA", 354)?;
        } else {
            let reply = self.command(&mail).await?;
            expect(&reply, "MAIL", 250)?;
            for rcpt in &rcpts {
                let reply = self.command(rcpt).await?;
                expect_positive(&reply, "RCPT")?;
            }
            let reply = self.command("DATA").await?;
            expect(&reply, "DATA", 354)?;
        }
        self.out.clear();
        dot_stuff(message, &mut self.out);
        self.out.extend_from_slice(b".\r\n");
        self.flush().await?;
        let reply = self.read_reply().await?;
        expect(&reply, "message", 250)
    }

    /// Writes `line` and CRLF, and reads the reply.
    async fn command(&mut self, line: &str) -> Result<Reply, Error> {
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.flush().await?;
        self.read_reply().await
    }

    /// Writes everything in `out`.
    async fn flush(&mut self) -> Result<(), Error> {
        let written = self.writer.write_all(&self.out).await;
        written.map_err(|e| self.failed(format!("cannot write: {e}")))
    }

    /// Reads one reply, single- or multi-line; sets `answered` once it has.
    async fn read_reply(&mut self) -> Result<Reply, Error> {
        let mut lines = Vec::new();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let read = (&mut self.reader)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut line)
                .await;
            let n = read.map_err(|e| self.failed(format!("cannot read: {e}")))?;
            if n == 0 {
                return Err(self.failed("the server closed the connection".into()));
            }
            if line.last() != Some(&b'\n') {
                return Err(self.failed(format!("a reply line longer than {MAX_REPLY_LINE} bytes")));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (code, last, rest) = parse_reply_line(text)
                .ok_or_else(|| self.failed(format!("not an SMTP reply: {text:?}")))?;
            lines.push(rest.to_owned());
            if last {
                self.answered = true;
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(self.failed(format!("a reply of more than {MAX_REPLY_LINES} lines")));
            }
        }
    }

    /// The connection failed with `message`.
    fn failed(&self, message: String) -> Error {
        Error::Connection {
            message,
            answered: self.answered,
        }
    }
}

/// `Ok` if `reply` has code `code`, else the refusal of `command`.
fn expect(reply: &Reply, command: &'static str, code: u16) -> Result<(), Error> {
    if reply.code == code {
        Ok(())
    } else {
        Err(refused(reply, command))
    }
}

/// `Ok` if `reply` is a 2xx, else the refusal of `command`.
fn expect_positive(reply: &Reply, command: &'static str) -> Result<(), Error> {
    if reply.is_positive() {
        Ok(())
    } else {
        Err(refused(reply, command))
    }
}

fn refused(reply: &Reply, command: &'static str) -> Error {
    Error::Reply {
        command,
        code: reply.code,
        text: reply.lines.join(" "),
    }
}

/// Code, whether it is the last line (`250 ok`, not `250-ok`), and the
/// text of one reply line.
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(b'2'..=b'5').contains(&digits.as_bytes()[0])
    {
        return None;
    }
    let code = digits.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// `EHLO`'s argument for a client without a domain name: its address
/// literal (RFC 5321 4.1.3).
fn address_literal(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("[{}]", a.ip()),
        SocketAddr::V6(a) => format!("[IPv6:{}]", a.ip()),
    }
}

/// Appends `message` to `out` as the text of `DATA`: a line starting with
/// `.` gets another in front (RFC 5321 4.5.2), and the text ends with CRLF.
fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::mail::fake::{Fake, Rcpt};

    #[test]
    fn reply_lines_are_parsed() {
        assert_eq!(parse_reply_line("250 ok"), Some((250, true, "ok")));
        assert_eq!(
            parse_reply_line("250-PIPELINING"),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(parse_reply_line("354"), Some((354, true, "")));
        for bad in ["", "25", "ok 250", "250x", "650 nope", "2a0 x"] {
            assert_eq!(parse_reply_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn extensions_come_from_the_ehlo_reply() {
        let lines: Vec<String> = [
            "mail.example.com hello",
            "SIZE 1000",
            "pipelining",
            "AUTH login Plain",
            "SMTPUTF8",
        ]
        .map(String::from)
        .to_vec();
        let ext = Extensions::parse(&lines);
        assert!(ext.pipelining && ext.smtputf8);
        assert_eq!(ext.auth, ["LOGIN", "PLAIN"]);

        let old = Extensions::parse(&["hi".into(), "AUTH=LOGIN PLAIN".into()]);
        assert_eq!(old.auth, ["LOGIN", "PLAIN"]);
        assert!(!old.pipelining && !old.smtputf8);
        // The greeting line is never an extension.
        assert!(!Extensions::parse(&["PIPELINING".into()]).pipelining);
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_text_ends_in_crlf() {
        let mut out = Vec::new();
        dot_stuff(b".hidden\r\nmid.dle\r\n.\r\n..two", &mut out);
        assert_eq!(out, b"..hidden\r\nmid.dle\r\n..\r\n...two\r\n");
        let mut out = Vec::new();
        dot_stuff(b"a\r\n", &mut out);
        assert_eq!(out, b"a\r\n");
    }

    #[tokio::test]
    async fn the_text_of_a_message_arrives_intact() {
        for pipelining in [true, false] {
            let (port, mut mail, _) = Fake {
                pipelining,
                ..Fake::new(Rcpt::Accept)
            }
            .start()
            .await;
            let stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let mut conn = Connection::open(stream, None).await.expect("open");
            assert_eq!(conn.extensions().pipelining, pipelining);
            for _ in 0..2 {
                conn.send(
                    "a@example.com",
                    &["b@example.com"],
                    b"Subject: x\r\n\r\n.\r\n..two\r\nend",
                )
                .await
                .expect("sent");
                let data = mail.recv().await.expect("data");
                assert_eq!(data, "Subject: x\n\n.\n..two\nend\n");
            }
            assert!(conn.is_alive().await);
        }
    }

    #[test]
    fn address_literals() {
        assert_eq!(
            address_literal("127.0.0.1:25".parse().unwrap()),
            "[127.0.0.1]"
        );
        assert_eq!(address_literal("[::1]:25".parse().unwrap()), "[IPv6:::1]");
    }
}
