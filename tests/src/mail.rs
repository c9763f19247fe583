//! The e-mails the SMTP listener stored (one Maildir file per message).

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// One received e-mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The Maildir file.
    pub file: PathBuf,
    /// Every header (unfolded, encoded words decoded), in order.
    pub headers: Vec<(String, String)>,
    /// `To`.
    pub to: String,
    /// `From`.
    pub from: String,
    /// `Subject`.
    pub subject: String,
    /// `Message-ID`.
    pub message_id: String,
    /// `X-RcptTo` (the SMTP envelope recipients, added by aiosmtpd).
    pub rcpt_to: String,
    /// The decoded text of the body (every text part of a multipart body).
    pub body: String,
}

impl Mail {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the subject or the body names `text`.
    pub fn mentions(&self, text: &str) -> bool {
        self.subject.contains(text) || self.body.contains(text)
    }

    /// Whether this is addressed to `address` (header `To` or envelope).
    pub fn is_to(&self, address: &str) -> bool {
        let a = address.to_ascii_lowercase();
        self.to.to_ascii_lowercase().contains(&a) || self.rcpt_to.to_ascii_lowercase().contains(&a)
    }

    /// Whether the subject says the order was cancelled.
    pub fn is_cancellation(&self) -> bool {
        let s = self.subject.to_ascii_lowercase();
        s.contains("cancelled") || s.contains("canceled")
    }

    /// Whether this is the confirmation e-mail of order `id` (mentions it,
    /// and is not a cancellation).
    pub fn confirms(&self, id: &str) -> bool {
        !self.is_cancellation() && self.mentions(id)
    }

    /// Short description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "[to={:?} subject={:?} message-id={:?} file={}]",
            self.to,
            self.subject,
            self.message_id,
            self.file.display()
        )
    }
}

/// Every message in the Maildir `dir` (`new/` and `cur/`), oldest file
/// first.
pub fn read_maildir(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                files.push((mtime, path));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, path)| {
            let raw = std::fs::read(&path).ok()?;
            Some(parse(&path, &raw))
        })
        .collect()
}

/// Parses one RFC 5322 message.
pub fn parse(file: &Path, raw: &[u8]) -> Mail {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (headers, body) = parse_entity(&text);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Mail {
        file: file.to_path_buf(),
        to: get("To"),
        from: get("From"),
        subject: get("Subject"),
        message_id: get("Message-ID"),
        rcpt_to: get("X-RcptTo"),
        headers: headers.clone(),
        body,
    }
}

/// Headers and decoded text body of a MIME entity (`\n` line ends).
fn parse_entity(text: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    for (_, v) in &mut headers {
        *v = decode_words(v);
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let content_type = header("Content-Type");
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        if let Some(boundary) = param(&content_type, "boundary") {
            let delimiter = format!("--{boundary}");
            let mut out = String::new();
            for part in body.split(&delimiter).skip(1) {
                if part.starts_with("--") {
                    break;
                }
                let part = part.strip_prefix('\n').unwrap_or(part);
                let (_, text) = parse_entity(part);
                out.push_str(&text);
                out.push('\n');
            }
            return (headers, out);
        }
    }
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        "quoted-printable" => {
            quoted_printable::decode(body.as_bytes(), quoted_printable::ParseMode::Robust)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        _ => body.to_owned(),
    };
    (headers, decoded)
}

/// A parameter of a structured header value (`boundary="x"`).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Decodes RFC 2047 encoded words (`=?utf-8?B?...?=`, `=?utf-8?Q?...?=`).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let after = &rest[start + 2..];
        let decoded = after.split_once('?').and_then(|(_charset, r)| {
            let (enc, r) = r.split_once('?')?;
            let (payload, tail) = r.split_once("?=")?;
            let bytes = match enc.to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .ok()?,
                "q" => quoted_printable::decode(
                    payload.replace('_', " ").as_bytes(),
                    quoted_printable::ParseMode::Robust,
                )
                .ok()?,
                _ => return None,
            };
            Some((String::from_utf8_lossy(&bytes).into_owned(), tail))
        });
        match decoded {
            Some((word, tail)) => {
                // Whitespace between two encoded words is not displayed.
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&word);
                rest = tail;
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = after;
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_quoted_printable_body() {
        let raw = b"From: shop@orderflow.local\r\nTo: ann@example.com\r\nSubject: =?utf-8?b?T3JkZXIg?=\r\n =?utf-8?q?cancelled_=E2=9C=93?=\r\nMessage-ID: <ORDER_CANCELLED.1@orderflow>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nYour order 12345 =\r\nis cancelled=2E\r\n";
        let m = parse(Path::new("x"), raw);
        assert_eq!(m.to, "ann@example.com");
        assert_eq!(m.subject, "Order cancelled \u{2713}");
        assert_eq!(m.message_id, "<ORDER_CANCELLED.1@orderflow>");
        assert!(
            m.body.contains("Your order 12345 is cancelled."),
            "{}",
            m.body
        );
        assert!(m.is_cancellation());
        assert!(m.is_to("Ann@example.com"));
    }

    #[test]
    fn parses_base64_multipart() {
        let raw = "Subject: hi\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8gb3JkZXI=\n--b1--\n";
        let m = parse(Path::new("x"), raw.as_bytes());
        assert!(m.body.contains("hello order"), "{}", m.body);
    }
}
